//! The peer runtime: one tokio runtime on a background thread that owns the
//! endpoint, discovery, serving and the peer table.
//!
//! Input is a bounded channel of [`Command`]s. Output is the latest
//! [`PeerState`] on a watch channel, an [`Event`] stream, and an optional
//! callback the GUI uses to request a repaint. Shutdown is a tree of
//! cancellation tokens: tasks stop, connections close, the endpoint drains,
//! and the thread ends.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lanspread_core::{GameCatalog, GameId, OutboundTransfers, Store, TransfersSnapshot};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::control::ControlServer;
use crate::data_lock::DataDirLock;
use crate::discovery::{DiscoveryConfig, PeerDirectory, RemotePeer, id_hex, run_mdns};
use crate::download::{DownloadProgress, DownloadReport};
use crate::endpoint::{TlsIdentity, open_endpoint};
use crate::library::{LibrarySnapshot, build_manifests};
use crate::local::LocalContext;
use crate::proto::{AnnouncedGame, PROTOCOL_VERSION, PeerHello, clean_name};
use crate::serve::{CatalogCell, ServeContext, accept_loop};
use crate::swarm::{ANNOUNCE_EVERY, PartialShares};

/// How often the games folder is rescanned without being asked.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(10);
/// Capacity of the command channel.
pub const COMMAND_CAPACITY: usize = 64;
/// Capacity of the event channel; a slow reader misses old events, never blocks the runtime.
pub const EVENT_CAPACITY: usize = 1024;

/// What to run.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The games folder to share; `None` shares nothing (a pure client).
    pub games_dir: Option<PathBuf>,
    /// The data folder: store, lock and control socket. `None` runs with an
    /// identity made for this run only and no control socket.
    pub data_dir: Option<PathBuf>,
    pub listen: SocketAddr,
    pub name: String,
    pub manual_peers: Vec<String>,
    pub discovery: DiscoveryConfig,
    pub catalog: GameCatalog,
    /// Cap on all uploads together, in bytes per second (changed live
    /// with [`Command::SetSharing`]).
    pub upload_limit_bytes_per_sec: Option<u64>,
    /// What sharing does while a game started from this lanspread runs.
    pub while_playing: lanspread_core::WhilePlaying,
}

impl PeerConfig {
    /// A config with discovery off, listening on loopback on any port.
    pub fn loopback(catalog: GameCatalog) -> Self {
        Self {
            games_dir: None,
            data_dir: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            name: "lanspread".into(),
            manual_peers: Vec::new(),
            discovery: DiscoveryConfig::default(),
            catalog,
            upload_limit_bytes_per_sec: None,
            while_playing: lanspread_core::WhilePlaying::KeepSharing,
        }
    }
}

/// What the runtime publishes; the GUI draws from it every frame.
#[derive(Debug, Clone, Default)]
pub struct PeerState {
    pub listen_addr: Option<SocketAddr>,
    pub peer_id: String,
    pub name: String,
    /// Peers by id.
    pub peers: BTreeMap<String, RemotePeer>,
    /// What we announce.
    pub local_games: Vec<AnnouncedGame>,
    /// Live outbound transfers and active operations.
    pub transfers: TransfersSnapshot,
    /// Downloads running or just ended, by game id.
    pub downloads: BTreeMap<String, DownloadProgress>,
    /// The games folder this peer shares.
    pub games_dir: Option<PathBuf>,
    /// Chunk transfers this peer has sent completely since it started.
    pub chunks_served: u64,
    /// The last scan of the games folder.
    pub library: Option<Arc<lanspread_core::LibraryScan>>,
    /// When a peer last joined, left or changed what it offers (a download
    /// votes once the table has been quiet for a moment).
    pub table_changed_at: Option<std::time::Instant>,
    /// Typed-in addresses whose first attempt has not ended yet: not
    /// answered with a library, not failed (a download waits for them,
    /// for a bounded time, before it votes).
    pub unanswered_typed: std::collections::BTreeSet<SocketAddr>,
    /// The same for addresses learned by peer exchange.
    pub unanswered_exchanged: std::collections::BTreeSet<SocketAddr>,
    /// Whether mDNS discovery runs (peers may appear at any time).
    pub discovery_enabled: bool,
    /// A game being hashed now, if any.
    pub hashing: Option<crate::library::HashingProgress>,
    /// What updating a game would move, by game id, with the catalog
    /// version it was worked out for.
    pub update_plans: BTreeMap<String, (String, crate::download::UpdatePlan)>,
    /// Games started from this lanspread (Play) whose process still runs.
    pub running: std::collections::BTreeSet<GameId>,
    /// The upload limit and pause in force now.
    pub sharing: lanspread_core::SharingInForce,
    /// Some peer connected to this PC since it started (so the others can
    /// reach it: no firewall in the way).
    pub reached_by_peers: bool,
    /// This PC reaches peers, but for [`UNREACHED_AFTER`] none has
    /// connected to it: a firewall (Windows Firewall on a network classed
    /// Public) probably blocks lanspread. It downloads but never seeds.
    pub maybe_firewalled: bool,
}

