//! Building a manifest from a game folder on disk: every payload file read
//! once (large quiet files through a memory map, the rest read in windows),
//! cut where its content says ([`crate::cdc`]) and each byte hashed once, on
//! every core. The hashes are cached in the store keyed by (path, size,
//! mtime), so scanning an unchanged game again costs a few `stat`s and no
//! hashing. The format itself, and what a peer's manifest must satisfy, is
//! [`crate::manifest`].

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::catalog::GameId;
use crate::cdc::{CDC_MAX_BYTES, cut_points};
use crate::layout::is_payload_entry;
use crate::manifest::{
    Blake3Hash, ChunkEntry, FileEntry, MANIFEST_FORMAT, Manifest, ManifestError,
};
use crate::paths::{self, RelPath};
use crate::store::Store;
use crate::version::GameVersion;

/// What the store remembers about one file's hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedFileHashes {
    pub len_bytes: u64,
    pub mtime_ns: u128,
    /// [`MANIFEST_FORMAT`] when hashed: a record of other rules is a miss.
    pub format: u32,
    pub chunks: Vec<ChunkEntry>,
}

/// A built manifest and what building it cost.
#[derive(Debug, Clone)]
pub struct ManifestBuild {
    pub manifest: Manifest,
    /// Bytes read and hashed (0 when every file was in the cache).
    pub hashed_bytes: u64,
    /// Files whose hashes came from the cache.
    pub cached_files: usize,
}

/// How far a manifest build is, for a progress line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HashProgress {
    /// Files to hash (not in the cache), and bytes in them.
    pub files_total: usize,
    pub bytes_total: u64,
    /// Files and bytes hashed so far.
    pub files_done: usize,
    pub bytes_done: u64,
}

/// Hashes the payload in `game_dir` (using and refreshing the store's cache).
pub fn build_manifest(
    game_dir: &Path,
    game: &GameId,
    version: &GameVersion,
    store: &Store,
) -> Result<ManifestBuild, ManifestError> {
    build_manifest_reporting(game_dir, game, version, store, &|_| {}, &|| false)
}

/// [`build_manifest`], telling `on_progress` how far the hashing is (from
/// the hashing threads, after each file and every few MiB), and stopping
/// with [`ManifestError::Cancelled`] soon after `cancelled` says so.
pub fn build_manifest_reporting(
    game_dir: &Path,
    game: &GameId,
    version: &GameVersion,
    store: &Store,
    on_progress: &(dyn Fn(HashProgress) + Sync),
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<ManifestBuild, ManifestError> {
    let found = payload_files(game_dir)?;
    // The cache first, one file after the other (a few stats and lookups).
    let mut slots: Vec<Option<CachedFileHashes>> = Vec::with_capacity(found.len());
    let mut misses: Vec<(usize, String, u128, u64)> = Vec::new();
    for (index, (rel, disk_path)) in found.iter().enumerate() {
        let meta = std::fs::metadata(disk_path).map_err(io_error(disk_path))?;
        let mtime_ns = mtime_ns(&meta);
        let key = cache_key(game, rel);
        let hit = store.cached_file_hashes(&key)?.filter(|cached| {
            cached.len_bytes == meta.len()
                && cached.mtime_ns == mtime_ns
                && cached.format == MANIFEST_FORMAT
        });
        if hit.is_none() {
            misses.push((index, key, mtime_ns, meta.len()));
        }
        slots.push(hit);
    }
    let cached_files = found.len() - misses.len();
    // Then every file not in the cache, on all cores.
    let progress = ProgressCounter::new(
        HashProgress {
            files_total: misses.len(),
            bytes_total: misses.iter().map(|m| m.3).sum(),
            ..HashProgress::default()
        },
        on_progress,
        cancelled,
    );
    let hashed: Vec<Result<(usize, String, CachedFileHashes), ManifestError>> =
        in_hash_pool(|| {
            misses
                .par_iter()
                .map(|(index, key, mtime_ns, _)| {
                    let (len_bytes, chunks) = hash_file_counting(&found[*index].1, &progress)?;
                    progress.file_done();
                    let hashes = CachedFileHashes {
                        len_bytes,
                        mtime_ns: *mtime_ns,
                        format: MANIFEST_FORMAT,
                        chunks,
                    };
                    Ok((*index, key.clone(), hashes))
                })
                .collect()
        });
    let mut fresh = Vec::with_capacity(hashed.len());
    let mut hashed_bytes = 0;
    for result in hashed {
        let (index, key, hashes) = result?;
        hashed_bytes += hashes.len_bytes;
        slots[index] = Some(hashes.clone());
        fresh.push((key, hashes));
    }
    if !fresh.is_empty() {
        store.put_file_hashes(fresh.iter().map(|(k, v)| (k.as_str(), v)))?;
    }
    let files = found
        .into_iter()
        .zip(slots)
        .filter_map(|((path, _), hashes)| {
            hashes.map(|h| FileEntry {
                path,
                len_bytes: h.len_bytes,
                chunks: h.chunks,
            })
        })
        .collect();
    Ok(ManifestBuild {
        manifest: Manifest {
            game: game.clone(),
            version: version.clone(),
            files,
        },
        hashed_bytes,
        cached_files,
    })
}

/// Counts a build's progress across the hashing threads.
struct ProgressCounter<'a> {
    total: HashProgress,
    files: std::sync::atomic::AtomicUsize,
    bytes: std::sync::atomic::AtomicU64,
    report: &'a (dyn Fn(HashProgress) + Sync),
    cancelled: &'a (dyn Fn() -> bool + Sync),
}

