//! The library announce loop: keeps what this PC offers current (rescans on
//! request and on a timer, re-announces when an operation starts or ends,
//! when sharing pauses, when peers or partial downloads move) and publishes
//! it to the serving side and the state.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use lanspread_core::{GameId, OutboundTransfers, Store};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{Event, PeerState, RESCAN_INTERVAL};
use crate::library::{LibrarySnapshot, ManifestDigests, build_manifests};
use crate::serve::CatalogCell;
use crate::swarm::{ANNOUNCE_EVERY, PartialShares};

pub(super) struct LibraryInputs {
    pub(super) games_dir: PathBuf,
    pub(super) store: Store,
    pub(super) catalog: CatalogCell,
    pub(super) transfers: OutboundTransfers,
    pub(super) partials: PartialShares,
    /// What sharing is allowed now (paused: nothing is announced).
    pub(super) sharing: watch::Receiver<lanspread_core::SharingInForce>,
}

/// How often a running hash is reported to the window, and logged.
const HASHING_REPORT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
const HASHING_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Keeps the announced library current: rescans on request, on a timer, and
/// re-announces at once when an operation starts or ends on a game (scanning
/// again first when the last scan skipped that game).
pub(super) async fn keep_library(
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
    let mut announced_at = tokio::time::Instant::now();
    let mut manifests = BTreeMap::new();
    let mut timer = tokio::time::interval(RESCAN_INTERVAL);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut scan_now = true;
    let digests = ManifestDigests::default();
    // Games the last scan left out because an operation ran on them: when
    // that operation ends, the folder is scanned again at once.
    let mut skipped = BTreeSet::new();
    // Whether the list must be announced again (a state change that moved
    // no peer address needs nothing).
    let mut republish = true;
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
            // The interval counts from the last scan, whatever asked for it
            // (its first tick would otherwise scan again at once).
            timer.reset();
            match scanned {
                Ok(built) => {
                    manifests = built.manifests;
                    skipped = built.skipped;
                    let scan = built.scan.map(Arc::new);
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
        if republish || scan_now {
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
                (if paused { &NOTHING } else { &manifests }, &digests),
                &partials,
                fingerprint,
                &library,
                &state,
                &events,
            );
        }
        republish = true;
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            _ = rescan.recv() => scan_now = true,
            _ = timer.tick() => scan_now = true,
            changed = active_updates.changed() => {
                if changed.is_err() { break; }
                let now = active_updates.borrow_and_update();
                scan_now = skipped.iter().any(|game| !now.active.contains(game));
            }
            changed = sharing.changed() => {
                if changed.is_err() { break; }
                scan_now = false;
            }
            changed = peer_updates.changed() => {
                if changed.is_err() { break; }
                // Republished only when the set of peer addresses moved;
                // progress and upload counts change the state many times
                // a second.
                let peers = exchanged_peers(&peer_updates.borrow_and_update());
                republish = peers != library.borrow().peers;
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
pub(super) async fn keep_empty_library(
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
            (&none, &ManifestDigests::default()),
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
    (manifests, digests): (
        &BTreeMap<GameId, Arc<lanspread_core::Manifest>>,
        &ManifestDigests,
    ),
    partials: &[Arc<crate::swarm::PartialGame>],
    catalog_fingerprint: [u8; 32],
    library: &watch::Sender<LibrarySnapshot>,
    state: &watch::Sender<PeerState>,
    events: &broadcast::Sender<Event>,
) {
    let games = LibrarySnapshot::announced(manifests, partials, &transfers.active_games(), digests);
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
