//! Chunk scheduling across peers, with work stealing.
//!
//! Chunks are numbered 0..n across all files of a manifest ([`ChunkPlan`]).
//! Each peer asks for its next chunk when it has room for another request:
//! pending chunks go first, in order; when none is pending, a peer steals a
//! chunk another peer is still fetching (at most [`MAX_COPIES`] requests per
//! chunk), so a slow peer never holds the end back. The caller decides which
//! steals are worth their bytes ([`Scheduler::next_for_where`]): a copy that
//! would arrive after the original only costs link capacity. The first verified copy
//! of a chunk wins and is written; later copies are dropped. A peer that
//! fails gives its chunks back.
//!
//! This is pure bookkeeping, no I/O: the download engine in `lanspread-net`
//! drives it, and a property test checks it over any mix of speeds and
//! failures.

use std::collections::{BTreeSet, VecDeque};

use crate::manifest::{Blake3Hash, Manifest, chunk_range};
use crate::paths::RelPath;

/// Most requests in flight for one chunk at a time (the original and one
/// stolen copy).
pub const MAX_COPIES: usize = 2;

/// One chunk of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRef {
    /// Index of the file in the manifest.
    pub file: usize,
    /// Index of the chunk within its file.
    pub index: u64,
    pub offset: u64,
    pub len: u64,
    pub hash: Blake3Hash,
}

/// Every chunk of a manifest, numbered globally.
#[derive(Debug, Clone)]
pub struct ChunkPlan {
    pub chunks: Vec<ChunkRef>,
}

impl ChunkPlan {
    pub fn new(manifest: &Manifest) -> Self {
        let mut chunks = Vec::new();
        for (file, entry) in manifest.files.iter().enumerate() {
            for (index, hash) in entry.chunks.iter().enumerate() {
                let index = index as u64;
                if let Some((offset, len)) =
                    chunk_range(entry.len_bytes, manifest.chunk_len_bytes, index)
                {
                    chunks.push(ChunkRef {
                        file,
                        index,
                        offset,
                        len,
                        hash: *hash,
                    });
                }
            }
        }
        Self { chunks }
    }

    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The file path of a chunk.
    pub fn path<'m>(&self, manifest: &'m Manifest, chunk: usize) -> &'m RelPath {
        &manifest.files[self.chunks[chunk].file].path
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ChunkState<P> {
    Pending,
    InFlight(Vec<P>),
    Done,
}

/// The scheduler's view of a download. `P` names a peer.
#[derive(Debug, Clone)]
pub struct Scheduler<P> {
    states: Vec<ChunkState<P>>,
    pending: VecDeque<usize>,
    in_flight: BTreeSet<usize>,
    remaining: usize,
}

/// What a completion means for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion<P> {
    /// The first verified copy: write it. Other peers fetching the same
    /// chunk may be told to stop.
    First { others: Vec<P> },
    /// Another copy already won: drop these bytes.
    Duplicate,
}

impl<P: Clone + PartialEq> Scheduler<P> {
    /// A scheduler for `total` chunks, of which those where `done(i)` holds
    /// are already verified (a resumed download).
    pub fn new(total: usize, done: impl Fn(usize) -> bool) -> Self {
        let mut states = Vec::with_capacity(total);
        let mut pending = VecDeque::new();
        for chunk in 0..total {
            if done(chunk) {
                states.push(ChunkState::Done);
            } else {
                states.push(ChunkState::Pending);
                pending.push_back(chunk);
            }
        }
        let remaining = pending.len();
        Self {
            states,
            pending,
            in_flight: BTreeSet::new(),
            remaining,
        }
    }

