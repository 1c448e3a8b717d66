//! The fetch driver: performs what the core's [`DownloadMachine`] decides
//! (requests, cancellations, writes, journal flushes), feeds it what
//! happens, and serves the verified chunks to the others meanwhile.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lanspread_core::download::{Action, Delivery, DownloadMachine, Failure, PiecePlan, RequestId};
use lanspread_core::manifest::Manifest;
use lanspread_core::{Blake3Hash, GameVersion};
use tokio::task::JoinSet;

use super::progress::SpeedMeter;
use super::{
    DownloadError, DownloadJob, DownloadProgress, Journal, PeerShare, Source, TICK, share, sources,
};
use crate::buffers::Piece;
use crate::client::{ChunkAsk, ClientError};
use crate::open_files::OpenFiles;
use crate::proto::{ByteRange, ErrorCode};
use crate::swarm::PartialGame;

/// One peer in the fetch loop.
struct Slot {
    source: Source,
    share: PeerShare,
    /// Bytes received over all its requests, as they arrive.
    received: Arc<AtomicU64>,
    /// When its first and latest verified chunk arrived (for the log).
    delivered: Option<(Instant, Instant)>,
    /// Why it last stopped serving the game, while it waits to come back.
    stopped: Option<String>,
}

type Fetched = (RequestId, Result<Piece, Failure>);

pub(super) struct Fetch<'a> {
    job: &'a DownloadJob,
    version: &'a GameVersion,
    manifest: &'a Arc<Manifest>,
    plan: &'a Arc<PiecePlan>,
    files: Arc<OpenFiles>,
    /// Every decision: what to ask whom, stalls, steals, the journal.
    machine: DownloadMachine,
    /// This download as other PCs see it.
    partial: &'a Arc<PartialGame>,
    /// Peers in the machine's order.
    slots: Vec<Slot>,
    requests: JoinSet<Fetched>,
    /// The task of each request in flight, to stop it when told.
    handles: HashMap<RequestId, tokio::task::AbortHandle>,
    writes: JoinSet<(usize, std::io::Result<()>)>,
    /// Blocking threads for hashing pieces (one per core) and for writing
    /// them (a few). Unbounded, every piece received while the others wait
    /// took a thread of its own: 30 threads, most blocked in `write`, in a
    /// 4 GiB download the disk could not keep up with, and the process
    /// grew with each.
    verifying: BlockingGate,
    writing: BlockingGate,
    fetched_chunks: usize,
    fetched_bytes: u64,
}

/// What a failed request means for the machine.
fn failure(err: ClientError) -> Failure {
    match &err {
        ClientError::Refused(refusal) => match refusal.code {
            ErrorCode::NotHeld => Failure::NotHeld,
            ErrorCode::SentElsewhere => Failure::SentElsewhere,
            // An update or remove there, or its own download ended or is
            // swapping in: it may announce the game again.
            ErrorCode::Busy | ErrorCode::WrongVersion | ErrorCode::NotShareable => {
                Failure::Stopped(err.to_string())
            }
            _ => Failure::Broken(err.to_string()),
        },
        ClientError::Reset(code) if *code == u64::from(crate::proto::RESET_CANCELLED) => {
            Failure::Stopped(
                "it stopped serving the game (an update, a remove or its own download finishing)"
                    .to_owned(),
            )
        }
        _ => Failure::Broken(err.to_string()),
    }
}

/// Whether `bytes` are piece `piece`: every chunk's hash matches.
fn verify_piece(plan: &PiecePlan, piece: usize, bytes: &Piece) -> bool {
    if plan.pieces[piece].len != bytes.len() as u64 {
        return false;
    }
    let mut at = 0;
    plan.piece_chunks(piece).iter().all(|chunk| {
        let parts = bytes.slices(at, chunk.len as usize);
        at += chunk.len as usize;
        Blake3Hash::of_parts(parts) == chunk.hash
    })
}

/// Pieces written at once (each its own `write` calls; more do not make a
/// disk faster).
const MAX_WRITE_THREADS: usize = 4;

/// Blocking work, at most a set number of jobs at once; the rest wait
/// their turn without a thread.
#[derive(Clone)]
struct BlockingGate(Arc<tokio::sync::Semaphore>);

impl BlockingGate {
    fn new(threads: usize) -> Self {
        Self(Arc::new(tokio::sync::Semaphore::new(threads)))
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        // The semaphore is never closed, so a permit always comes.
        let _permit = self.0.clone().acquire_owned().await.ok();
        tokio::task::spawn_blocking(work).await
    }
}

