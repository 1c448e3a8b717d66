//! The Downloads, Peers, Settings and Log tabs, and the first-launch screen.

use std::time::Instant;

use lanspread_net::Request;
use lanspread_net::download::Phase;

use super::model::{Snapshot, UiCommand};
use super::picker::PickFor;
use super::screen::Screen;
use crate::context::human_bytes;

pub fn first_launch(screen: &mut Screen, ui: &mut egui::Ui, commands: &mut Vec<UiCommand>) {
    ui.vertical_centered(|ui| {
        ui.add_space(60.0);
        ui.heading("Welcome to lanspread");
        ui.add_space(12.0);
        ui.label(
            "Pick the folder where your games live (or should live). lanspread shares the games in it \
             with the other PCs at the party, and downloads new ones into it.",
        );
        ui.label("Each game gets a folder named after it; nothing outside this folder is touched.");
        ui.add_space(12.0);
        let choose = egui::Button::new("Choose a games folder…");
        if ui.add_enabled(!screen.picker.is_open(), choose).clicked() {
            screen.picker.ask(PickFor::FirstGamesDir);
        }
        ui.add_space(24.0);
        ui.label("New here? The demo starts three PCs inside this window's process, with games to fetch.");
        if ui.button("Try the demo").clicked() {
            commands.push(UiCommand::StartDemo);
        }
    });
}

pub fn downloads(ui: &mut egui::Ui, snapshot: &Snapshot, commands: &mut Vec<UiCommand>) {
    if snapshot.peer.downloads.is_empty() {
        ui.label("No downloads yet. Pick a game in the library and press Download.");
        return;
    }
    egui::ScrollArea::vertical()
        .auto_shrink(false)
        .show(ui, |ui| {
            for progress in snapshot.peer.downloads.values().rev() {
                let title = snapshot
                    .catalog
                    .get_str(&progress.game)
                    .map_or(progress.game.clone(), |e| e.title.clone());
                egui::Frame::group(ui.style()).show(ui, |ui| {
                    ui.set_width(ui.available_width());
                    ui.horizontal(|ui| {
                        ui.strong(format!("{title} {}", progress.version));
                        ui.label(progress.phase.label());
                        if matches!(
                            progress.phase,
                            Phase::Manifests | Phase::Reusing | Phase::Fetching
                        ) && ui.button("Cancel").clicked()
                            && let Ok(game) = lanspread_core::GameId::parse(&progress.game)
                        {
                            commands.push(UiCommand::Peer(Request::CancelDownload { game }));
                        }
                    });
                    let fraction = if progress.total_bytes > 0 {
                        progress.done_bytes as f32 / progress.total_bytes as f32
                    } else {
                        0.0
                    };
                    let eta = progress.eta_secs.map_or_else(String::new, |s| {
                        format!(", {} left", crate::context::human_duration(s))
                    });
                    ui.add(egui::ProgressBar::new(fraction).text(format!(
                        "{} of {} at {}/s{eta}",
                        human_bytes(progress.done_bytes),
                        human_bytes(progress.total_bytes),
                        human_bytes(progress.bytes_per_sec as u64)
                    )));
                    if let Some(error) = &progress.error {
                        ui.colored_label(ui.visuals().error_fg_color, error);
                    }
                    if progress.reused_bytes > 0 {
                        ui.label(format!(
                            "{} reused from the old version, {} to download",
                            human_bytes(progress.reused_bytes),
                            human_bytes(progress.total_bytes.saturating_sub(progress.done_bytes))
                        ));
                    }
                    ui.label(format!(
                        "{} peers in use, {} dropped",
                        progress.peers_in_use(),
                        progress.peers.len() - progress.peers_in_use()
                    ));
                    for peer in &progress.peers {
                        let note = peer
                            .reason
                            .as_deref()
                            .map(|r| format!(" — dropped: {r}"))
                            .unwrap_or_default();
                        ui.small(format!(
                            "{} ({}): {}{note}",
                            peer.name,
                            peer.addr,
                            human_bytes(peer.bytes)
                        ));
                    }
                });
            }
        });
}

