//! The library: search, filters, sort, and a grid of game cards laid out
//! only where visible (a few hundred cards cost nothing off-screen).

use lanspread_net::Request;

use super::model::{CardState, GameView, Sharing, Snapshot, UiCommand};
use super::screen::{Screen, SortBy};
use crate::context::human_bytes;

/// The narrowest a card gets; cards widen to fill the row.
pub const CARD_WIDTH: f32 = 230.0;
pub const CARD_HEIGHT: f32 = 222.0;
pub const COVER_HEIGHT: f32 = 96.0;
const GAP: f32 = 10.0;

pub fn show(
    screen: &mut Screen,
    ui: &mut egui::Ui,
    snapshot: &Snapshot,
    commands: &mut Vec<UiCommand>,
) {
    ui.horizontal(|ui| {
        let label = ui.label("Search");
        let search = ui
            .add(
                egui::TextEdit::singleline(&mut screen.search)
                    .hint_text("title, genre or id (Ctrl+F)")
                    .desired_width(240.0),
            )
            .labelled_by(label.id);
        if screen.focus_search {
            search.request_focus();
            screen.focus_search = false;
        }
        ui.separator();
        ui.checkbox(&mut screen.only_installed, "Installed");
        ui.checkbox(&mut screen.only_available, "On the LAN");
        ui.checkbox(&mut screen.only_updates, "Updates");
        ui.separator();
        ui.label("Sort");
        ui.selectable_value(&mut screen.sort, SortBy::Title, "title");
        ui.selectable_value(&mut screen.sort, SortBy::Size, "size");
        ui.selectable_value(&mut screen.sort, SortBy::Peers, "peers");
    });
    ui.separator();
    let games = screen.visible_games(snapshot);
    if games.is_empty() {
        ui.label(format!("No game matches \"{}\".", screen.search.trim()));
        return;
    }
    let width = ui.available_width() - 16.0; // room for the scroll bar
    let columns = ((width + GAP) / (CARD_WIDTH + GAP)).floor().max(1.0) as usize;
    let card_width = ((width - GAP * (columns - 1) as f32) / columns as f32).max(CARD_WIDTH);
    let rows = games.len().div_ceil(columns);
    egui::ScrollArea::vertical().auto_shrink(false).show_rows(
        ui,
        CARD_HEIGHT + GAP,
        rows,
        |ui, range| {
            for row in range {
                ui.horizontal(|ui| {
                    ui.spacing_mut().item_spacing.x = GAP;
                    for game in games.iter().skip(row * columns).take(columns) {
                        card(screen, ui, game, card_width, commands);
                    }
                });
                ui.add_space(GAP);
            }
        },
    );
}

/// A stable colour per game id.
pub fn cover_colour(id: &str) -> egui::Color32 {
    let hash = blake3_like(id);
    let hue = (hash % 360) as f32 / 360.0;
    egui::Color32::from(egui::ecolor::Hsva::new(hue, 0.55, 0.55, 1.0))
}

