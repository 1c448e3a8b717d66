//! The window's own state (tab, search, selection, open dialog, settings
//! being edited) and the frame function that draws everything from a
//! [`Snapshot`] and returns what the user asked for.

use lanspread_core::{GameId, Settings};

use super::log::LogBuffer;
use super::model::{GameView, Snapshot, UiCommand, game_view, game_views};
use super::picker::FolderPicker;

/// The tabs along the top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Library,
    Downloads,
    Peers,
    Settings,
    Log,
}

/// How the library is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    Title,
    Size,
    Peers,
}

/// Which operation a confirmation dialog is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    Update,
    Remove,
    Uninstall,
}

/// Everything the window remembers between frames.
pub struct Screen {
    pub tab: Tab,
    pub search: String,
    pub focus_search: bool,
    pub only_installed: bool,
    pub only_available: bool,
    pub only_updates: bool,
    pub sort: SortBy,
    pub selected: Option<GameId>,
    pub dialog: Option<(Confirm, GameId)>,
    /// Settings as being edited; saved with the Save button.
    pub settings: Settings,
    pub add_peer: String,
    pub log_level: tracing::Level,
    pub log: LogBuffer,
    pub picker: Box<dyn FolderPicker>,
    /// A sentence for the user about the last thing that happened.
    pub notice: Option<String>,
    pub covers: super::covers::Covers,
    /// Games whose update plan was asked for (once each).
    pub update_plans_asked: std::collections::BTreeSet<GameId>,
    /// A slow step running in the background ("restarting the network…").
    pub busy: Option<String>,
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Screen")
            .field("tab", &self.tab)
            .field("selected", &self.selected)
            .field("dialog", &self.dialog)
            .finish_non_exhaustive()
    }
}

impl Screen {
    pub fn new(settings: Settings, log: LogBuffer, picker: Box<dyn FolderPicker>) -> Self {
        Self {
            tab: Tab::Library,
            search: String::new(),
            focus_search: false,
            only_installed: false,
            only_available: false,
            only_updates: false,
            sort: SortBy::Peers,
            selected: None,
            dialog: None,
            settings,
            add_peer: String::new(),
            log_level: tracing::Level::INFO,
            log,
            picker,
            notice: None,
            covers: super::covers::Covers::default(),
            update_plans_asked: std::collections::BTreeSet::new(),
            busy: None,
        }
    }

    /// The games the library shows, filtered and sorted.
    pub fn visible_games(&self, snapshot: &Snapshot) -> Vec<GameView> {
        let needle = self.search.trim().to_lowercase();
        let mut games: Vec<GameView> = game_views(snapshot)
            .into_iter()
            .filter(|g| {
                needle.is_empty()
                    || g.title.to_lowercase().contains(&needle)
                    || g.genre.to_lowercase().contains(&needle)
                    || g.id.as_str().contains(&needle)
            })
            .filter(|g| !self.only_installed || g.installed)
            .filter(|g| !self.only_available || g.peers_with_version > 0)
            .filter(|g| {
                !self.only_updates || matches!(g.state, super::model::CardState::UpdateAvailable)
            })
            .collect();
        match self.sort {
            SortBy::Title => games.sort_by_key(|g| g.title.to_lowercase()),
            SortBy::Size => games.sort_by_key(|g| std::cmp::Reverse(g.size_bytes)),
            SortBy::Peers => games.sort_by(|a, b| {
                b.peers_with_version
                    .cmp(&a.peers_with_version)
                    .then_with(|| a.title.cmp(&b.title))
            }),
        }
        games
    }