/// How long this PC follows peers without any connecting back before the
/// window says a firewall may be in the way. Every peer follows a PC that
/// connects to it, so in a party that can reach us one does within seconds.
pub const UNREACHED_AFTER: Duration = Duration::from_secs(30);
const REACHABILITY_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Whether to suspect a firewall: peers followed for [`UNREACHED_AFTER`]
/// (`peers_since`: since when the table has not been empty) and none ever
/// connected in.
pub fn maybe_firewalled(
    reached: bool,
    peers_since: Option<std::time::Instant>,
    now: std::time::Instant,
) -> bool {
    !reached
        && peers_since.is_some_and(|since| now.saturating_duration_since(since) >= UNREACHED_AFTER)
}

/// Something that happened, for logs and the GUI.
#[derive(Debug, Clone)]
pub enum Event {
    PeerJoined {
        id: String,
        name: String,
        addr: SocketAddr,
    },
    PeerLeft {
        id: String,
    },
    RemoteLibraryChanged {
        id: String,
    },
    LocalLibraryChanged {
        revision: u64,
    },
    /// Outbound transfer counts or active operations changed.
    Transfers(TransfersSnapshot),
    /// A download moved on.
    Download(DownloadProgress),
}

/// What the runtime can be asked to do.
#[derive(Debug)]
pub enum Command {
    /// Connect to a peer by `HOST:PORT`; answers with the address or why not.
    AddPeer {
        target: String,
        reply: oneshot::Sender<Result<SocketAddr, String>>,
    },
    /// Scan the games folder now.
    Rescan,
    /// Download (or resume) the catalog's version of a game.
    Download {
        game: GameId,
        reply: oneshot::Sender<Result<DownloadReport, String>>,
    },
    /// Stop a running download (it resumes next time).
    CancelDownload {
        game: GameId,
    },
    /// Work out what updating a game would download and reuse; the answer
    /// is also kept in [`PeerState::update_plans`] (for the Update button).
    PlanUpdate {
        game: GameId,
        reply: oneshot::Sender<Result<crate::download::UpdatePlan, String>>,
    },
    /// Bring a game to the catalog's version; reinstalls if it was installed.
    Update {
        game: GameId,
        reply: Reply,
    },
    Install {
        game: GameId,
        reply: Reply,
    },
    Uninstall {
        game: GameId,
        reply: Reply,
    },
    Remove {
        game: GameId,
        keep_local: bool,
        reply: Reply,
    },
    /// Replace the catalog with an organiser's file.
    LoadCatalog {
        path: PathBuf,
        reply: Reply,
    },
    /// Start an installed game from its catalog `launch` entry, detached.
    Play {
        game: GameId,
        reply: Reply,
    },
    /// Change the upload limit and the choice for while a game runs; it
    /// applies at once, to uploads already running too.
    SetSharing {
        policy: lanspread_core::SharingPolicy,
    },
}