fn blake3_like(text: &str) -> u32 {
    // FNV-1a: enough to spread colours, stable across runs and platforms.
    text.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Up to two initials of a title ("Unreal Tournament 2004" -> "UT",
/// "Age of Empires II" -> "AE": small lowercase words are skipped).
pub fn initials(title: &str) -> String {
    title
        .split(|c: char| c.is_whitespace() || c == ':' || c == '-')
        .filter(|word| !word.starts_with(|c: char| c.is_lowercase()))
        .filter_map(|word| word.chars().find(|c| c.is_alphanumeric()))
        .take(2)
        .flat_map(char::to_uppercase)
        .collect()
}

/// The game's cover: the catalog's art when it names one that loads,
/// otherwise its colour and initials. Never a blank box. Clicking it opens
/// the game's details.
pub fn draw_cover(
    ui: &mut egui::Ui,
    covers: &mut super::covers::Covers,
    game: &GameView,
    size: egui::Vec2,
) -> egui::Response {
    let (rect, response) = ui.allocate_exact_size(size, egui::Sense::click());
    let painter = ui.painter_at(rect);
    if let Some(texture) = game
        .cover
        .as_deref()
        .and_then(|c| covers.texture(ui.ctx(), c))
    {
        // Fill the box, cropping the art rather than stretching it.
        let [w, h] = texture.size().map(|v| v as f32);
        let (box_ratio, art_ratio) = (size.x / size.y, w / h);
        let uv = if art_ratio > box_ratio {
            let keep = box_ratio / art_ratio;
            egui::Rect::from_min_max(
                egui::pos2((1.0 - keep) / 2.0, 0.0),
                egui::pos2((1.0 + keep) / 2.0, 1.0),
            )
        } else {
            let keep = art_ratio / box_ratio;
            egui::Rect::from_min_max(
                egui::pos2(0.0, (1.0 - keep) / 2.0),
                egui::pos2(1.0, (1.0 + keep) / 2.0),
            )
        };
        painter.image(texture.id(), rect, uv, egui::Color32::WHITE);
        return response.on_hover_cursor(egui::CursorIcon::PointingHand);
    }
    painter.rect_filled(rect, 6.0, cover_colour(game.id.as_str()));
    painter.text(
        rect.center(),
        egui::Align2::CENTER_CENTER,
        initials(&game.title),
        egui::FontId::proportional(size.y * 0.42),
        egui::Color32::WHITE,
    );
    response.on_hover_cursor(egui::CursorIcon::PointingHand)
}

pub fn state_colour(ui: &egui::Ui, state: &CardState) -> egui::Color32 {
    match state {
        CardState::Installed | CardState::Downloaded => egui::Color32::from_rgb(60, 170, 90),
        CardState::UpdateAvailable | CardState::Differs => ui.visuals().warn_fg_color,
        CardState::Incomplete => ui.visuals().error_fg_color,
        CardState::Downloading(_) => egui::Color32::from_rgb(70, 140, 230),
        CardState::NotHere => ui.visuals().text_color(),
        CardState::OnNoPeer => ui.visuals().weak_text_color(),
    }
}

fn card(
    screen: &mut Screen,
    ui: &mut egui::Ui,
    game: &GameView,
    width: f32,
    commands: &mut Vec<UiCommand>,
) {
    let selected = screen.selected.as_ref() == Some(&game.id);
    let frame = egui::Frame::group(ui.style()).fill(if selected {
        ui.visuals().selection.bg_fill.gamma_multiply(0.4)
    } else {
        ui.visuals().faint_bg_color
    });
    frame.show(ui, |ui| {
        ui.set_width(width - 14.0);
        ui.set_height(CARD_HEIGHT - 14.0);
        ui.vertical(|ui| {
            if draw_cover(
                ui,
                &mut screen.covers,
                game,
                egui::vec2(width - 14.0, COVER_HEIGHT),
            )
            .clicked()
            {
                screen.selected = Some(game.id.clone());
            }
            ui.add(egui::Label::new(egui::RichText::new(&game.title).strong()).truncate());
            ui.small(format!(
                "{} · up to {} · {}",
                game.genre,
                game.max_players,
                human_bytes(game.size_bytes)
            ));
            ui.colored_label(state_colour(ui, &game.state), game.state_words());
            if let CardState::Downloading(progress) = &game.state {
                let fraction = if progress.total_bytes > 0 {
                    progress.done_bytes as f32 / progress.total_bytes as f32
                } else {
                    0.0
                };
                let eta = progress.eta_secs.map_or_else(String::new, |s| {
                    format!(" · {} left", crate::context::human_duration(s))
                });
                ui.add(
                    egui::ProgressBar::new(fraction)
                        .desired_width(width - 20.0)
                        .text(format!(
                            "{}/s{eta}",
                            human_bytes(progress.bytes_per_sec as u64)
                        )),
                );
            }
            ui.small(game.availability());
            let sharing = match &game.sharing {
                Sharing::Shared { uploads } if *uploads > 0 => {
                    egui::RichText::new(game.sharing_words())
                        .color(egui::Color32::from_rgb(70, 140, 230))
                }
                Sharing::Shared { .. } => egui::RichText::new(game.sharing_words()),
                _ => egui::RichText::new(game.sharing_words()).weak(),
            };
            ui.add(egui::Label::new(sharing.small()).truncate());
            ui.horizontal(|ui| {
                match game.state {
                    CardState::NotHere | CardState::Incomplete => {
                        if ui.button("Download").clicked() {
                            commands.push(UiCommand::Peer(Request::Download {
                                game: game.id.clone(),
                            }));
                        }
                    }
                    CardState::UpdateAvailable => {
                        if ui.button("Update").clicked() {
                            screen.dialog = Some((super::screen::Confirm::Update, game.id.clone()));
                        }
                    }
                    CardState::Downloaded => {
                        if ui.button("Install").clicked() {
                            commands.push(UiCommand::Peer(Request::Install {
                                game: game.id.clone(),
                            }));
                        }
                    }
                    CardState::Downloading(_) => {
                        if ui.button("Cancel").clicked() {
                            commands.push(UiCommand::Peer(Request::CancelDownload {
                                game: game.id.clone(),
                            }));
                        }
                    }
                    CardState::Installed if game.running => {
                        ui.label(
                            egui::RichText::new("running")
                                .color(egui::Color32::from_rgb(60, 170, 90)),
                        );
                    }
                    CardState::Installed if game.can_play => {
                        if ui.button("Play").clicked() {
                            commands.push(UiCommand::Peer(Request::Play {
                                game: game.id.clone(),
                            }));
                        }
                    }
                    CardState::Installed => {
                        if let Some(dir) = &game.local_dir
                            && ui.button("Open folder").clicked()
                        {
                            commands.push(UiCommand::OpenFolder(dir.clone()));
                        }
                    }
                    CardState::OnNoPeer | CardState::Differs => {}
                }
                if ui.button("Details").clicked() {
                    screen.selected = Some(game.id.clone());
                }
            });
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initials_and_colours() {
        assert_eq!(initials("Unreal Tournament 2004"), "UT");
        assert_eq!(initials("Counter-Strike 1.6"), "CS");
        assert_eq!(initials("0 A.D."), "0A");
        assert_eq!(initials("Age of Empires II"), "AE");
        assert_eq!(cover_colour("ut2004"), cover_colour("ut2004"));
        assert_ne!(cover_colour("ut2004"), cover_colour("aoe2"));
    }
}
