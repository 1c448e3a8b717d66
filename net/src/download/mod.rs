//! Aggregated downloads: one game from every peer that holds the catalog's
//! version, at once, every chunk verified before it counts.
//!
//! 1. Sources: peers whose library shows the catalog's version.
//! 2. Manifests from all of them; the majority decides every file
//!    ([`lanspread_core::vote`]); a peer that disagrees is not used, and the
//!    report says why.
//! 3. Free space is checked; staging files are opened (resuming from the
//!    journal when one matches).
//! 4. Chunks are scheduled over the good peers with work stealing
//!    ([`lanspread_core::schedule`]), a few requests in flight per peer. A
//!    chunk whose bytes fail its hash drops the peer that sent it; a peer
//!    that errs or times out is dropped; its chunks go elsewhere. Peers that
//!    appear during the download with the same manifest are added.
//! 5. Verified chunks are written at their offset and journaled in batches.
//! 6. When every chunk is in, the payload is swapped into the game folder
//!    under `begin_operation`, `version.ini` last.

mod progress;
mod staging;
mod steal;

pub use progress::{DownloadProgress, DownloadReport, PeerShare, Phase, SpeedMeter};
pub use staging::{Journal, staging_dir, staging_root};

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lanspread_core::manifest::Manifest;
use lanspread_core::ops::{OpError, swap_in};
use lanspread_core::schedule::{ChunkPlan, ChunkRef, Completion, Scheduler};
use lanspread_core::transfers::TransferError;
use lanspread_core::vote::{VoteError, majority_manifest};
use lanspread_core::{Blake3Hash, GameCatalog, GameId, GameVersion, OutboundTransfers, Store};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::client::{ClientError, PeerClient};
use crate::platform::write_all_at;
use crate::runtime::PeerState;
use steal::{PeerRate, worth_stealing};

/// Requests in flight per peer (1 MiB each). 8 rather than 4 keeps a
/// single 1 Gbit seeder's link fuller (lab bench: 90 % -> 94 % of QUIC's
/// ceiling as first measured; 16 was no better); memory stays at 8 MiB per
/// peer.
pub const REQUESTS_PER_PEER: usize = 8;
/// Verified chunks waiting for the disk, at most, before no new request is
/// made: a disk slower than the network (or busy with the journal's sync)
/// holds the download back instead of filling memory.
pub const MAX_QUEUED_WRITES: usize = 16;
/// A chunk request that takes longer than this drops the peer.
pub const CHUNK_TIMEOUT: Duration = Duration::from_secs(20);
/// How long to wait for manifests.
pub const MANIFEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a first source when none is known yet (the peer
/// table may still be filling after start).
pub const SOURCE_WAIT: Duration = Duration::from_secs(5);
/// With every peer lost, how long to wait for a new one before giving up.
pub const LOST_GRACE: Duration = Duration::from_secs(3);
/// Free space kept beyond the payload.
pub const SPACE_MARGIN_BYTES: u64 = 32 * 1024 * 1024;
const TICK: Duration = Duration::from_millis(250);
const JOURNAL_EVERY: Duration = Duration::from_secs(1);

/// Why a download did not complete.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("{0} is not in the catalog")]
    UnknownGame(String),
    #[error(
        "no peer on the LAN has {game} at version {version} (the catalog's); ask its owner to update, or try later"
    )]
    NoSource { game: GameId, version: GameVersion },
    #[error("no peer sent a usable manifest of {game} {version}: {reasons}")]
    NoManifest {
        game: GameId,
        version: GameVersion,
        reasons: String,
    },
    #[error(transparent)]
    Vote(#[from] VoteError),
    #[error(
        "not enough free space in {dir}: {need} bytes needed, {available} free; free some space and try again"
    )]
    DiskFull {
        dir: String,
        need: u64,
        available: u64,
    },
    #[error(
        "every peer was lost before the download finished ({reasons}); it resumes where it stopped next time"
    )]
    AllPeersLost { reasons: String },
    #[error(transparent)]
    Busy(#[from] TransferError),
    #[error("writing the download: {0}")]
    Io(String),
    #[error(transparent)]
    Store(#[from] lanspread_core::store::StoreError),
    #[error(transparent)]
    Op(#[from] OpError),
    #[error("the download was cancelled; it resumes where it stopped next time")]
    Cancelled,
}

/// A peer that can serve the game.
#[derive(Debug, Clone)]
pub struct Source {
    pub id: String,
    pub name: String,
    pub client: PeerClient,
}

/// Everything one download needs.
pub struct DownloadJob {
    pub game: GameId,
    pub games_dir: PathBuf,
    pub store: Store,
    pub catalog: Arc<GameCatalog>,
    pub transfers: OutboundTransfers,
    pub peers: watch::Receiver<PeerState>,
    pub cancel: CancellationToken,
    pub on_progress: Box<dyn Fn(&DownloadProgress) + Send + Sync>,
}

impl std::fmt::Debug for DownloadJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadJob")
            .field("game", &self.game)
            .finish_non_exhaustive()
    }
}

