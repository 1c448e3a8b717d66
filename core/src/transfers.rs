//! The transfer guard registry: reader-writer coordination between outbound
//! transfers (readers) and local mutations of a game (writers).
//!
//! - A reader (one upload of one game to one peer) holds a [`TransferGuard`]
//!   for as long as it may touch the game's files. The guard is registered
//!   *before* the serve path checks eligibility, so a writer that starts
//!   between that check and the first byte still sees the reader.
//! - Registering is refused while an operation is active on the game: a new
//!   reader never starts under a writer.
//! - A writer calls [`OutboundTransfers::begin_operation`]: the game is marked
//!   active (and so left out of the library snapshots peers see), every live
//!   reader's token is cancelled, and the call waits until the game's count
//!   of live readers is zero. Only then may the writer touch the disk. The
//!   returned [`OperationGuard`] ends the operation when dropped.
//! - Every change publishes a [`TransfersSnapshot`] on a watch channel: the
//!   GUI shows the counts live, and writers wait on it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::catalog::GameId;

/// What the registry publishes after every change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransfersSnapshot {
    /// Live outbound transfers per game; games with none are absent.
    pub outbound: BTreeMap<GameId, usize>,
    /// Games with an operation that rewrites the payload (update, remove,
    /// the swap of a download) in progress: hidden from peers, no uploads.
    pub active: BTreeSet<GameId>,
    /// Games being installed or uninstalled: only `local/` changes, which
    /// is never served, so they stay shared and their uploads go on.
    pub local: BTreeSet<GameId>,
    /// Who receives the live transfers of each game: peer (its id, hex)
    /// -> live transfers to it. Transfers registered without a receiver
    /// are counted in `outbound` only.
    pub receivers: BTreeMap<GameId, BTreeMap<String, usize>>,
    /// Games the library scan is reading (hashing) now: not uploads, but
    /// an operation waits for them like for one (Windows refuses to move a
    /// folder with files open in it).
    pub scanning: BTreeSet<GameId>,
}

impl TransfersSnapshot {
    pub fn outbound_count(&self, game: &GameId) -> usize {
        self.outbound.get(game).copied().unwrap_or(0)
    }

    pub fn is_active(&self, game: &GameId) -> bool {
        self.active.contains(game)
    }

    /// The peers (ids, hex) receiving `game` from this PC now.
    pub fn receivers_of(&self, game: &GameId) -> impl Iterator<Item = &str> {
        self.receivers
            .get(game)
            .into_iter()
            .flat_map(|peers| peers.keys().map(String::as_str))
    }
}

/// Why a reader or a writer could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("{0} is being updated or removed on this PC; try again when it is done")]
    OperationActive(GameId),
    #[error("{0} is being installed or uninstalled on this PC; try again when it is done")]
    LocalActive(GameId),
}

/// Who reads a game's files.
enum Reader {
    /// An upload, to this peer (its id) when known.
    Upload { to: Option<String> },
    /// The library scan hashing it.
    Scan,
}

/// Identifies one live transfer, for logs and for unregistering.
pub type TransferId = u64;

#[derive(Debug, Default)]
struct GameTransfers {
    /// Live transfers: their tokens and whom they go to, if known.
    live: HashMap<TransferId, (CancellationToken, Option<String>)>,
    /// Scans reading the game: cancelled and waited for like uploads.
    scans: HashMap<TransferId, CancellationToken>,
    active: bool,
    /// An install or uninstall (touching `local/` only) is running.
    local_busy: bool,
}

impl GameTransfers {
    fn is_idle(&self) -> bool {
        self.live.is_empty() && self.scans.is_empty() && !self.active && !self.local_busy
    }

    /// One operation per game at a time, of either kind.
    fn free_for_operation(&self, game: &GameId) -> Result<(), TransferError> {
        if self.active {
            Err(TransferError::OperationActive(game.clone()))
        } else if self.local_busy {
            Err(TransferError::LocalActive(game.clone()))
        } else {
            Ok(())
        }
    }
}

/// Registry state. The mutex protects `games` only; it is never held across
/// an `.await`, and every mutation republishes the snapshot before the lock
/// is released, so the published counts never lag behind the registry.
#[derive(Debug, Default)]
struct Registry {
    games: HashMap<GameId, GameTransfers>,
}

