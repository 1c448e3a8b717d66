//! Delta updates: the chunks of the new version that an older copy on this
//! PC already holds are copied into staging instead of fetched.
//!
//! The older copy is the game's payload folder as it is (an outdated
//! version, or an incomplete one). Its chunks come from the store's hash
//! cache (hashed once if the cache does not know them); every chunk of the
//! new manifest whose hash is among them, anywhere in the old payload, is
//! read, hashed again (the old copy may have changed on disk since it was
//! cached: a chunk that no longer matches is fetched), and written at its
//! place in staging. A piece counts when all its chunks were copied; it is
//! journaled like a fetched piece, so a killed update resumes without
//! copying or fetching it again. Nothing here writes to the old payload or
//! takes its guard: it stays as it is until the swap.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lanspread_core::download::PiecePlan;
use lanspread_core::manifest::{Manifest, build_manifest};
use lanspread_core::{Blake3Hash, GameId, Store};
use tokio_util::sync::CancellationToken;

use super::staging::Journal;
use crate::open_files::OpenFiles;

/// How often the journal is flushed while copying.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// What a reuse pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reused {
    pub pieces: usize,
    pub bytes: u64,
    /// Chunks that were in the old copy's cached list but no longer matched
    /// their hash on disk (fetched instead).
    pub stale_chunks: usize,
}

/// Where a chunk's bytes are in the old payload.
#[derive(Debug, Clone, Copy)]
struct OldChunk {
    file: usize,
    offset: u64,
}

/// Copies every piece of `plan` that the old payload in `game_dir` holds
/// whole and the journal does not list yet into the staging `files`,
/// marking it in `journal` (flushed to the store every second and at the
/// end). `copied` counts the bytes copied so far; `cancel` stops it
/// between two pieces.
pub fn reuse_old_payload(
    game_dir: &Path,
    (manifest, plan): (&Manifest, &PiecePlan),
    files: &OpenFiles,
    journal: &mut Journal,
    store: &Store,
    (copied, cancel): (&AtomicU64, &CancellationToken),
) -> std::io::Result<Reused> {
    let mut reused = Reused::default();
    if !game_dir.is_dir() {
        return Ok(reused);
    }
    let old = match build_manifest(game_dir, &manifest.game, &manifest.version, store) {
        Ok(build) => build.manifest,
        Err(err) => {
            tracing::warn!("the old copy of {} is not reused: {err}", manifest.game);
            return Ok(reused);
        }
    };
    let mut index: HashMap<Blake3Hash, OldChunk> = HashMap::new();
    for (file, entry) in old.files.iter().enumerate() {
        for (offset, chunk) in entry.chunk_offsets() {
            index.entry(chunk.hash).or_insert(OldChunk { file, offset });
        }
    }
    if index.is_empty() {
        return Ok(reused);
    }
    let old_files =
        OpenFiles::read_only(old.files.iter().map(|f| f.path.join_to(game_dir)).collect());
    let mut buffer = Vec::new();
    let mut last_flush = Instant::now();
    for piece in 0..plan.len() {
        if cancel.is_cancelled() {
            break;
        }
        if journal.verified.has(piece) {
            continue;
        }
        let chunks = plan.piece_chunks(piece);
        if !chunks.iter().all(|c| index.contains_key(&c.hash)) {
            continue;
        }
        let mut whole = true;
        for chunk in chunks {
            let Some(from) = index.get(&chunk.hash) else {
                whole = false;
                break;
            };
            buffer.resize(chunk.len as usize, 0);
            let read = old_files.read_at(from.file, &mut buffer, from.offset);
            if read.is_err() || Blake3Hash::of(&buffer) != chunk.hash {
                // Changed on disk since it was hashed: fetch it.
                reused.stale_chunks += 1;
                index.remove(&chunk.hash);
                whole = false;
                break;
            }
            files.write_at(chunk.file, &buffer, chunk.offset)?;
        }
        if !whole {
            continue;
        }
        journal.verified.set(piece);
        reused.pieces += 1;
        reused.bytes += plan.pieces[piece].len;
        copied.store(reused.bytes, Ordering::Relaxed);
        if last_flush.elapsed() >= FLUSH_EVERY {
            flush(files, journal, store, &manifest.game)?;
            last_flush = Instant::now();
        }
    }
    flush(files, journal, store, &manifest.game)?;
    Ok(reused)
}

fn flush(
    files: &OpenFiles,
    journal: &Journal,
    store: &Store,
    game: &GameId,
) -> std::io::Result<()> {
    files.sync_written()?;
    store
        .put_journal(game.as_str(), journal)
        .map_err(std::io::Error::other)
}
