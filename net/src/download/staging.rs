//! The staging folder and the download journal.
//!
//! Bytes land in `<games>/.lanspread-staging/<id>/`, a file per payload
//! file, preallocated to its size (sparse where the filesystem allows) and
//! opened again on demand through a bounded set of handles. The journal in
//! the store records which pieces are verified and written, in batches. On
//! resume, pieces the journal does not list are checked against their
//! chunks' hashes on disk, so a piece that was written but not yet journaled
//! when the process died is not fetched again: only pieces that were in
//! flight are.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lanspread_core::download::{HaveMap, PiecePlan};
use lanspread_core::layout::INTERNAL_PREFIX;
use lanspread_core::manifest::Manifest;
use lanspread_core::{Blake3Hash, GameId, GameVersion, Store};
use serde::{Deserialize, Serialize};

use crate::open_files::OpenFiles;

/// What the store keeps about an unfinished download.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    pub version: GameVersion,
    pub manifest_digest: Blake3Hash,
    /// The pieces of the plan verified and written.
    pub verified: HaveMap,
}

impl Journal {
    pub fn new(manifest: &Manifest, chunks: usize) -> Self {
        Self {
            version: manifest.version.clone(),
            manifest_digest: manifest.digest(),
            verified: HaveMap::empty(chunks),
        }
    }
}

/// `<games>/.lanspread-staging`.
pub fn staging_root(games_dir: &Path) -> PathBuf {
    games_dir.join(format!("{INTERNAL_PREFIX}-staging"))
}

/// `<games>/.lanspread-staging/<id>`.
pub fn staging_dir(games_dir: &Path, game: &GameId) -> PathBuf {
    staging_root(games_dir).join(game.as_str())
}

/// The staging files of one download.
#[derive(Debug)]
pub struct Staging {
    pub dir: PathBuf,
    pub files: Arc<OpenFiles>,
}

/// How much of a download was already there.
#[derive(Debug, Clone, Copy, Default)]
pub struct Resumed {
    /// Pieces the journal listed.
    pub journaled: usize,
    /// Pieces found whole on disk though the journal did not list them yet.
    pub rescued: usize,
}

/// Threads creating staging files at once.
const CREATE_THREADS: usize = 8;

/// Creates a staging file at its size and closes it again (a game of
/// 50,000 files is not 50,000 open handles). A resumed download's file
/// keeps what it holds when it has the right size already.
fn create_at_size(path: &Path, len: u64, resuming: bool) -> std::io::Result<()> {
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let current = if resuming { file.metadata()?.len() } else { 0 };
    if current != len {
        file.set_len(len)?;
    }
    Ok(())
}

/// Opens (or creates) the staging files for `manifest`, loading or resetting
/// the journal, and checks unjournaled chunks already on disk.
pub fn open_staging(
    games_dir: &Path,
    manifest: &Manifest,
    plan: &PiecePlan,
    store: &Store,
) -> std::io::Result<(Staging, Journal, Resumed)> {
    let dir = staging_dir(games_dir, &manifest.game);
    let digest = manifest.digest();
    let previous: Option<Journal> = store
        .journal(manifest.game.as_str())
        .ok()
        .flatten()
        .filter(|j: &Journal| j.manifest_digest == digest && j.verified.fits(plan.len()));
    let resuming = previous.is_some() && dir.is_dir();
    if !resuming && dir.exists() {
        lanspread_core::fsops::remove_dir_all(&dir)?;
    }
    let mut journal = match previous {
        Some(journal) if resuming => journal,
        _ => Journal::new(manifest, plan.len()),
    };
    std::fs::create_dir_all(&dir)?;
    let paths: Vec<PathBuf> = manifest
        .files
        .iter()
        .map(|entry| entry.path.join_to(&dir))
        .collect();
    // The folders first (a few hundred), then the files on several threads:
    // creating 50,000 files one after the other took 3 to 11 s here.
    let folders: std::collections::BTreeSet<&Path> =
        paths.iter().filter_map(|path| path.parent()).collect();
    for folder in folders {
        std::fs::create_dir_all(folder)?;
    }
    // A new download creates only its empty files here: the others are
    // created by their first write, while the network keeps busy (a
    // resumed one makes sure every file is there at its size, for the
    // check of what is on disk below).
    let sizes: Vec<(&PathBuf, u64)> = paths
        .iter()
        .zip(&manifest.files)
        .map(|(path, entry)| (path, entry.len_bytes))
        .filter(|(_, len)| resuming || *len == 0)
        .collect();
    let per_thread = sizes.len().div_ceil(CREATE_THREADS).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = sizes
            .chunks(per_thread)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .try_for_each(|(path, len)| create_at_size(path, *len, resuming))
                })
            })
            .collect();
        workers.into_iter().try_for_each(|worker| {
            worker
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("a staging thread panicked")))
        })
    })?;
    let files = Arc::new(OpenFiles::new(paths));
    let mut resumed = Resumed {
        journaled: journal.verified.count(),
        rescued: 0,
    };
    if resuming {
        let mut buffer = Vec::new();
        let mut zero_hashes = std::collections::HashMap::new();
        for piece in 0..plan.len() {
            if journal.verified.has(piece) {
                continue;
            }
            let mut whole = true;
            for chunk in plan.piece_chunks(piece) {
                buffer.resize(chunk.len as usize, 0);
                files.read_at(chunk.file, &mut buffer, chunk.offset)?;
                // Never-written regions read as zeros: no need to hash those,
                // unless the chunk really is all zeros.
                if buffer.iter().all(|b| *b == 0) {
                    let zero = *zero_hashes
                        .entry(chunk.len)
                        .or_insert_with(|| Blake3Hash::of(&vec![0u8; chunk.len as usize]));
                    if zero != chunk.hash {
                        whole = false;
                        break;
                    }
                }
                if Blake3Hash::of(&buffer) != chunk.hash {
                    whole = false;
                    break;
                }
            }
            if whole {
                journal.verified.set(piece);
                resumed.rescued += 1;
            }
        }
    }
    Ok((Staging { dir, files }, journal, resumed))
}