/// The answer to a local command: what happened, in words, or why not.
pub type Reply = oneshot::Sender<Result<String, String>>;

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Lock(#[from] crate::data_lock::LockError),
    #[error(transparent)]
    Store(#[from] lanspread_core::store::StoreError),
    #[error(transparent)]
    Endpoint(#[from] crate::endpoint::EndpointError),
    #[error("control socket: {0}")]
    Control(std::io::Error),
    #[error("cannot start the runtime thread: {0}")]
    Thread(std::io::Error),
    #[error("the runtime stopped while starting")]
    Stopped,
}

type RepaintHook = Arc<dyn Fn() + Send + Sync>;

/// The running peer. Dropping it shuts the peer down and waits for it.
pub struct PeerHandle {
    state: watch::Receiver<PeerState>,
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    transfers: OutboundTransfers,
    catalog: CatalogCell,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
    listen_addr: SocketAddr,
    peer_id: [u8; 16],
    runtime: tokio::runtime::Handle,
    store: Option<Store>,
    bytes_uploaded: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for PeerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerHandle")
            .field("listen_addr", &self.listen_addr)
            .finish_non_exhaustive()
    }
}

impl PeerHandle {
    /// Starts the peer on a background thread and returns once it listens.
    pub fn start(config: PeerConfig, repaint: Option<RepaintHook>) -> Result<Self, RuntimeError> {
        let lock = match &config.data_dir {
            Some(dir) => Some(DataDirLock::acquire(dir)?),
            None => None,
        };
        let store = match &config.data_dir {
            Some(dir) => Some(Store::open(dir)?),
            None => None,
        };
        if let (Some(games_dir), Some(store)) = (&config.games_dir, &store)
            && games_dir.is_dir()
        {
            match lanspread_core::ops::recover(games_dir, store) {
                Ok(recovered) => {
                    for r in recovered {
                        let outcome = if r.finished {
                            "finished"
                        } else {
                            "rolled back"
                        };
                        tracing::warn!(game = %r.game, "an interrupted {:?} was {outcome}", r.intent);
                    }
                }
                Err(err) => tracing::error!("recovering interrupted operations failed: {err}"),
            }
        }
        let identity = match &store {
            Some(store) => TlsIdentity::load_or_create(store)?,
            None => TlsIdentity::generate()?,
        };
        // The id is the certificate's: a PC proves it in every handshake.
        let peer_id = identity.peer_id();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let (command_tx, command_rx) = mpsc::channel(COMMAND_CAPACITY);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let transfers = OutboundTransfers::new();
        let catalog = CatalogCell::new(config.catalog.clone());
        let shutdown = CancellationToken::new();
        let store_handle = store.clone();
        let bytes_uploaded = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let parts = Parts {
            config,
            store,
            identity,
            peer_id,
            lock,
            commands: command_rx,
            command_tx: command_tx.clone(),
            events: events.clone(),
            transfers: transfers.clone(),
            catalog: catalog.clone(),
            shutdown: shutdown.clone(),
            repaint,
            bytes_uploaded: bytes_uploaded.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("lanspread-peer".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("lanspread-io")
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = ready_tx.send(Err(RuntimeError::Thread(err)));
                        return;
                    }
                };
                runtime.block_on(run(parts, ready_tx));
            })
            .map_err(RuntimeError::Thread)?;
        let (state, listen_addr, runtime) = match ready_rx.recv() {
            Ok(Ok(ready)) => ready,
            Ok(Err(err)) => {
                let _ = thread.join();
                return Err(err);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(RuntimeError::Stopped);
            }
        };
        Ok(Self {
            state,
            commands: command_tx,
            events,
            transfers,
            catalog,
            shutdown,
            thread: Some(thread),
            listen_addr,
            peer_id,
            runtime,
            store: store_handle,
            bytes_uploaded,
        })
    }

    /// Payload bytes this peer has handed to QUIC for others since it
    /// started (uploads, as the upload limit paces them).
    pub fn bytes_uploaded(&self) -> u64 {
        self.bytes_uploaded
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The store this peer opened in its data folder (one per process: a
    /// second open of the same folder would fail).
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// Blocks until `done` holds for the published state or `timeout`
    /// passes; returns whether it held. For synchronous callers (CLI, tests).
    pub fn wait_until(&self, timeout: Duration, done: impl FnMut(&PeerState) -> bool) -> bool {
        let mut state = self.state.clone();
        self.runtime.block_on(async {
            matches!(
                tokio::time::timeout(timeout, state.wait_for(done)).await,
                Ok(Ok(_))
            )
        })
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    pub fn peer_id(&self) -> String {
        id_hex(&self.peer_id)
    }

    /// The latest published state.
    pub fn state(&self) -> PeerState {
        self.state.borrow().clone()
    }

    /// A receiver that sees every state change.
    pub fn watch_state(&self) -> watch::Receiver<PeerState> {
        self.state.clone()
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The transfer guard registry this peer serves under.
    pub fn transfers(&self) -> &OutboundTransfers {
        &self.transfers
    }

    /// The catalog in force.
    pub fn catalog(&self) -> Arc<GameCatalog> {
        self.catalog.get()
    }

    /// Sends a command without waiting (the channel is bounded; a full
    /// channel is reported, not waited on).
    pub fn send(&self, command: Command) -> Result<(), String> {
        self.commands
            .try_send(command)
            .map_err(|e| format!("the peer runtime is busy or stopped: {e}"))
    }

    /// Adds a peer by address from synchronous code (the CLI, tests).
    pub fn add_peer_blocking(&self, target: &str) -> Result<SocketAddr, String> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::AddPeer {
            target: target.to_owned(),
            reply,
        })?;
        answer
            .blocking_recv()
            .map_err(|_| "the peer runtime stopped".to_owned())?
    }

    /// Stops everything and waits for the runtime thread to end.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for PeerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Everything the runtime thread takes ownership of.
struct Parts {
    config: PeerConfig,
    store: Option<Store>,
    identity: TlsIdentity,
    peer_id: [u8; 16],
    lock: Option<DataDirLock>,
    commands: mpsc::Receiver<Command>,
    command_tx: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    transfers: OutboundTransfers,
    catalog: CatalogCell,
    shutdown: CancellationToken,
    repaint: Option<RepaintHook>,
    bytes_uploaded: Arc<std::sync::atomic::AtomicU64>,
}

type Ready = Result<
    (
        watch::Receiver<PeerState>,
        SocketAddr,
        tokio::runtime::Handle,
    ),
    RuntimeError,
>;

async fn run(parts: Parts, ready: std::sync::mpsc::SyncSender<Ready>) {
    let Parts {
        config,
        store,
        identity,
        peer_id,
        lock,
        mut commands,
        command_tx,
        events,
        transfers,
        catalog,
        shutdown,
        repaint,
        bytes_uploaded,
    } = parts;
    let endpoint = match open_endpoint(config.listen, &identity) {
        Ok(endpoint) => endpoint,
        Err(err) => {
            let _ = ready.send(Err(err.into()));
            return;
        }
    };
    let listen_addr = match endpoint.local_addr() {
        Ok(addr) => addr,
        Err(err) => {
            let _ = ready.send(Err(RuntimeError::Endpoint(
                crate::endpoint::EndpointError::Bind {
                    addr: config.listen,
                    source: err,
                },
            )));
            return;
        }
    };
    let name = clean_name(&config.name);
    let hello = PeerHello {
        peer_id,
        name: name.clone(),
        protocol_version: PROTOCOL_VERSION,
        catalog_fingerprint: *catalog.get().fingerprint().as_bytes(),
        listen_port: listen_addr.port(),
    };
    let (state_tx, state_rx) = watch::channel(PeerState {
        listen_addr: Some(listen_addr),
        peer_id: id_hex(&peer_id),
        name,
        games_dir: config.games_dir.clone(),
        discovery_enabled: config.discovery.enabled,
        ..PeerState::default()
    });
    let (library_tx, library_rx) = watch::channel(LibrarySnapshot::default());
    let upload_limit = Arc::new(crate::rate::LiveLimit::new(
        config.upload_limit_bytes_per_sec,
    ));
    let (policy_tx, policy_rx) = watch::channel(lanspread_core::SharingPolicy {
        upload_limit_bytes_per_sec: config.upload_limit_bytes_per_sec,
        while_playing: config.while_playing,
    });
    let (in_force_tx, in_force_rx) = watch::channel(policy_rx.borrow().in_force(false));
    let running = Arc::new(crate::play::Running::default());
    let partials = PartialShares::default();
    let (inbound_tx, mut inbound_rx) = mpsc::channel::<SocketAddr>(64);
    let context = Arc::new(ServeContext {
        games_dir: config.games_dir.clone(),
        upload_limit: upload_limit.clone(),
        chunks_served: std::sync::atomic::AtomicU64::new(0),
        bytes_uploaded,
        catalog: catalog.clone(),
        transfers: transfers.clone(),
        library: library_rx,
        hello: hello.clone(),
        partials: partials.clone(),
        recent: crate::swarm::RecentSends::default(),
        inbound: inbound_tx,
    });

    let control = match (&config.data_dir, &lock) {
        (Some(dir), Some(lock)) => match ControlServer::bind(dir).await {
            Ok(server) => {
                lock.record_running(listen_addr, &hello.name);
                Some(server)
            }
            Err(err) => {
                let _ = ready.send(Err(RuntimeError::Control(err)));
                return;
            }
        },
        _ => None,
    };

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(accept_loop(
        endpoint.clone(),
        context.clone(),
        shutdown.child_token(),
    ));
    let directory = PeerDirectory::new(
        endpoint.clone(),
        hello.clone(),
        catalog.clone(),
        state_tx.clone(),
        events.clone(),
        shutdown.child_token(),
    );
    if config.discovery.enabled {
        let directory = directory.clone();
        let token = shutdown.child_token();
        let discovery = config.discovery.clone();
        let hello = hello.clone();
        tasks.spawn(async move {
            if let Err(err) = run_mdns(discovery, hello, directory, token).await {
                tracing::warn!("mDNS discovery is off: {err}");
            }
        });
    }
    {
        // A PC that connects to us becomes a peer we follow; and that one
        // did tells us the others can reach us (a firewall lets them in).
        let directory = directory.clone();
        let token = shutdown.child_token();
        let state = state_tx.clone();
        tasks.spawn(async move {
            let mut check = tokio::time::interval(REACHABILITY_CHECK_EVERY);
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut peers_since: Option<std::time::Instant> = None;
            loop {
                tokio::select! {
                    biased;
                    () = token.cancelled() => break,
                    addr = inbound_rx.recv() => match addr {
                        Some(addr) => {
                            directory.add_heard_of(addr, crate::discovery::PeerSource::Inbound);
                            state.send_if_modified(|s| {
                                let changed = !s.reached_by_peers || s.maybe_firewalled;
                                s.reached_by_peers = true;
                                s.maybe_firewalled = false;
                                changed
                            });
                        }
                        None => break,
                    },
                    _ = check.tick() => {
                        let now = std::time::Instant::now();
                        let has_peers = !state.borrow().peers.is_empty();
                        peers_since = if has_peers { peers_since.or(Some(now)) } else { None };
                        state.send_if_modified(|s| {
                            let hint = maybe_firewalled(s.reached_by_peers, peers_since, now);
                            let changed = s.maybe_firewalled != hint;
                            s.maybe_firewalled = hint;
                            changed
                        });
                    }
                }
            }
        });
    }
    for target in &config.manual_peers {
        if let Err(err) = directory.add_manual(target).await {
            tracing::warn!("peer {target}: {err}");
        }
    }
    if let Some(control) = control {
        tasks.spawn(control.serve(state_rx.clone(), command_tx.clone(), shutdown.child_token()));
    }
    // Repaint and event forwarding for state and transfers.
    tasks.spawn(forward_changes(
        state_tx.clone(),
        context,
        transfers.clone(),
        events.clone(),
        repaint,
        shutdown.child_token(),
    ));
    tasks.spawn(keep_sharing(
        SharingInputs {
            policy: policy_rx,
            running: running.clone(),
            limit: upload_limit,
            transfers: transfers.clone(),
            in_force: in_force_tx,
        },
        state_tx.clone(),
        shutdown.child_token(),
    ));
    let (rescan_tx, rescan_rx) = mpsc::channel(1);
    if let (Some(games_dir), Some(store)) = (config.games_dir.clone(), store.clone()) {
        tasks.spawn(keep_library(
            LibraryInputs {
                games_dir,
                store,
                catalog: catalog.clone(),
                transfers: transfers.clone(),
                partials: partials.clone(),
                sharing: in_force_rx,
            },
            library_tx,
            state_tx.clone(),
            events.clone(),
            rescan_rx,
            shutdown.child_token(),
        ));
    } else {
        tasks.spawn(keep_empty_library(
            catalog.clone(),
            transfers.clone(),
            library_tx,
            state_tx.clone(),
            events.clone(),
            rescan_rx,
            shutdown.child_token(),
        ));
    }
    let _ = ready.send(Ok((
        state_rx.clone(),
        listen_addr,
        tokio::runtime::Handle::current(),
    )));

    let local = Arc::new(LocalContext {
        games_dir: config.games_dir.clone(),
        store: store.clone(),
        catalog: catalog.clone(),
        transfers: transfers.clone(),
        state: state_tx.clone(),
        rescan: rescan_tx.clone(),
        partials,
        downloads: std::sync::Mutex::new(BTreeMap::new()),
        connections: directory.connections(),
        running,
        shutdown: shutdown.child_token(),
    });
    let mut jobs = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
            command = commands.recv() => match command {
                None => break,
                Some(Command::AddPeer { target, reply }) => {
                    let _ = reply.send(directory.add_manual(&target).await);
                }
                Some(Command::Rescan) => {
                    let _ = rescan_tx.try_send(());
                }
                Some(Command::CancelDownload { game }) => local.cancel_download(&game),
                Some(Command::SetSharing { policy }) => {
                    policy_tx.send_replace(policy);
                }
                Some(command) => {
                    let local = local.clone();
                    let events = events.clone();
                    jobs.spawn(async move { local.run(command, &events).await });
                }
            },
        }
    }
    shutdown.cancel();
    while jobs.join_next().await.is_some() {}
    directory.join().await;

    while tasks.join_next().await.is_some() {}
    endpoint.close(
        quinn::VarInt::from_u32(crate::proto::CLOSE_SHUTDOWN),
        b"shutting down",
    );
    // The close frames leave at once; waiting for a slow peer's queued data
    // to drain would hold the exit (a `get` ends right after its swap).
    let _ = tokio::time::timeout(CLOSE_WAIT, endpoint.wait_idle()).await;
    drop(lock);
}

