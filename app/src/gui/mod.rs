//! The window. Immediate mode: every frame draws from the state it holds;
//! nothing here blocks or awaits.
//!
//! For now the window is the catalog: every game and its right version, with
//! the local library's state beside it when a games folder is set. The full
//! library, downloads and settings screens grow here, one file each.

mod catalog_list;

use anyhow::Context as _;
use lanspread_core::library::scan_library;
use lanspread_core::store::resolve_data_dir;
use lanspread_core::{GameCatalog, LibraryScan, Store};

use crate::GlobalArgs;
use crate::context::{catalog_override, init_logging, load_catalog};

pub use catalog_list::CatalogList;

/// The application state eframe drives.
#[derive(Debug)]
pub struct LanspreadApp {
    list: CatalogList,
}

impl LanspreadApp {
    pub fn new(
        catalog: GameCatalog,
        warning: Option<String>,
        library: Option<LibraryScan>,
    ) -> Self {
        Self {
            list: CatalogList::new(catalog, warning, library),
        }
    }
}

impl eframe::App for LanspreadApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::CentralPanel::default().show(ui, |ui| self.list.ui(ui));
    }
}

/// Opens the window and runs until it is closed.
pub fn run(global: &GlobalArgs) -> anyhow::Result<()> {
    init_logging("info");
    let data_dir = resolve_data_dir(global.data.as_deref());
    let store = Store::open(&data_dir)
        .with_context(|| format!("opening the data folder {}", data_dir.display()))?;
    let settings = store.settings()?;
    let loaded = load_catalog(catalog_override(global, Some(&settings)));
    if let Some(warning) = &loaded.warning {
        tracing::warn!("{warning}");
    }
    let library = settings.games_dir.as_deref().and_then(|dir| {
        scan_library(dir, &loaded.catalog)
            .inspect_err(|err| tracing::warn!("{err}"))
            .ok()
    });
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("lanspread")
        .with_inner_size([1100.0, 720.0])
        .with_min_inner_size([640.0, 400.0]);
    match eframe::icon_data::from_png_bytes(include_bytes!("../../../assets/icon.png")) {
        Ok(icon) => viewport = viewport.with_icon(icon),
        Err(err) => tracing::warn!("the window icon could not be decoded: {err}"),
    }
    let options = eframe::NativeOptions {
        viewport,
        renderer: eframe::Renderer::Glow,
        ..Default::default()
    };
    let app = LanspreadApp::new(loaded.catalog, loaded.warning, library);
    eframe::run_native("lanspread", options, Box::new(|_cc| Ok(Box::new(app))))
        .map_err(|err| anyhow::anyhow!("the window could not be opened: {err}"))
}