/// Peers announcing `game` at `version` (and, when given, that manifest).
fn sources(
    state: &PeerState,
    game: &GameId,
    version: &GameVersion,
    digest: Option<Blake3Hash>,
) -> Vec<Source> {
    state
        .peers
        .values()
        .filter(|p| {
            p.games.iter().any(|g| {
                &g.id == game
                    && &g.version == version
                    && digest.is_none_or(|d| g.manifest_digest == d)
            })
        })
        .filter_map(|p| {
            Some(Source {
                id: p.id.clone(),
                name: p.name.clone(),
                client: p.client.clone()?,
            })
        })
        .collect()
}

fn share(source: &Source, reason: Option<String>) -> PeerShare {
    PeerShare {
        addr: source.client.remote_address(),
        name: source.name.clone(),
        bytes: 0,
        dropped: reason.is_some(),
        reason,
    }
}

/// Runs one download to the end: the game is in place and whole, or an
/// error says why not (and the staging stays for a resume).
pub async fn run_download(job: DownloadJob) -> Result<DownloadReport, DownloadError> {
    let started = Instant::now();
    let version = job
        .catalog
        .expected_version(&job.game)
        .cloned()
        .ok_or_else(|| DownloadError::UnknownGame(job.game.to_string()))?;
    let mut progress = DownloadProgress {
        game: job.game.to_string(),
        version: version.to_string(),
        phase: Phase::Manifests,
        total_bytes: 0,
        done_bytes: 0,
        bytes_per_sec: 0.0,
        eta_secs: None,
        peers: Vec::new(),
        error: None,
    };
    (job.on_progress)(&progress);

    // 1. Sources, waiting briefly for the peer table to fill.
    let mut peers = job.peers.clone();
    let wait = tokio::time::timeout(SOURCE_WAIT, async {
        let _ = peers
            .wait_for(|s| !sources(s, &job.game, &version, None).is_empty())
            .await;
    });
    tokio::select! {
        biased;
        () = job.cancel.cancelled() => return Err(DownloadError::Cancelled),
        _ = wait => {}
    }
    let candidates = sources(&job.peers.borrow(), &job.game, &version, None);
    if candidates.is_empty() {
        return Err(DownloadError::NoSource {
            game: job.game.clone(),
            version,
        });
    }

    // 2. Manifests and the vote.
    let mut asks = JoinSet::new();
    for (index, source) in candidates.iter().enumerate() {
        let client = source.client.clone();
        let (game, version) = (job.game.clone(), version.clone());
        asks.spawn(async move {
            let answer =
                tokio::time::timeout(MANIFEST_TIMEOUT, client.manifest(&game, &version)).await;
            (index, answer)
        });
    }
    let mut offered = Vec::new();
    let mut failures = Vec::new();
    while let Some(joined) = asks.join_next().await {
        let Ok((index, answer)) = joined else {
            continue;
        };
        match answer {
            Ok(Ok(manifest)) => offered.push((index, manifest)),
            Ok(Err(err)) => failures.push((index, format!("manifest: {err}"))),
            Err(_) => failures.push((index, "manifest: no answer in time".to_owned())),
        }
    }
    let mut shares: Vec<PeerShare> = Vec::new();
    let mut used: Vec<Source> = Vec::new();
    if offered.is_empty() {
        let reasons = failures
            .iter()
            .map(|(i, r)| format!("{}: {r}", candidates[*i].name))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(DownloadError::NoManifest {
            game: job.game.clone(),
            version,
            reasons,
        });
    }
    let vote = majority_manifest(offered)?;
    for index in &vote.agreeing {
        used.push(candidates[*index].clone());
    }
    for (index, reason) in &vote.rejected {
        let reason = format!("its manifest disagrees with the majority: {reason}");
        tracing::warn!(peer = %candidates[*index].name, "not used: {reason}");
        shares.push(share(&candidates[*index], Some(reason)));
    }
    for (index, reason) in failures {
        shares.push(share(&candidates[index], Some(reason)));
    }
    let manifest = Arc::new(vote.manifest);
    let plan = Arc::new(ChunkPlan::new(&manifest));
    progress.total_bytes = manifest.total_len_bytes();

    // 3. Space, then staging.
    check_space(&job, &manifest, &plan)?;
    let (staging, mut journal, resumed) = {
        let (games_dir, manifest, plan, store) = (
            job.games_dir.clone(),
            manifest.clone(),
            plan.clone(),
            job.store.clone(),
        );
        tokio::task::spawn_blocking(move || {
            staging::open_staging(&games_dir, &manifest, &plan, &store)
        })
        .await
        .map_err(|e| DownloadError::Io(e.to_string()))?
        .map_err(|e| DownloadError::Io(e.to_string()))?
    };
    job.store.put_journal(job.game.as_str(), &journal)?;

    // 4./5. Fetch.
    let mut fetch = Fetch {
        job: &job,
        version: &version,
        manifest: &manifest,
        plan: &plan,
        files: staging.files.clone(),
        scheduler: Scheduler::new(plan.len(), |i| journal.is_set(i)),
        slots: Vec::new(),
        requests: JoinSet::new(),
        tags: HashMap::new(),
        writes: JoinSet::new(),
        fetched_chunks: 0,
        fetched_bytes: 0,
        second_copies: 0,
    };
    progress.done_bytes = plan
        .chunks
        .iter()
        .enumerate()
        .filter(|(i, _)| journal.is_set(*i))
        .map(|(_, c)| c.len)
        .sum();
    progress.phase = Phase::Fetching;
    let fetch_started = Instant::now();
    for source in used {
        fetch.add_source(source);
    }
    let outcome = fetch.run(&mut journal, &mut progress, shares).await;
    let (peers_report, fetched_chunks, fetched_bytes) = match outcome {
        Ok(done) => done,
        Err(err) => {
            progress.phase = Phase::Failed;
            progress.error = Some(err.to_string());
            (job.on_progress)(&progress);
            return Err(err);
        }
    };
    drop(fetch);
    let fetch_seconds = fetch_started.elapsed().as_secs_f64();

    // 6. Everything verified: close the files, swap in under the guard.
    for file in &staging.files {
        file.sync_all()
            .map_err(|e| DownloadError::Io(e.to_string()))?;
    }
    let staging_dir = staging.dir.clone();
    drop(staging);
    progress.phase = Phase::Swapping;
    (job.on_progress)(&progress);
    let guard = job.transfers.begin_operation(&job.game).await?;
    {
        let (games_dir, game, version, store) = (
            job.games_dir.clone(),
            job.game.clone(),
            version.clone(),
            job.store.clone(),
        );
        tokio::task::spawn_blocking(move || {
            swap_in(&games_dir, &game, &staging_dir, &version, &store, &guard)
        })
        .await
        .map_err(|e| DownloadError::Io(e.to_string()))??;
    }
    job.store.delete_journal(job.game.as_str())?;
    let _ = std::fs::remove_dir(staging_root(&job.games_dir));
    progress.phase = Phase::Done;
    progress.done_bytes = progress.total_bytes;
    progress.eta_secs = Some(0);
    progress.peers = peers_report.clone();
    (job.on_progress)(&progress);
    Ok(DownloadReport {
        id: job.game.to_string(),
        version: version.to_string(),
        bytes: fetched_bytes,
        seconds: started.elapsed().as_secs_f64(),
        fetch_seconds,
        peers: peers_report,
        chunks_fetched: fetched_chunks,
        chunks_journaled: resumed.journaled,
        chunks_rescued: resumed.rescued,
        total_chunks: plan.len(),
    })
}