async fn forward_changes(
    state: watch::Sender<PeerState>,
    context: Arc<ServeContext>,
    transfers: OutboundTransfers,
    events: broadcast::Sender<Event>,
    repaint: Option<RepaintHook>,
    shutdown: CancellationToken,
) {
    let mut transfer_updates = transfers.subscribe();
    let mut state_updates = state.subscribe();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            changed = transfer_updates.changed() => {
                if changed.is_err() { break; }
                let snapshot = transfer_updates.borrow_and_update().clone();
                let served = context.chunks_served.load(std::sync::atomic::Ordering::Relaxed);
                state.send_modify(|s| {
                    s.transfers = snapshot.clone();
                    s.chunks_served = served;
                });
                let _ = events.send(Event::Transfers(snapshot));
            }
            changed = state_updates.changed() => {
                if changed.is_err() { break; }
                state_updates.borrow_and_update();
                if let Some(repaint) = &repaint {
                    repaint();
                }
            }
        }
    }
}

struct LibraryInputs {
    games_dir: PathBuf,
    store: Store,
    catalog: CatalogCell,
    transfers: OutboundTransfers,
    partials: PartialShares,
    /// What sharing is allowed now (paused: nothing is announced).
    sharing: watch::Receiver<lanspread_core::SharingInForce>,
}

