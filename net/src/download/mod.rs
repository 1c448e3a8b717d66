//! Aggregated downloads: one game from every peer that holds the catalog's
//! version, at once, every chunk verified before it counts; and, while it
//! runs, served in part to the other downloaders of the same game.
//!
//! 1. Sources: peers whose library shows the catalog's version, whole.
//! 2. Manifests from all of them; the majority decides every file
//!    ([`lanspread_core::vote`]); a peer that disagrees is not used, and the
//!    report says why. Partial peers (still downloading) never vote.
//! 3. Free space is checked; staging files are opened (resuming from the
//!    journal when one matches), and the download is announced as partial.
//! 4. The core's [`DownloadMachine`] decides what to ask whom (partial peers
//!    with the same manifest digest too), when a peer is stalled or lying,
//!    and when a second copy is worth it; the driver in `fetch` performs its
//!    actions: requests (bytes counted as they arrive), cancellations,
//!    writes, journal flushes.
//! 5. When every chunk is in, the partial announcement goes and the payload
//!    is swapped into the game folder under `begin_operation` (which ends
//!    the partial uploads), `version.ini` last.

mod fetch;
mod progress;
mod reuse;
mod staging;

pub use progress::{DownloadProgress, DownloadReport, PeerShare, Phase, SpeedMeter};
pub use staging::{Journal, staging_dir, staging_root};

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lanspread_core::download::{DownloadMachine, PiecePlan};
use lanspread_core::manifest::{Manifest, remember_payload};
use lanspread_core::ops::{OpError, swap_in};
use lanspread_core::transfers::TransferError;
use lanspread_core::vote::{VoteError, majority_by_host};
use lanspread_core::{Blake3Hash, GameCatalog, GameId, GameVersion, OutboundTransfers, Store};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use fetch::Fetch;

use crate::client::PeerClient;
use crate::proto::PartialHave;
use crate::runtime::PeerState;
use crate::swarm::{PartialGame, PartialShares};

/// How long to wait for manifests.
pub const MANIFEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Why a peer is not used when the catalog pins the manifest.
const PIN_MISMATCH: &str = "its copy is not the one the organiser's catalog pins";
/// Manifests fetched at once for a vote (each may be up to 48 MiB).
pub const MAX_MANIFEST_FETCHES: usize = 4;
/// How long to wait, at most, for the peer table to settle before the vote:
/// a first source, every typed-in address answered once, and
/// [`SETTLE_QUIET`] without a peer joining, leaving or changing what it
/// holds whole; with mDNS off, as soon as every address typed in or
/// learned by peer exchange answered once (nobody else can appear).
pub const SOURCE_WAIT: Duration = Duration::from_secs(5);
/// How long the peer table must have been quiet before a vote.
pub const SETTLE_QUIET: Duration = Duration::from_millis(500);
/// Free space kept beyond the payload.
pub const SPACE_MARGIN_BYTES: u64 = 32 * 1024 * 1024;
/// How often progress is published, stalls are checked and new sources
/// picked up.
const TICK: Duration = Duration::from_millis(250);
/// How long a download that ends waits for its partial uploads to stop.
const UPLOADS_END_WAIT: Duration = Duration::from_secs(5);

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
        "the games folder {dir} is on a FAT32 drive, which cannot hold a file over 4 GiB, and {path} is {len} bytes: format the drive as exFAT or NTFS, or choose a games folder on another drive"
    )]
    FileTooBigForDrive { dir: String, path: String, len: u64 },
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
    #[error(
        "the copy of {game} downloaded no longer has the majority of the PCs holding it ({detail}); nothing was installed, and the verified chunks are kept"
    )]
    MajorityLost { game: GameId, detail: String },
}

/// Whose voice a peer at `addr` is in the vote: its host (IP address). On
/// loopback, peers on this very PC (tests, or instances a user started
/// side by side), each port is its own.
fn voter(addr: SocketAddr) -> (IpAddr, u16) {
    let ip = addr.ip().to_canonical();
    if ip.is_loopback() {
        (ip, addr.port())
    } else {
        (ip, 0)
    }
}