    /// Draws one frame; returns the commands the user gave.
    pub fn show(&mut self, ui: &mut egui::Ui, snapshot: &Snapshot) -> Vec<UiCommand> {
        let mut commands = Vec::new();
        // A folder or file chosen in a dialog that a past frame opened.
        if let Some((what, Some(path))) = self.picker.poll() {
            use super::picker::PickFor;
            match what {
                PickFor::GamesDir => self.settings.games_dir = Some(path),
                PickFor::FirstGamesDir => {
                    self.settings.games_dir = Some(path);
                    commands.push(UiCommand::SaveSettings(self.settings.clone()));
                }
                PickFor::CatalogFile => self.settings.catalog_file = Some(path),
            }
        }
        if ui.input_mut(|i| i.consume_key(egui::Modifiers::COMMAND, egui::Key::F)) {
            self.tab = Tab::Library;
            self.focus_search = true;
        }
        egui::Panel::top("tabs").show(ui, |ui| self.top_bar(ui, snapshot));
        let first_launch = snapshot.peer.games_dir.is_none();
        if first_launch && self.tab == Tab::Library {
            egui::CentralPanel::default().show(ui, |ui| {
                super::panels::first_launch(self, ui, &mut commands);
            });
            return commands;
        }
        if self.tab == Tab::Library
            && let Some(id) = self.selected.clone()
            && let Some(view) = game_view(snapshot, &id)
        {
            egui::Panel::right("detail")
                .resizable(true)
                .default_size(360.0)
                .show(ui, |ui| super::detail::show(self, ui, &view, &mut commands));
        }
        egui::CentralPanel::default().show(ui, |ui| match self.tab {
            Tab::Library => super::library::show(self, ui, snapshot, &mut commands),
            Tab::Downloads => super::panels::downloads(ui, snapshot, &mut commands),
            Tab::Peers => super::panels::peers(self, ui, snapshot, &mut commands),
            Tab::Settings => super::panels::settings(self, ui, &mut commands),
            Tab::Log => super::panels::log(self, ui),
        });
        if let Some((kind, id)) = self.dialog.clone()
            && let Some(view) = game_view(snapshot, &id)
        {
            super::detail::confirm_dialog(self, ui.ctx(), kind, &view, &mut commands);
        }
        commands
    }

    fn top_bar(&mut self, ui: &mut egui::Ui, snapshot: &Snapshot) {
        ui.horizontal(|ui| {
            ui.heading("lanspread");
            ui.separator();
            let downloads = snapshot
                .peer
                .downloads
                .values()
                .filter(|d| {
                    !matches!(
                        d.phase,
                        lanspread_net::download::Phase::Done
                            | lanspread_net::download::Phase::Failed
                    )
                })
                .count();
            let tabs = [
                (Tab::Library, "Library".to_owned()),
                (Tab::Downloads, format!("Downloads ({downloads})")),
                (Tab::Peers, format!("Peers ({})", snapshot.peer.peers.len())),
                (Tab::Settings, "Settings".to_owned()),
                (Tab::Log, "Log".to_owned()),
            ];
            for (tab, label) in tabs {
                ui.selectable_value(&mut self.tab, tab, label);
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if let Some(busy) = &self.busy {
                    ui.label(busy);
                    ui.spinner();
                    ui.separator();
                }
                let shared = snapshot.peer.local_games.len();
                let uploads: usize = snapshot.peer.transfers.outbound.values().sum();
                let text = match (shared, uploads) {
                    (0, _) => "sharing nothing".to_owned(),
                    (n, 0) => format!("sharing {n} games"),
                    (n, u) => format!("sharing {n} games · {u} uploads now"),
                };
                let sharing = snapshot.peer.sharing;
                match sharing.words() {
                    Some(words) if sharing.paused => ui.label(words),
                    Some(words) => ui.label(format!("{text} · {words}")),
                    None => ui.label(text),
                };
                if let Some(hashing) = &snapshot.peer.hashing {
                    let title = snapshot
                        .catalog
                        .get_str(&hashing.game)
                        .map_or(hashing.game.as_str(), |e| e.title.as_str());
                    let percent =
                        hashing.bytes_done as f64 * 100.0 / hashing.bytes_total.max(1) as f64;
                    ui.label(format!(
                        "checking {title} before sharing it: {percent:.0} % ({}/s) ·",
                        crate::context::human_bytes(hashing.bytes_per_sec as u64)
                    ));
                }
            });
        });
        if snapshot.peer.maybe_firewalled {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                firewall_hint(snapshot.peer.peers.len()),
            );
        }
        if let Some(notice) = self.notice.clone() {
            ui.horizontal(|ui| {
                ui.label(notice);
                if ui.small_button("dismiss").clicked() {
                    self.notice = None;
                }
            });
        }
    }
}

/// What the window says when this PC reaches peers but none reaches it.
pub fn firewall_hint(peers: usize) -> String {
    format!(
        "This PC reaches {peers} other PC{} but none has connected to it: a firewall probably blocks lanspread, \
         so the others cannot download from you. On Windows: Windows Security > Firewall & network protection > \
         Allow an app through firewall > Change settings > tick lanspread for Private and Public.",
        if peers == 1 { "" } else { "s" }
    )
}
