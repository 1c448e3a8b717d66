//! The window. Immediate mode: every frame reads the peer runtime's latest
//! published state and draws it; `ui` never blocks or awaits. User actions
//! become commands on the runtime's bounded channel; the runtime asks for a
//! repaint when its state changes.
//!
//! One file per screen or panel: [`screen`] (tabs and the frame function),
//! [`library`] (cards and covers), [`detail`] (the detail view and the
//! confirmations), [`panels`] (downloads, peers, settings, log, first
//! launch), [`model`] (what is drawn, derived from the state), [`backend`]
//! (the link to the runtime), [`log`] and [`picker`].

pub mod backend;
pub mod covers;
pub mod detail;
pub mod library;
pub mod log;
pub mod model;
pub mod panels;
pub mod picker;
pub mod screen;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

use lanspread_core::store::resolve_data_dir;

use crate::GlobalArgs;
use backend::{Backend, Launch};
use screen::Screen;

/// The application state eframe drives.
pub struct LanspreadApp {
    pub screen: Screen,
    pub backend: Backend,
    /// Screenshots to take, in order, when run with `--screenshots DIR`.
    tour: Option<Tour>,
}

impl LanspreadApp {
    /// One frame: poll answers, draw, apply what the user asked for.
    pub fn frame(&mut self, ui: &mut egui::Ui) {
        for notice in self.backend.poll() {
            tracing::info!("{notice}");
            self.screen.notice = Some(notice);
        }
        // A restart (the demo's, say) brought other settings: edit those.
        if let Some(settings) = self.backend.take_new_settings() {
            self.screen.settings = settings;
        }
        let catalog_dir = self.backend.catalog_dir();
        if self.screen.covers.catalog_dir != catalog_dir {
            self.screen.covers.catalog_dir = catalog_dir;
            self.screen.covers.clear();
        }
        self.screen.busy = self.backend.busy();
        let snapshot = self.backend.snapshot();
        let commands = self.screen.show(ui, &snapshot);
        for command in commands {
            if let Some(notice) = self.backend.apply(command) {
                self.screen.notice = Some(notice);
            }
        }
        if let Some(warning) = &self.backend.catalog_warning
            && self.screen.notice.is_none()
        {
            self.screen.notice = Some(warning.clone());
        }
    }
}

impl eframe::App for LanspreadApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.frame(ui);
        if let Some(tour) = &mut self.tour {
            tour.step(ui.ctx(), &mut self.screen, &mut self.backend);
        }
        // Progress and counters move without input; a slow tick keeps them fresh.
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_millis(500));
    }
}

/// Shows why the window could not start in a native message box (a
/// window user has no console to read), unless `LANSPREAD_NO_DIALOGS` is
/// set (tests: a dialog would wait for a click).
pub fn show_start_error(message: &str) {
    if std::env::var_os("LANSPREAD_NO_DIALOGS").is_some() {
        return;
    }
    let _ = rfd::MessageDialog::new()
        .set_level(rfd::MessageLevel::Error)
        .set_title("lanspread could not start")
        .set_description(message)
        .set_buttons(rfd::MessageButtons::Ok)
        .show();
}

/// Options of the window.
#[derive(Debug, Clone, Default)]
pub struct WindowOptions {
    pub no_discovery: bool,
    pub demo: bool,
    pub screenshots: Option<PathBuf>,
}