impl<'a> ProgressCounter<'a> {
    /// Nothing done yet of `total`.
    fn new(
        total: HashProgress,
        report: &'a (dyn Fn(HashProgress) + Sync),
        cancelled: &'a (dyn Fn() -> bool + Sync),
    ) -> Self {
        Self {
            total,
            files: std::sync::atomic::AtomicUsize::new(0),
            bytes: std::sync::atomic::AtomicU64::new(0),
            report,
            cancelled,
        }
    }

    fn add_bytes(&self, bytes: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.bytes.fetch_add(bytes, Relaxed);
        self.report_now();
    }

    fn file_done(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.files.fetch_add(1, Relaxed);
        self.report_now();
    }

    fn report_now(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.report)(HashProgress {
            files_done: self.files.load(Relaxed),
            bytes_done: self.bytes.load(Relaxed),
            ..self.total
        });
    }
}

/// Most threads hashing at once: each holds one read window
/// ([`HASH_WINDOW_BYTES`] plus a chunk), so this bounds the memory a first
/// scan takes on a PC with many cores.
pub const MAX_HASH_THREADS: usize = 8;
/// Bytes read from a file per step of hashing it.
pub const HASH_WINDOW_BYTES: usize = 8 << 20;
/// Bytes of a file mapped per step of hashing it (plus a chunk). Larger
/// than a read window: a map holds no memory of its own (the pages are the
/// page cache's), and the fewer steps a big file takes, the less time a
/// core waits for the other to finish a step's last chunk (one 2 GiB file
/// here: 0.74 of `b3sum` with 8 MiB, 0.83 with 32, 0.86 with 64).
pub const MAP_WINDOW_BYTES: usize = 32 << 20;

/// How many threads hash at once: one per core, at most
/// [`MAX_HASH_THREADS`]. A download's piece checks use the same count.
pub fn hash_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(MAX_HASH_THREADS)
}

/// Runs `work` on the hashing threads (a pool of [`hash_threads`], made
/// once).
fn in_hash_pool<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(hash_threads())
            .thread_name(|i| format!("lanspread-hash-{i}"))
            .build()
            .ok()
    });
    match pool {
        Some(pool) => pool.install(work),
        None => work(),
    }
}