/// Longest the endpoint waits for its connections to close at shutdown.
const CLOSE_WAIT: Duration = Duration::from_millis(100);

/// How often a running hash is reported to the window, and logged.
const HASHING_REPORT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
const HASHING_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Keeps the announced library current: rescans on request, on a timer, and
/// re-announces at once when an operation starts or ends on a game.
async fn keep_library(
    inputs: LibraryInputs,
    library: watch::Sender<LibrarySnapshot>,
    state: watch::Sender<PeerState>,
    events: broadcast::Sender<Event>,
    mut rescan: mpsc::Receiver<()>,
    shutdown: CancellationToken,
) {
    let inputs = Arc::new(inputs);
    let mut active_updates = inputs.transfers.subscribe();
    let mut sharing = inputs.sharing.clone();
    let mut partial_updates = inputs.partials.subscribe();
    let mut peer_updates = state.subscribe();
    let mut announced_at;
    let mut manifests = BTreeMap::new();
    let mut timer = tokio::time::interval(RESCAN_INTERVAL);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut scan_now = true;
    loop {
        if scan_now {
            let scan_inputs = inputs.clone();
            let previous = manifests.clone();
            let (progress, mut hashing) = watch::channel(None);
            let mut scanned = tokio::task::spawn_blocking(move || {
                let last = std::sync::Mutex::new(None::<std::time::Instant>);
                let report = |p: crate::library::HashingProgress| {
                    // At most four times a second, and the end of each game.
                    let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                    let done = p.files_done == p.files_total;
                    if done || last.is_none_or(|at| at.elapsed() >= HASHING_REPORT_EVERY) {
                        *last = Some(std::time::Instant::now());
                        progress.send_replace(Some(p));
                    }
                };
                build_manifests(
                    &scan_inputs.games_dir,
                    &scan_inputs.catalog.get(),
                    &scan_inputs.store,
                    &scan_inputs.transfers,
                    &previous,
                    &report,
                )
            });
            let mut logged: Option<tokio::time::Instant> = None;
            let scanned = loop {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break None,
                    scanned = &mut scanned => break Some(scanned),
                    Ok(()) = hashing.changed() => {
                        let now = hashing.borrow_and_update().clone();
                        if let Some(p) = &now
                            && logged.is_none_or(|at| at.elapsed() >= HASHING_LOG_EVERY)
                        {
                            logged = Some(tokio::time::Instant::now());
                            tracing::info!(
                                "hashing {}: {} of {} MiB, {} of {} files, {:.0} MiB/s",
                                p.game,
                                p.bytes_done >> 20,
                                p.bytes_total >> 20,
                                p.files_done,
                                p.files_total,
                                p.bytes_per_sec / f64::from(1 << 20)
                            );
                        }
                        state.send_modify(|s| s.hashing = now);
                    }
                }
            };
            state.send_if_modified(|s| s.hashing.take().is_some());
            let Some(scanned) = scanned else { break };
            match scanned {
                Ok((scan, scanned)) => {
                    manifests = scanned;
                    let scan = scan.map(Arc::new);
                    state.send_if_modified(|s| {
                        if s.library.as_deref() == scan.as_deref() {
                            return false;
                        }
                        s.library = scan;
                        true
                    });
                }
                Err(err) => tracing::warn!("library scan failed: {err}"),
            }
        }
        let fingerprint = *inputs.catalog.get().fingerprint().as_bytes();
        announced_at = tokio::time::Instant::now();
        let paused = sharing.borrow_and_update().paused;
        // Paused: no game is offered, whole or partial.
        let partials = if paused {
            Vec::new()
        } else {
            inputs.partials.all()
        };
        publish_library(
            &inputs.transfers,
            if paused { &NOTHING } else { &manifests },
            &partials,
            fingerprint,
            &library,
            &state,
            &events,
        );
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            _ = rescan.recv() => scan_now = true,
            _ = timer.tick() => scan_now = true,
            changed = active_updates.changed() => {
                if changed.is_err() { break; }
                active_updates.borrow_and_update();
                scan_now = false;
            }
            changed = sharing.changed() => {
                if changed.is_err() { break; }
                scan_now = false;
            }
            changed = peer_updates.changed() => {
                if changed.is_err() { break; }
                // Republished only when the set of peer addresses moved
                // (publish_library compares); progress changes are ignored.
                peer_updates.borrow_and_update();
                scan_now = false;
            }
            changed = partial_updates.changed() => {
                if changed.is_err() { break; }
                // Have-maps move with every chunk: announced at most twice
                // a second, so a swarm's long-polls stay cheap.
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep_until(announced_at + ANNOUNCE_EVERY) => {}
                }
                partial_updates.borrow_and_update();
                scan_now = false;
            }
        }
    }
}

