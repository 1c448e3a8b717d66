//! The peer runtime: one tokio runtime on a background thread that owns the
//! endpoint, discovery, serving and the peer table.
//!
//! Input is a bounded channel of [`Request`]s (the vocabulary in
//! [`crate::api`]), each answered by `handler`. Output is the latest
//! [`PeerState`] on a watch channel, an [`Event`] stream, and an optional
//! callback the GUI uses to request a repaint. Shutdown is a tree of
//! cancellation tokens: tasks stop, connections close, the endpoint drains,
//! and the thread ends.
//!
//! This file holds the handle and its thread's lifecycle; `state` the public
//! types, `wiring` what runs on the thread, `handler` the answers to
//! requests, `announce` the library announce loop, `sharing` the sharing
//! policy, `reachability` the firewall hint.

mod announce;
pub(crate) mod handler;
mod reachability;
mod sharing;
mod state;
mod wiring;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lanspread_core::{GameCatalog, OutboundTransfers, Store};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

pub use reachability::{UNREACHED_AFTER, maybe_firewalled};
pub use state::{Event, PeerConfig, PeerState};

use crate::api::{ApiError, Reply, Request};
use crate::data_lock::DataDirLock;
use crate::discovery::id_hex;
use crate::endpoint::TlsIdentity;
use crate::serve::CatalogCell;
use handler::Envelope;
use wiring::{Parts, run};

/// How often the games folder is rescanned without being asked.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(10);
/// Capacity of the request channel.
pub const COMMAND_CAPACITY: usize = 64;
/// Capacity of the event channel; a slow reader misses old events, never blocks the runtime.
pub const EVENT_CAPACITY: usize = 1024;
/// Most blocking threads the peer's runtime keeps (tokio's default is 512).
/// Blocking work (disk reads for uploads, piece hashing and writes, scans,
/// operations) never waits for other blocking work, so a cap only queues
/// it. Without one a download the disk could not keep up with grew to 30
/// threads, racing spawns past idle ones, and the process with them.
pub const MAX_BLOCKING_THREADS: usize = 16;

/// The answer to a request, when it comes.
#[derive(Debug)]
pub struct Answer(oneshot::Receiver<Result<Reply, ApiError>>);

impl Answer {
    pub async fn wait(self) -> Result<Reply, ApiError> {
        self.0.await.unwrap_or(Err(ApiError::Stopped))
    }

    /// Waits from synchronous code (the CLI, tests; never on the runtime).
    pub fn blocking_wait(self) -> Result<Reply, ApiError> {
        self.0.blocking_recv().unwrap_or(Err(ApiError::Stopped))
    }

    /// The answer if it came, without waiting (the window, each frame).
    pub fn try_take(&mut self) -> Option<Result<Reply, ApiError>> {
        match self.0.try_recv() {
            Ok(answer) => Some(answer),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(ApiError::Stopped)),
        }
    }
}

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
    requests: mpsc::Sender<Envelope>,
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
        let (request_tx, request_rx) = mpsc::channel(COMMAND_CAPACITY);
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
            requests: request_rx,
            request_tx: request_tx.clone(),
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
                    .max_blocking_threads(MAX_BLOCKING_THREADS)
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
            requests: request_tx,
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

    /// Asks the runtime to do something; the answer comes on the returned
    /// [`Answer`]. Never waits: a full request channel is
    /// [`ApiError::Overloaded`].
    pub fn request(&self, request: Request) -> Result<Answer, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.enqueue(Envelope {
            request,
            reply: Some(reply),
        })?;
        Ok(Answer(answer))
    }

    /// Asks without wanting the answer (its effect shows in the state).
    pub fn send(&self, request: Request) -> Result<(), ApiError> {
        self.enqueue(Envelope {
            request,
            reply: None,
        })
    }

    /// Asks and waits for the answer, from synchronous code.
    pub fn ask_blocking(&self, request: Request) -> Result<Reply, ApiError> {
        self.request(request)?.blocking_wait()
    }

    fn enqueue(&self, envelope: Envelope) -> Result<(), ApiError> {
        self.requests.try_send(envelope).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ApiError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => ApiError::Stopped,
        })
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