/// Checks, just before the swap, that `digest` (the manifest downloaded)
/// still has a strict majority of the hosts holding the game whole at
/// `version` in the peer table now (each host counted once, with the
/// digest most of its peers announce). With no whole holder left, the
/// vote taken at the start stands.
fn still_the_majority(
    state: &PeerState,
    game: &GameId,
    version: &GameVersion,
    digest: &lanspread_core::Blake3Hash,
) -> Result<(), String> {
    let mut hosts: BTreeMap<(IpAddr, u16), BTreeMap<lanspread_core::Blake3Hash, usize>> =
        BTreeMap::new();
    for peer in state.peers.values() {
        if let Some(held) = peer
            .games
            .iter()
            .find(|g| &g.id == game && &g.version == version && g.is_whole())
        {
            *hosts
                .entry(voter(peer.addr))
                .or_default()
                .entry(held.manifest_digest)
                .or_default() += 1;
        }
    }
    let agreeing = hosts
        .values()
        .filter(|offers| {
            offers
                .iter()
                .max_by_key(|(_, count)| **count)
                .is_some_and(|(theirs, _)| theirs == digest)
        })
        .count();
    if hosts.is_empty() || agreeing * 2 > hosts.len() {
        Ok(())
    } else {
        Err(format!(
            "{agreeing} of the {} PCs holding it now have this copy",
            hosts.len()
        ))
    }
}

/// A peer that can serve the game.
#[derive(Debug, Clone)]
pub struct Source {
    pub id: String,
    pub name: String,
    pub client: PeerClient,
    /// `None` when it holds the whole game; else what it holds and fetches.
    pub partial: Option<PartialHave>,
    /// The revision of its library this was read from.
    pub revision: Option<u64>,
}

