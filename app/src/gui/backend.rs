//! The window's link to the peer runtime: starts and restarts it with the
//! settings, hands the window's [`Request`]s to it without waiting,
//! and collects their answers as notices, frame by frame.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use lanspread_core::{GameCatalog, Settings, Store};
use lanspread_net::discovery::DiscoveryConfig;
use lanspread_net::{Answer, PeerConfig, PeerHandle, PeerState, Reply, Request};

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

/// A request whose answer the window waits for, to say what happened.
struct Pending {
    answer: Answer,
    /// Only a failure is worth a notice (the answer shows in the state).
    quiet: bool,
}

/// The slow steps of (re)starting: starting a peer (it recovers
/// interrupted operations and binds its socket) and making the demo's games
/// (about 290 MiB written). Behind a trait so a test can make them slower
/// and check that the window keeps drawing meanwhile.
pub trait Starter: Send + Sync {
    fn start_peer(
        &self,
        config: PeerConfig,
        repaint: Option<Arc<dyn Fn() + Send + Sync>>,
    ) -> anyhow::Result<PeerHandle>;
    /// Makes the demo's games and starts its peers; `percent` is told how
    /// far it got.
    fn start_demo(&self, catalog: &GameCatalog, percent: &dyn Fn(u8)) -> anyhow::Result<Demo>;
}

/// The real thing.
#[derive(Debug, Default)]
pub struct RealStarter;

impl Starter for RealStarter {
    fn start_peer(
        &self,
        config: PeerConfig,
        repaint: Option<Arc<dyn Fn() + Send + Sync>>,
    ) -> anyhow::Result<PeerHandle> {
        match PeerHandle::start(config.clone(), repaint.clone()) {
            Ok(peer) => Ok(peer),
            // Another lanspread on this PC may hold the default port.
            Err(err) if config.listen.port() != 0 && is_port_taken(&err) => {
                tracing::warn!("{err}; listening on another port");
                let mut config = config;
                config.listen.set_port(0);
                Ok(PeerHandle::start(config, repaint)?)
            }
            Err(err) => Err(err.into()),
        }
    }

    fn start_demo(&self, catalog: &GameCatalog, percent: &dyn Fn(u8)) -> anyhow::Result<Demo> {
        Demo::start(catalog, percent)
    }
}

/// Whether starting failed because the port is in use (only then is
/// another port tried).
fn is_port_taken(err: &lanspread_net::runtime::RuntimeError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::AddrInUse;
        }
        source = current.source();
    }
    false
}

/// A restart or a demo start running on a worker thread.
struct Starting {
    /// What the window says meanwhile.
    what: &'static str,
    /// How far it got, where it can tell (0-100), else 255.
    percent: Arc<AtomicU8>,
    done: std::sync::mpsc::Receiver<Started>,
}

/// A peer started with its settings and catalog, for [`Backend::adopt`].
struct PeerStart {
    peer: anyhow::Result<PeerHandle>,
    catalog: crate::context::LoadedCatalog,
    catalog_file: Option<PathBuf>,
    settings: Settings,
}

/// What a worker thread hands back.
struct Started {
    start: PeerStart,
    /// The new demo, when it started one.
    demo: Option<anyhow::Result<Demo>>,
    /// The notice once it worked.
    notice: String,
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
    starter: Arc<dyn Starter>,
    /// The settings the running peer was started with.
    started_with: Settings,
    starting: Option<Starting>,
    /// The last state drawn, shown while the peer restarts.
    last_state: PeerState,
    /// Settings a finished restart started the peer with, for the window.
    new_settings: Option<Settings>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("launch", &self.launch)
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// Starts the peer on the data folder with the saved settings (before
    /// the first frame: the window opens on a running peer).
    pub fn start(
        launch: Launch,
        repaint: Option<Arc<dyn Fn() + Send + Sync>>,
    ) -> anyhow::Result<(Self, Settings)> {
        Self::start_with(launch, repaint, Arc::new(RealStarter))
    }

