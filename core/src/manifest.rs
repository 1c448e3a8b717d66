//! Manifests: the files of one game version, each cut into content-defined
//! chunks with a BLAKE3 hash per chunk.
//!
//! A manifest covers the payload only: `local/` (the installed game),
//! `version.ini` (written by the downloader last) and lanspread's own
//! `.lanspread*` temporary files are left out. This module is the format
//! and its validation (what a peer's manifest must satisfy); building one
//! from a folder on disk is [`crate::hashing`]'s job (re-exported here).
//!
//! ## Format 3: content-defined chunks, chunk hashes only
//!
//! A file is cut where its content says ([`crate::cdc`] has the rule):
//! never before [`CDC_MIN_BYTES`] (768 KiB) from the previous cut, right
//! after the first marker past that (two given bytes whose 8 bytes before
//! them pass a check; in text, which has no marker, a gear hash instead),
//! about every [`CUT_SPACING_BYTES`] (256 KiB), and at [`CDC_MAX_BYTES`]
//! (4 MiB) at the latest. Chunks average about 1 MiB. Because the cuts
//! follow the content, bytes inserted into a big archive change the chunks
//! around the insertion and leave the rest of the file's chunks (and their
//! hashes) as they were: an update fetches a few MiB instead of the rest of
//! the file. The sizes are measured choices (`docs/DECISIONS.md`, "Chunk
//! boundaries"): a minimum much larger than the spacing of the cuts scans
//! fewer bytes but lets the cuts after an insertion drift for tens of MiB
//! before they meet the old ones again. Format 2 cut by a gear hash alone
//! (FastCDC 2020); its search held a first scan at two thirds of `b3sum`.
//!
//! The chunk hashes are the only hashes: a file's identity
//! ([`FileEntry::content_id`]) is derived from its chunk list, so no byte
//! is hashed twice, and the manifest digest covers every chunk hash.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::catalog::GameId;
pub use crate::cdc::{CDC_MAX_BYTES, CDC_MIN_BYTES, CUT_SPACING_BYTES, cut_points};
pub use crate::hashing::{
    CachedFileHashes, HASH_WINDOW_BYTES, HashProgress, MAP_MIN_BYTES, MAP_WHEN_QUIET_FOR,
    MAX_HASH_THREADS, ManifestBuild, build_manifest, build_manifest_reporting, hash_file,
    payload_files, remember_payload,
};
use crate::layout::is_payload_entry;
use crate::paths::{PathError, RelPath};
use crate::store::StoreError;
use crate::version::GameVersion;

/// The manifest format: chunking and hashing rules. Part of the digest,
/// and of every cached record, so hashes made under other rules never mix.
pub const MANIFEST_FORMAT: u32 = 3;
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

    /// The hash of the parts' bytes, one after the other.
    pub fn of_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut hasher = blake3::Hasher::new();
        for part in parts {
            hasher.update(part);
        }
        hasher.finalize().into()
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

/// One chunk of a file: its length and the BLAKE3 of its bytes. Its offset
/// is the sum of the lengths before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkEntry {
    pub len: u32,
    pub hash: Blake3Hash,
}

/// One file of a payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: RelPath,
    pub len_bytes: u64,
    /// The file's chunks, in order; their lengths add up to `len_bytes`.
    pub chunks: Vec<ChunkEntry>,
}

impl FileEntry {
    /// The file's identity: BLAKE3 over its chunk list. Equal ids, equal
    /// bytes (as far as BLAKE3 goes), without reading the file again.
    pub fn content_id(&self) -> Blake3Hash {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&self.len_bytes.to_le_bytes());
        for chunk in &self.chunks {
            hasher.update(&chunk.len.to_le_bytes());
            hasher.update(&chunk.hash.0);
        }
        hasher.finalize().into()
    }

    /// Each chunk with its offset in the file.
    pub fn chunk_offsets(&self) -> impl Iterator<Item = (u64, &ChunkEntry)> {
        self.chunks.iter().scan(0u64, |offset, chunk| {
            let at = *offset;
            *offset += u64::from(chunk.len);
            Some((at, chunk))
        })
    }
}

/// The files of one game version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub game: GameId,
    pub version: GameVersion,
    /// Sorted by path; paths are unique.
    pub files: Vec<FileEntry>,
}