/// Opens the window and runs until it is closed.
pub fn run(global: &GlobalArgs, options: WindowOptions) -> anyhow::Result<()> {
    // A `--catalog FILE` typed on the command line must load (only the one
    // saved in Settings falls back, and the window says so).
    if global.catalog.is_some() {
        crate::context::catalog_for_cli(global)?;
    }
    let data_dir = resolve_data_dir(global.data.as_deref());
    // One lanspread per data folder: a second start says so before it
    // touches anything there (the running one's log included).
    if lanspread_net::data_lock::is_locked(&data_dir) {
        anyhow::bail!(
            "lanspread is already running on this PC's data folder {} ({}); switch to its window",
            data_dir.display(),
            lanspread_net::data_lock::describe_holder(&data_dir)
        );
    }
    let log = log::init(&data_dir);
    let launch = Launch {
        data_dir,
        catalog_override: global.catalog.clone(),
        discovery_off: options.no_discovery,
    };
    // OpenGL first (light, and what llvmpipe and most drivers offer); where
    // it cannot start (Remote Desktop, some VMs), wgpu (Direct3D 12,
    // Vulkan or Metal). `LANSPREAD_RENDERER=wgpu|glow` picks one.
    let renderers = match std::env::var("LANSPREAD_RENDERER").as_deref() {
        Ok("wgpu") => vec![eframe::Renderer::Wgpu],
        Ok("glow") => vec![eframe::Renderer::Glow],
        _ => vec![eframe::Renderer::Glow, eframe::Renderer::Wgpu],
    };
    let mut failures = Vec::new();
    for renderer in renderers {
        match open_window(renderer, launch.clone(), log.clone(), options.clone()) {
            Ok(()) => return Ok(()),
            // The window opened and lanspread failed to start in it: not
            // a matter of drawing, another renderer would not help.
            Err(eframe::Error::AppCreation(err)) => {
                return Err(anyhow::anyhow!("lanspread could not start: {err}"));
            }
            Err(err) => {
                tracing::warn!("the {renderer} renderer could not open the window: {err}");
                failures.push(format!("{renderer}: {err}"));
            }
        }
    }
    Err(anyhow::anyhow!(
        "the window could not be opened ({}). lanspread draws with OpenGL 2 or, failing that, \
         Direct3D 12, Vulkan or Metal; where none works (some virtual machines), use the command \
         line (`lanspread serve`, `lanspread get ID`), which needs no window",
        failures.join("; ")
    ))
}

/// Opens the window with one renderer and runs until it is closed.
fn open_window(
    renderer: eframe::Renderer,
    launch: Launch,
    log: log::LogBuffer,
    options: WindowOptions,
) -> Result<(), eframe::Error> {
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("lanspread")
        .with_inner_size([1200.0, 760.0])
        .with_min_inner_size([720.0, 480.0]);
    match eframe::icon_data::from_png_bytes(include_bytes!("../../../assets/icon.png")) {
        Ok(icon) => viewport = viewport.with_icon(icon),
        Err(err) => tracing::warn!("the window icon could not be decoded: {err}"),
    }
    let native = eframe::NativeOptions {
        viewport,
        renderer,
        ..Default::default()
    };
    eframe::run_native(
        "lanspread",
        native,
        Box::new(move |cc| {
            cc.egui_ctx.set_theme(egui::ThemePreference::System);
            let ctx = cc.egui_ctx.clone();
            let repaint: Arc<dyn Fn() + Send + Sync> = Arc::new(move || ctx.request_repaint());
            let (mut backend, settings) = Backend::start(launch, Some(repaint))?;
            let picker: Box<dyn picker::FolderPicker> = if options.screenshots.is_some() {
                Box::new(picker::PresetPicker::default())
            } else {
                Box::new(picker::NativePicker::default())
            };
            let mut screen = Screen::new(settings, log, picker);
            if options.demo || options.screenshots.is_some() {
                screen.notice = Some(backend.start_demo());
            }
            let tour = options.screenshots.map(Tour::new);
            Ok(Box::new(LanspreadApp {
                screen,
                backend,
                tour,
            }))
        }),
    )
}

/// The screenshot tour: drives the window through the views the README
/// shows and saves a PNG of each, then closes it.
struct Tour {
    dir: PathBuf,
    step: usize,
    frames_in_step: usize,
    waiting_for_shot: bool,
    /// Set by the screenshot callback once the PNG is saved.
    shot_saved: Arc<std::sync::atomic::AtomicBool>,
}

impl Tour {
    fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            step: 0,
            frames_in_step: 0,
            waiting_for_shot: false,
            shot_saved: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    const SHOTS: [&'static str; 8] = [
        "library",
        "detail",
        "downloading",
        "remove-confirm",
        "peers",
        "play",
        "last-copy",
        "settings",
    ];