fn mtime_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// Records `manifest`'s hashes for the payload now in `game_dir` (one just
/// verified chunk by chunk and swapped in), so the next scan takes them
/// from the cache instead of reading the whole game again. A file that is
/// missing or of another size is left out (the scan hashes it).
pub fn remember_payload(
    game_dir: &Path,
    manifest: &Manifest,
    store: &Store,
) -> Result<(), ManifestError> {
    let mut known = Vec::with_capacity(manifest.files.len());
    for file in &manifest.files {
        let disk_path = file.path.join_to(game_dir);
        let Ok(meta) = std::fs::metadata(&disk_path) else {
            continue;
        };
        if !meta.is_file() || meta.len() != file.len_bytes {
            continue;
        }
        known.push((
            cache_key(&manifest.game, &file.path),
            CachedFileHashes {
                len_bytes: file.len_bytes,
                mtime_ns: mtime_ns(&meta),
                format: MANIFEST_FORMAT,
                chunks: file.chunks.clone(),
            },
        ));
    }
    store.put_file_hashes(known.iter().map(|(k, v)| (k.as_str(), v)))?;
    Ok(())
}

/// A file's key in the hash cache: its path inside the games folder, so a
/// games folder that comes back elsewhere (a USB stick with another drive
/// letter) is not hashed again. Length and mtime must still match.
fn cache_key(game: &GameId, rel: &RelPath) -> String {
    format!("{game}/{rel}")
}

/// Reads a file once, cutting it into content-defined chunks and hashing
/// each (several chunks at once, on the hashing threads); returns its
/// length and chunks.
pub fn hash_file(path: &Path) -> Result<(u64, Vec<ChunkEntry>), ManifestError> {
    let progress = ProgressCounter::new(HashProgress::default(), &|_| {}, &|| false);
    in_hash_pool(|| hash_file_counting(path, &progress))
}

/// Files at least this long are hashed through a memory map (no copy);
/// smaller ones are read.
pub const MAP_MIN_BYTES: u64 = 4 << 20;
/// A file is mapped only when it has not changed for this long: a file
/// being written now (a copy into the games folder) is read instead.
pub const MAP_WHEN_QUIET_FOR: Duration = Duration::from_secs(10);

/// Whether a file is hashed through a memory map: long enough, and not
/// written to lately.
fn is_mapped(meta: &std::fs::Metadata) -> bool {
    let quiet = meta
        .modified()
        .ok()
        .and_then(|at| at.elapsed().ok())
        .is_some_and(|age| age >= MAP_WHEN_QUIET_FOR);
    meta.len() >= MAP_MIN_BYTES && quiet
}

/// Turns an I/O error on `path` into the manifest's error.
fn io_error(path: &Path) -> impl Fn(std::io::Error) -> ManifestError + Copy + '_ {
    move |source| ManifestError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn hash_file_counting(
    path: &Path,
    progress: &ProgressCounter<'_>,
) -> Result<(u64, Vec<ChunkEntry>), ManifestError> {
    let io_err = io_error(path);
    let mut file = std::fs::File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if is_mapped(&meta) {
        return hash_mapped(&file, meta.len(), path, progress);
    }
    let full = HASH_WINDOW_BYTES + CDC_MAX_BYTES as usize;
    // A small file gets a buffer of its size (plus one byte to see the end).
    let mut buffer =
        vec![0u8; usize::try_from(meta.len()).map_or(full, |h| h.saturating_add(1).min(full))];
    let mut filled = 0;
    let mut at_end = false;
    let mut chunks = Vec::new();
    let mut len_bytes = 0u64;
    loop {
        if (progress.cancelled)() {
            return Err(ManifestError::Cancelled);
        }
        while !at_end && filled < buffer.len() {
            match file.read(&mut buffer[filled..]) {
                Ok(0) => at_end = true,
                Ok(n) => filled += n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return Err(io_err(err)),
            }
        }
        if !at_end && buffer.len() < full {
            // The file grew since its size was read: a full window.
            buffer.resize(full, 0);
            continue;
        }
        let cuts = cut_points(&buffer[..filled], at_end);
        let hashed = hash_chunks(&buffer[..filled], &cuts);
        let consumed: usize = cuts.iter().map(|c| c.1).sum();
        chunks.extend(hashed);
        len_bytes += consumed as u64;
        progress.add_bytes(consumed as u64);
        if at_end && consumed == filled {
            break;
        }
        buffer.copy_within(consumed..filled, 0);
        filled -= consumed;
    }
    Ok((len_bytes, chunks))
}