pub fn peers(
    screen: &mut Screen,
    ui: &mut egui::Ui,
    snapshot: &Snapshot,
    commands: &mut Vec<UiCommand>,
) {
    ui.horizontal(|ui| {
        let label = ui.label("Add a peer by address");
        ui.add(
            egui::TextEdit::singleline(&mut screen.add_peer)
                .hint_text("192.168.1.20:4747")
                .desired_width(200.0),
        )
        .labelled_by(label.id);
        if ui.button("Add").clicked() && !screen.add_peer.trim().is_empty() {
            commands.push(UiCommand::Peer(Request::AddPeer {
                target: screen.add_peer.trim().to_owned(),
            }));
            screen.add_peer.clear();
        }
    });
    ui.separator();
    if snapshot.peer.peers.is_empty() {
        ui.label("No other lanspread found yet. Discovery finds PCs on this network; add one by address if multicast is blocked.");
        return;
    }
    let now = Instant::now();
    egui::Grid::new("peers")
        .striped(true)
        .num_columns(5)
        .spacing([18.0, 6.0])
        .show(ui, |ui| {
            for header in ["Name", "Address", "Games", "Last seen", "Catalog"] {
                ui.strong(header);
            }
            ui.end_row();
            for peer in snapshot.peer.peers.values() {
                ui.label(&peer.name);
                ui.label(peer.addr.to_string());
                ui.label(peer.games.len().to_string());
                // A peer is listed while its session lives; its library
                // long-poll answers at least every few tens of seconds.
                let quiet = now.saturating_duration_since(peer.last_seen);
                ui.label(if quiet < std::time::Duration::from_secs(30) {
                    "now (connected)".to_owned()
                } else {
                    format!(
                        "{}s ago",
                        now.saturating_duration_since(peer.last_seen).as_secs()
                    )
                });
                ui.label(if peer.same_catalog {
                    "same"
                } else {
                    "different"
                });
                ui.end_row();
            }
        });
}