    fn step(&mut self, ctx: &egui::Context, screen: &mut Screen, backend: &mut Backend) {
        use std::sync::atomic::Ordering;
        if self.step >= Self::SHOTS.len() {
            return;
        }
        if self.waiting_for_shot && self.shot_saved.swap(false, Ordering::SeqCst) {
            self.waiting_for_shot = false;
            self.step += 1;
            self.frames_in_step = 0;
            if self.step == Self::SHOTS.len() {
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                return;
            }
        }
        if self.waiting_for_shot {
            return;
        }
        self.frames_in_step += 1;
        let snapshot = backend.snapshot();
        let ready = match Self::SHOTS[self.step] {
            "library" => {
                screen.tab = screen::Tab::Library;
                // Wait for the demo peers' games to show up on the cards.
                snapshot.peer.peers.len() == 3
                    && snapshot
                        .peer
                        .peers
                        .values()
                        .all(|p| p.library_revision.is_some() && !p.games.is_empty())
                    && snapshot.peer.library.is_some()
            }
            "detail" => {
                screen.selected = lanspread_core::GameId::parse("aoe2").ok();
                self.frames_in_step > 10
            }
            "downloading" => {
                if self.frames_in_step == 1 {
                    screen.selected = lanspread_core::GameId::parse("ut2004").ok();
                    if let Some(id) = screen.selected.clone() {
                        let _ = backend.apply(model::UiCommand::Peer(
                            lanspread_net::Request::Download { game: id },
                        ));
                    }
                }
                snapshot
                    .peer
                    .downloads
                    .get("ut2004")
                    .is_some_and(|d| d.total_bytes > 0 && d.done_bytes * 4 > d.total_bytes)
            }
            "remove-confirm" => {
                screen.selected = lanspread_core::GameId::parse("aoe2").ok();
                screen.dialog = screen
                    .selected
                    .clone()
                    .map(|id| (screen::Confirm::Remove, id));
                self.frames_in_step > 10
            }
            "peers" => {
                screen.dialog = None;
                screen.tab = screen::Tab::Peers;
                self.frames_in_step > 10
            }
            "play" => {
                // The game only this PC has, installed: Play on its card.
                screen.tab = screen::Tab::Library;
                screen.search = "unreal".into();
                screen.selected = lanspread_core::GameId::parse("ut99").ok();
                self.frames_in_step > 10
            }
            "last-copy" => {
                screen.dialog = screen
                    .selected
                    .clone()
                    .map(|id| (screen::Confirm::Remove, id));
                self.frames_in_step > 10
            }
            "settings" => {
                screen.dialog = None;
                screen.selected = None;
                screen.tab = screen::Tab::Settings;
                screen.settings = backend.settings().clone();
                screen.settings.upload_limit_mbit = Some(200);
                screen.settings.while_playing = lanspread_core::WhilePlaying::LimitMbit(10);
                self.frames_in_step > 10
            }
            _ => true,
        };
        if ready && self.frames_in_step > 3 {
            let path = self.dir.join(format!("{}.png", Self::SHOTS[self.step]));
            let saved = self.shot_saved.clone();
            let repaint = ctx.clone();
            ctx.request_screenshot(move |image| {
                match save_png(&path, &image) {
                    Ok(()) => tracing::info!("saved {}", path.display()),
                    Err(err) => tracing::error!("saving {}: {err}", path.display()),
                }
                saved.store(true, std::sync::atomic::Ordering::SeqCst);
                repaint.request_repaint();
            });
            self.waiting_for_shot = true;
        }
        ctx.request_repaint();
    }
}

fn save_png(path: &std::path::Path, image: &egui::ColorImage) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let [width, height] = image.size;
    let bytes: Vec<u8> = image.pixels.iter().flat_map(|p| p.to_array()).collect();
    let buffer = image::RgbaImage::from_raw(width as u32, height as u32, bytes)
        .ok_or_else(|| anyhow::anyhow!("the screenshot has the wrong size"))?;
    buffer.save(path)?;
    Ok(())
}