/// [`hash_file_counting`] for a file of `len` bytes, through memory maps
/// of one window at a time (what a window holds stays bounded, as when
/// reading). The cuts of the next window are searched while this one's
/// chunks are hashed, so one big file keeps every core busy: two windows
/// are mapped at once.
fn hash_mapped(
    file: &std::fs::File,
    len: u64,
    path: &Path,
    progress: &ProgressCounter<'_>,
) -> Result<(u64, Vec<ChunkEntry>), ManifestError> {
    let io_err = io_error(path);
    let full = (MAP_WINDOW_BYTES + CDC_MAX_BYTES as usize) as u64;
    // The window from `at`, and its cuts.
    let window_at = |at: u64| -> Result<(memmap2::Mmap, Vec<(usize, usize)>), ManifestError> {
        let view = (len - at).min(full);
        let window = crate::platform::map_read_only(file, at, view as usize).map_err(io_err)?;
        let cuts = cut_points(&window, at + view == len);
        Ok((window, cuts))
    };
    let mut chunks = Vec::new();
    let mut done = 0u64;
    let mut current = (len > 0).then(|| window_at(0)).transpose()?;
    while let Some((window, cuts)) = current {
        if (progress.cancelled)() {
            return Err(ManifestError::Cancelled);
        }
        // A window always holds a cut: it reaches the file's end, or is
        // longer than the longest chunk.
        let consumed: u64 = cuts.iter().map(|c| c.1 as u64).sum();
        let next_at = done + consumed;
        let (hashed, next) = rayon::join(
            || hash_chunks(&window, &cuts),
            || (next_at < len).then(|| window_at(next_at)).transpose(),
        );
        chunks.extend(hashed);
        done = next_at;
        progress.add_bytes(consumed);
        current = next?;
    }
    Ok((done, chunks))
}

/// The chunks `cuts` of `window`, hashed on the hashing threads.
fn hash_chunks(window: &[u8], cuts: &[(usize, usize)]) -> Vec<ChunkEntry> {
    cuts.par_iter()
        .map(|&(start, len)| ChunkEntry {
            len: len as u32,
            hash: Blake3Hash::of(&window[start..start + len]),
        })
        .collect()
}