/// A PC that shares no games still announces which catalog it holds: an
/// empty list, published again whenever a rescan is asked for (a catalog
/// load asks for one).
async fn keep_empty_library(
    catalog: CatalogCell,
    transfers: OutboundTransfers,
    library: watch::Sender<LibrarySnapshot>,
    state: watch::Sender<PeerState>,
    events: broadcast::Sender<Event>,
    mut rescan: mpsc::Receiver<()>,
    shutdown: CancellationToken,
) {
    loop {
        let fingerprint = *catalog.get().fingerprint().as_bytes();
        let none = BTreeMap::new();
        publish_library(
            &transfers,
            &none,
            &[],
            fingerprint,
            &library,
            &state,
            &events,
        );
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            asked = rescan.recv() => if asked.is_none() { break },
        }
    }
}

/// No games: what a PC that paused sharing announces.
static NOTHING: BTreeMap<GameId, Arc<lanspread_core::Manifest>> = BTreeMap::new();

/// Publishes the announced list. A new catalog also moves the revision, so
/// peers waiting on a long-poll learn of it at once; and the "same catalog"
/// flag of every known peer is judged again against it.
fn publish_library(
    transfers: &OutboundTransfers,
    manifests: &BTreeMap<GameId, Arc<lanspread_core::Manifest>>,
    partials: &[Arc<crate::swarm::PartialGame>],
    catalog_fingerprint: [u8; 32],
    library: &watch::Sender<LibrarySnapshot>,
    state: &watch::Sender<PeerState>,
    events: &broadcast::Sender<Event>,
) {
    let games = LibrarySnapshot::announced(manifests, partials, &transfers.active_games());
    let peers = exchanged_peers(&state.borrow());
    let mut bumped = None;
    let mut new_catalog = false;
    library.send_modify(|snapshot| {
        new_catalog = snapshot.catalog_fingerprint != catalog_fingerprint;
        if snapshot.games != games || new_catalog || snapshot.peers != peers {
            snapshot.revision += 1;
            snapshot.games = games.clone();
            snapshot.catalog_fingerprint = catalog_fingerprint;
            snapshot.peers = peers.clone();
            bumped = Some(snapshot.revision);
        }
        snapshot.manifests = manifests.clone();
    });
    if new_catalog {
        state.send_if_modified(|s| {
            let mut changed = false;
            for peer in s.peers.values_mut() {
                let same = peer.catalog_fingerprint == catalog_fingerprint;
                changed |= peer.same_catalog != same;
                peer.same_catalog = same;
            }
            changed
        });
    }
    if let Some(revision) = bumped {
        state.send_modify(|s| s.local_games = games);
        let _ = events.send(Event::LocalLibraryChanged { revision });
    }
}

