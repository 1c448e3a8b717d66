//! What this peer offers: the shareable games of the games folder, each with
//! its manifest, published on a watch channel with a revision number.
//!
//! The announced list comes from the core's library snapshot, so a game under
//! an operation is absent from it. A game is announced only once its
//! manifest is built (hashing a big game the first time takes a while; the
//! cache makes every later scan cheap).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use lanspread_core::library::scan_library;
use lanspread_core::manifest::{HashProgress, Manifest, build_manifest_reporting};
use lanspread_core::{Blake3Hash, GameCatalog, GameId, LibraryScan, Store};
use serde::{Deserialize, Serialize};

use crate::proto::AnnouncedGame;
use crate::swarm::PartialGame;

/// The library as peers see it, and the manifests behind it.
#[derive(Debug, Clone, Default)]
pub struct LibrarySnapshot {
    /// Bumped whenever `games`, `catalog_fingerprint` or `peers` changes.
    pub revision: u64,
    pub games: Vec<AnnouncedGame>,
    /// The catalog the list was made against.
    pub catalog_fingerprint: [u8; 32],
    /// Addresses of the peers this PC follows, for peer exchange.
    pub peers: Vec<std::net::SocketAddr>,
    /// Manifests of the shareable games, including active ones (they are
    /// left out of `games`, and serving refuses them through the guards).
    pub manifests: BTreeMap<GameId, Arc<Manifest>>,
}

/// Each announced manifest's digest, worked out once per manifest: a
/// digest hashes every chunk entry one by one (a 4 GiB game: 4,000 small
/// updates), and a seeder announced its list again at every change of its
/// state, many times a second while it uploads (7 % of the CPU in the
/// 10 Gbit lab case).
#[derive(Debug, Default)]
pub struct ManifestDigests(std::sync::Mutex<BTreeMap<GameId, (Arc<Manifest>, Blake3Hash)>>);

impl ManifestDigests {
    pub fn of(&self, manifest: &Arc<Manifest>) -> Blake3Hash {
        let mut known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, digest)) = known.get(&manifest.game)
            && Arc::ptr_eq(seen, manifest)
        {
            return *digest;
        }
        let digest = manifest.digest();
        known.insert(manifest.game.clone(), (manifest.clone(), digest));
        digest
    }
}

impl LibrarySnapshot {
    /// The announced list: whole games, then the games being downloaded
    /// (partial, with their have-maps); games under an operation are left
    /// out.
    pub fn announced(
        manifests: &BTreeMap<GameId, Arc<Manifest>>,
        partials: &[Arc<PartialGame>],
        active: &BTreeSet<GameId>,
        digests: &ManifestDigests,
    ) -> Vec<AnnouncedGame> {
        let whole = manifests
            .values()
            .filter(|m| !active.contains(&m.game))
            .map(|m| AnnouncedGame {
                id: m.game.clone(),
                version: m.version.clone(),
                total_bytes: m.total_len_bytes(),
                manifest_digest: digests.of(m),
                partial: None,
            });
        let partial = partials
            .iter()
            .filter(|p| {
                !active.contains(&p.manifest.game) && !manifests.contains_key(&p.manifest.game)
            })
            .map(|p| AnnouncedGame {
                id: p.manifest.game.clone(),
                version: p.manifest.version.clone(),
                total_bytes: p.manifest.total_len_bytes(),
                manifest_digest: p.digest,
                partial: Some(p.have()),
            });
        whole.chain(partial).collect()
    }
}

/// A game being hashed (its first scan, or files that changed), for the
/// window and `status --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HashingProgress {
    pub game: String,
    /// Files and bytes to hash (not in the cache), and hashed so far.
    pub files_total: usize,
    pub files_done: usize,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub bytes_per_sec: f64,
}

/// What one scan of the games folder found.
#[derive(Debug, Default)]
pub struct BuiltLibrary {
    /// The folder's games and their states (none when it could not be read).
    pub scan: Option<LibraryScan>,
    /// The manifest of every shareable game that was not under an operation.
    pub manifests: BTreeMap<GameId, Arc<Manifest>>,
    /// Shareable games left out because an operation ran on them (refused
    /// at the start, or hashing stopped by it): the scan must run again
    /// once their operation ends, or they stay unannounced.
    pub skipped: BTreeSet<GameId>,
}