    /// [`Self::start`] with another [`Starter`].
    pub fn start_with(
        launch: Launch,
        repaint: Option<Arc<dyn Fn() + Send + Sync>>,
        starter: Arc<dyn Starter>,
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
            starter,
            started_with: settings.clone(),
            starting: None,
            last_state: PeerState::default(),
            new_settings: None,
        };
        let (config, catalog_file) = backend.config(&settings, None);
        let loaded = crate::context::load_catalog(catalog_file.clone());
        let peer = backend.starter.start_peer(
            with_catalog(config, &loaded.catalog),
            backend.repaint.clone(),
        )?;
        backend.adopt(PeerStart {
            peer: Ok(peer),
            catalog: loaded,
            catalog_file,
            settings: settings.clone(),
        });
        Ok((backend, settings))
    }

    /// The peer's config for `settings` (the catalog is filled in once
    /// loaded), and the catalog file to load.
    fn config(
        &self,
        settings: &Settings,
        manual: Option<Vec<String>>,
    ) -> (PeerConfig, Option<PathBuf>) {
        let catalog_file = self
            .launch
            .catalog_override
            .clone()
            .or(settings.catalog_file.clone());
        let mut config = PeerConfig::loopback(GameCatalog::empty());
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
            include_virtual: settings.discovery_virtual_adapters,
        };
        let policy = settings.sharing_policy();
        config.upload_limit_bytes_per_sec = policy.upload_limit_bytes_per_sec;
        config.while_playing = policy.while_playing;
        (config, catalog_file)
    }

    /// Takes what a start handed back.
    fn adopt(&mut self, start: PeerStart) {
        self.catalog_file = start
            .catalog_file
            .filter(|_| start.catalog.warning.is_none());
        self.catalog_warning = start.catalog.warning;
        self.catalog = Arc::new(start.catalog.catalog);
        self.started_with = start.settings;
        if let Ok(peer) = &start.peer {
            tracing::info!(addr = %peer.listen_addr(), "peer started");
        }
        self.peer = start.peer.ok();
    }

    /// Restarts the peer with `settings` on a worker thread: the old peer
    /// stops there (it may wait for its connections), then the new one
    /// starts. The window keeps drawing the last state meanwhile.
    fn restart_in_background(
        &mut self,
        mut settings: Settings,
        manual: Option<Vec<String>>,
        make_demo: bool,
        notice: String,
    ) {
        let (mut config, catalog_file) = self.config(&settings, manual);
        if let Some(peer) = &self.peer {
            self.last_state = peer.state();
        }
        let old = self.peer.take();
        let old_demo = if make_demo { self.demo.take() } else { None };
        let in_demo = self.demo.is_some() || make_demo;
        let starter = self.starter.clone();
        let repaint = self.repaint.clone();
        let percent = Arc::new(AtomicU8::new(u8::MAX));
        let told = percent.clone();
        let (done_tx, done) = std::sync::mpsc::channel();
        let current_catalog = (*self.catalog).clone();
        let spawned = std::thread::Builder::new()
            .name("lanspread-restart".into())
            .spawn(move || {
                if let Some(old) = old {
                    old.shutdown();
                }
                drop(old_demo);
                let mut demo = None;
                if make_demo {
                    let tell = |p: u8| {
                        told.store(p, Ordering::Relaxed);
                        if let Some(repaint) = &repaint {
                            repaint();
                        }
                    };
                    let made = starter.start_demo(&current_catalog, &tell);
                    if let Ok(made) = &made {
                        config.data_dir = Some(made.own_data.clone());
                        config.games_dir = Some(made.own_games.clone());
                        config.manual_peers =
                            made.addrs().iter().map(ToString::to_string).collect();
                        settings.games_dir = config.games_dir.clone();
                        settings.manual_peers = config.manual_peers.clone();
                    }
                    demo = Some(made);
                }
                if in_demo {
                    config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
                    config.discovery.enabled = false;
                }
                let loaded = crate::context::load_catalog(catalog_file.clone());
                let peer = match &demo {
                    Some(Err(err)) => Err(anyhow::anyhow!("{err}")),
                    _ => starter.start_peer(with_catalog(config, &loaded.catalog), repaint.clone()),
                };
                let _ = done_tx.send(Started {
                    start: PeerStart {
                        peer,
                        catalog: loaded,
                        catalog_file,
                        settings,
                    },
                    demo,
                    notice,
                });
                if let Some(repaint) = &repaint {
                    repaint();
                }
            });
        let what = if make_demo {
            "making the demo games"
        } else {
            "restarting the network"
        };
        match spawned {
            Ok(_) => {
                self.starting = Some(Starting {
                    what,
                    percent,
                    done,
                });
            }
            Err(err) => tracing::error!("cannot start a thread to restart: {err}"),
        }
    }

    /// The settings the running peer was started with.
    pub fn settings(&self) -> &Settings {
        &self.started_with
    }

    /// The settings of a restart that finished since the last call.
    pub fn take_new_settings(&mut self) -> Option<Settings> {
        self.new_settings.take()
    }

    /// What the window says while a restart runs: "restarting the network…".
    pub fn busy(&self) -> Option<String> {
        self.starting
            .as_ref()
            .map(|s| match s.percent.load(Ordering::Relaxed) {
                u8::MAX => format!("{}…", s.what),
                p => format!("{} {p} %…", s.what),
            })
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
                .map_or_else(|| self.last_state.clone(), PeerHandle::state),
        }
    }

    /// Hands a request to the peer; its answer becomes a notice.
    fn request(&mut self, request: Request) -> Result<(), String> {
        let peer = self.peer.as_ref().ok_or(if self.starting.is_some() {
            "lanspread is restarting; try again in a moment"
        } else {
            "lanspread is not running"
        })?;
        // What the window already shows in its state needs no sentence.
        let quiet = matches!(
            request,
            Request::PlanUpdate { .. } | Request::CancelDownload { .. } | Request::AddPeer { .. }
        );
        let answer = peer.request(request).map_err(|e| e.to_string())?;
        self.pending.push(Pending { answer, quiet });
        Ok(())
    }

    /// Carries out one command from the window; returns a notice if the
    /// user should read something now.
    pub fn apply(&mut self, command: UiCommand) -> Option<String> {
        let result = match command {
            UiCommand::Peer(request) => self.request(request),
            UiCommand::OpenFolder(dir) => {
                crate::platform::open_folder(&dir).map_err(|e| e.to_string())
            }
            UiCommand::SaveSettings(settings) => return Some(self.save_settings(settings)),
            UiCommand::StartDemo => return Some(self.start_demo()),
        };
        result.err()
    }

    fn save_settings(&mut self, settings: Settings) -> String {
        if self.demo.is_some() {
            return "Settings are not saved in the demo.".to_owned();
        }
        if self.starting.is_some() {
            return "lanspread is restarting; save again in a moment".to_owned();
        }
        let saved = self
            .peer
            .as_ref()
            .and_then(PeerHandle::store)
            .map(|store| store.save_settings(&settings));
        match saved {
            Some(Err(err)) => return format!("The settings could not be saved: {err}"),
            None => return "The settings could not be saved: lanspread is not running".to_owned(),
            Some(Ok(())) => {}
        }
        // Only the sharing part changed: applied live, no restart.
        let sharing_only = Settings {
            upload_limit_mbit: self.started_with.upload_limit_mbit,
            while_playing: self.started_with.while_playing,
            ..settings.clone()
        } == self.started_with;
        if sharing_only {
            let sent = self.peer.as_ref().map(|peer| {
                peer.send(Request::SetSharing {
                    policy: settings.sharing_policy(),
                })
            });
            self.started_with = settings;
            return match sent {
                Some(Ok(())) => "Settings saved; the upload settings apply now.".to_owned(),
                Some(Err(err)) => format!("Settings saved, but not applied: {err}"),
                None => "Settings saved.".to_owned(),
            };
        }
        self.restart_in_background(settings, None, false, "Settings saved.".to_owned());
        "Saving the settings: restarting the network…".to_owned()
    }

    /// Switches to demo mode: three peers in this process, temporary
    /// folders; the games are made on a worker thread.
    pub fn start_demo(&mut self) -> String {
        if self.starting.is_some() {
            return "lanspread is restarting; try again in a moment".to_owned();
        }
        let settings = Settings {
            display_name: "You".into(),
            discovery_enabled: false,
            ..Settings::default()
        };
        self.restart_in_background(
            settings,
            None,
            true,
            "Demo started: three PCs share games with you. Press Download on a card.".to_owned(),
        );
        "Starting the demo: making its games…".to_owned()
    }

    /// Takes a finished restart, if one finished; its notice.
    fn poll_start(&mut self) -> Option<String> {
        let starting = self.starting.as_ref()?;
        let started = match starting.done.try_recv() {
            Ok(started) => started,
            Err(std::sync::mpsc::TryRecvError::Empty) => return None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                self.starting = None;
                return Some("lanspread could not restart: its worker stopped".to_owned());
            }
        };
        self.starting = None;
        let Started {
            start,
            demo,
            notice,
        } = started;
        let mut failure = None;
        match demo {
            Some(Ok(demo)) => {
                self.launch.data_dir = demo.own_data.clone();
                self.demo = Some(demo);
            }
            Some(Err(err)) => failure = Some(format!("The demo could not start: {err}")),
            None => {}
        }
        if let Err(err) = &start.peer {
            failure.get_or_insert_with(|| format!("lanspread could not restart: {err}"));
        }
        self.new_settings = Some(start.settings.clone());
        self.adopt(start);
        Some(failure.unwrap_or(notice))
    }

    /// Answers that arrived since the last frame, as sentences.
    pub fn poll(&mut self) -> Vec<String> {
        let mut notices: Vec<String> = self.poll_start().into_iter().collect();
        self.pending.retain_mut(|pending| {
            let Some(answer) = pending.answer.try_take() else {
                return true;
            };
            let sentence = match answer {
                Ok(_) if pending.quiet => None,
                Ok(reply) => reply_sentence(reply),
                Err(err) => Some(err.to_string()),
            };
            notices.extend(sentence);
            false
        });
        notices
    }
}

/// What a reply says to the person at the window.
fn reply_sentence(reply: Reply) -> Option<String> {
    match reply {
        Reply::Downloaded(report) if report.total_pieces == 0 => {
            Some(format!("{} is already here.", report.id))
        }
        Reply::Downloaded(report) => Some(format!(
            "{} downloaded: {:.1} MiB in {:.1}s from {} PCs, every chunk verified.",
            report.id,
            report.bytes as f64 / 1048576.0,
            report.seconds,
            report.peers.iter().filter(|p| p.bytes > 0).count()
        )),
        Reply::Message { message } => Some(message),
        Reply::Status(_) | Reply::PeerAdded { .. } | Reply::UpdatePlan(_) | Reply::Done => None,
    }
}

/// `config` with the loaded catalog.
fn with_catalog(mut config: PeerConfig, catalog: &GameCatalog) -> PeerConfig {
    config.catalog = catalog.clone();
    config
}
