//! Manifests: the files of one game version, with BLAKE3 hashes of each whole
//! file and of its fixed-size chunks.
//!
//! A manifest covers the payload only: `local/` (the installed game),
//! `version.ini` (written by the downloader last) and lanspread's own
//! `.lanspread*` temporary files are left out. Building one hashes every file
//! once; the hashes are cached in the store keyed by (path, size, mtime), so
//! scanning an unchanged game again costs a few `stat`s and no hashing.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::catalog::GameId;
use crate::layout::is_payload_entry;
use crate::paths::{self, PathError, RelPath};
use crate::store::{Store, StoreError};
use crate::version::GameVersion;

/// Chunk size for new manifests. A chunk is the unit of scheduling and of
/// verification in downloads.
pub const CHUNK_LEN_BYTES: u64 = 1 << 20;
/// Smallest and largest chunk size accepted in a peer's manifest.
pub const MIN_CHUNK_LEN_BYTES: u64 = 64 * 1024;
pub const MAX_CHUNK_LEN_BYTES: u64 = 16 << 20;
/// Most files accepted in one manifest.
pub const MAX_FILES: usize = 200_000;
/// Largest game accepted (1 TiB): bounds the chunk list a peer can make us hold.
pub const MAX_TOTAL_LEN_BYTES: u64 = 1 << 40;

/// A BLAKE3 hash.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Blake3Hash(pub [u8; 32]);

impl From<blake3::Hash> for Blake3Hash {
    fn from(hash: blake3::Hash) -> Self {
        Self(*hash.as_bytes())
    }
}

impl Blake3Hash {
    pub fn of(bytes: &[u8]) -> Self {
        blake3::hash(bytes).into()
    }

    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// From 64 hex digits.
    pub fn from_hex(hex: &str) -> Option<Self> {
        blake3::Hash::from_hex(hex).ok().map(Into::into)
    }
}

impl fmt::Debug for Blake3Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..16])
    }
}

impl fmt::Display for Blake3Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// One file of a payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: RelPath,
    pub len_bytes: u64,
    /// BLAKE3 of the whole file.
    pub hash: Blake3Hash,
    /// BLAKE3 of each chunk, in order; the last may be short.
    pub chunks: Vec<Blake3Hash>,
}

/// The files of one game version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub game: GameId,
    pub version: GameVersion,
    pub chunk_len_bytes: u64,
    /// Sorted by path; paths are unique.
    pub files: Vec<FileEntry>,
}

/// How many chunks a file of `len_bytes` has.
pub fn chunk_count(len_bytes: u64, chunk_len_bytes: u64) -> u64 {
    len_bytes.div_ceil(chunk_len_bytes)
}

/// The byte range `(offset, len)` of chunk `index` in a file.
pub fn chunk_range(len_bytes: u64, chunk_len_bytes: u64, index: u64) -> Option<(u64, u64)> {
    let offset = index.checked_mul(chunk_len_bytes)?;
    if offset >= len_bytes {
        return None;
    }
    Some((offset, chunk_len_bytes.min(len_bytes - offset)))
}

/// Why a manifest (ours or a peer's) is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("manifest chunk size {0} is outside {MIN_CHUNK_LEN_BYTES}..={MAX_CHUNK_LEN_BYTES}")]
    BadChunkLen(u64),
    #[error("manifest lists {0} files, more than {MAX_FILES}")]
    TooManyFiles(usize),
    #[error("manifest is larger than {MAX_TOTAL_LEN_BYTES} bytes")]
    TooLarge,
    #[error("manifest lists {path} twice or out of order")]
    Unsorted { path: String },
    #[error("manifest lists {path} both as a file and as a folder")]
    FileFolderClash { path: String },
    #[error(
        "manifest lists {path} and {other}, one file on Windows and macOS (names differ only in case)"
    )]
    CaseCollision { path: String, other: String },
    #[error("manifest lists {path}, which is not part of a payload")]
    NotPayload { path: String },
    #[error("manifest gives {path} {found} chunk hashes; {len} bytes need {expected}")]
    ChunkCount {
        path: String,
        len: u64,
        found: usize,
        expected: u64,
    },
    #[error("{path} is a symbolic link that leaves the game folder or points at a folder")]
    Symlink { path: String },
}