fn check_space(
    job: &DownloadJob,
    manifest: &Manifest,
    plan: &ChunkPlan,
) -> Result<(), DownloadError> {
    let journaled: u64 = job
        .store
        .journal::<Journal>(job.game.as_str())
        .ok()
        .flatten()
        .filter(|j| j.manifest_digest == manifest.digest())
        .map_or(0, |j| {
            plan.chunks
                .iter()
                .enumerate()
                .filter(|(i, _)| j.is_set(*i))
                .map(|(_, c)| c.len)
                .sum()
        });
    let need = manifest.total_len_bytes().saturating_sub(journaled);
    std::fs::create_dir_all(&job.games_dir).map_err(|e| DownloadError::Io(e.to_string()))?;
    let available =
        fs4::available_space(&job.games_dir).map_err(|e| DownloadError::Io(e.to_string()))?;
    if available < need.saturating_add(SPACE_MARGIN_BYTES) {
        return Err(DownloadError::DiskFull {
            dir: job.games_dir.display().to_string(),
            need,
            available,
        });
    }
    Ok(())
}

/// One peer in the fetch loop.
struct Slot {
    source: Source,
    in_flight: usize,
    share: PeerShare,
    rate: PeerRate,
    /// When its first and latest verified chunk arrived (for the log).
    delivered: Option<(Instant, Instant)>,
}

