//! The window's link to the peer runtime: starts and restarts it with the
//! settings, turns [`UiCommand`]s into runtime commands without waiting,
//! and collects their answers as notices, frame by frame.

use std::path::PathBuf;
use std::sync::Arc;

use lanspread_core::{GameCatalog, Settings, Store};
use lanspread_net::discovery::DiscoveryConfig;
use lanspread_net::download::DownloadReport;
use lanspread_net::{Command, PeerConfig, PeerHandle};
use tokio::sync::oneshot;

use super::model::{Snapshot, UiCommand};
use crate::demo::Demo;

/// How the window was started.
#[derive(Debug, Clone)]
pub struct Launch {
    pub data_dir: PathBuf,
    /// `--catalog`, which wins over the settings' catalog file.
    pub catalog_override: Option<PathBuf>,
    /// `--no-discovery` on the command line wins over the settings.
    pub discovery_off: bool,
}

enum Pending {
    Text(oneshot::Receiver<Result<String, String>>),
    Download(oneshot::Receiver<Result<DownloadReport, String>>),
}

/// Owns the peer (and the demo peers, in demo mode).
pub struct Backend {
    launch: Launch,
    peer: Option<PeerHandle>,
    catalog: Arc<GameCatalog>,
    pub catalog_warning: Option<String>,
    /// The organiser's catalog file in use, if any (covers are looked up beside it).
    catalog_file: Option<PathBuf>,
    pending: Vec<Pending>,
    repaint: Option<Arc<dyn Fn() + Send + Sync>>,
    pub demo: Option<Demo>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("launch", &self.launch)
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// Starts the peer on the data folder with the saved settings.
    pub fn start(
        launch: Launch,
        repaint: Option<Arc<dyn Fn() + Send + Sync>>,
    ) -> anyhow::Result<(Self, Settings)> {
        let settings = {
            let store = Store::open(&launch.data_dir)?;
            store.settings()?
            // The store closes here; the peer opens it again.
        };
        let mut backend = Self {
            launch,
            peer: None,
            catalog: Arc::new(GameCatalog::embedded()?),
            catalog_warning: None,
            catalog_file: None,
            pending: Vec::new(),
            repaint,
            demo: None,
        };
        backend.restart(&settings, None)?;
        Ok((backend, settings))
    }

    /// (Re)starts the peer with `settings`; in demo mode, with the demo's
    /// folders and peers.
    fn restart(&mut self, settings: &Settings, manual: Option<Vec<String>>) -> anyhow::Result<()> {
        if let Some(peer) = self.peer.take() {
            peer.shutdown();
        }
        let catalog_file = self
            .launch
            .catalog_override
            .clone()
            .or(settings.catalog_file.clone());
        let loaded = crate::context::load_catalog(catalog_file.clone());
        self.catalog_file = catalog_file.filter(|_| loaded.warning.is_none());
        self.catalog_warning = loaded.warning;
        self.catalog = Arc::new(loaded.catalog);
        let mut config = PeerConfig::loopback((*self.catalog).clone());
        config.listen = std::net::SocketAddr::from(([0, 0, 0, 0], crate::cli::serve::DEFAULT_PORT));
        config.data_dir = Some(self.launch.data_dir.clone());
        config.games_dir = settings.games_dir.clone();
        config.name = if settings.display_name.trim().is_empty() {
            crate::cli::peer_args::default_display_name()
        } else {
            settings.display_name.clone()
        };
        config.manual_peers = manual.unwrap_or_else(|| settings.manual_peers.clone());
        config.discovery = DiscoveryConfig {
            enabled: settings.discovery_enabled && !self.launch.discovery_off,
            interfaces: settings.discovery_interfaces.clone(),
        };
        if self.demo.is_some() {
            config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            config.discovery.enabled = false;
        }
        let peer = match PeerHandle::start(config.clone(), self.repaint.clone()) {
            Ok(peer) => peer,
            // The default port may be taken (another lanspread on this PC).
            Err(err) if config.listen.port() != 0 => {
                tracing::warn!("{err}; listening on another port");
                config.listen.set_port(0);
                PeerHandle::start(config, self.repaint.clone())?
            }
            Err(err) => return Err(err.into()),
        };
        tracing::info!(addr = %peer.listen_addr(), "peer started");
        self.peer = Some(peer);
        Ok(())
    }

    /// The folder of the organiser's catalog in use, if one is.
    pub fn catalog_dir(&self) -> Option<PathBuf> {
        self.catalog_file
            .as_ref()
            .and_then(|file| file.parent().map(std::path::Path::to_path_buf))
    }

