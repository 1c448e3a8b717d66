//! The catalog as a searchable list, with each game's local state.

use lanspread_core::{GameCatalog, GameState, LibraryScan};

use crate::context::human_size_mib;

/// The list's state: the catalog, the library scan, and the search text.
#[derive(Debug)]
pub struct CatalogList {
    catalog: GameCatalog,
    warning: Option<String>,
    library: Option<LibraryScan>,
    pub search: String,
}

impl CatalogList {
    pub fn new(
        catalog: GameCatalog,
        warning: Option<String>,
        library: Option<LibraryScan>,
    ) -> Self {
        Self {
            catalog,
            warning,
            library,
            search: String::new(),
        }
    }

    fn matches(&self, title: &str, genre: &str, id: &str) -> bool {
        let needle = self.search.trim().to_lowercase();
        needle.is_empty()
            || title.to_lowercase().contains(&needle)
            || genre.to_lowercase().contains(&needle)
            || id.contains(&needle)
    }

    pub fn ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("lanspread");
            ui.label(format!(
                "{} games · catalog edition {}",
                self.catalog.len(),
                self.catalog.edition()
            ));
        });
        if let Some(warning) = &self.warning {
            ui.colored_label(ui.visuals().warn_fg_color, warning);
        }
        if self.library.is_none() {
            ui.label("No games folder is set yet: the list shows the catalog only.");
        }
        ui.horizontal(|ui| {
            let label = ui.label("Search");
            ui.add(
                egui::TextEdit::singleline(&mut self.search)
                    .hint_text("title, genre or id")
                    .desired_width(260.0),
            )
            .labelled_by(label.id);
        });
        ui.separator();
        let visible: Vec<_> = self
            .catalog
            .entries()
            .filter(|e| self.matches(&e.title, &e.genre, e.id.as_str()))
            .collect();
        if visible.is_empty() {
            ui.label(format!("No game matches \"{}\".", self.search.trim()));
            return;
        }
        egui::ScrollArea::vertical()
            .auto_shrink(false)
            .show(ui, |ui| {
                egui::Grid::new("catalog")
                    .striped(true)
                    .num_columns(6)
                    .spacing([16.0, 6.0])
                    .show(ui, |ui| {
                        for header in ["Game", "Genre", "Players", "Size", "Version", "Here"] {
                            ui.strong(header);
                        }
                        ui.end_row();
                        for entry in visible {
                            ui.label(&entry.title).on_hover_text(&entry.description);
                            ui.label(&entry.genre);
                            ui.label(format!("up to {}", entry.max_players));
                            ui.label(human_size_mib(entry.approx_size_mib));
                            ui.label(entry.version.as_str());
                            let state = self.library.as_ref().map(|l| l.state_of(&entry.id));
                            ui.label(state_label(state));
                            ui.end_row();
                        }
                    });
            });
    }
}

fn state_label(state: Option<GameState>) -> &'static str {
    match state {
        None => "",
        Some(GameState::Missing) => "not here",
        Some(GameState::Incomplete) => "incomplete",
        Some(GameState::Downloaded) => "downloaded",
        Some(GameState::Installed) => "installed",
        Some(GameState::UpdateAvailable) => "update available",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egui_kittest::Harness;
    use egui_kittest::kittest::Queryable;
    use lanspread_core::library::scan_library;

    fn harness(list: CatalogList) -> Harness<'static, CatalogList> {
        Harness::builder()
            .with_size(egui::vec2(1000.0, 4000.0))
            .build_ui_state(|ui, list: &mut CatalogList| list.ui(ui), list)
    }

    #[test]
    fn lists_every_catalog_game_and_search_filters() {
        let catalog = GameCatalog::embedded().unwrap();
        let mut harness = harness(CatalogList::new(catalog, None, None));
        assert!(harness.query_by_label("Unreal Tournament 2004").is_some());
        assert!(
            harness
                .query_by_label("Age of Empires II: The Conquerors")
                .is_some()
        );
        harness.get_by_label("Search").focus();
        harness.get_by_label("Search").type_text("unreal");
        harness.run();
        assert_eq!(harness.state().search, "unreal");
        assert!(harness.query_by_label("Unreal Tournament 2004").is_some());
        assert!(
            harness
                .query_by_label("Age of Empires II: The Conquerors")
                .is_none()
        );
        harness.state_mut().search = "no such game".into();
        harness.run();
        assert!(
            harness
                .query_by_label("No game matches \"no such game\".")
                .is_some()
        );
    }

    #[test]
    fn shows_local_state_and_the_catalog_warning() {
        let catalog = GameCatalog::embedded().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let ut = tmp.path().join("ut2004");
        std::fs::create_dir_all(ut.join("local")).unwrap();
        let version = catalog.get_str("ut2004").unwrap().version.to_ini();
        std::fs::write(ut.join("version.ini"), version).unwrap();
        let scan = scan_library(tmp.path(), &catalog).unwrap();
        let warning = Some("catalog party.ron, line 3: broken".to_owned());
        let mut harness = harness(CatalogList::new(catalog, warning, Some(scan)));
        harness.run();
        assert!(harness.query_by_label("installed").is_some());
        assert!(
            harness
                .query_by_label("catalog party.ron, line 3: broken")
                .is_some()
        );
        assert!(
            !harness
                .query_all_by_label("not here")
                .collect::<Vec<_>>()
                .is_empty()
        );
    }
}
