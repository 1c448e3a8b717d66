//! Task wiring: what runs on the runtime thread. Opens the endpoint, starts
//! serving, discovery, the control socket and the background loops (library
//! announce, sharing, reachability), then answers requests until shutdown,
//! and closes everything in order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lanspread_core::{OutboundTransfers, Store};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::announce::{LibraryInputs, keep_empty_library, keep_library};
use super::handler::{Envelope, Handler};
use super::reachability::track_reachability;
use super::sharing::{SharingInputs, keep_sharing};
use super::{Event, PeerConfig, PeerState, RepaintHook, RuntimeError};
use crate::control::ControlServer;
use crate::data_lock::DataDirLock;
use crate::discovery::{PeerDirectory, id_hex, run_mdns};
use crate::endpoint::{TlsIdentity, open_endpoint};
use crate::library::LibrarySnapshot;
use crate::proto::{PROTOCOL_VERSION, PeerHello, clean_name};
use crate::serve::{CatalogCell, ServeContext, accept_loop};
use crate::swarm::PartialShares;

/// Everything the runtime thread takes ownership of.
pub(super) struct Parts {
    pub(super) config: PeerConfig,
    pub(super) store: Option<Store>,
    pub(super) identity: TlsIdentity,
    pub(super) peer_id: [u8; 16],
    pub(super) lock: Option<DataDirLock>,
    pub(super) requests: mpsc::Receiver<Envelope>,
    pub(super) request_tx: mpsc::Sender<Envelope>,
    pub(super) events: broadcast::Sender<Event>,
    pub(super) transfers: OutboundTransfers,
    pub(super) catalog: CatalogCell,
    pub(super) shutdown: CancellationToken,
    pub(super) repaint: Option<RepaintHook>,
    pub(super) bytes_uploaded: Arc<std::sync::atomic::AtomicU64>,
}

pub(super) type Ready = Result<
    (
        watch::Receiver<PeerState>,
        SocketAddr,
        tokio::runtime::Handle,
    ),
    RuntimeError,
>;

pub(super) async fn run(parts: Parts, ready: std::sync::mpsc::SyncSender<Ready>) {
    let Parts {
        config,
        store,
        identity,
        peer_id,
        lock,
        mut requests,
        request_tx,
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
    let (inbound_tx, inbound_rx) = mpsc::channel::<SocketAddr>(64);
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
    // A PC that connects to us becomes a peer we follow; and that one did
    // tells us the others can reach us (a firewall lets them in).
    tasks.spawn(track_reachability(
        inbound_rx,
        directory.clone(),
        state_tx.clone(),
        shutdown.child_token(),
    ));
    for target in &config.manual_peers {
        if let Err(err) = directory.add_manual(target).await {
            tracing::warn!("peer {target}: {err}");
        }
    }
    if let Some(control) = control {
        tasks.spawn(control.serve(state_rx.clone(), request_tx.clone(), shutdown.child_token()));
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

    let handler = Arc::new(Handler {
        games_dir: config.games_dir.clone(),
        store: store.clone(),
        catalog: catalog.clone(),
        transfers: transfers.clone(),
        state: state_tx.clone(),
        events: events.clone(),
        rescan: rescan_tx,
        partials,
        downloads: std::sync::Mutex::new(BTreeMap::new()),
        directory: directory.clone(),
        connections: directory.connections(),
        running,
        policy: policy_tx,
        shutdown: shutdown.child_token(),
    });
    let mut jobs = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
            envelope = requests.recv() => match envelope {
                None => break,
                Some(envelope) if envelope.request.is_instant() => handler.answer(envelope).await,
                Some(envelope) => {
                    let handler = handler.clone();
                    jobs.spawn(async move { handler.answer(envelope).await });
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

/// Longest the endpoint waits for its connections to close at shutdown.
const CLOSE_WAIT: Duration = Duration::from_millis(100);
