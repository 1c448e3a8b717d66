//! The detail view of one game, and the confirmations before Update, Remove
//! and Uninstall.

use lanspread_net::Request;

use super::library::{COVER_HEIGHT, draw_cover, state_colour};
use super::model::{CardState, GameView, UiCommand};
use super::screen::{Confirm, Screen};
use crate::context::human_bytes;

pub fn show(
    screen: &mut Screen,
    ui: &mut egui::Ui,
    game: &GameView,
    commands: &mut Vec<UiCommand>,
) {
    ui.horizontal(|ui| {
        ui.heading(&game.title);
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if ui.button("Close").clicked() {
                screen.selected = None;
            }
        });
    });
    let width = ui.available_width();
    let _ = draw_cover(
        ui,
        &mut screen.covers,
        game,
        egui::vec2(width, COVER_HEIGHT * 1.3),
    );
    ui.label(&game.description);
    ui.separator();
    egui::Grid::new("facts")
        .num_columns(2)
        .spacing([12.0, 4.0])
        .show(ui, |ui| {
            ui.label("Genre");
            ui.label(format!(
                "{}, up to {} players",
                game.genre, game.max_players
            ));
            ui.end_row();
            ui.label("Catalog version");
            if game.pinned {
                ui.label(format!(
                    "{} (verified against the organiser's catalog)",
                    game.catalog_version
                ));
            } else {
                ui.label(&game.catalog_version);
            }
            ui.end_row();
            ui.label("On this PC");
            ui.label(game.local_version.as_deref().unwrap_or("-"));
            ui.end_row();
            ui.label("Size");
            ui.label(human_bytes(game.size_bytes));
            ui.end_row();
            ui.label("State");
            ui.colored_label(state_colour(ui, &game.state), game.state_words());
            ui.end_row();
            ui.label("Sharing");
            ui.label(game.sharing_words());
            ui.end_row();
            ui.label("Other PCs");
            ui.vertical(|ui| {
                if game.holders.is_empty() {
                    ui.label("none has it");
                }
                for holder in &game.holders {
                    ui.label(format!("{}: {}", holder.name, holder.has.words()));
                }
            });
            ui.end_row();
            ui.label("Downloading from you");
            ui.label(if game.receivers.is_empty() {
                "nobody right now".to_owned()
            } else {
                game.receivers.join(", ")
            });
            ui.end_row();
        });
    if let CardState::Downloading(progress) = &game.state {
        let fraction = if progress.total_bytes > 0 {
            progress.done_bytes as f32 / progress.total_bytes as f32
        } else {
            0.0
        };
        ui.add(egui::ProgressBar::new(fraction).show_percentage());
    }
    ui.separator();
    ui.horizontal_wrapped(|ui| {
        let here = matches!(
            game.state,
            CardState::Downloaded
                | CardState::Installed
                | CardState::UpdateAvailable
                | CardState::Differs
                | CardState::Incomplete
        );
        match &game.state {
            CardState::NotHere | CardState::Incomplete if ui.button("Download").clicked() => {
                commands.push(UiCommand::Peer(Request::Download {
                    game: game.id.clone(),
                }));
            }
            CardState::Downloading(_) if ui.button("Cancel download").clicked() => {
                commands.push(UiCommand::Peer(Request::CancelDownload {
                    game: game.id.clone(),
                }));
            }
            _ => {}
        }
        if matches!(game.state, CardState::UpdateAvailable) {
            // Once the new manifest is known, the button says what moves.
            if game.update_plan.is_none() && screen.update_plans_asked.insert(game.id.clone()) {
                commands.push(UiCommand::Peer(Request::PlanUpdate {
                    game: game.id.clone(),
                }));
            }
            if ui.button(update_label(game)).clicked() {
                screen.dialog = Some((Confirm::Update, game.id.clone()));
            }
        }
        if matches!(game.state, CardState::Differs)
            && ui.button("Go back to the catalog's version").clicked()
        {
            screen.dialog = Some((Confirm::Update, game.id.clone()));
        }
        if matches!(game.state, CardState::Downloaded) && ui.button("Install").clicked() {
            commands.push(UiCommand::Peer(Request::Install {
                game: game.id.clone(),
            }));
        }
        if game.installed {
            if game.running {
                ui.label("running");
            } else if game.can_play && ui.button("Play").clicked() {
                commands.push(UiCommand::Peer(Request::Play {
                    game: game.id.clone(),
                }));
            }
            if let Some(dir) = &game.local_dir
                && ui.button("Open folder").clicked()
            {
                commands.push(UiCommand::OpenFolder(dir.clone()));
            }
            if ui.button("Uninstall").clicked() {
                screen.dialog = Some((Confirm::Uninstall, game.id.clone()));
            }
        }
        if here && ui.button("Remove").clicked() {
            screen.dialog = Some((Confirm::Remove, game.id.clone()));
        }
    });
}