/// Writes a verified piece's chunks into their staging files.
fn write_piece(
    files: &OpenFiles,
    plan: &PiecePlan,
    piece: usize,
    bytes: &Piece,
) -> std::io::Result<()> {
    let mut at = 0;
    for range in plan.ranges(piece) {
        let mut offset = range.offset;
        for part in bytes.slices(at, range.len as usize) {
            files.write_at(range.file, part, offset)?;
            offset += part.len() as u64;
        }
        at += range.len as usize;
    }
    Ok(())
}

impl<'a> Fetch<'a> {
    pub(super) fn new(
        job: &'a DownloadJob,
        version: &'a GameVersion,
        (manifest, plan): (&'a Arc<Manifest>, &'a Arc<PiecePlan>),
        files: Arc<OpenFiles>,
        machine: DownloadMachine,
        partial: &'a Arc<PartialGame>,
    ) -> Self {
        Self {
            job,
            version,
            manifest,
            plan,
            files,
            machine,
            partial,
            slots: Vec::new(),
            requests: JoinSet::new(),
            handles: HashMap::new(),
            writes: JoinSet::new(),
            verifying: BlockingGate::new(lanspread_core::hashing::hash_threads()),
            writing: BlockingGate::new(MAX_WRITE_THREADS),
            fetched_chunks: 0,
            fetched_bytes: 0,
        }
    }

    pub(super) fn add_source(&mut self, source: Source) {
        tracing::info!(
            peer = %source.name,
            addr = %source.client.remote_address(),
            partial = source.partial.is_some(),
            "using peer"
        );
        let have = source.partial.as_ref().map(|p| p.have.clone());
        let index = self.machine.add_peer(have, Instant::now());
        if let Some(p) = &source.partial {
            self.machine
                .peer_announced(index, Some(p.have.clone()), Some(p.fetching.clone()));
        }
        debug_assert_eq!(index, self.slots.len());
        let share = share(&source, None);
        self.slots.push(Slot {
            source,
            share,
            received: Arc::new(AtomicU64::new(0)),
            delivered: None,
            stopped: None,
        });
    }

    /// Adds peers that appeared with the same manifest since the start, and
    /// tells the machine what known partial peers now hold.
    fn follow_sources(&mut self) {
        let state = self.job.peers.borrow().clone();
        for index in 0..self.slots.len() {
            if !state.peers.contains_key(&self.slots[index].source.id) {
                self.machine
                    .drop_peer(index, "it left the LAN (its connection ended)".to_owned());
            }
        }
        let digest = self.partial.digest;
        for source in sources(
            &state,
            &self.job.connections,
            &self.job.game,
            self.version,
            Some(digest),
        ) {
            match self.slots.iter().position(|s| s.source.id == source.id) {
                None => self.add_source(source),
                Some(index) if self.slots[index].source.revision != source.revision => {
                    let (have, fetching) = match &source.partial {
                        Some(p) => (Some(p.have.clone()), Some(p.fetching.clone())),
                        None => (None, None),
                    };
                    self.machine.peer_announced(index, have, fetching);
                    self.slots[index].source.revision = source.revision;
                    self.slots[index].source.partial = source.partial;
                }
                Some(_) => {}
            }
        }
    }

    fn perform(&mut self, action: Action) -> Option<DownloadError> {
        match action {
            Action::Request {
                id,
                peer,
                chunk,
                swarm,
            } => {
                // The machine's "chunk" is a piece of the plan.
                let ranges: Vec<ByteRange> = self
                    .plan
                    .ranges(chunk)
                    .into_iter()
                    .map(|r| ByteRange {
                        path: self.manifest.files[r.file].path.to_string(),
                        offset: r.offset,
                        len: r.len,
                    })
                    .collect();
                let plan = self.plan.clone();
                let client = self.slots[peer].source.client.clone();
                let received = self.slots[peer].received.clone();
                let (game, version) = (self.job.game.clone(), self.version.clone());
                let verifying = self.verifying.clone();
                let handle = self.requests.spawn(async move {
                    let ask = ChunkAsk {
                        game: &game,
                        version: &version,
                        ranges,
                        swarm,
                    };
                    let result = match client.chunk(&ask, &received).await {
                        Err(err) => Err(failure(err)),
                        // Hashing a piece is a millisecond of CPU: off the
                        // async threads, as many at once as there are cores.
                        Ok(bytes) => match verifying
                            .run(move || (verify_piece(&plan, chunk, &bytes), bytes))
                            .await
                        {
                            Ok((true, bytes)) => Ok(bytes),
                            Ok((false, _)) => Err(Failure::BadHash),
                            Err(err) => Err(Failure::Broken(err.to_string())),
                        },
                    };
                    (id, result)
                });
                self.handles.insert(id, handle);
            }
            Action::Cancel { id } => {
                if let Some(handle) = self.handles.remove(&id) {
                    handle.abort();
                }
            }
            Action::FlushJournal => {} // handled by the loop, which owns the flush task
            Action::DropPeer { peer, reason } => {
                let slot = &mut self.slots[peer];
                tracing::warn!(peer = %slot.source.name, "dropped: {reason}");
                slot.share.dropped = true;
                slot.share.reason = Some(reason);
            }
            Action::GiveUp { reason } => {
                let reasons = self
                    .slots
                    .iter()
                    .map(|s| {
                        format!(
                            "{}: {}",
                            s.source.name,
                            s.share
                                .reason
                                .clone()
                                .unwrap_or_else(|| "holds none of the missing chunks".into())
                        )
                    })
                    .collect::<Vec<_>>();
                let reasons = if reasons.is_empty() {
                    reason
                } else {
                    reasons.join("; ")
                };
                return Some(DownloadError::AllPeersLost { reasons });
            }
        }
        None
    }