/// The addresses this PC tells others of (peer exchange): the peers in its
/// table, which answered it, sorted so an unchanged set compares equal.
fn exchanged_peers(state: &PeerState) -> Vec<SocketAddr> {
    let mut peers: Vec<SocketAddr> = state.peers.values().map(|p| p.addr).collect();
    peers.sort_unstable();
    peers.truncate(crate::proto::MAX_EXCHANGED_PEERS);
    peers
}

/// What [`keep_sharing`] works with.
struct SharingInputs {
    policy: watch::Receiver<lanspread_core::SharingPolicy>,
    running: Arc<crate::play::Running>,
    limit: Arc<crate::rate::LiveLimit>,
    transfers: OutboundTransfers,
    in_force: watch::Sender<lanspread_core::SharingInForce>,
}

/// How often the games started from here are checked for having ended.
const PLAYING_CHECK_EVERY: Duration = Duration::from_millis(500);

/// Applies the sharing policy: at once when it changes, and when a game
/// started from here starts or ends (checked twice a second). A pause
/// stops every upload at once and announces no games until it ends.
async fn keep_sharing(
    mut inputs: SharingInputs,
    state: watch::Sender<PeerState>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(PLAYING_CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let running = inputs.running.sweep();
        let policy = *inputs.policy.borrow_and_update();
        let now = policy.in_force(!running.is_empty());
        let before = *inputs.in_force.borrow();
        if now != before || state.borrow().sharing != now {
            // The flag first, then the cancel: an upload registered in
            // between sees the flag; one registered before is cancelled.
            inputs.limit.set(now.limit_bytes_per_sec, now.paused);
            if now.paused && !before.paused {
                for game in inputs.transfers.snapshot().outbound.keys() {
                    inputs.transfers.cancel_transfers(game);
                }
            }
            tracing::info!(
                "sharing: {}",
                now.words().unwrap_or_else(|| "no limit".to_owned())
            );
            inputs.in_force.send_replace(now);
        }
        state.send_if_modified(|s| {
            let changed = s.running != running || s.sharing != now;
            s.running = running;
            s.sharing = now;
            changed
        });
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            changed = inputs.policy.changed() => if changed.is_err() { break },
            _ = tick.tick() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_firewall_is_suspected_only_after_peers_never_reached_us() {
        let t0 = std::time::Instant::now();
        let later = t0 + UNREACHED_AFTER;
        assert!(maybe_firewalled(false, Some(t0), later));
        assert!(!maybe_firewalled(false, Some(t0), t0 + UNREACHED_AFTER / 2));
        assert!(
            !maybe_firewalled(true, Some(t0), later),
            "a peer connected in"
        );
        assert!(!maybe_firewalled(false, None, later), "no peer at all");
    }
}