impl Manifest {
    /// Total payload size.
    pub fn total_len_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.len_bytes).sum()
    }

    /// Total number of chunks over all files.
    pub fn total_chunks(&self) -> u64 {
        self.files
            .iter()
            .map(|f| chunk_count(f.len_bytes, self.chunk_len_bytes))
            .sum()
    }

    pub fn file(&self, path: &RelPath) -> Option<&FileEntry> {
        self.files
            .binary_search_by(|f| f.path.cmp(path))
            .ok()
            .map(|i| &self.files[i])
    }

    /// A digest of the whole manifest, every chunk hash included: equal
    /// digests, equal payloads and equal chunk hashes (a journal keyed by it
    /// holds chunks verified against exactly these hashes).
    pub fn digest(&self) -> Blake3Hash {
        let mut hasher = blake3::Hasher::new();
        hasher.update(self.game.as_str().as_bytes());
        hasher.update(&[0]);
        hasher.update(self.version.as_str().as_bytes());
        hasher.update(&[0]);
        hasher.update(&self.chunk_len_bytes.to_le_bytes());
        for file in &self.files {
            hasher.update(file.path.as_str().as_bytes());
            hasher.update(&[0]);
            hasher.update(&file.len_bytes.to_le_bytes());
            hasher.update(&file.hash.0);
            hasher.update(&(file.chunks.len() as u64).to_le_bytes());
            for chunk in &file.chunks {
                hasher.update(&chunk.0);
            }
        }
        hasher.finalize().into()
    }

    /// Checks everything a manifest from a peer must satisfy before we act
    /// on it. Paths were validated when deserialized; this checks the rest.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if !(MIN_CHUNK_LEN_BYTES..=MAX_CHUNK_LEN_BYTES).contains(&self.chunk_len_bytes) {
            return Err(ManifestError::BadChunkLen(self.chunk_len_bytes));
        }
        if self.files.len() > MAX_FILES {
            return Err(ManifestError::TooManyFiles(self.files.len()));
        }
        let mut total: u64 = 0;
        for (index, file) in self.files.iter().enumerate() {
            let path = || file.path.to_string();
            if index > 0 && self.files[index - 1].path >= file.path {
                return Err(ManifestError::Unsorted { path: path() });
            }
            if !is_payload_entry(file.path.first_component()) {
                return Err(ManifestError::NotPayload { path: path() });
            }
            total = total
                .checked_add(file.len_bytes)
                .filter(|t| *t <= MAX_TOTAL_LEN_BYTES)
                .ok_or(ManifestError::TooLarge)?;
            let expected = chunk_count(file.len_bytes, self.chunk_len_bytes);
            if file.chunks.len() as u64 != expected {
                return Err(ManifestError::ChunkCount {
                    path: path(),
                    len: file.len_bytes,
                    found: file.chunks.len(),
                    expected,
                });
            }
        }
        self.check_names()
    }

    /// Two paths that differ only in case are one file on Windows and
    /// macOS, and a file may not also be a folder (`a` and `a/b`, or `A`
    /// and `a/b`): checked on every platform, in time linear in the bytes
    /// of all paths. A prefix is looked up by a rolling hash (random base,
    /// so a peer cannot aim for collisions), confirmed by comparing text.
    fn check_names(&self) -> Result<(), ManifestError> {
        let folded: Vec<String> = self
            .files
            .iter()
            .map(|f| f.path.as_str().to_lowercase())
            .collect();
        let mut whole: std::collections::HashMap<&str, usize> =
            std::collections::HashMap::with_capacity(folded.len());
        for (index, name) in folded.iter().enumerate() {
            if let Some(first) = whole.insert(name.as_str(), index) {
                return Err(ManifestError::CaseCollision {
                    path: self.files[first].path.to_string(),
                    other: self.files[index].path.to_string(),
                });
            }
        }
        let base = rand::random::<u64>() | 1;
        let roll = |hash: u64, byte: u8| hash.wrapping_mul(base).wrapping_add(u64::from(byte) + 1);
        let hashes: std::collections::HashSet<u64> = folded
            .iter()
            .map(|name| name.bytes().fold(0, roll))
            .collect();
        for name in &folded {
            let mut hash = 0;
            for (at, byte) in name.bytes().enumerate() {
                if byte == b'/' && hashes.contains(&hash) && whole.contains_key(&name[..at]) {
                    return Err(ManifestError::FileFolderClash {
                        path: name[..at].to_owned(),
                    });
                }
                hash = roll(hash, byte);
            }
        }
        Ok(())
    }
}

/// What the store remembers about one file's hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedFileHashes {
    pub len_bytes: u64,
    pub mtime_ns: u128,
    pub chunk_len_bytes: u64,
    pub hash: Blake3Hash,
    pub chunks: Vec<Blake3Hash>,
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

