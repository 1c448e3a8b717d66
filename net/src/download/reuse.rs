//! Delta updates: the chunks of the new version that an older copy on this
//! PC already holds are copied into staging instead of fetched.
//!
//! The older copies are the game's payload folder as it is (an outdated
//! version, or an incomplete one) and the staging folder of an unfinished
//! download of another manifest (an earlier version), set aside for this.
//! A payload folder's chunks come from the store's hash cache (hashed once
//! if the cache does not know them); a staging folder's from the manifest
//! kept beside its journal, for the pieces the journal lists. Every chunk
//! of the new manifest whose hash is among them, anywhere in an old copy,
//! is read, hashed again (the old copy may have changed on disk since: a
//! chunk that no longer matches is fetched), and written at its place in
//! staging. A piece counts when all its chunks were copied; it is
//! journaled like a fetched piece, so a killed update resumes without
//! copying or fetching it again. Nothing here writes to the old payload or
//! takes its guard: it stays as it is until the swap.

use std::collections::HashMap;
use std::path::PathBuf;
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

/// An older copy of the game on this PC.
#[derive(Debug, Clone)]
pub enum OldCopy {
    /// A payload folder (outdated or incomplete): its chunks come from the
    /// hash cache, or are hashed.
    Folder(PathBuf),
    /// The staging folder of an unfinished download of `manifest`: only
    /// the pieces its journal lists as verified hold real bytes.
    Staging {
        dir: PathBuf,
        manifest: Box<Manifest>,
        verified: lanspread_core::download::HaveMap,
    },
}

/// Where a chunk's bytes are in the old copies.
#[derive(Debug, Clone, Copy)]
struct OldChunk {
    copy: usize,
    file: usize,
    offset: u64,
}

/// Copies every piece of `plan` that the `old_copies` hold
/// whole and the journal does not list yet into the staging `files`,
/// marking it in `journal` (flushed to the store every second and at the
/// end). `copied` counts the bytes copied so far; `cancel` stops it
/// between two pieces.
pub fn reuse_old_payload(
    old_copies: &[OldCopy],
    (manifest, plan): (&Manifest, &PiecePlan),
    files: &OpenFiles,
    journal: &mut Journal,
    store: &Store,
    (copied, cancel): (&AtomicU64, &CancellationToken),
) -> std::io::Result<Reused> {
    let mut reused = Reused::default();
    let mut index: HashMap<Blake3Hash, OldChunk> = HashMap::new();
    let mut old_files = Vec::new();
    for old_copy in old_copies {
        let copy = old_files.len();
        match old_copy {
            OldCopy::Folder(dir) if dir.is_dir() => {
                let old = match build_manifest(dir, &manifest.game, &manifest.version, store) {
                    Ok(build) => build.manifest,
                    Err(err) => {
                        tracing::warn!("{} is not reused: {err}", dir.display());
                        continue;
                    }
                };
                for (file, entry) in old.files.iter().enumerate() {
                    for (offset, chunk) in entry.chunk_offsets() {
                        index
                            .entry(chunk.hash)
                            .or_insert(OldChunk { copy, file, offset });
                    }
                }
                old_files.push(OpenFiles::read_only(
                    old.files.iter().map(|f| f.path.join_to(dir)).collect(),
                ));
            }
            OldCopy::Staging {
                dir,
                manifest: old,
                verified,
            } if dir.is_dir() => {
                let old_plan = PiecePlan::new(old);
                for piece in (0..old_plan.len()).filter(|p| verified.has(*p)) {
                    for chunk in old_plan.piece_chunks(piece) {
                        index.entry(chunk.hash).or_insert(OldChunk {
                            copy,
                            file: chunk.file,
                            offset: chunk.offset,
                        });
                    }
                }
                old_files.push(OpenFiles::read_only(
                    old.files.iter().map(|f| f.path.join_to(dir)).collect(),
                ));
            }
            _ => {}
        }
    }
    if index.is_empty() {
        return Ok(reused);
    }
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
            let read = old_files[from.copy].read_at(from.file, &mut buffer, from.offset);
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