    /// Chunks not yet verified.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    pub fn is_finished(&self) -> bool {
        self.remaining == 0
    }

    pub fn is_done(&self, chunk: usize) -> bool {
        matches!(self.states.get(chunk), Some(ChunkState::Done))
    }

    /// The next chunk `peer` should fetch, if any, stealing any chunk others
    /// are still fetching once nothing is pending.
    pub fn next_for(&mut self, peer: &P) -> Option<usize> {
        self.next_for_where(peer, |_, _| true)
    }

    /// The next chunk `peer` should fetch: a pending one, or else the oldest
    /// chunk in flight elsewhere for which `worth_stealing(chunk, holders)`
    /// says a second copy from `peer` would help.
    pub fn next_for_where(
        &mut self,
        peer: &P,
        mut worth_stealing: impl FnMut(usize, &[P]) -> bool,
    ) -> Option<usize> {
        while let Some(chunk) = self.pending.pop_front() {
            if self.states[chunk] == ChunkState::Pending {
                self.states[chunk] = ChunkState::InFlight(vec![peer.clone()]);
                self.in_flight.insert(chunk);
                return Some(chunk);
            }
        }
        // Nothing pending: steal the oldest chunk others are still fetching.
        let stolen = self.in_flight.iter().copied().find(|chunk| {
            matches!(&self.states[*chunk], ChunkState::InFlight(peers)
                if peers.len() < MAX_COPIES && !peers.contains(peer)
                    && worth_stealing(*chunk, peers))
        })?;
        if let ChunkState::InFlight(peers) = &mut self.states[stolen] {
            peers.push(peer.clone());
        }
        Some(stolen)
    }

    /// `peer` delivered `chunk` and it verified.
    pub fn completed(&mut self, chunk: usize, peer: &P) -> Completion<P> {
        match std::mem::replace(&mut self.states[chunk], ChunkState::Done) {
            ChunkState::Done => Completion::Duplicate,
            ChunkState::Pending => {
                self.remaining -= 1;
                Completion::First { others: Vec::new() }
            }
            ChunkState::InFlight(peers) => {
                self.in_flight.remove(&chunk);
                self.remaining -= 1;
                Completion::First {
                    others: peers.into_iter().filter(|p| p != peer).collect(),
                }
            }
        }
    }

    /// `peer` did not deliver `chunk` (error, timeout, bad hash, told to stop).
    pub fn failed(&mut self, chunk: usize, peer: &P) {
        if let ChunkState::InFlight(peers) = &mut self.states[chunk] {
            peers.retain(|p| p != peer);
            if peers.is_empty() {
                self.states[chunk] = ChunkState::Pending;
                self.in_flight.remove(&chunk);
                // Retried first: it was the oldest work.
                self.pending.push_front(chunk);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pending_first_then_stealing_then_duplicates_are_dropped() {
        let mut s = Scheduler::new(3, |i| i == 1);
        assert_eq!(s.remaining(), 2);
        assert_eq!(s.next_for(&"slow"), Some(0));
        assert_eq!(s.next_for(&"fast"), Some(2));
        // Nothing pending: fast steals chunk 0 from slow.
        assert_eq!(s.next_for(&"fast"), Some(0));
        assert_eq!(s.next_for(&"third"), Some(2));
        assert_eq!(s.next_for(&"fourth"), None, "at most two copies per chunk");
        assert_eq!(
            s.completed(0, &"fast"),
            Completion::First {
                others: vec!["slow"]
            }
        );
        assert_eq!(s.completed(0, &"slow"), Completion::Duplicate);
        s.failed(2, &"fast");
        s.failed(2, &"third");
        assert_eq!(s.next_for(&"slow"), Some(2));
        assert!(matches!(s.completed(2, &"slow"), Completion::First { .. }));
        assert!(s.is_finished());
    }

    #[test]
    fn steals_only_what_the_caller_finds_worth_it() {
        let mut s = Scheduler::new(3, |_| false);
        for chunk in 0..3 {
            assert_eq!(s.next_for(&"a"), Some(chunk));
        }
        assert_eq!(s.next_for_where(&"b", |_, _| false), None);
        let mut asked = Vec::new();
        let pick = s.next_for_where(&"b", |chunk, holders| {
            asked.push((chunk, holders.to_vec()));
            chunk == 1
        });
        assert_eq!(pick, Some(1));
        assert_eq!(asked, vec![(0, vec!["a"]), (1, vec!["a"])], "oldest first");
        // Chunk 1 now has two copies in flight: never offered again.
        assert_eq!(s.next_for_where(&"c", |chunk, _| chunk == 1), None);
    }

    /// A peer in the simulation: how long a chunk takes, and whether it dies.
    #[derive(Debug, Clone)]
    struct SimPeer {
        ticks_per_chunk: u64,
        dies_at: Option<u64>,
        lies_on: Option<usize>,
        in_flight: usize,
    }

    proptest! {
        /// For any mix of peer speeds, deaths and lies (with at least one
        /// honest peer that lives), every chunk is written exactly once and
        /// every written chunk came from a verified delivery.
        #[test]
        fn every_chunk_is_written_exactly_once(
            total in 1usize..120,
            done_mask in prop::collection::vec(any::<bool>(), 120),
            peers in prop::collection::vec((1u64..20, prop::option::of(0u64..200), prop::option::of(0usize..120)), 1..6),
            slots in 1usize..5,
            steal_every in 1usize..4,
        ) {
            let mut sim: Vec<SimPeer> = peers.iter().map(|(speed, dies, lies)| SimPeer {
                ticks_per_chunk: *speed,
                dies_at: *dies,
                lies_on: *lies,
                in_flight: 0,
            }).collect();
            // The last peer is honest and immortal.
            let last = sim.len() - 1;
            sim[last].dies_at = None;
            sim[last].lies_on = None;
            let mut scheduler = Scheduler::new(total, |i| done_mask[i]);
            let already: Vec<bool> = (0..total).map(|i| done_mask[i]).collect();
            let mut written = vec![0u32; total];
            let mut dropped = vec![false; sim.len()];
            // (finish tick, peer, chunk)
            let mut events: Vec<(u64, usize, usize)> = Vec::new();
            let mut now = 0u64;
            for _ in 0..100_000 {
                if scheduler.is_finished() { break; }
                for (p, peer) in sim.iter_mut().enumerate() {
                    if dropped[p] { continue; }
                    while peer.in_flight < slots {
                        // Some steals are judged not worth it (all, when 1).
                        let worth = |chunk: usize, _: &[usize]| !(chunk + p).is_multiple_of(steal_every);
                        let Some(chunk) = scheduler.next_for_where(&p, worth) else { break };
                        peer.in_flight += 1;
                        events.push((now + peer.ticks_per_chunk, p, chunk));
                    }
                }
                events.sort();
                let Some(&(tick, p, chunk)) = events.first() else { break };
                events.remove(0);
                now = tick;
                sim[p].in_flight -= 1;
                if dropped[p] { continue; }
                let dead = sim[p].dies_at.is_some_and(|d| now >= d);
                let lied = sim[p].lies_on == Some(chunk);
                if dead || lied {
                    // The peer is dropped: everything it had goes back.
                    dropped[p] = true;
                    scheduler.failed(chunk, &p);
                    for &(_, q, c) in events.iter().filter(|(_, q, _)| *q == p) {
                        scheduler.failed(c, &q);
                    }
                    continue;
                }
                if let Completion::First { .. } = scheduler.completed(chunk, &p) {
                    written[chunk] += 1;
                }
            }
            prop_assert!(scheduler.is_finished());
            for chunk in 0..total {
                let expected = if already[chunk] { 0 } else { 1 };
                prop_assert_eq!(written[chunk], expected, "chunk {}", chunk);
            }
        }
    }
}
