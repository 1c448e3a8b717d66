//! Swarming: what this PC serves of the games it is still downloading, and
//! what a seeder has just sent to whom.
//!
//! A download at the catalog's version registers a [`PartialGame`] here: the
//! manifest it adopted, its open staging files and which chunks are verified
//! and written. The library announces it as partial (with the have-map);
//! serving reads only chunks the map lists. The entry goes before the
//! download ends (paused, cancelled, failed or swapped in); uploads from it
//! are ordinary guarded transfers, so the swap's `begin_operation`, or the
//! wait the download does on its way out, ends them.
//!
//! [`RecentSends`] is the seeder's half of "the seeder sends each chunk about
//! once": a swarm request for bytes that are being sent to another PC, or
//! were in the last few seconds, is refused with `SentElsewhere`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lanspread_core::download::{HaveMap, PiecePlan};
use lanspread_core::{GameId, Manifest};
use tokio::sync::watch;

use crate::open_files::OpenFiles;
use crate::proto::PartialHave;

/// How often, at most, a partial game's have-map is announced again.
pub const ANNOUNCE_EVERY: Duration = Duration::from_millis(500);

/// One game this PC is downloading and serves in part.
#[derive(Debug)]
pub struct PartialGame {
    pub manifest: Arc<Manifest>,
    /// The manifest's digest, announced with the have-map.
    pub digest: lanspread_core::Blake3Hash,
    pub plan: Arc<PiecePlan>,
    /// The staging files, by manifest index (a bounded set of handles).
    pub files: Arc<OpenFiles>,
    /// Chunks verified and written; chunks being fetched. The mutex guards
    /// two bitmaps, held for a copy or a bit test.
    maps: Mutex<PartialHave>,
}

impl PartialGame {
    pub fn new(manifest: Arc<Manifest>, plan: Arc<PiecePlan>, files: Arc<OpenFiles>) -> Self {
        let n = plan.len();
        Self {
            digest: manifest.digest(),
            manifest,
            plan,
            files,
            maps: Mutex::new(PartialHave {
                have: HaveMap::empty(n),
                fetching: HaveMap::empty(n),
            }),
        }
    }

    /// What to announce.
    pub fn have(&self) -> PartialHave {
        self.maps.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether every piece holding bytes `offset..offset+len` of file
    /// `file` is verified and written.
    pub fn holds_range(&self, file: usize, offset: u64, len: u64) -> bool {
        let pieces = self.plan.pieces_of_range(file, offset, len);
        let maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        !pieces.is_empty() && pieces.iter().all(|p| maps.have.has(*p))
    }

    fn set(&self, have: &HaveMap, fetching: HaveMap) -> bool {
        let mut maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        let changed = maps.have != *have || maps.fetching != fetching;
        maps.have.clone_from(have);
        maps.fetching = fetching;
        changed
    }
}

/// The games this PC serves in part, shared by downloads, serving and the
/// library announcement.
#[derive(Debug, Clone)]
pub struct PartialShares {
    /// The mutex guards the map of entries; held to insert, remove or clone
    /// one Arc.
    games: Arc<Mutex<BTreeMap<GameId, Arc<PartialGame>>>>,
    /// Moves whenever an entry or a have-map changes.
    changed: watch::Sender<u64>,
}

impl Default for PartialShares {
    fn default() -> Self {
        Self {
            games: Arc::default(),
            changed: watch::channel(0).0,
        }
    }
}

impl PartialShares {
    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn insert(&self, game: Arc<PartialGame>) {
        let id = game.manifest.game.clone();
        self.games
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, game);
        self.bump();
    }

    pub fn remove(&self, game: &GameId) {
        let removed = self
            .games
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(game);
        if removed.is_some() {
            self.bump();
        }
    }

    pub fn get(&self, game: &GameId) -> Option<Arc<PartialGame>> {
        self.games
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(game)
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<PartialGame>> {
        self.games
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// A download's maps moved on.
    pub fn update(&self, game: &PartialGame, have: &HaveMap, fetching: HaveMap) {
        if game.set(have, fetching) {
            self.bump();
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// How long after a chunk was sent whole a swarm request for it is still
/// refused (the receiver announces it within about [`ANNOUNCE_EVERY`]).
pub const RECENTLY_SENT: Duration = Duration::from_secs(3);
/// Entries kept at most; older ones are forgotten first.
const MAX_RECENT: usize = 4096;

/// What a PC is sending now, or sent lately: chunk key -> (transfers live,
/// when one last finished).
#[derive(Debug, Default)]
pub struct RecentSends {
    /// The mutex guards the map; held for a lookup and an update.
    sends: Mutex<HashMap<SendKey, (usize, Option<Instant>)>>,
}

/// (game, path, offset) of a chunk.
type SendKey = (GameId, String, u64);

/// A transfer counted in [`RecentSends`]; gives its place back when dropped.
#[derive(Debug)]
pub struct Sending<'a> {
    recent: &'a RecentSends,
    key: SendKey,
    pub finished: bool,
}

impl RecentSends {
    /// Counts a transfer of `key` unless `swarm` is set and the same bytes
    /// are being sent or were sent lately: then `None` (refuse it).
    pub fn begin(&self, key: SendKey, swarm: bool, now: Instant) -> Option<Sending<'_>> {
        let mut sends = self.sends.lock().unwrap_or_else(|p| p.into_inner());
        if sends.len() >= MAX_RECENT {
            sends.retain(|_, (live, done)| {
                *live > 0 || done.is_some_and(|t| now.saturating_duration_since(t) < RECENTLY_SENT)
            });
        }
        let entry = sends.entry(key.clone()).or_insert((0, None));
        let recent = entry
            .1
            .is_some_and(|t| now.saturating_duration_since(t) < RECENTLY_SENT);
        if swarm && (entry.0 > 0 || recent) {
            return None;
        }
        entry.0 += 1;
        Some(Sending {
            recent: self,
            key,
            finished: false,
        })
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        let mut sends = self.recent.sends.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = sends.get_mut(&self.key) {
            entry.0 = entry.0.saturating_sub(1);
            if self.finished {
                entry.1 = Some(Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swarm_request_for_bytes_in_flight_or_just_sent_is_refused() {
        let recent = RecentSends::default();
        let game = GameId::parse("ut2004").unwrap();
        let key = (game, "a.pak".to_owned(), 0);
        let now = Instant::now();
        let mut first = recent.begin(key.clone(), true, now).unwrap();
        assert!(recent.begin(key.clone(), true, now).is_none(), "in flight");
        // A plain request (no partial peers to ask) is always served.
        assert!(recent.begin(key.clone(), false, now).is_some());
        first.finished = true;
        drop(first);
        assert!(
            recent.begin(key.clone(), true, Instant::now()).is_none(),
            "just sent"
        );
        let later = Instant::now() + RECENTLY_SENT;
        assert!(recent.begin(key, true, later).is_some());
    }
}