/// Hashes the payload in `game_dir` (using and refreshing the store's cache).
pub fn build_manifest(
    game_dir: &Path,
    game: &GameId,
    version: &GameVersion,
    store: &Store,
) -> Result<ManifestBuild, ManifestError> {
    let found = payload_files(game_dir)?;
    let mut files = Vec::with_capacity(found.len());
    let mut fresh: Vec<(String, CachedFileHashes)> = Vec::new();
    let mut hashed_bytes = 0;
    let mut cached_files = 0;
    for (rel, disk_path) in found {
        let io_err = |source| ManifestError::Io {
            path: disk_path.display().to_string(),
            source,
        };
        let meta = std::fs::metadata(&disk_path).map_err(io_err)?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let key = cache_key(&disk_path);
        let hit = store.cached_file_hashes(&key)?.filter(|cached| {
            cached.len_bytes == meta.len()
                && cached.mtime_ns == mtime_ns
                && cached.chunk_len_bytes == CHUNK_LEN_BYTES
        });
        let hashes = match hit {
            Some(cached) => {
                cached_files += 1;
                cached
            }
            None => {
                let (len_bytes, hash, chunks) = hash_file(&disk_path, CHUNK_LEN_BYTES)?;
                hashed_bytes += len_bytes;
                let computed = CachedFileHashes {
                    len_bytes,
                    mtime_ns,
                    chunk_len_bytes: CHUNK_LEN_BYTES,
                    hash,
                    chunks,
                };
                fresh.push((key, computed.clone()));
                computed
            }
        };
        files.push(FileEntry {
            path: rel,
            len_bytes: hashes.len_bytes,
            hash: hashes.hash,
            chunks: hashes.chunks,
        });
    }
    if !fresh.is_empty() {
        store.put_file_hashes(fresh.iter().map(|(k, v)| (k.as_str(), v)))?;
    }
    Ok(ManifestBuild {
        manifest: Manifest {
            game: game.clone(),
            version: version.clone(),
            chunk_len_bytes: CHUNK_LEN_BYTES,
            files,
        },
        hashed_bytes,
        cached_files,
    })
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
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        known.push((
            cache_key(&disk_path),
            CachedFileHashes {
                len_bytes: file.len_bytes,
                mtime_ns,
                chunk_len_bytes: manifest.chunk_len_bytes,
                hash: file.hash,
                chunks: file.chunks.clone(),
            },
        ));
    }
    store.put_file_hashes(known.iter().map(|(k, v)| (k.as_str(), v)))?;
    Ok(())
}

fn cache_key(path: &Path) -> String {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    absolute.to_string_lossy().into_owned()
}

/// Reads a file once, returning its length, whole-file hash and chunk hashes.
pub fn hash_file(
    path: &Path,
    chunk_len_bytes: u64,
) -> Result<(u64, Blake3Hash, Vec<Blake3Hash>), ManifestError> {
    let io_err = |source| ManifestError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io_err)?;
    let chunk_len = usize::try_from(chunk_len_bytes)
        .map_err(|_| ManifestError::BadChunkLen(chunk_len_bytes))?;
    let mut buffer = vec![0u8; chunk_len];
    let mut whole = blake3::Hasher::new();
    let mut chunks = Vec::new();
    let mut len_bytes = 0u64;
    loop {
        let filled = read_full(&mut file, &mut buffer).map_err(io_err)?;
        if filled == 0 {
            break;
        }
        let data = &buffer[..filled];
        whole.update(data);
        chunks.push(Blake3Hash::of(data));
        len_bytes += filled as u64;
        if filled < chunk_len {
            break;
        }
    }
    Ok((len_bytes, whole.finalize().into(), chunks))
}