    /// The state this frame draws.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            catalog: self
                .peer
                .as_ref()
                .map_or_else(|| self.catalog.clone(), PeerHandle::catalog),
            peer: self
                .peer
                .as_ref()
                .map(PeerHandle::state)
                .unwrap_or_default(),
        }
    }

    fn send(&mut self, make: impl FnOnce() -> (Command, Pending)) -> Result<(), String> {
        let peer = self.peer.as_ref().ok_or("lanspread is not running")?;
        let (command, pending) = make();
        peer.send(command)?;
        self.pending.push(pending);
        Ok(())
    }

    /// Carries out one command from the window; returns a notice if the
    /// user should read something now.
    pub fn apply(&mut self, command: UiCommand) -> Option<String> {
        let text = |make: fn(
            lanspread_core::GameId,
            oneshot::Sender<Result<String, String>>,
        ) -> Command,
                    game: lanspread_core::GameId| {
            move || {
                let (reply, answer) = oneshot::channel();
                (make(game, reply), Pending::Text(answer))
            }
        };
        let result = match command {
            UiCommand::Download(game) => self.send(|| {
                let (reply, answer) = oneshot::channel();
                (Command::Download { game, reply }, Pending::Download(answer))
            }),
            UiCommand::CancelDownload(game) => {
                let peer = self.peer.as_ref();
                peer.map_or(Ok(()), |p| p.send(Command::CancelDownload { game }))
            }
            UiCommand::Install(game) => {
                self.send(text(|game, reply| Command::Install { game, reply }, game))
            }
            UiCommand::Uninstall(game) => {
                self.send(text(|game, reply| Command::Uninstall { game, reply }, game))
            }
            UiCommand::Update(game) => {
                self.send(text(|game, reply| Command::Update { game, reply }, game))
            }
            UiCommand::PlanUpdate(game) => {
                let peer = self.peer.as_ref();
                peer.map_or(Ok(()), |p| {
                    // The answer lands in the peer's state, which the
                    // window draws; this reply is not waited for.
                    let (reply, _) = oneshot::channel();
                    p.send(Command::PlanUpdate { game, reply })
                })
            }
            UiCommand::Remove(game) => self.send(text(
                |game, reply| Command::Remove {
                    game,
                    keep_local: false,
                    reply,
                },
                game,
            )),
            UiCommand::AddPeer(target) => {
                let peer = self.peer.as_ref();
                peer.map_or(Ok(()), |p| {
                    let (reply, _) = oneshot::channel();
                    p.send(Command::AddPeer { target, reply })
                })
            }
            UiCommand::OpenFolder(dir) => {
                crate::platform::open_folder(&dir).map_err(|e| e.to_string())
            }
            UiCommand::SaveSettings(settings) => return Some(self.save_settings(&settings)),
            UiCommand::StartDemo => return Some(self.start_demo()),
        };
        result.err()
    }

    fn save_settings(&mut self, settings: &Settings) -> String {
        if self.demo.is_some() {
            return "Settings are not saved in the demo.".to_owned();
        }
        let saved = self
            .peer
            .as_ref()
            .and_then(PeerHandle::store)
            .map(|store| store.save_settings(settings));
        match saved {
            Some(Err(err)) => return format!("The settings could not be saved: {err}"),
            None => return "The settings could not be saved: lanspread is not running".to_owned(),
            Some(Ok(())) => {}
        }
        match self.restart(settings, None) {
            Ok(()) => "Settings saved.".to_owned(),
            Err(err) => format!("Settings saved, but lanspread could not restart: {err}"),
        }
    }

    /// Switches to demo mode: three peers in this process, temporary folders.
    pub fn start_demo(&mut self) -> String {
        if let Some(peer) = self.peer.take() {
            peer.shutdown();
        }
        let demo = match Demo::start(&self.catalog) {
            Ok(demo) => demo,
            Err(err) => return format!("The demo could not start: {err}"),
        };
        self.launch.data_dir = demo.own_data.clone();
        let manual = demo.addrs().iter().map(ToString::to_string).collect();
        let settings = Settings {
            games_dir: Some(demo.own_games.clone()),
            display_name: "You".into(),
            discovery_enabled: false,
            ..Settings::default()
        };
        self.demo = Some(demo);
        match self.restart(&settings, Some(manual)) {
            Ok(()) => {
                "Demo started: three PCs share games with you. Press Download on a card.".to_owned()
            }
            Err(err) => format!("The demo could not start: {err}"),
        }
    }

    /// Answers that arrived since the last frame, as sentences.
    pub fn poll(&mut self) -> Vec<String> {
        let mut notices = Vec::new();
        self.pending.retain_mut(|pending| {
            let answer = match pending {
                Pending::Text(answer) => answered(answer.try_recv()),
                Pending::Download(answer) => answered(answer.try_recv()).map(|result| {
                    result.map(|report| {
                        if report.total_pieces == 0 {
                            format!("{} is already here.", report.id)
                        } else {
                            format!(
                                "{} downloaded: {:.1} MiB in {:.1}s from {} PCs, every chunk verified.",
                                report.id,
                                report.bytes as f64 / 1048576.0,
                                report.seconds,
                                report.peers.iter().filter(|p| p.bytes > 0).count()
                            )
                        }
                    })
                }),
            };
            match answer {
                None => true,
                Some(Ok(sentence) | Err(sentence)) => {
                    notices.push(sentence);
                    false
                }
            }
        });
        notices
    }
}

/// `None` while the answer is still coming; a dropped sender (the runtime
/// stopped) reads as an error.
fn answered<T>(
    received: Result<Result<T, String>, oneshot::error::TryRecvError>,
) -> Option<Result<T, String>> {
    match received {
        Ok(result) => Some(result),
        Err(oneshot::error::TryRecvError::Empty) => None,
        Err(oneshot::error::TryRecvError::Closed) => {
            Some(Err("lanspread stopped before it answered".to_owned()))
        }
    }
}