pub fn settings(screen: &mut Screen, ui: &mut egui::Ui, commands: &mut Vec<UiCommand>) {
    let settings = &mut screen.settings;
    egui::Grid::new("settings")
        .num_columns(2)
        .spacing([12.0, 8.0])
        .show(ui, |ui| {
            ui.label("Games folder");
            ui.horizontal(|ui| {
                ui.label(
                    settings
                        .games_dir
                        .as_ref()
                        .map_or("(none)".to_owned(), |d| d.display().to_string()),
                );
                let browse = egui::Button::new("Browse…");
                if ui.add_enabled(!screen.picker.is_open(), browse).clicked() {
                    screen.picker.ask(PickFor::GamesDir);
                }
            });
            ui.end_row();
            let label = ui.label("Display name");
            ui.add(
                egui::TextEdit::singleline(&mut settings.display_name)
                    .hint_text("this computer's name"),
            )
            .labelled_by(label.id);
            ui.end_row();
            ui.label("Discovery");
            ui.checkbox(
                &mut settings.discovery_enabled,
                "Find other PCs on the network (mDNS)",
            );
            ui.end_row();
            let label = ui.label("Interfaces");
            let mut interfaces = settings.discovery_interfaces.join(", ");
            if ui
                .add(
                    egui::TextEdit::singleline(&mut interfaces)
                        .hint_text("all (or e.g. eth0, wlan0)"),
                )
                .labelled_by(label.id)
                .changed()
            {
                settings.discovery_interfaces = split_list(&interfaces);
            }
            ui.end_row();
            ui.label("");
            ui.checkbox(
                &mut settings.discovery_virtual_adapters,
                "Also use virtual and VPN adapters (Hyper-V, WSL, VirtualBox, Tailscale, ZeroTier…)",
            );
            ui.end_row();
            let label = ui.label("Manual peers");
            let mut peers = settings.manual_peers.join("\n");
            if ui
                .add(
                    egui::TextEdit::multiline(&mut peers)
                        .hint_text("HOST:PORT, one per line")
                        .desired_rows(3),
                )
                .labelled_by(label.id)
                .changed()
            {
                settings.manual_peers = split_list(&peers);
            }
            ui.end_row();
            ui.label("Catalog file");
            ui.horizontal(|ui| {
                ui.label(
                    settings
                        .catalog_file
                        .as_ref()
                        .map_or("(the one built in)".to_owned(), |f| f.display().to_string()),
                );
                let choose = egui::Button::new("Choose…");
                if ui.add_enabled(!screen.picker.is_open(), choose).clicked() {
                    screen.picker.ask(PickFor::CatalogFile);
                }
                if settings.catalog_file.is_some() && ui.button("Use the built-in one").clicked() {
                    settings.catalog_file = None;
                }
            });
            ui.end_row();
            ui.label("Uploads");
            ui.horizontal(|ui| {
                let mut limited = settings.upload_limit_mbit.is_some();
                if ui
                    .checkbox(&mut limited, "Always limit uploads to")
                    .changed()
                {
                    settings.upload_limit_mbit = limited.then_some(50);
                }
                let mut mbit = settings.upload_limit_mbit.unwrap_or(50);
                let field = ui.add_enabled(
                    limited,
                    egui::DragValue::new(&mut mbit)
                        .range(1..=100_000)
                        .suffix(" Mbit/s"),
                );
                if limited && field.changed() {
                    settings.upload_limit_mbit = Some(mbit);
                }
            });
            ui.end_row();
            ui.label("While a game runs");
            ui.vertical(|ui| {
                use lanspread_core::WhilePlaying;
                let playing = &mut settings.while_playing;
                ui.radio_value(playing, WhilePlaying::KeepSharing, "Keep sharing");
                ui.horizontal(|ui| {
                    let limit = match *playing {
                        WhilePlaying::LimitMbit(mbit) => mbit,
                        _ => 10,
                    };
                    ui.radio_value(playing, WhilePlaying::LimitMbit(limit), "Limit uploads to");
                    let mut mbit = limit;
                    let on = matches!(playing, WhilePlaying::LimitMbit(_));
                    let field = ui.add_enabled(
                        on,
                        egui::DragValue::new(&mut mbit)
                            .range(1..=100_000)
                            .suffix(" Mbit/s"),
                    );
                    if on && field.changed() {
                        *playing = WhilePlaying::LimitMbit(mbit);
                    }
                });
                ui.radio_value(playing, WhilePlaying::Pause, "Pause sharing");
                ui.small("For games started with Play in lanspread.");
            });
            ui.end_row();
        });
    ui.separator();
    if ui.button("Save").clicked() {
        commands.push(UiCommand::SaveSettings(screen.settings.clone()));
    }
    ui.small("Upload limits apply at once; other changes restart the network part of lanspread.");
}

fn split_list(text: &str) -> Vec<String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

pub fn log(screen: &mut Screen, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        ui.label("Show");
        for level in [
            tracing::Level::ERROR,
            tracing::Level::WARN,
            tracing::Level::INFO,
            tracing::Level::DEBUG,
        ] {
            ui.selectable_value(&mut screen.log_level, level, level.as_str());
        }
        if let Some(file) = &screen.log.file {
            ui.separator();
            ui.label(format!("also written to {}", file.display()));
        }
    });
    ui.separator();
    let lines = screen.log.lines_at_least(screen.log_level);
    let row_height = ui.text_style_height(&egui::TextStyle::Monospace);
    egui::ScrollArea::vertical()
        .auto_shrink(false)
        .stick_to_bottom(true)
        .show_rows(ui, row_height, lines.len(), |ui, range| {
            for line in &lines[range] {
                let text = egui::RichText::new(&line.text).monospace();
                let text = match line.level {
                    tracing::Level::ERROR => text.color(ui.visuals().error_fg_color),
                    tracing::Level::WARN => text.color(ui.visuals().warn_fg_color),
                    _ => text,
                };
                ui.label(text);
            }
        });
}