/// "Update: 48 MiB to download, 3.1 GiB reused" once the plan is known.
pub fn update_label(game: &GameView) -> String {
    match game.update_plan {
        Some(plan) if plan.reused_bytes > 0 => format!(
            "Update: {} to download, {} reused",
            human_bytes(plan.download_bytes),
            human_bytes(plan.reused_bytes)
        ),
        Some(plan) => format!("Update: {} to download", human_bytes(plan.download_bytes)),
        None => "Update".to_owned(),
    }
}

/// What a confirmation says will happen.
pub fn consequence(kind: Confirm, game: &GameView) -> String {
    match kind {
        Confirm::Update if matches!(game.state, CardState::Differs) => format!(
            "Version {} here is newer than the catalog's. {} will be downloaded at the catalog's version {} and replace it.{}",
            game.local_version.as_deref().unwrap_or("?"),
            game.title,
            game.catalog_version,
            if game.installed {
                " The installed game is then reinstalled: your saves are carried over, and your versions of files it replaces are kept in local.previous."
            } else {
                ""
            }
        ),
        Confirm::Update => format!(
            "{} will be downloaded at version {} from the PCs that have it (what version {} already holds is reused, not downloaded), then swapped in.{}",
            game.title,
            game.catalog_version,
            game.local_version.as_deref().unwrap_or("?"),
            if game.installed {
                " The installed game (its local folder) is then replaced by a fresh install: your saves and other files it does not ship are carried over, and your versions of files it replaces are kept in local.previous."
            } else {
                ""
            }
        ),
        Confirm::Remove => format!(
            "The downloaded files of {}{} will be deleted from this PC{}.",
            game.title,
            if matches!(game.state, CardState::Downloaded | CardState::Installed) {
                format!(" ({})", human_bytes(game.size_bytes))
            } else {
                String::new()
            },
            if game.installed {
                ", and the installed game with them"
            } else {
                ""
            }
        ),
        Confirm::Uninstall => format!(
            "The installed copy of {} (its local folder, saves included) will be deleted. The downloaded files stay, and stay shared.",
            game.title
        ),
    }
}

/// The last-copy warning: this PC is the only one on the LAN holding the
/// catalog's version whole, so removing it leaves nobody to download it
/// from. Update never takes away a copy anyone could download from this
/// PC (only the catalog's version is served, and an update only replaces
/// another version), so it has none.
pub fn last_copy_warning(kind: Confirm, game: &GameView) -> Option<String> {
    let last =
        matches!(kind, Confirm::Remove) && game.here_whole && game.other_hosts_with_version == 0;
    last.then(|| {
        format!(
            "You are the only PC with {} {}: after removing it, nobody here can download it.",
            game.title, game.catalog_version
        )
    })
}

/// The warning about peers downloading from us, if any are.
pub fn upload_warning(game: &GameView) -> Option<String> {
    match game.uploads() {
        0 => None,
        1 => Some(
            "1 peer is downloading this game from you; that upload will be stopped.".to_owned(),
        ),
        n => Some(format!(
            "{n} peers are downloading this game from you; their uploads will be stopped."
        )),
    }
}

pub fn confirm_dialog(
    screen: &mut Screen,
    ctx: &egui::Context,
    kind: Confirm,
    game: &GameView,
    commands: &mut Vec<UiCommand>,
) {
    let (title, action) = match kind {
        Confirm::Update => ("Update", "Yes, update"),
        Confirm::Remove => ("Remove", "Yes, remove"),
        Confirm::Uninstall => ("Uninstall", "Yes, uninstall"),
    };
    let modal = egui::Modal::new(egui::Id::unique("confirm")).show(ctx, |ui| {
        ui.set_width(420.0);
        ui.heading(format!("{title} {}?", game.title));
        ui.label(consequence(kind, game));
        if let Some(warning) = last_copy_warning(kind, game) {
            ui.colored_label(ui.visuals().warn_fg_color, warning);
        }
        if let Some(warning) = upload_warning(game) {
            ui.colored_label(ui.visuals().warn_fg_color, warning);
        }
        ui.separator();
        ui.horizontal(|ui| {
            if ui.button("Cancel").clicked() {
                screen.dialog = None;
            }
            if ui.button(action).clicked() {
                screen.dialog = None;
                commands.push(match kind {
                    Confirm::Update => UiCommand::Peer(Request::Update {
                        game: game.id.clone(),
                    }),
                    Confirm::Remove => UiCommand::Peer(Request::Remove {
                        game: game.id.clone(),
                        keep_local: false,
                    }),
                    Confirm::Uninstall => UiCommand::Peer(Request::Uninstall {
                        game: game.id.clone(),
                    }),
                });
            }
        });
    });
    if modal.should_close() {
        screen.dialog = None;
    }
}