#[derive(Debug)]
struct Shared {
    registry: Mutex<Registry>,
    published: watch::Sender<TransfersSnapshot>,
    next_id: AtomicU64,
}

/// Per-game live outbound transfers and active operations. Cheap to clone;
/// clones share one registry.
#[derive(Debug, Clone)]
pub struct OutboundTransfers {
    shared: Arc<Shared>,
}

impl Default for OutboundTransfers {
    fn default() -> Self {
        Self::new()
    }
}

impl OutboundTransfers {
    pub fn new() -> Self {
        let (published, _) = watch::channel(TransfersSnapshot::default());
        Self {
            shared: Arc::new(Shared {
                registry: Mutex::new(Registry::default()),
                published,
                next_id: AtomicU64::new(1),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock leaves the registry consistent
        // (every mutation is a single insert/remove), so poisoning is ignored.
        self.shared
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish(&self, registry: &Registry) {
        let mut snapshot = TransfersSnapshot::default();
        for (game, state) in &registry.games {
            if !state.live.is_empty() {
                snapshot.outbound.insert(game.clone(), state.live.len());
                let mut receivers: BTreeMap<String, usize> = BTreeMap::new();
                for to in state.live.values().filter_map(|(_, to)| to.as_ref()) {
                    *receivers.entry(to.clone()).or_default() += 1;
                }
                if !receivers.is_empty() {
                    snapshot.receivers.insert(game.clone(), receivers);
                }
            }
            if state.active {
                snapshot.active.insert(game.clone());
            }
            if !state.scans.is_empty() {
                snapshot.scanning.insert(game.clone());
            }
            if state.local_busy {
                snapshot.local.insert(game.clone());
            }
        }
        self.shared.published.send_if_modified(|current| {
            if *current == snapshot {
                false
            } else {
                *current = snapshot;
                true
            }
        });
    }

    /// Registers a reader of `game`. Call this *before* checking whether the
    /// game may be served. Refused while an operation is active on the game.
    pub fn register(&self, game: &GameId) -> Result<TransferGuard, TransferError> {
        self.register_to(game, None)
    }

    /// [`Self::register`], naming the peer (its id) that receives the
    /// transfer, for "who is downloading it from us now".
    pub fn register_to(
        &self,
        game: &GameId,
        to: Option<String>,
    ) -> Result<TransferGuard, TransferError> {
        self.register_reader(game, Reader::Upload { to })
    }

    /// Registers the library scan reading `game` (hashing its payload).
    /// Refused while an operation is active on it: the scan skips the game.
    /// Not counted as an upload; an operation cancels it and waits until
    /// it is dropped.
    pub fn register_scan(&self, game: &GameId) -> Result<TransferGuard, TransferError> {
        self.register_reader(game, Reader::Scan)
    }

    fn register_reader(
        &self,
        game: &GameId,
        reader: Reader,
    ) -> Result<TransferGuard, TransferError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        let mut registry = self.lock();
        let state = registry.games.entry(game.clone()).or_default();
        if state.active {
            return Err(TransferError::OperationActive(game.clone()));
        }
        match reader {
            Reader::Upload { to } => {
                state.live.insert(id, (token.clone(), to));
            }
            Reader::Scan => {
                state.scans.insert(id, token.clone());
            }
        }
        self.publish(&registry);
        drop(registry);
        Ok(TransferGuard {
            transfers: self.clone(),
            game: game.clone(),
            id,
            token,
        })
    }

    fn unregister(&self, game: &GameId, id: TransferId) {
        let mut registry = self.lock();
        if let Some(state) = registry.games.get_mut(game) {
            state.live.remove(&id);
            state.scans.remove(&id);
            if state.is_idle() {
                registry.games.remove(game);
            }
        }
        self.publish(&registry);
    }

    /// Starts a local operation on `game`: marks it active, cancels every
    /// live reader, and resolves once none is left. Only one operation per
    /// game at a time; a second one is refused rather than queued.
    ///
    /// If the returned future is dropped before it resolves, the operation
    /// ends with it (the game is no longer active).
    pub async fn begin_operation(&self, game: &GameId) -> Result<OperationGuard, TransferError> {
        let mut updates = self.shared.published.subscribe();
        {
            let mut registry = self.lock();
            let state = registry.games.entry(game.clone()).or_default();
            state.free_for_operation(game)?;
            state.active = true;
            for (token, _) in state.live.values() {
                token.cancel();
            }
            for token in state.scans.values() {
                token.cancel();
            }
            self.publish(&registry);
        }
        // From here on, dropping `guard` ends the operation.
        let guard = OperationGuard {
            transfers: self.clone(),
            game: game.clone(),
            rewrites_payload: true,
        };
        let game_id = game.clone();
        // The sender lives as long as `self`, so this only ends when the
        // count is zero.
        let _ = updates
            .wait_for(|snapshot| {
                snapshot.outbound_count(&game_id) == 0 && !snapshot.scanning.contains(&game_id)
            })
            .await;
        Ok(guard)
    }

    /// Starts an install or uninstall of `game`: it touches `local/` only,
    /// which is never served, so uploads go on and the game stays shared.
    /// Refused while any other operation runs on the game (one at a time:
    /// an update's swap moves `local/`).
    pub fn begin_local_operation(&self, game: &GameId) -> Result<OperationGuard, TransferError> {
        let mut registry = self.lock();
        let state = registry.games.entry(game.clone()).or_default();
        state.free_for_operation(game)?;
        state.local_busy = true;
        self.publish(&registry);
        Ok(OperationGuard {
            transfers: self.clone(),
            game: game.clone(),
            rewrites_payload: false,
        })
    }

    fn end_operation(&self, game: &GameId, rewrote_payload: bool) {
        let mut registry = self.lock();
        if let Some(state) = registry.games.get_mut(game) {
            if rewrote_payload {
                state.active = false;
            } else {
                state.local_busy = false;
            }
            if state.is_idle() {
                registry.games.remove(game);
            }
        }
        self.publish(&registry);
    }

    /// Cancels every live reader of `game` without starting an operation:
    /// used when a newer catalog makes a payload ineligible.
    pub fn cancel_transfers(&self, game: &GameId) -> usize {
        let registry = self.lock();
        registry.games.get(game).map_or(0, |state| {
            for (token, _) in state.live.values() {
                token.cancel();
            }
            state.live.len()
        })
    }

    /// The state right now.
    pub fn snapshot(&self) -> TransfersSnapshot {
        self.shared.published.borrow().clone()
    }

    /// Games with an operation in progress right now.
    pub fn active_games(&self) -> BTreeSet<GameId> {
        self.snapshot().active
    }

    /// A receiver that sees every change (the GUI and the status command).
    pub fn subscribe(&self) -> watch::Receiver<TransfersSnapshot> {
        self.shared.published.subscribe()
    }
}

/// One live outbound transfer. Registered on creation, unregistered on drop.
/// Every await of the transfer must race [`TransferGuard::cancelled`].
#[derive(Debug)]
pub struct TransferGuard {
    transfers: OutboundTransfers,
    game: GameId,
    id: TransferId,
    token: CancellationToken,
}

impl TransferGuard {
    pub fn game(&self) -> &GameId {
        &self.game
    }

    pub fn id(&self) -> TransferId {
        self.id
    }

    /// Cancelled when an operation starts on the game (or the catalog makes
    /// it ineligible). Race every await against this.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves when the transfer must stop.
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }
}

impl Drop for TransferGuard {
    fn drop(&mut self) {
        self.transfers.unregister(&self.game, self.id);
    }
}

/// A local operation in progress on one game; ends when dropped.
#[derive(Debug)]
pub struct OperationGuard {
    transfers: OutboundTransfers,
    game: GameId,
    /// Taken with [`OutboundTransfers::begin_operation`]: no upload of the
    /// game is left and none starts, so the payload may be rewritten. A
    /// guard from [`OutboundTransfers::begin_local_operation`] allows
    /// `local/` only.
    rewrites_payload: bool,
}

impl OperationGuard {
    pub fn game(&self) -> &GameId {
        &self.game
    }

    /// Whether this guard allows rewriting the payload (see the field).
    pub fn rewrites_payload(&self) -> bool {
        self.rewrites_payload
    }
}

impl Drop for OperationGuard {
    fn drop(&mut self) {
        self.transfers
            .end_operation(&self.game, self.rewrites_payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::time::Duration;

    fn game(id: &str) -> GameId {
        GameId::parse(id).unwrap()
    }

    #[tokio::test]
    async fn an_install_leaves_uploads_alone_and_excludes_other_operations() {
        let transfers = OutboundTransfers::new();
        let ut = game("ut2004");
        let upload = transfers.register(&ut).unwrap();
        let install = transfers.begin_local_operation(&ut).unwrap();
        assert!(!install.rewrites_payload());
        // The upload goes on, new ones start, the game is not hidden.
        assert!(!upload.is_cancelled());
        let another = transfers.register(&ut).unwrap();
        let snapshot = transfers.snapshot();
        assert!(!snapshot.is_active(&ut));
        assert!(snapshot.local.contains(&ut));
        assert_eq!(snapshot.outbound_count(&ut), 2);
        // One operation at a time: neither an update nor a second install.
        assert_eq!(
            transfers.begin_operation(&ut).await.unwrap_err(),
            TransferError::LocalActive(ut.clone())
        );
        assert!(transfers.begin_local_operation(&ut).is_err());
        drop(install);
        assert!(!transfers.snapshot().local.contains(&ut));
        // An update then cancels the uploads as always.
        drop(another);
        let update = tokio::spawn({
            let transfers = transfers.clone();
            let ut = ut.clone();
            async move { transfers.begin_operation(&ut).await }
        });
        tokio::task::yield_now().await;
        assert!(upload.is_cancelled());
        drop(upload);
        let update = update.await.unwrap().unwrap();
        assert!(update.rewrites_payload());
        // While it runs, no install starts.
        assert_eq!(
            transfers.begin_local_operation(&ut).unwrap_err(),
            TransferError::OperationActive(ut.clone())
        );
    }

    #[tokio::test]
    async fn counts_follow_guards_and_are_published() {
        let transfers = OutboundTransfers::new();
        let mut rx = transfers.subscribe();
        let ut = game("ut2004");
        let a = transfers.register(&ut).unwrap();
        let b = transfers.register(&ut).unwrap();
        let c = transfers.register(&game("cs16")).unwrap();
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().outbound_count(&ut), 2);
        drop(a);
        assert_eq!(rx.borrow_and_update().outbound_count(&ut), 1);
        drop(b);
        drop(c);
        assert_eq!(*rx.borrow_and_update(), TransfersSnapshot::default());
    }

    #[tokio::test]
    async fn operation_waits_for_zero_and_refuses_new_readers() {
        let transfers = OutboundTransfers::new();
        let ut = game("ut2004");
        let reader = transfers.register(&ut).unwrap();
        let op = tokio::spawn({
            let transfers = transfers.clone();
            let ut = ut.clone();
            async move { transfers.begin_operation(&ut).await }
        });
        // The reader is told to stop...
        tokio::time::timeout(Duration::from_secs(1), reader.cancelled())
            .await
            .unwrap();
        // ...the operation has not proceeded while the reader lives...
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!op.is_finished());
        // ...and new readers are refused.
        assert_eq!(
            transfers.register(&ut).unwrap_err(),
            TransferError::OperationActive(ut.clone())
        );
        assert!(transfers.snapshot().is_active(&ut));
        drop(reader);
        let guard = op.await.unwrap().unwrap();
        assert_eq!(transfers.snapshot().outbound_count(&ut), 0);
        // A second operation on the same game is refused, not queued.
        assert!(transfers.begin_operation(&ut).await.is_err());
        drop(guard);
        assert!(!transfers.snapshot().is_active(&ut));
        assert!(transfers.register(&ut).is_ok());
    }

    #[tokio::test]
    async fn other_games_are_untouched_by_an_operation() {
        let transfers = OutboundTransfers::new();
        let cs = transfers.register(&game("cs16")).unwrap();
        let _op = transfers.begin_operation(&game("ut2004")).await.unwrap();
        assert!(!cs.is_cancelled());
        assert!(transfers.register(&game("cs16")).is_ok());
    }

    #[tokio::test]
    async fn dropping_a_pending_operation_ends_it() {
        let transfers = OutboundTransfers::new();
        let ut = game("ut2004");
        let reader = transfers.register(&ut).unwrap();
        let pending = transfers.begin_operation(&ut);
        let timed_out = tokio::time::timeout(Duration::from_millis(20), pending).await;
        assert!(timed_out.is_err());
        assert!(!transfers.snapshot().is_active(&ut));
        drop(reader);
        assert!(transfers.register(&ut).is_ok());
    }

    /// A reader blocked on something that never completes (a peer that
    /// stopped reading) is woken by the operation's cancellation.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancellation_wakes_a_blocked_reader() {
        let transfers = OutboundTransfers::new();
        let ut = game("ut2004");
        let (_never_tx, mut never_rx) = tokio::sync::mpsc::channel::<()>(1);
        let reader = tokio::spawn({
            let transfers = transfers.clone();
            let ut = ut.clone();
            async move {
                let guard = transfers.register(&ut).unwrap();
                tokio::select! {
                    biased;
                    _ = guard.cancelled() => "cancelled",
                    _ = never_rx.recv() => "received",
                }
            }
        });
        while transfers.snapshot().outbound_count(&ut) == 0 {
            tokio::task::yield_now().await;
        }
        let started = std::time::Instant::now();
        let _op = tokio::time::timeout(Duration::from_secs(1), transfers.begin_operation(&ut))
            .await
            .expect("operation proceeds within a second")
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(reader.await.unwrap(), "cancelled");
    }

    /// Many readers race one writer on a multi-threaded runtime. Each reader
    /// registers, checks eligibility (the game is not active), then marks
    /// itself "serving" until it finishes or is cancelled. The writer must
    /// never proceed while any reader that passed the check is still live.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn writer_never_overlaps_a_reader_past_the_check() {
        for round in 0..50 {
            let transfers = OutboundTransfers::new();
            let ut = game("ut2004");
            let serving = Arc::new(AtomicUsize::new(0));
            let violated = Arc::new(AtomicBool::new(false));
            let writing = Arc::new(AtomicBool::new(false));
            let mut tasks = tokio::task::JoinSet::new();
            for reader in 0..32u64 {
                let transfers = transfers.clone();
                let ut = ut.clone();
                let serving = serving.clone();
                let violated = violated.clone();
                let writing = writing.clone();
                tasks.spawn(async move {
                    // Spread the readers out around the writer.
                    for _ in 0..(reader + round) % 7 {
                        tokio::task::yield_now().await;
                    }
                    let Ok(guard) = transfers.register(&ut) else {
                        return;
                    };
                    // Eligibility check: reads the published state.
                    if transfers.snapshot().is_active(&ut) {
                        return;
                    }
                    serving.fetch_add(1, Ordering::SeqCst);
                    if writing.load(Ordering::SeqCst) {
                        violated.store(true, Ordering::SeqCst);
                    }
                    tokio::select! {
                        biased;
                        _ = guard.cancelled() => {}
                        _ = tokio::time::sleep(Duration::from_millis(reader % 5)) => {}
                    }
                    if writing.load(Ordering::SeqCst) {
                        violated.store(true, Ordering::SeqCst);
                    }
                    serving.fetch_sub(1, Ordering::SeqCst);
                    drop(guard);
                });
            }
            let writer = {
                let transfers = transfers.clone();
                let serving = serving.clone();
                let violated = violated.clone();
                let writing = writing.clone();
                tokio::spawn(async move {
                    tokio::task::yield_now().await;
                    let op = transfers.begin_operation(&ut).await.unwrap();
                    writing.store(true, Ordering::SeqCst);
                    if serving.load(Ordering::SeqCst) != 0 {
                        violated.store(true, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    if serving.load(Ordering::SeqCst) != 0 {
                        violated.store(true, Ordering::SeqCst);
                    }
                    writing.store(false, Ordering::SeqCst);
                    drop(op);
                })
            };
            writer.await.unwrap();
            while let Some(result) = tasks.join_next().await {
                result.unwrap();
            }
            assert!(!violated.load(Ordering::SeqCst), "overlap in round {round}");
            assert_eq!(transfers.snapshot(), TransfersSnapshot::default());
        }
    }
}