/// Fills `buffer` unless the reader ends first; returns the bytes read.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
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
    let io_err = |path: &Path, source| ManifestError::Io {
        path: path.display().to_string(),
        source,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| io_err(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if top_level && !is_payload_entry(&name) {
            continue;
        }
        if crate::layout::is_internal_name(&name) {
            continue;
        }
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| io_err(&path, e))?;
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

    fn setup() -> (tempfile::TempDir, Store, PathBuf, GameId, GameVersion) {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("data")).unwrap();
        let game_dir = tmp.path().join("games/ut2004");
        std::fs::create_dir_all(game_dir.join("Maps")).unwrap();
        std::fs::create_dir_all(game_dir.join("local/System")).unwrap();
        let big: Vec<u8> = (0..(CHUNK_LEN_BYTES * 2 + 77))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        std::fs::write(game_dir.join("Maps/DM-Deck.ut2"), &big).unwrap();
        std::fs::write(game_dir.join("setup.zip"), b"zip bytes").unwrap();
        std::fs::write(game_dir.join("empty.txt"), b"").unwrap();
        std::fs::write(game_dir.join("version.ini"), b"version=1").unwrap();
        std::fs::write(game_dir.join("local/System/UT.ini"), b"installed").unwrap();
        std::fs::write(game_dir.join(".lanspread-part"), b"temp").unwrap();
        let id = GameId::parse("ut2004").unwrap();
        let version = GameVersion::parse("1").unwrap();
        (tmp, store, game_dir, id, version)
    }

    #[test]
    fn the_digest_covers_every_chunk_hash() {
        let (_tmp, store, dir, id, version) = setup();
        let honest = build_manifest(&dir, &id, &version, &store)
            .unwrap()
            .manifest;
        // A liar's manifest: same files, sizes and whole hashes, one chunk
        // hash changed. A journal of its chunks must not serve an honest
        // download, so the two digests differ.
        let mut liar = honest.clone();
        liar.files[0].chunks[1] = Blake3Hash::of(b"not this chunk");
        assert_ne!(liar.digest(), honest.digest());
        assert_eq!(honest.clone().digest(), honest.digest());
        assert_eq!(
            Blake3Hash::from_hex(&honest.digest().to_hex()),
            Some(honest.digest())
        );
    }

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
        assert_eq!(entry.hash, Blake3Hash::of(&big));
        assert_eq!(entry.chunks.len(), 3);
        let c = CHUNK_LEN_BYTES as usize;
        assert_eq!(entry.chunks[1], Blake3Hash::of(&big[c..2 * c]));
        assert_eq!(entry.chunks[2], Blake3Hash::of(&big[2 * c..]));
        assert!(m.files[1].chunks.is_empty());
        assert_eq!(m.total_chunks(), 4);
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
    fn validate_rejects_what_a_hostile_peer_could_send() {
        let (_tmp, store, dir, id, version) = setup();
        let good = build_manifest(&dir, &id, &version, &store)
            .unwrap()
            .manifest;

        let mut m = good.clone();
        m.files.swap(0, 1);
        assert!(matches!(m.validate(), Err(ManifestError::Unsorted { .. })));

        let mut m = good.clone();
        m.files[0].chunks.pop();
        assert!(matches!(
            m.validate(),
            Err(ManifestError::ChunkCount { .. })
        ));

        let mut m = good.clone();
        m.chunk_len_bytes = 1;
        assert!(matches!(m.validate(), Err(ManifestError::BadChunkLen(1))));

        let mut m = good.clone();
        m.files[0].len_bytes = u64::MAX;
        assert!(m.validate().is_err());

        let mut m = good.clone();
        let mut clash = m.files[1].clone();
        clash.path = paths::validate_relative_path("Maps").unwrap();
        m.files.insert(0, clash);
        assert!(matches!(
            m.validate(),
            Err(ManifestError::FileFolderClash { .. })
        ));

        let mut m = good.clone();
        let mut local = m.files[1].clone();
        local.path = paths::validate_relative_path("local/x").unwrap();
        m.files.push(local);
        m.files.sort_by(|a, b| a.path.cmp(&b.path));
        assert!(matches!(
            m.validate(),
            Err(ManifestError::NotPayload { .. })
        ));

        // Reserved names in another case, names differing only in case,
        // and a file that is a folder in another case: refused everywhere.
        let with = |extra: &str| {
            let mut m = good.clone();
            let mut entry = m.files[1].clone();
            entry.path = paths::validate_relative_path(extra).unwrap();
            m.files.push(entry);
            m.files.sort_by(|a, b| a.path.cmp(&b.path));
            m
        };
        for extra in ["LOCAL/x", "Version.ini", ".LANSPREAD-part"] {
            let err = with(extra).validate().unwrap_err();
            assert!(
                matches!(err, ManifestError::NotPayload { .. }),
                "{extra}: {err}"
            );
        }
        let err = with("Setup.zip").validate().unwrap_err();
        assert!(matches!(err, ManifestError::CaseCollision { .. }), "{err}");
        let err = with("maps").validate().unwrap_err();
        assert!(
            matches!(err, ManifestError::FileFolderClash { .. }),
            "{err}"
        );
        // Two files in one folder spelled two ways are still two files.
        with("MAPS/other.ut2").validate().unwrap();

        // A path that escapes never even deserializes.
        let mut bytes = postcard::to_allocvec(&good).unwrap();
        let needle = b"setup.zip";
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap();
        bytes[at..at + 9].copy_from_slice(b"../../etc");
        assert!(postcard::from_bytes::<Manifest>(&bytes).is_err());
    }

    #[test]
    fn chunk_geometry() {
        assert_eq!(chunk_count(0, 10), 0);
        assert_eq!(chunk_count(10, 10), 1);
        assert_eq!(chunk_count(11, 10), 2);
        assert_eq!(chunk_range(25, 10, 2), Some((20, 5)));
        assert_eq!(chunk_range(25, 10, 3), None);
        assert_eq!(chunk_range(25, 10, u64::MAX), None);
    }
}