/// Scans the games folder and builds (or takes from the cache) the manifest
/// of every shareable game. Blocking: run it on a blocking thread.
/// Games whose manifest cannot be built are logged and left out.
/// `on_progress` hears how hashing goes (often, from the hashing threads).
pub fn build_manifests(
    games_dir: &Path,
    catalog: &GameCatalog,
    store: &Store,
    transfers: &lanspread_core::OutboundTransfers,
    previous: &BTreeMap<GameId, Arc<Manifest>>,
    on_progress: &(dyn Fn(HashingProgress) + Sync),
) -> BuiltLibrary {
    let scan = match scan_library(games_dir, catalog) {
        Ok(scan) => scan,
        Err(err) => {
            tracing::warn!("{err}");
            return BuiltLibrary::default();
        }
    };
    let mut manifests = BTreeMap::new();
    let mut skipped = BTreeSet::new();
    for shared in scan.shared_games_excluding(&BTreeSet::new()) {
        // The game's scan guard while its files are read: an update or
        // remove that starts stops the hashing and waits for it; a game
        // under an operation is skipped (scanned again when it ends).
        let Ok(guard) = transfers.register_scan(&shared.id) else {
            tracing::debug!(game = %shared.id, "skipped by the scan: an operation is running");
            skipped.insert(shared.id);
            continue;
        };
        let dir = lanspread_core::layout::game_dir(games_dir, &shared.id);
        let started = std::time::Instant::now();
        let report = |p: HashProgress| {
            if p.bytes_total > 0 {
                on_progress(HashingProgress {
                    game: shared.id.to_string(),
                    files_total: p.files_total,
                    files_done: p.files_done,
                    bytes_total: p.bytes_total,
                    bytes_done: p.bytes_done,
                    bytes_per_sec: p.bytes_done as f64 / started.elapsed().as_secs_f64().max(1e-3),
                });
            }
        };
        let cancelled = || guard.is_cancelled();
        match build_manifest_reporting(
            &dir,
            &shared.id,
            &shared.version,
            store,
            &report,
            &cancelled,
        ) {
            Ok(build) => {
                if build.hashed_bytes > 0 {
                    tracing::info!(game = %shared.id, bytes = build.hashed_bytes, "hashed payload");
                }
                // Keep the old Arc when nothing changed, so readers holding it
                // and the new snapshot agree.
                let manifest = match previous.get(&shared.id) {
                    Some(old) if **old == build.manifest => old.clone(),
                    _ => Arc::new(build.manifest),
                };
                manifests.insert(shared.id, manifest);
            }
            Err(lanspread_core::manifest::ManifestError::Cancelled) => {
                tracing::info!(game = %shared.id, "hashing stopped: an operation started on it");
                skipped.insert(shared.id);
            }
            Err(err) => tracing::warn!(game = %shared.id, "not shared: {err}"),
        }
    }
    BuiltLibrary {
        scan: Some(scan),
        manifests,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanspread_core::GameVersion;

    fn manifest(version: &str) -> Arc<Manifest> {
        Arc::new(Manifest {
            game: GameId::parse("ut2004").unwrap(),
            version: GameVersion::parse(version).unwrap(),
            files: Vec::new(),
        })
    }

    #[test]
    fn a_digest_is_worked_out_once_per_manifest_and_again_for_a_new_one() {
        let digests = ManifestDigests::default();
        let first = manifest("1");
        assert_eq!(digests.of(&first), first.digest());
        assert_eq!(digests.of(&first.clone()), first.digest());
        // A rebuilt manifest of the same game is a new one.
        let second = manifest("2");
        assert_ne!(second.digest(), first.digest());
        assert_eq!(digests.of(&second), second.digest());
        assert_eq!(digests.of(&first), first.digest());
    }
}