/// Everything one download needs.
pub struct DownloadJob {
    pub game: GameId,
    pub games_dir: PathBuf,
    pub store: Store,
    pub catalog: Arc<GameCatalog>,
    pub transfers: OutboundTransfers,
    pub peers: watch::Receiver<PeerState>,
    /// The connections of the peers in `peers`, by id.
    pub connections: crate::discovery::Connections,
    /// Where this download announces itself as partial and serves from.
    pub partials: PartialShares,
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

/// Peers announcing `game` at `version`: whole ones, or (with a digest)
/// whole and partial ones with that manifest.
fn sources(
    state: &PeerState,
    connections: &crate::discovery::Connections,
    game: &GameId,
    version: &GameVersion,
    digest: Option<Blake3Hash>,
) -> Vec<Source> {
    state
        .peers
        .values()
        .filter_map(|p| {
            let announced = p.games.iter().find(|g| {
                &g.id == game
                    && &g.version == version
                    && match digest {
                        None => g.is_whole(),
                        Some(d) => g.manifest_digest == d,
                    }
            })?;
            Some(Source {
                id: p.id.clone(),
                name: p.name.clone(),
                client: connections.get(&p.id)?,
                partial: announced.partial.clone(),
                revision: p.library_revision,
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

/// Waits, at most [`SOURCE_WAIT`], until the peer table settled: a source
/// of `version` is present, every typed-in address answered once, and no
/// peer joined, left or changed what it holds whole for [`SETTLE_QUIET`].
async fn wait_until_settled(job: &DownloadJob, version: &GameVersion) -> Result<(), DownloadError> {
    let mut peers = job.peers.clone();
    let settle_by = tokio::time::Instant::now() + SOURCE_WAIT;
    loop {
        let quiet_in = {
            let state = peers.borrow_and_update();
            let quiet_for = state.table_changed_at.map_or(SETTLE_QUIET, |t| t.elapsed());
            let ready = !sources(&state, &job.connections, &job.game, version, None).is_empty()
                && state.unanswered_typed.is_empty();
            // Without mDNS, nobody appears on their own: once every address
            // typed in or learned from the others answered (or failed), the
            // table is complete and there is nothing to wait for.
            let complete = !state.discovery_enabled && state.unanswered_exchanged.is_empty();
            ready.then(|| {
                if complete {
                    Duration::ZERO
                } else {
                    SETTLE_QUIET.saturating_sub(quiet_for)
                }
            })
        };
        if quiet_in == Some(Duration::ZERO) || tokio::time::Instant::now() >= settle_by {
            return Ok(());
        }
        let wake = quiet_in.map_or(settle_by, |d| tokio::time::Instant::now() + d);
        tokio::select! {
            biased;
            () = job.cancel.cancelled() => return Err(DownloadError::Cancelled),
            _ = peers.changed() => {}
            () = tokio::time::sleep_until(wake.min(settle_by)) => {}
        }
    }
}

/// Runs one download to the end: the game is in place and whole, or an
/// error says why not (and the staging stays for a resume).
pub async fn run_download(job: DownloadJob) -> Result<DownloadReport, DownloadError> {
    let started = Instant::now();
    let started_at_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
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
        reused_bytes: 0,
    };
    (job.on_progress)(&progress);

    // 1. Sources, once the peer table settled (for a bounded time): the
    //    vote is taken over everyone present, not whoever answered first.
    wait_until_settled(&job, &version).await?;
    tracing::debug!(after = ?started.elapsed(), "the peer table settled");
    let candidates = sources(
        &job.peers.borrow(),
        &job.connections,
        &job.game,
        &version,
        None,
    );
    if candidates.is_empty() {
        return Err(DownloadError::NoSource {
            game: job.game.clone(),
            version,
        });
    }

    // 2. Manifests and the vote. With the organiser's pin there is no vote:
    //    only peers announcing the pinned manifest are asked, and only a
    //    manifest with that digest is taken.
    let pinned = job
        .catalog
        .get(&job.game)
        .and_then(lanspread_core::CatalogEntry::pinned_manifest);
    let announcing_pin: Vec<String> = pinned.map_or_else(Vec::new, |pin| {
        sources(
            &job.peers.borrow(),
            &job.connections,
            &job.game,
            &version,
            Some(pin),
        )
        .into_iter()
        .map(|s| s.id)
        .collect()
    });
    let not_pinned = |source: &Source| pinned.is_some() && !announcing_pin.contains(&source.id);
    // At most a few at once: each may be 48 MiB.
    let fetches = Arc::new(tokio::sync::Semaphore::new(MAX_MANIFEST_FETCHES));
    let mut asks = JoinSet::new();
    let mut failures = Vec::new();
    for (index, source) in candidates.iter().enumerate() {
        if not_pinned(source) {
            failures.push((index, PIN_MISMATCH.to_owned()));
            continue;
        }
        let client = source.client.clone();
        let (game, version) = (job.game.clone(), version.clone());
        let fetches = fetches.clone();
        asks.spawn(async move {
            let _turn = fetches.acquire_owned().await;
            let answer =
                tokio::time::timeout(MANIFEST_TIMEOUT, client.manifest(&game, &version)).await;
            (index, answer)
        });
    }
    let mut offered = Vec::new();
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
    if let Some(pin) = pinned {
        let (right, wrong): (Vec<_>, Vec<_>) =
            offered.into_iter().partition(|(_, m)| m.digest() == pin);
        failures.extend(wrong.into_iter().map(|(i, _)| (i, PIN_MISMATCH.to_owned())));
        offered = right;
    }
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
    let offered = offered
        .into_iter()
        .map(|(index, manifest)| {
            let host = voter(candidates[index].client.remote_address());
            (index, host, manifest)
        })
        .collect();
    // Pinned: every offer left is the pinned manifest; the "vote" agrees.
    let vote = majority_by_host(offered)?;
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
    let plan = Arc::new(PiecePlan::new(&manifest));
    tracing::debug!(
        after = ?started.elapsed(),
        files = manifest.files.len(),
        pieces = plan.len(),
        "manifests fetched and voted on"
    );
    progress.total_bytes = manifest.total_len_bytes();

    // 3. Space, then staging. An unfinished download of another manifest
    //    (an earlier version) is set aside for the reuse pass, not deleted.
    check_space(&job, &manifest, &plan)?;
    let previous_staging = set_aside_other_staging(&job, &manifest);
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
    tracing::debug!(after = ?started.elapsed(), "staging opened");
    job.store.put_journal(job.game.as_str(), &journal)?;
    // The manifest beside its journal: if the catalog moves on before this
    // download finishes, the next one knows what the verified pieces hold.
    job.store
        .put_journal(&journal_manifest_key(&job.game), &*manifest)?;

    // 3b. What an older copy here already holds is copied, not fetched.
    progress.done_bytes = journaled_bytes(&plan, &journal);
    let mut old_copies = vec![reuse::OldCopy::Folder(lanspread_core::layout::game_dir(
        &job.games_dir,
        &job.game,
    ))];
    let previous_dir = previous_staging.as_ref().map(|copy| match copy {
        reuse::OldCopy::Staging { dir, .. } | reuse::OldCopy::Folder(dir) => dir.clone(),
    });
    old_copies.extend(previous_staging);
    let reused = reuse_older_copy(
        &job,
        (&manifest, &plan),
        (&old_copies, &staging),
        &mut journal,
        &mut progress,
    )
    .await;
    if let Some(dir) = previous_dir
        && let Err(err) = lanspread_core::fsops::remove_dir_all(&dir)
    {
        tracing::warn!("left for later: {}: {err}", dir.display());
    }
    let reused = reused?;
    tracing::debug!(after = ?started.elapsed(), "journal stored, older copies reused");

    // 4./5. Fetch, serving what is verified to the others meanwhile.
    let partial = Arc::new(PartialGame::new(
        manifest.clone(),
        plan.clone(),
        staging.files.clone(),
    ));
    job.partials.insert(partial.clone());
    progress.done_bytes = journaled_bytes(&plan, &journal);
    progress.phase = Phase::Fetching;
    let fetch_started = Instant::now();
    let machine =
        DownloadMachine::for_plan(&plan, &journal.verified, rand::random(), fetch_started);
    let mut fetch = Fetch::new(
        &job,
        &version,
        (&manifest, &plan),
        staging.files.clone(),
        machine,
        &partial,
    );
    for source in used {
        fetch.add_source(source);
    }
    let outcome = fetch.run(&mut journal, &mut progress, shares).await;
    drop(fetch);
    // The partial announcement goes first; then its uploads end (the swap's
    // `begin_operation` waits for them, and so does a download that stops).
    job.partials.remove(&job.game);
    let (peers_report, fetched_chunks, fetched_bytes) = match outcome {
        Ok(done) => done,
        Err(err) => {
            end_partial_uploads(&job).await;
            progress.phase = Phase::Failed;
            progress.error = Some(err.to_string());
            (job.on_progress)(&progress);
            return Err(err);
        }
    };
    drop(partial);
    let fetch_seconds = fetch_started.elapsed().as_secs_f64();

    // 6. Everything verified: close the files, swap in under the guard.
    staging
        .files
        .sync_written()
        .map_err(|e| DownloadError::Io(e.to_string()))?;
    staging.files.close_all();
    let staging_dir = staging.dir.clone();
    drop(staging);
    // (The table's read lock is let go before progress is published.) A
    // pinned manifest needs no majority.
    let majority = if pinned.is_some() {
        Ok(())
    } else {
        still_the_majority(&job.peers.borrow(), &job.game, &version, &manifest.digest())
    };
    if let Err(detail) = majority {
        progress.phase = Phase::Failed;
        progress.error = Some(detail.clone());
        (job.on_progress)(&progress);
        return Err(DownloadError::MajorityLost {
            game: job.game.clone(),
            detail,
        });
    }
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
        let manifest = manifest.clone();
        tokio::task::spawn_blocking(move || {
            swap_in(&games_dir, &game, &staging_dir, &version, &store, &guard)?;
            // Every chunk was verified: the rescan that announces the game
            // whole takes its hashes from here instead of reading it again.
            let game_dir = lanspread_core::layout::game_dir(&games_dir, &game);
            if let Err(err) = remember_payload(&game_dir, &manifest, &store) {
                tracing::warn!("the manifest cache missed the new payload: {err}");
            }
            Ok::<(), OpError>(())
        })
        .await
        .map_err(|e| DownloadError::Io(e.to_string()))??;
    }
    job.store.delete_journal(job.game.as_str())?;
    job.store.delete_journal(&journal_manifest_key(&job.game))?;
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
        start_seconds: fetch_started.duration_since(started).as_secs_f64(),
        started_at_unix_ms,
        peers: peers_report,
        reused_bytes: reused.bytes,
        pieces_reused: reused.pieces,
        pieces_fetched: fetched_chunks,
        pieces_journaled: resumed.journaled,
        pieces_rescued: resumed.rescued,
        total_pieces: plan.len(),
    })
}

/// The bytes of the pieces the journal lists.
fn journaled_bytes(plan: &PiecePlan, journal: &Journal) -> u64 {
    plan.pieces
        .iter()
        .enumerate()
        .filter(|(i, _)| journal.verified.has(*i))
        .map(|(_, p)| p.len)
        .sum()
}

/// Where the manifest of a game's unfinished download is kept (game ids
/// never hold `#`).
fn journal_manifest_key(game: &GameId) -> String {
    format!("{game}#manifest")
}

/// Moves the staging folder of an unfinished download of another manifest
/// of this game (an earlier version) to `<id>.previous` beside it, with
/// what its journal says it verified, so the reuse pass can copy those
/// pieces.
fn set_aside_other_staging(job: &DownloadJob, manifest: &Manifest) -> Option<reuse::OldCopy> {
    let dir = staging::staging_dir(&job.games_dir, &job.game);
    let journal = job
        .store
        .journal::<Journal>(job.game.as_str())
        .ok()
        .flatten()
        .filter(|j| j.manifest_digest != manifest.digest())?;
    let old: Manifest = job
        .store
        .journal(&journal_manifest_key(&job.game))
        .ok()
        .flatten()
        .filter(|m: &Manifest| m.digest() == journal.manifest_digest && m.validate().is_ok())?;
    if !dir.is_dir() {
        return None;
    }
    let previous = dir.with_file_name(format!("{}.previous", job.game));
    let _ = lanspread_core::fsops::remove_dir_all(&previous);
    if let Err(err) = lanspread_core::fsops::rename(&dir, &previous) {
        tracing::warn!("the earlier download's staging is not reused: {err}");
        return None;
    }
    Some(reuse::OldCopy::Staging {
        dir: previous,
        manifest: Box::new(old),
        verified: journal.verified,
    })
}

/// Runs the reuse pass on a blocking thread, publishing its progress.
async fn reuse_older_copy(
    job: &DownloadJob,
    (manifest, plan): (&Arc<Manifest>, &Arc<PiecePlan>),
    (old_copies, staging): (&[reuse::OldCopy], &staging::Staging),
    journal: &mut Journal,
    progress: &mut DownloadProgress,
) -> Result<reuse::Reused, DownloadError> {
    let exists = |copy: &reuse::OldCopy| match copy {
        reuse::OldCopy::Folder(dir) | reuse::OldCopy::Staging { dir, .. } => dir.is_dir(),
    };
    if !old_copies.iter().any(exists) {
        return Ok(reuse::Reused::default());
    }
    let old_copies = old_copies.to_vec();
    progress.phase = Phase::Reusing;
    (job.on_progress)(progress);
    let copied = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut work = {
        let (manifest, plan, files, store) = (
            manifest.clone(),
            plan.clone(),
            staging.files.clone(),
            job.store.clone(),
        );
        let (copied, cancel, mut journal) = (copied.clone(), job.cancel.clone(), journal.clone());
        tokio::task::spawn_blocking(move || {
            let reused = reuse::reuse_old_payload(
                &old_copies,
                (&manifest, &plan),
                &files,
                &mut journal,
                &store,
                (&copied, &cancel),
            );
            (reused, journal)
        })
    };
    let before = progress.done_bytes;
    let mut tick = tokio::time::interval(TICK);
    let (reused, after) = loop {
        tokio::select! {
            done = &mut work => break done.map_err(|e| DownloadError::Io(e.to_string()))?,
            _ = tick.tick() => {
                let bytes = copied.load(std::sync::atomic::Ordering::Relaxed);
                progress.reused_bytes = bytes;
                progress.done_bytes = before + bytes;
                (job.on_progress)(progress);
            }
        }
    };
    let reused = reused.map_err(|e| DownloadError::Io(e.to_string()))?;
    *journal = after;
    if job.cancel.is_cancelled() {
        return Err(DownloadError::Cancelled);
    }
    progress.reused_bytes = reused.bytes;
    progress.done_bytes = before + reused.bytes;
    if reused.pieces > 0 || reused.stale_chunks > 0 {
        tracing::info!(
            pieces = reused.pieces,
            bytes = reused.bytes,
            stale_chunks = reused.stale_chunks,
            "reused from the older copy"
        );
    }
    Ok(reused)
}

fn check_space(
    job: &DownloadJob,
    manifest: &Manifest,
    plan: &PiecePlan,
) -> Result<(), DownloadError> {
    let journaled: u64 = job
        .store
        .journal::<Journal>(job.game.as_str())
        .ok()
        .flatten()
        .filter(|j| j.manifest_digest == manifest.digest())
        .map_or(0, |j| {
            plan.pieces
                .iter()
                .enumerate()
                .filter(|(i, _)| j.verified.has(*i))
                .map(|(_, p)| p.len)
                .sum()
        });
    let need = manifest.total_len_bytes().saturating_sub(journaled);
    std::fs::create_dir_all(&job.games_dir).map_err(|e| DownloadError::Io(e.to_string()))?;
    check_file_sizes(
        &job.games_dir,
        manifest,
        lanspread_core::volume::max_file_bytes(&job.games_dir),
    )?;
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

/// A games folder on FAT32 (a USB stick) cannot hold a file over 4 GiB:
/// said before anything is fetched, not as a bare write error mid-way.
fn check_file_sizes(
    games_dir: &std::path::Path,
    manifest: &Manifest,
    max_file_bytes: Option<u64>,
) -> Result<(), DownloadError> {
    let Some(max) = max_file_bytes else {
        return Ok(());
    };
    match manifest.files.iter().find(|f| f.len_bytes > max) {
        Some(file) => Err(DownloadError::FileTooBigForDrive {
            dir: games_dir.display().to_string(),
            path: file.path.to_string(),
            len: file.len_bytes,
        }),
        None => Ok(()),
    }
}

/// Cancels the uploads this PC still serves from a download that ended
/// and waits (bounded) until none is left, so its staging files are closed.
async fn end_partial_uploads(job: &DownloadJob) {
    let wait = job.transfers.begin_operation(&job.game);
    match tokio::time::timeout(UPLOADS_END_WAIT, wait).await {
        Ok(Ok(guard)) => drop(guard),
        Ok(Err(err)) => tracing::debug!("partial uploads not waited for: {err}"),
        Err(_) => tracing::warn!("partial uploads did not end in time"),
    }
}

/// What updating a game would move, once the new manifest is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UpdatePlan {
    /// Bytes to fetch from the other PCs.
    pub download_bytes: u64,
    /// Bytes an older copy on this PC already holds (copied, not fetched).
    pub reused_bytes: u64,
}

/// Works out an update's [`UpdatePlan`] without downloading anything: the
/// catalog version's manifest most whole peers announce (the organiser's
/// pin if there is one) is fetched from one of them, and its pieces are
/// looked up in the older copy's chunks (the hash cache; hashed once if the
/// cache does not know them). An estimate for the Update button: the
/// download itself votes again and verifies everything.
pub async fn plan_update(
    game: &GameId,
    games_dir: &std::path::Path,
    store: &Store,
    catalog: &GameCatalog,
    peers: &PeerState,
    connections: &crate::discovery::Connections,
) -> Result<UpdatePlan, DownloadError> {
    let version = catalog
        .expected_version(game)
        .cloned()
        .ok_or_else(|| DownloadError::UnknownGame(game.to_string()))?;
    let mut offers: BTreeMap<Blake3Hash, (usize, Source)> = BTreeMap::new();
    for peer in peers.peers.values() {
        let Some(announced) = peer
            .games
            .iter()
            .find(|g| &g.id == game && g.version == version && g.is_whole())
        else {
            continue;
        };
        let Some(client) = connections.get(&peer.id) else {
            continue;
        };
        let entry = offers.entry(announced.manifest_digest).or_insert_with(|| {
            let source = Source {
                id: peer.id.clone(),
                name: peer.name.clone(),
                client,
                partial: None,
                revision: peer.library_revision,
            };
            (0, source)
        });
        entry.0 += 1;
    }
    let pinned = catalog
        .get(game)
        .and_then(lanspread_core::CatalogEntry::pinned_manifest);
    let chosen = match pinned {
        Some(pin) => offers.get(&pin).map(|(_, source)| (pin, source)),
        None => offers
            .iter()
            .max_by_key(|(_, (count, _))| *count)
            .map(|(digest, (_, source))| (*digest, source)),
    };
    let Some((digest, source)) = chosen else {
        return Err(DownloadError::NoSource {
            game: game.clone(),
            version,
        });
    };
    let manifest = tokio::time::timeout(MANIFEST_TIMEOUT, source.client.manifest(game, &version))
        .await
        .map_err(|_| DownloadError::Io("no manifest in time".into()))?
        .map_err(|e| DownloadError::Io(format!("manifest from {}: {e}", source.name)))?;
    if manifest.digest() != digest {
        return Err(DownloadError::Io(format!(
            "{} sent another manifest than it announces",
            source.name
        )));
    }
    let (game_dir, store) = (
        lanspread_core::layout::game_dir(games_dir, game),
        store.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let plan = PiecePlan::new(&manifest);
        let old = if game_dir.is_dir() {
            lanspread_core::manifest::build_manifest(
                &game_dir,
                &manifest.game,
                &manifest.version,
                &store,
            )
            .map(|b| b.manifest.files)
            .unwrap_or_default()
        } else {
            Vec::new()
        };
        let held: std::collections::HashSet<Blake3Hash> = old
            .iter()
            .flat_map(|f| f.chunks.iter().map(|c| c.hash))
            .collect();
        let mut estimate = UpdatePlan {
            download_bytes: 0,
            reused_bytes: 0,
        };
        for (index, piece) in plan.pieces.iter().enumerate() {
            if plan
                .piece_chunks(index)
                .iter()
                .all(|c| held.contains(&c.hash))
            {
                estimate.reused_bytes += piece.len;
            } else {
                estimate.download_bytes += piece.len;
            }
        }
        estimate
    })
    .await
    .map_err(|e| DownloadError::Io(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_4_gib_is_refused_for_a_fat32_games_folder_before_any_fetch() {
        let file = |path: &str, len_bytes: u64| lanspread_core::manifest::FileEntry {
            path: lanspread_core::validate_relative_path(path).unwrap(),
            len_bytes,
            chunks: Vec::new(),
        };
        let manifest = Manifest {
            game: GameId::parse("ut2004").unwrap(),
            version: GameVersion::parse("1").unwrap(),
            files: vec![file("Maps/huge.pak", 5 << 30), file("readme.txt", 10)],
        };
        let fat = Some(lanspread_core::volume::FAT_MAX_FILE_BYTES);
        let dir = std::path::Path::new("E:/games");
        let err = check_file_sizes(dir, &manifest, fat)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("FAT32") && err.contains("Maps/huge.pak") && err.contains("exFAT or NTFS"),
            "{err}"
        );
        assert!(check_file_sizes(dir, &manifest, None).is_ok());
        let small = Manifest {
            files: vec![file("a.pak", (4 << 30) - 1)],
            ..manifest
        };
        assert!(check_file_sizes(dir, &small, fat).is_ok());
    }
}