/// Why one chunk request failed.
#[derive(Debug)]
enum FetchError {
    Client(ClientError),
    BadHash,
    Timeout,
}

impl FetchError {
    fn reason(&self) -> String {
        match self {
            Self::Client(ClientError::Reset(code))
                if *code == u64::from(crate::proto::RESET_CANCELLED) =>
            {
                "it stopped serving the game (an update or remove started there)".to_owned()
            }
            Self::Client(err) => err.to_string(),
            Self::BadHash => "it sent bytes that fail the chunk hash".to_owned(),
            Self::Timeout => format!("a chunk took longer than {}s", CHUNK_TIMEOUT.as_secs()),
        }
    }
}

/// One request in flight.
struct Tag {
    handle: tokio::task::AbortHandle,
    asked: Instant,
    sharing: usize,
}

type Fetched = (usize, usize, Result<Vec<u8>, FetchError>);

struct Fetch<'a> {
    job: &'a DownloadJob,
    version: &'a GameVersion,
    manifest: &'a Arc<Manifest>,
    plan: &'a Arc<ChunkPlan>,
    files: Vec<Arc<std::fs::File>>,
    scheduler: Scheduler<usize>,
    slots: Vec<Slot>,
    requests: JoinSet<Fetched>,
    /// Each request in flight by (peer, chunk): its task (to abort a
    /// duplicate), when it was asked and how many that peer then had.
    tags: HashMap<(usize, usize), Tag>,
    writes: JoinSet<(usize, std::io::Result<()>)>,
    fetched_chunks: usize,
    fetched_bytes: u64,
    /// Chunks asked of a second peer while the first still had them.
    second_copies: usize,
}