/// Why a manifest (ours or a peer's) is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The build was asked to stop (an operation on the game started).
    #[error("hashing was stopped")]
    Cancelled,
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(transparent)]
    Store(#[from] StoreError),
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
    #[error("manifest cuts {path} ({len} bytes) into chunks that are not its bytes: {detail}")]
    BadChunks {
        path: String,
        len: u64,
        detail: String,
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
    pub fn total_chunks(&self) -> usize {
        self.files.iter().map(|f| f.chunks.len()).sum()
    }

    pub fn file(&self, path: &RelPath) -> Option<&FileEntry> {
        self.file_index(path).map(|i| &self.files[i])
    }

    /// Where `path` is in the (sorted) file list.
    pub fn file_index(&self, path: &RelPath) -> Option<usize> {
        self.files.binary_search_by(|f| f.path.cmp(path)).ok()
    }

    /// A digest of the whole manifest, every chunk hash included: equal
    /// digests, equal payloads and equal chunk hashes (a journal keyed by it
    /// holds chunks verified against exactly these hashes).
    pub fn digest(&self) -> Blake3Hash {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&MANIFEST_FORMAT.to_le_bytes());
        hasher.update(self.game.as_str().as_bytes());
        hasher.update(&[0]);
        hasher.update(self.version.as_str().as_bytes());
        hasher.update(&[0]);
        for file in &self.files {
            hasher.update(file.path.as_str().as_bytes());
            hasher.update(&[0]);
            hasher.update(&file.len_bytes.to_le_bytes());
            hasher.update(&(file.chunks.len() as u64).to_le_bytes());
            for chunk in &file.chunks {
                hasher.update(&chunk.len.to_le_bytes());
                hasher.update(&chunk.hash.0);
            }
        }
        hasher.finalize().into()
    }

    /// Checks everything a manifest from a peer must satisfy before we act
    /// on it. Paths were validated when deserialized; this checks the rest:
    /// sizes, chunk lengths (every chunk but a file's last at least
    /// [`CDC_MIN_BYTES`], none over [`CDC_MAX_BYTES`], adding up to the
    /// file), order, reserved names, and names that collide.
    pub fn validate(&self) -> Result<(), ManifestError> {
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
            check_chunks(file).map_err(|detail| ManifestError::BadChunks {
                path: path(),
                len: file.len_bytes,
                detail,
            })?;
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

/// A file's chunk lengths: within bounds and adding up to the file.
pub(crate) fn check_chunks(file: &FileEntry) -> Result<(), String> {
    let last = file.chunks.len().saturating_sub(1);
    let mut sum: u64 = 0;
    for (index, chunk) in file.chunks.iter().enumerate() {
        let too_short = chunk.len == 0 || (index < last && chunk.len < CDC_MIN_BYTES);
        if too_short || chunk.len > CDC_MAX_BYTES {
            return Err(format!("chunk {index} is {} bytes", chunk.len));
        }
        sum += u64::from(chunk.len);
        if sum > file.len_bytes {
            return Err(format!("chunks past the end at chunk {index}"));
        }
    }
    if sum != file.len_bytes {
        return Err(format!("the chunks add up to {sum} bytes"));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::paths;
    use crate::store::Store;

    /// Bytes that look random (content-defined cuts need some), the same
    /// for the same seed.
    pub(crate) fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect()
    }

    pub(crate) fn setup() -> (tempfile::TempDir, Store, PathBuf, GameId, GameVersion) {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("data")).unwrap();
        let game_dir = tmp.path().join("games/ut2004");
        std::fs::create_dir_all(game_dir.join("Maps")).unwrap();
        std::fs::create_dir_all(game_dir.join("local/System")).unwrap();
        let big = noise(1, 9 * (1 << 20) + 77);
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
        liar.files[0].chunks[1].hash = Blake3Hash::of(b"not this chunk");
        assert_ne!(liar.digest(), honest.digest());
        assert_eq!(honest.clone().digest(), honest.digest());
        assert_eq!(
            Blake3Hash::from_hex(&honest.digest().to_hex()),
            Some(honest.digest())
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

        // Chunks that are not the file's bytes: one missing, a tiny one in
        // the middle (a peer making us track millions of chunks), an
        // empty one, one too long.
        let mut m = good.clone();
        m.files[0].chunks.pop();
        assert!(matches!(m.validate(), Err(ManifestError::BadChunks { .. })));
        let mut m = good.clone();
        let first = m.files[0].chunks[0];
        m.files[0].chunks[0].len = 1;
        m.files[0].chunks.insert(
            1,
            ChunkEntry {
                len: first.len - 1,
                hash: first.hash,
            },
        );
        assert!(matches!(m.validate(), Err(ManifestError::BadChunks { .. })));
        let mut m = good.clone();
        m.files[2].chunks.push(ChunkEntry {
            len: 0,
            hash: first.hash,
        });
        assert!(matches!(m.validate(), Err(ManifestError::BadChunks { .. })));
        let mut m = good.clone();
        m.files[2].len_bytes = u64::from(CDC_MAX_BYTES) + 1;
        m.files[2].chunks[0].len = CDC_MAX_BYTES + 1;
        assert!(matches!(m.validate(), Err(ManifestError::BadChunks { .. })));

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
}