/// The payload files of a game folder (as a manifest would list them), with
/// their paths on disk, sorted by path.
pub fn payload_files(game_dir: &Path) -> Result<Vec<(RelPath, PathBuf)>, ManifestError> {
    let mut found = Vec::new();
    collect_payload_files(game_dir, game_dir, true, &mut found)?;
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

fn collect_payload_files(
    root: &Path,
    dir: &Path,
    top_level: bool,
    out: &mut Vec<(RelPath, PathBuf)>,
) -> Result<(), ManifestError> {
    let entries = std::fs::read_dir(dir).map_err(io_error(dir))?;
    for entry in entries {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if top_level && !is_payload_entry(&name) {
            continue;
        }
        if crate::layout::is_internal_name(&name) {
            continue;
        }
        let path = entry.path();
        let file_type = entry.file_type().map_err(io_error(&path))?;
        if file_type.is_symlink() {
            let rel = paths::rel_path_from_disk(root, &path)?;
            let resolved = paths::resolve_within(root, &rel)?;
            if !resolved.is_file() {
                return Err(ManifestError::Symlink {
                    path: rel.to_string(),
                });
            }
            out.push((rel, resolved));
        } else if file_type.is_dir() {
            collect_payload_files(root, &path, false, out)?;
        } else if file_type.is_file() {
            out.push((paths::rel_path_from_disk(root, &path)?, path));
        }
        // Sockets, FIFOs and devices are not game files; they are skipped.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::check_chunks;
    use crate::manifest::tests::{noise, setup};
    use crate::paths::PathError;

    #[test]
    fn a_remembered_payload_is_not_hashed_again() {
        let (tmp, store, dir, id, version) = setup();
        // Another PC's manifest of the same payload (its own store).
        let elsewhere = Store::open(&tmp.path().join("other")).unwrap();
        let verified = build_manifest(&dir, &id, &version, &elsewhere)
            .unwrap()
            .manifest;
        remember_payload(&dir, &verified, &store).unwrap();
        let build = build_manifest(&dir, &id, &version, &store).unwrap();
        assert_eq!(build.hashed_bytes, 0, "every file came from the cache");
        assert_eq!(build.manifest, verified);
        // A file changed since is hashed again.
        std::fs::write(dir.join("setup.zip"), b"other bytes").unwrap();
        let again = build_manifest(&dir, &id, &version, &store).unwrap();
        assert_eq!(again.hashed_bytes, 11);
    }

    #[test]
    fn manifest_lists_the_payload_only_with_right_hashes() {
        let (_tmp, store, dir, id, version) = setup();
        let build = build_manifest(&dir, &id, &version, &store).unwrap();
        let m = &build.manifest;
        let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["Maps/DM-Deck.ut2", "empty.txt", "setup.zip"]);
        let big = std::fs::read(dir.join("Maps/DM-Deck.ut2")).unwrap();
        let entry = &m.files[0];
        assert_eq!(entry.len_bytes, big.len() as u64);
        assert!(entry.chunks.len() >= 3, "{:?}", entry.chunks);
        for (offset, chunk) in entry.chunk_offsets() {
            let bytes = &big[offset as usize..offset as usize + chunk.len as usize];
            assert_eq!(chunk.hash, Blake3Hash::of(bytes));
        }
        assert!(m.files[1].chunks.is_empty());
        assert_eq!(m.files[2].chunks.len(), 1);
        assert_eq!(m.total_chunks(), entry.chunks.len() + 1);
        m.validate().unwrap();
        assert_eq!(build.hashed_bytes, big.len() as u64 + 9);
    }

    #[test]
    fn a_cache_hit_does_no_hashing_and_a_change_is_rehashed() {
        let (_tmp, store, dir, id, version) = setup();
        let first = build_manifest(&dir, &id, &version, &store).unwrap();
        assert!(first.hashed_bytes > 0);
        let second = build_manifest(&dir, &id, &version, &store).unwrap();
        assert_eq!(second.hashed_bytes, 0);
        assert_eq!(second.cached_files, 3);
        assert_eq!(second.manifest, first.manifest);

        // Same size, new content and mtime: hashed again, new hash.
        let path = dir.join("setup.zip");
        std::fs::write(&path, b"ZIP BYTES").unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let third = build_manifest(&dir, &id, &version, &store).unwrap();
        assert_eq!(third.hashed_bytes, 9);
        assert_ne!(third.manifest.digest(), first.manifest.digest());
    }

    #[test]
    fn a_games_folder_that_comes_back_elsewhere_is_not_hashed_again() {
        // A USB stick that was E:\games yesterday and is F:\games today:
        // the cache knows files by their path inside the games folder.
        let (tmp, store, dir, id, version) = setup();
        let first = build_manifest(&dir, &id, &version, &store).unwrap();
        assert!(first.hashed_bytes > 0);
        let moved = tmp.path().join("another-drive/games").join(id.as_str());
        std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
        std::fs::rename(&dir, &moved).unwrap();
        let again = build_manifest(&moved, &id, &version, &store).unwrap();
        assert_eq!(again.hashed_bytes, 0, "every file came from the cache");
        assert_eq!(again.manifest, first.manifest);
    }

    #[test]
    fn a_build_asked_to_stop_stops() {
        let (_tmp, store, dir, id, version) = setup();
        let stopped = build_manifest_reporting(&dir, &id, &version, &store, &|_| {}, &|| true);
        assert!(
            matches!(stopped, Err(ManifestError::Cancelled)),
            "{stopped:?}"
        );
        // Nothing half-hashed was cached: a build now hashes every byte.
        let full = build_manifest(&dir, &id, &version, &store).unwrap();
        assert!(full.hashed_bytes > 0);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_leaving_the_game_is_an_error() {
        let (tmp, store, dir, id, version) = setup();
        std::fs::write(tmp.path().join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret"), dir.join("Maps/link")).unwrap();
        let err = build_manifest(&dir, &id, &version, &store).unwrap_err();
        assert!(
            matches!(err, ManifestError::Path(PathError::SymlinkEscape(_))),
            "{err}"
        );
    }

    #[test]
    fn a_mapped_file_hashes_as_a_read_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.pak");
        // Longer than two map windows (and many read ones).
        std::fs::write(&path, noise(3, 2 * MAP_WINDOW_BYTES + 777_777)).unwrap();
        assert!(
            !is_mapped(&std::fs::metadata(&path).unwrap()),
            "just written"
        );
        let read = hash_file(&path).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        file.set_modified(an_hour_ago).unwrap();
        drop(file);
        assert!(is_mapped(&std::fs::metadata(&path).unwrap()), "quiet now");
        let mapped = hash_file(&path).unwrap();
        assert_eq!(mapped, read);
        let whole = std::fs::read(&path).unwrap();
        let cuts = cut_points(&whole, true);
        assert_eq!(mapped.1.len(), cuts.len());
        assert_eq!(mapped.0, whole.len() as u64);
    }

    #[test]
    fn cuts_read_in_windows_are_the_cuts_of_the_whole_file() {
        let tmp = tempfile::tempdir().unwrap();
        let data = noise(7, 3 * HASH_WINDOW_BYTES + 12345);
        let path = tmp.path().join("big.pak");
        std::fs::write(&path, &data).unwrap();
        let (len, chunks) = hash_file(&path).unwrap();
        assert_eq!(len, data.len() as u64);
        let whole = cut_points(&data, true);
        assert_eq!(chunks.len(), whole.len());
        for (chunk, (start, cut)) in chunks.iter().zip(&whole) {
            assert_eq!(chunk.len as usize, *cut);
            assert_eq!(chunk.hash, Blake3Hash::of(&data[*start..start + cut]));
        }
        let entry = FileEntry {
            path: paths::validate_relative_path("big.pak").unwrap(),
            len_bytes: len,
            chunks,
        };
        check_chunks(&entry).unwrap();
    }

    #[test]
    fn an_insertion_changes_the_chunks_around_it_only() {
        // A 64 MiB archive with 1 MiB inserted in its middle: with fixed
        // chunks every chunk after the insertion would be new (32 MiB).
        let old = noise(3, 64 << 20);
        let mut new = old[..old.len() / 2 + 4321].to_vec();
        new.extend(noise(4, 1 << 20));
        new.extend_from_slice(&old[old.len() / 2 + 4321..]);
        let hashes = |data: &[u8]| -> Vec<(usize, Blake3Hash)> {
            cut_points(data, true)
                .into_iter()
                .map(|(start, len)| (len, Blake3Hash::of(&data[start..start + len])))
                .collect()
        };
        let known: std::collections::HashSet<Blake3Hash> =
            hashes(&old).into_iter().map(|c| c.1).collect();
        let changed: usize = hashes(&new)
            .into_iter()
            .filter(|c| !known.contains(&c.1))
            .map(|c| c.0)
            .sum();
        assert!(changed < 12 << 20, "{changed} bytes of new chunks");
    }
}