impl Fetch<'_> {
    fn add_source(&mut self, source: Source) {
        tracing::info!(peer = %source.name, addr = %source.client.remote_address(), "using peer");
        let share = share(&source, None);
        self.slots.push(Slot {
            source,
            in_flight: 0,
            share,
            rate: PeerRate::default(),
            delivered: None,
        });
    }

    fn active(&self) -> usize {
        self.slots.iter().filter(|s| !s.share.dropped).count()
    }

    fn fill(&mut self) {
        let now = Instant::now();
        for peer in 0..self.slots.len() {
            while !self.slots[peer].share.dropped && self.slots[peer].in_flight < REQUESTS_PER_PEER
            {
                let (slots, tags, plan) = (&self.slots, &self.tags, &self.plan);
                let next = self.scheduler.next_for_where(&peer, |chunk, holders| {
                    let len = plan.chunks[chunk].len;
                    let stealer = &slots[peer];
                    let holders: Vec<(Option<f64>, Duration)> = holders
                        .iter()
                        .map(|h| {
                            let asked = tags.get(&(*h, chunk)).map_or(now, |t| t.asked);
                            let holder = &slots[*h];
                            (
                                holder.rate.request_secs(len, holder.in_flight.max(1)),
                                now.saturating_duration_since(asked),
                            )
                        })
                        .collect();
                    worth_stealing(
                        stealer.rate.request_secs(len, stealer.in_flight + 1),
                        &holders,
                    )
                });
                let Some(chunk) = next else {
                    break;
                };
                if self.tags.keys().any(|(_, c)| *c == chunk) {
                    self.second_copies += 1;
                }
                let chunk_ref: ChunkRef = self.plan.chunks[chunk].clone();
                let path = self.plan.path(self.manifest, chunk).to_string();
                let client = self.slots[peer].source.client.clone();
                let (game, version) = (self.job.game.clone(), self.version.clone());
                let handle = self.requests.spawn(async move {
                    let request =
                        client.chunk(&game, &version, &path, chunk_ref.offset, chunk_ref.len);
                    let result = match tokio::time::timeout(CHUNK_TIMEOUT, request).await {
                        Err(_) => Err(FetchError::Timeout),
                        Ok(Err(err)) => Err(FetchError::Client(err)),
                        Ok(Ok(bytes)) if Blake3Hash::of(&bytes) != chunk_ref.hash => {
                            Err(FetchError::BadHash)
                        }
                        Ok(Ok(bytes)) => Ok(bytes),
                    };
                    (peer, chunk, result)
                });
                self.slots[peer].in_flight += 1;
                let tag = Tag {
                    handle,
                    asked: Instant::now(),
                    sharing: self.slots[peer].in_flight,
                };
                self.tags.insert((peer, chunk), tag);
            }
        }
    }

    fn drop_peer(&mut self, peer: usize, reason: String) {
        let slot = &mut self.slots[peer];
        if slot.share.dropped {
            return;
        }
        tracing::warn!(peer = %slot.source.name, "dropped: {reason}");
        slot.share.dropped = true;
        slot.share.reason = Some(reason);
        slot.in_flight = 0;
        let theirs: Vec<(usize, usize)> = self
            .tags
            .keys()
            .filter(|(p, _)| *p == peer)
            .copied()
            .collect();
        for key in theirs {
            if let Some(tag) = self.tags.remove(&key) {
                tag.handle.abort();
            }
            self.scheduler.failed(key.1, &peer);
        }
    }

    /// Adds peers that appeared with the same manifest since the start.
    fn pick_up_new_sources(&mut self) {
        let state = self.job.peers.borrow().clone();
        let known: BTreeSet<String> = self.slots.iter().map(|s| s.source.id.clone()).collect();
        for source in sources(
            &state,
            &self.job.game,
            self.version,
            Some(self.manifest.digest()),
        ) {
            if !known.contains(&source.id) {
                self.add_source(source);
            }
        }
    }

    fn on_fetched(&mut self, peer: usize, chunk: usize, result: Result<Vec<u8>, FetchError>) {
        // A request whose tag is gone was already written off: aborted as a
        // duplicate, or its peer dropped. It may still finish before the
        // abort lands; its result must not be counted a second time.
        let Some(tag) = self.tags.remove(&(peer, chunk)) else {
            return;
        };
        if self.slots[peer].share.dropped {
            return;
        }
        self.slots[peer].in_flight = self.slots[peer].in_flight.saturating_sub(1);
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(err) => {
                self.scheduler.failed(chunk, &peer);
                self.drop_peer(peer, err.reason());
                return;
            }
        };
        let slot = &mut self.slots[peer];
        slot.rate
            .observe(bytes.len() as u64, tag.sharing, tag.asked.elapsed());
        let now = Instant::now();
        slot.delivered = Some(slot.delivered.map_or((now, now), |(first, _)| (first, now)));
        if let Completion::First { others } = self.scheduler.completed(chunk, &peer) {
            for other in others {
                if let Some(tag) = self.tags.remove(&(other, chunk)) {
                    tag.handle.abort();
                    self.slots[other].in_flight = self.slots[other].in_flight.saturating_sub(1);
                }
            }
            let len = bytes.len() as u64;
            self.slots[peer].share.bytes += len;
            self.fetched_chunks += 1;
            self.fetched_bytes += len;
            let file = self.files[self.plan.chunks[chunk].file].clone();
            let offset = self.plan.chunks[chunk].offset;
            self.writes
                .spawn_blocking(move || (chunk, write_all_at(&file, &bytes, offset)));
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
            for file in &files {
                file.sync_data()
                    .map_err(|e| DownloadError::Io(e.to_string()))?;
            }
            store.put_journal(game.as_str(), &journal)?;
            Ok(())
        })
    }

    async fn run(
        &mut self,
        journal: &mut Journal,
        progress: &mut DownloadProgress,
        mut shares: Vec<PeerShare>,
    ) -> Result<(Vec<PeerShare>, usize, u64), DownloadError> {
        let started = Instant::now();
        let mut tick = tokio::time::interval(TICK);
        let mut meter = SpeedMeter::new(Duration::from_secs(3));
        let mut journal_dirty = false;
        let mut last_journal = Instant::now();
        let mut flushing: Option<tokio::task::JoinHandle<Result<(), DownloadError>>> = None;
        let mut lost_since: Option<Instant> = None;
        let result = loop {
            if self.scheduler.is_finished() && self.writes.is_empty() {
                break Ok(());
            }
            if self.writes.len() < MAX_QUEUED_WRITES {
                self.fill();
            }
            if self.active() == 0 && self.requests.is_empty() && !self.scheduler.is_finished() {
                let since = *lost_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= LOST_GRACE {
                    let reasons = self
                        .slots
                        .iter()
                        .map(|s| {
                            format!(
                                "{}: {}",
                                s.source.name,
                                s.share.reason.clone().unwrap_or_default()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ");
                    break Err(DownloadError::AllPeersLost { reasons });
                }
            } else {
                lost_since = None;
            }
            tokio::select! {
                biased;
                () = self.job.cancel.cancelled() => break Err(DownloadError::Cancelled),
                Some(written) = self.writes.join_next(), if !self.writes.is_empty() => {
                    match written {
                        Ok((chunk, Ok(()))) => {
                            journal.set(chunk);
                            journal_dirty = true;
                            progress.done_bytes += self.plan.chunks[chunk].len;
                        }
                        Ok((_, Err(err))) => break Err(DownloadError::Io(err.to_string())),
                        Err(err) => break Err(DownloadError::Io(err.to_string())),
                    }
                }
                Some(fetched) = self.requests.join_next(), if !self.requests.is_empty() => {
                    // Aborted duplicates end as cancelled join errors: nothing to do.
                    if let Ok((peer, chunk, result)) = fetched {
                        self.on_fetched(peer, chunk, result);
                    }
                }
                flushed = async {
                    match flushing.as_mut() {
                        Some(flush) => flush.await,
                        None => std::future::pending().await,
                    }
                }, if flushing.is_some() => {
                    flushing = None;
                    match flushed {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => break Err(err),
                        Err(err) => break Err(DownloadError::Io(err.to_string())),
                    }
                }
                _ = tick.tick() => {
                    self.pick_up_new_sources();
                    if journal_dirty && flushing.is_none() && last_journal.elapsed() >= JOURNAL_EVERY {
                        flushing = Some(self.flush_journal(journal));
                        journal_dirty = false;
                        last_journal = Instant::now();
                    }
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
                journal.set(chunk);
                journal_dirty = true;
            }
        }
        // Whatever happened, keep what was verified for a resume.
        if let Some(flush) = flushing {
            let _ = flush.await;
        }
        if journal_dirty {
            let _ = self.flush_journal(journal).await;
        }
        result?;
        // How evenly the peers were kept busy: when each delivered its first
        // and its last chunk, against the end of the fetch.
        let ended = started.elapsed();
        tracing::info!(
            chunks = self.fetched_chunks,
            second_copies = self.second_copies,
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

    fn shares(&self, not_used: &[PeerShare]) -> Vec<PeerShare> {
        self.slots
            .iter()
            .map(|s| s.share.clone())
            .chain(not_used.iter().cloned())
            .collect()
    }
}