    fn on_fetched(&mut self, id: RequestId, result: Result<Piece, Failure>) {
        self.handles.remove(&id);
        let Some((peer, chunk)) = self.machine.request(id) else {
            return; // written off already (a duplicate, or its peer dropped)
        };
        let now = Instant::now();
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(failure) => {
                if let Failure::Stopped(reason) = &failure {
                    self.slots[peer].stopped = Some(reason.clone());
                }
                self.machine.failed(id, failure, now);
                return;
            }
        };
        if self.machine.delivered(id, now) == Delivery::First {
            let slot = &mut self.slots[peer];
            slot.delivered = Some(slot.delivered.map_or((now, now), |(first, _)| (first, now)));
            let len = bytes.len() as u64;
            slot.share.bytes += len;
            self.fetched_chunks += 1;
            self.fetched_bytes += len;
            let (files, plan) = (self.files.clone(), self.plan.clone());
            let writing = self.writing.clone();
            self.writes.spawn(async move {
                let written = writing
                    .run(move || write_piece(&files, &plan, chunk, &bytes))
                    .await;
                (
                    chunk,
                    written.unwrap_or_else(|e| Err(std::io::Error::other(e))),
                )
            });
        }
    }

    /// Makes the journal say what is on disk: the staging files' data is
    /// synced first, then the snapshot of the journal taken before the sync
    /// is stored. Runs on a blocking thread, so the fetch loop keeps the
    /// requests flowing while the disk catches up.
    fn flush_journal(
        &self,
        journal: &Journal,
    ) -> tokio::task::JoinHandle<Result<(), DownloadError>> {
        let (files, store, game, journal) = (
            self.files.clone(),
            self.job.store.clone(),
            self.job.game.clone(),
            journal.clone(),
        );
        tokio::task::spawn_blocking(move || {
            files
                .sync_written()
                .map_err(|e| DownloadError::Io(e.to_string()))?;
            store.put_journal(game.as_str(), &journal)?;
            Ok(())
        })
    }

    /// Publishes what this download holds and fetches to the other PCs.
    fn announce(&self) {
        self.job.partials.update(
            self.partial,
            self.machine.written_map(),
            self.machine.fetching_map(),
        );
    }

    pub(super) async fn run(
        &mut self,
        journal: &mut Journal,
        progress: &mut DownloadProgress,
        mut shares: Vec<PeerShare>,
    ) -> Result<(Vec<PeerShare>, usize, u64), DownloadError> {
        let started = Instant::now();
        let mut tick = tokio::time::interval(TICK);
        let mut meter = SpeedMeter::new(Duration::from_secs(3));
        let mut flushing: Option<tokio::task::JoinHandle<Result<(), DownloadError>>> = None;
        self.announce();
        let result = loop {
            if self.machine.is_finished() && self.writes.is_empty() {
                break Ok(());
            }
            let now = Instant::now();
            for (peer, slot) in self.slots.iter().enumerate() {
                self.machine
                    .peer_received(peer, slot.received.load(Ordering::Relaxed), now);
            }
            let mut failed = None;
            for action in self.machine.poll(now) {
                if action == Action::FlushJournal {
                    journal.verified.clone_from(self.machine.written_map());
                    flushing = Some(self.flush_journal(journal));
                } else if let Some(err) = self.perform(action) {
                    failed = Some(err);
                }
            }
            if let Some(err) = failed {
                break Err(err);
            }
            tokio::select! {
                biased;
                () = self.job.cancel.cancelled() => break Err(DownloadError::Cancelled),
                Some(written) = self.writes.join_next(), if !self.writes.is_empty() => {
                    match written {
                        Ok((chunk, Ok(()))) => {
                            self.machine.chunk_written(chunk);
                            progress.done_bytes += self.plan.pieces[chunk].len;
                        }
                        Ok((_, Err(err))) => break Err(DownloadError::Io(err.to_string())),
                        Err(err) => break Err(DownloadError::Io(err.to_string())),
                    }
                }
                Some(fetched) = self.requests.join_next(), if !self.requests.is_empty() => {
                    // Aborted requests end as cancelled join errors: nothing to do.
                    if let Ok((id, result)) = fetched {
                        self.on_fetched(id, result);
                    }
                }
                flushed = async {
                    match flushing.as_mut() {
                        Some(flush) => flush.await,
                        None => std::future::pending().await,
                    }
                }, if flushing.is_some() => {
                    flushing = None;
                    self.machine.journal_flushed(Instant::now());
                    match flushed {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => break Err(err),
                        Err(err) => break Err(DownloadError::Io(err.to_string())),
                    }
                }
                _ = tick.tick() => {
                    self.follow_sources();
                    self.announce();
                    progress.bytes_per_sec = meter.record(Instant::now(), progress.done_bytes);
                    let left = progress.total_bytes.saturating_sub(progress.done_bytes);
                    progress.eta_secs = (progress.bytes_per_sec > 1.0)
                        .then(|| (left as f64 / progress.bytes_per_sec).ceil() as u64);
                    progress.peers = self.shares(&shares);
                    (self.job.on_progress)(progress);
                }
            }
        };
        self.requests.abort_all();
        // Writes already under way finish; what they wrote counts.
        while let Some(written) = self.writes.join_next().await {
            if let Ok((chunk, Ok(()))) = written {
                self.machine.chunk_written(chunk);
            }
        }
        // Whatever happened, keep what was verified for a resume.
        if let Some(flush) = flushing {
            let _ = flush.await;
        }
        if self.machine.final_flush() {
            journal.verified.clone_from(self.machine.written_map());
            let _ = self.flush_journal(journal).await;
        }
        result?;
        // How evenly the peers were kept busy: when each delivered its first
        // and its last chunk, against the end of the fetch.
        let ended = started.elapsed();
        tracing::info!(
            chunks = self.fetched_chunks,
            second_copies = self.machine.second_copies(),
            seconds = ended.as_secs_f64(),
            "fetch done"
        );
        for slot in &self.slots {
            if let Some((first, last)) = slot.delivered {
                tracing::info!(
                    peer = %slot.source.name,
                    bytes = slot.share.bytes,
                    first_ms = first.duration_since(started).as_millis() as u64,
                    idle_at_end_ms = ended.saturating_sub(last.duration_since(started)).as_millis() as u64,
                    "peer's part in the fetch"
                );
                let stats = slot.source.client.connection().stats();
                tracing::debug!(
                    peer = %slot.source.name,
                    mtu = stats.path.current_mtu,
                    lost_packets = stats.path.lost_packets,
                    congestion_events = stats.path.congestion_events,
                    rx_datagrams = stats.udp_rx.datagrams,
                    rx_bytes = stats.udp_rx.bytes,
                    rx = ?stats.frame_rx,
                    tx_datagrams = stats.udp_tx.datagrams,
                    tx = ?stats.frame_tx,
                    "connection so far"
                );
            }
        }
        shares = self.shares(&shares);
        Ok((shares, self.fetched_chunks, self.fetched_bytes))
    }

    /// Each peer's part; one that stopped serving the game and has not
    /// come back counts as dropped, with its reason.
    fn shares(&self, not_used: &[PeerShare]) -> Vec<PeerShare> {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut share = s.share.clone();
                if !share.dropped && self.machine.is_stopped(i) {
                    share.dropped = true;
                    share.reason = s.stopped.clone();
                } else if !share.dropped
                    && let Some(quiet) = self.machine.went_silent(i)
                {
                    share.dropped = true;
                    share.reason = Some(format!(
                        "it stopped answering (nothing for {:.1} s); its chunks came from the others",
                        quiet.as_secs_f64()
                    ));
                }
                share
            })
            .chain(not_used.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_gate_runs_no_more_jobs_at_once_than_it_has_threads() {
        let gate = BlockingGate::new(2);
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut jobs = JoinSet::new();
        for job in 0..12 {
            let (gate, running, most) = (gate.clone(), running.clone(), most.clone());
            jobs.spawn(async move {
                gate.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    // A write the disk is slow to take.
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                    job
                })
                .await
            });
        }
        let mut done: Vec<usize> = jobs
            .join_all()
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        done.sort_unstable();
        assert_eq!(done, (0..12).collect::<Vec<_>>(), "every job ran");
        assert_eq!(most.load(Ordering::SeqCst), 2, "two at once, never more");
    }
}
