//! A download's decisions, as one I/O-free state machine.
//!
//! The machine decides what to ask whom, when a peer is stalled, when a
//! second copy of a chunk is worth its bytes, when a verified chunk is
//! written and when the journal is flushed. It does no I/O and reads no
//! clock: `lanspread-net` drives it with events (a peer appeared with a
//! have-map, bytes arrived, a chunk verified or failed, a write finished,
//! time advanced to `now`) and performs the [`Action`]s it returns, the way
//! quinn drives quinn-proto. Tests drive it with a virtual clock.
//!
//! What it holds is the one record of what is in flight: every request
//! (peer, chunk, when asked) lives in one map, and the per-chunk and
//! per-peer counts are changed only by the two functions that open and
//! close a request.
//!
//! The rules:
//! - A peer is dropped for making no progress (no byte of any of its
//!   requests for [`STALL_AFTER`]), for an error, or for bytes that fail a
//!   hash; never for being slow.
//! - Requests in flight per peer follow what it delivers: its rate times
//!   [`TARGET_LATENCY`], within 1..=[`MAX_WINDOW`] chunks ([`PROBE_WINDOW`]
//!   until its first answer measured it), so a crowded seeder is not handed
//!   more than it can send in about a second.
//! - Chunks are taken in a random order fixed per download (so downloaders
//!   starting together ask a seeder for different chunks), rarest first
//!   among partial peers (downloaders that serve what they verified). A
//!   whole peer (a seeder) is asked for chunks no partial peer has; a chunk
//!   partial peers have is left to them unless the seeder would deliver it
//!   at least [`SEEDER_EDGE`] times as fast.
//! - With nothing left to ask, a peer may ask for a chunk already in flight
//!   elsewhere, when its copy would likely arrive first ([`worth_stealing`]);
//!   at most [`MAX_COPIES`] requests per chunk. The first verified copy wins.
//! - A partial peer that says it does not hold a chunk is asked for others;
//!   a peer that stopped serving the game (an update or the swap at the end
//!   of its own download) waits until its announcement changes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::manifest::{Blake3Hash, CDC_MAX_BYTES, CDC_MIN_BYTES, Manifest};

/// Most requests in flight for one chunk at a time (the original and one
/// stolen copy).
pub const MAX_COPIES: u8 = 2;
/// Fewest requests a peer is given (two keep its link busy between them).
pub const MIN_WINDOW: usize = 2;
/// Requests to a peer whose speed is unknown: one, whose answer measures
/// it. (When a whole party starts at once, every PC asks the one seeder;
/// one chunk each arrives in half the time two would, and is served on.)
pub const PROBE_WINDOW: usize = 1;
/// Most requests in flight per peer. The lab bench found 8 keeps a single
/// 1 Gbit seeder's link full; 16 was no better.
pub const MAX_WINDOW: usize = 8;
/// How much of a peer's delivery a window holds: requests in flight are
/// about its rate times this.
pub const TARGET_LATENCY: Duration = Duration::from_secs(1);
/// A peer with requests in flight that delivers no byte for this long is
/// dropped.
pub const STALL_AFTER: Duration = Duration::from_secs(10);
/// Verified chunks waiting for the disk, at most, before no new request is
/// made: a disk slower than the network holds the download back instead of
/// filling memory.
pub const MAX_QUEUED_WRITES: usize = 8;
/// Bytes asked for and not yet written, at most, over all peers (in
/// flight, arrived and being checked, or waiting for the disk): what a
/// download holds in memory grows neither with its number of sources nor
/// with a disk slower than the network.
pub const MAX_IN_FLIGHT_BYTES: u64 = 24 << 20;
/// How often the journal is flushed while chunks are being written.
pub const JOURNAL_EVERY: Duration = Duration::from_secs(1);
/// How much faster than every partial peer holding a chunk a seeder must
/// be to be asked for it (rate estimates are noisy; at 2 a crowded seeder
/// kept taking chunks the party already had).
pub const SEEDER_EDGE: f64 = 4.0;
/// How long a chunk a seeder refused as sent elsewhere is not asked of it
/// again (the PC it went to announces it within a second or so).
pub const DEFER_AFTER_SENT_ELSEWHERE: Duration = Duration::from_secs(5);
/// With no peer left to ask, how long to wait for one before giving up.
pub const LOST_GRACE: Duration = Duration::from_secs(3);
/// How long a peer that stopped serving (its own swap, an update) is
/// waited for when no other peer is left.
pub const STOPPED_GRACE: Duration = Duration::from_secs(20);

/// A piece's bytes are at least this many unless the manifest ends: small
/// files travel together, so a game of 50,000 files of 4 KiB is about 260
/// requests, not 50,000 round trips. A chunk of a big file (at least this
/// long) is a piece of its own, so requests stay about 1 MiB and a
/// download's memory (requests in flight per peer) stays small.
pub const PIECE_FILL_BYTES: u64 = CDC_MIN_BYTES as u64;
/// No piece is longer (the longest chunk).
pub const MAX_PIECE_BYTES: u64 = CDC_MAX_BYTES as u64;
/// Most chunks (each a byte range of one file) in one piece.
pub const MAX_PIECE_CHUNKS: usize = 256;
/// Most bytes of file paths one piece's request names.
pub const MAX_PIECE_PATH_BYTES: usize = 32 * 1024;

/// One chunk of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRef {
    /// Index of the file in the manifest.
    pub file: usize,
    pub offset: u64,
    pub len: u64,
    pub hash: Blake3Hash,
}

/// A piece: chunks next to each other in manifest order, asked for in one
/// request. The unit of scheduling, of the journal and of the have-maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceRef {
    /// Its chunks, as indices into [`PiecePlan::chunks`].
    pub chunks: std::ops::Range<usize>,
    pub len: u64,
}

/// One byte range of one file, as a request names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRange {
    pub file: usize,
    pub offset: u64,
    pub len: u64,
}

/// Every chunk of a manifest, numbered globally in manifest order, and the
/// pieces they are grouped into. Every PC groups one manifest the same way.
#[derive(Debug, Clone)]
pub struct PiecePlan {
    pub chunks: Vec<ChunkRef>,
    pub pieces: Vec<PieceRef>,
}

impl PiecePlan {
    /// Chunks join the piece before them while it is shorter than
    /// [`PIECE_FILL_BYTES`] and stays within [`MAX_PIECE_BYTES`],
    /// [`MAX_PIECE_CHUNKS`] and [`MAX_PIECE_PATH_BYTES`].
    pub fn new(manifest: &Manifest) -> Self {
        let mut chunks = Vec::with_capacity(manifest.total_chunks());
        for (file, entry) in manifest.files.iter().enumerate() {
            for (offset, chunk) in entry.chunk_offsets() {
                chunks.push(ChunkRef {
                    file,
                    offset,
                    len: u64::from(chunk.len),
                    hash: chunk.hash,
                });
            }
        }
        let mut pieces: Vec<PieceRef> = Vec::new();
        let mut path_bytes = 0;
        for (index, chunk) in chunks.iter().enumerate() {
            let new_file = index == 0 || chunks[index - 1].file != chunk.file;
            let path_len = if new_file {
                manifest.files[chunk.file].path.as_str().len()
            } else {
                0
            };
            let joins = pieces.last().is_some_and(|piece| {
                piece.len < PIECE_FILL_BYTES
                    && piece.len + chunk.len <= MAX_PIECE_BYTES
                    && piece.chunks.len() < MAX_PIECE_CHUNKS
                    && path_bytes + path_len <= MAX_PIECE_PATH_BYTES
            });
            match pieces.last_mut() {
                Some(piece) if joins => {
                    piece.chunks.end = index + 1;
                    piece.len += chunk.len;
                    path_bytes += path_len;
                }
                _ => {
                    pieces.push(PieceRef {
                        chunks: index..index + 1,
                        len: chunk.len,
                    });
                    path_bytes = manifest.files[chunk.file].path.as_str().len();
                }
            }
        }
        Self { chunks, pieces }
    }

    /// Number of pieces.
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The chunks of a piece.
    pub fn piece_chunks(&self, piece: usize) -> &[ChunkRef] {
        &self.chunks[self.pieces[piece].chunks.clone()]
    }

    /// The byte ranges a piece's request names: its chunks, those next to
    /// each other in one file joined.
    pub fn ranges(&self, piece: usize) -> Vec<FileRange> {
        let mut ranges: Vec<FileRange> = Vec::new();
        for chunk in self.piece_chunks(piece) {
            match ranges.last_mut() {
                Some(last) if last.file == chunk.file && last.offset + last.len == chunk.offset => {
                    last.len += chunk.len;
                }
                _ => ranges.push(FileRange {
                    file: chunk.file,
                    offset: chunk.offset,
                    len: chunk.len,
                }),
            }
        }
        ranges
    }

    /// The piece a chunk belongs to.
    pub fn piece_of_chunk(&self, chunk: usize) -> usize {
        self.pieces
            .partition_point(|p| p.chunks.end <= chunk)
            .min(self.pieces.len().saturating_sub(1))
    }

    /// The pieces holding bytes `offset..offset + len` of file `file`.
    pub fn pieces_of_range(&self, file: usize, offset: u64, len: u64) -> Vec<usize> {
        let end = offset.saturating_add(len);
        let first = self.chunks.partition_point(|c| c.file < file);
        let mut pieces: Vec<usize> = Vec::new();
        for (i, c) in self.chunks[first..].iter().enumerate() {
            if c.file != file || c.offset >= end {
                break;
            }
            if offset < c.offset + c.len {
                let piece = self.piece_of_chunk(first + i);
                if pieces.last() != Some(&piece) {
                    pieces.push(piece);
                }
            }
        }
        pieces
    }
}

/// Which chunks of a plan a PC holds: one bit per chunk. The wire form of a
/// partial peer's announcement and of the download journal.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HaveMap {
    chunks: u32,
    bits: Vec<u8>,
}

impl HaveMap {
    /// Nothing held, of `chunks` chunks.
    pub fn empty(chunks: usize) -> Self {
        Self {
            chunks: u32::try_from(chunks).unwrap_or(u32::MAX),
            bits: vec![0; chunks.div_ceil(8)],
        }
    }

    /// Every one of `chunks` chunks held.
    pub fn full(chunks: usize) -> Self {
        let mut map = Self::empty(chunks);
        for chunk in 0..chunks {
            map.set(chunk);
        }
        map
    }

    /// How many chunks the map is for.
    pub fn chunks(&self) -> usize {
        self.chunks as usize
    }

    /// Whether the map is well formed for a plan of `chunks` chunks (a peer
    /// sent it; nothing else is trusted about it).
    pub fn fits(&self, chunks: usize) -> bool {
        self.chunks() == chunks && self.bits.len() == chunks.div_ceil(8)
    }

    pub fn has(&self, chunk: usize) -> bool {
        chunk < self.chunks()
            && self
                .bits
                .get(chunk / 8)
                .is_some_and(|byte| byte & (1 << (chunk % 8)) != 0)
    }

    pub fn set(&mut self, chunk: usize) {
        if chunk < self.chunks()
            && let Some(byte) = self.bits.get_mut(chunk / 8)
        {
            *byte |= 1 << (chunk % 8);
        }
    }

    pub fn clear(&mut self, chunk: usize) {
        if let Some(byte) = self.bits.get_mut(chunk / 8) {
            *byte &= !(1 << (chunk % 8));
        }
    }

    /// Chunks held.
    pub fn count(&self) -> usize {
        self.bits.iter().map(|b| b.count_ones() as usize).sum()
    }

    pub fn is_full(&self) -> bool {
        self.count() == self.chunks()
    }
}

/// A peer's delivery rate lately, in bytes per second over all its requests
/// (a moving average; requests to one peer share its link).
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerRate(Option<f64>);

impl PeerRate {
    /// A request of `len` bytes took `took` while `sharing` requests (itself
    /// included) were in flight to the peer.
    pub fn observe(&mut self, len: u64, sharing: usize, took: Duration) {
        let sample = len as f64 * sharing as f64 / took.as_secs_f64().max(1e-6);
        self.0 = Some(match self.0 {
            Some(mean) => mean + (sample - mean) / 4.0,
            None => sample,
        });
    }

    /// Bytes per second, once known.
    pub fn bytes_per_sec(self) -> Option<f64> {
        self.0
    }

    /// How long a request of `len` bytes takes with `sharing` requests in
    /// flight, once the rate is known.
    pub fn request_secs(self, len: u64, sharing: usize) -> Option<f64> {
        self.0.map(|rate| len as f64 * sharing as f64 / rate)
    }
}

/// A holder whose peer delivered no byte for this long is not counted on.
pub const QUIET_HOLDER: Duration = Duration::from_secs(2);

/// One request a stealer would race: how long it takes at its peer's rate
/// and load (once known), how long ago it was asked, and how long ago its
/// peer last delivered a byte.
#[derive(Debug, Clone, Copy)]
pub struct Holder {
    pub expected_secs: Option<f64>,
    pub asked_ago: Duration,
    pub quiet_for: Duration,
}

impl Holder {
    /// Whether its copy can be waited for: its peer is delivering, and the
    /// request is not overdue (twice its expected time).
    fn counted_on(&self) -> bool {
        self.quiet_for < QUIET_HOLDER
            && self
                .expected_secs
                .is_none_or(|expected| self.asked_ago.as_secs_f64() <= 2.0 * expected)
    }
}

/// Whether a second copy of a chunk, which the stealer would deliver in
/// `stealer_secs`, would likely arrive before the copies already asked of
/// `holders`. A holder not counted on ([`Holder::counted_on`]) is raced by
/// anyone. A stealer whose speed is unknown races no one else: with fifteen
/// new peers at once, stealing on a guess doubled the bytes on the wire.
/// Between peers of one speed this steals only at the very end, where an
/// idle peer beats the tail of a busy one.
pub fn worth_stealing(stealer_secs: Option<f64>, holders: &[Holder]) -> bool {
    holders.iter().all(|holder| {
        if !holder.counted_on() {
            return true;
        }
        match (holder.expected_secs, stealer_secs) {
            (Some(expected), Some(mine)) => expected - holder.asked_ago.as_secs_f64() > mine,
            _ => false,
        }
    })
}

/// One request, as the machine names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// A peer, as the machine numbers them (in the order they were added).
pub type PeerIndex = usize;

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask `peer` for `chunk`; report the outcome with this id.
    Request {
        id: RequestId,
        peer: PeerIndex,
        chunk: usize,
        /// Asked of a whole peer while partial peers could supply the
        /// chunk later: the peer may refuse a chunk it is already sending
        /// to another PC ([`Failure::SentElsewhere`]).
        swarm: bool,
    },
    /// Stop this request: another copy of its chunk won, or its peer was
    /// dropped. Its outcome, if it still comes, is ignored.
    Cancel { id: RequestId },
    /// Make the journal say what is written (sync, then store the have-map),
    /// then report [`DownloadMachine::journal_flushed`].
    FlushJournal,
    /// This peer is not used any more in this download.
    DropPeer { peer: PeerIndex, reason: String },
    /// The download cannot finish now: no peer is left.
    GiveUp { reason: String },
}

/// How a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A partial peer does not hold the chunk (its have-map was stale):
    /// the chunk is asked elsewhere, the peer keeps serving others.
    NotHeld,
    /// The peer stopped serving the game (an update, a remove, or the swap
    /// at the end of its own download): it is asked nothing until its
    /// announcement changes.
    Stopped(String),
    /// A seeder is sending this chunk to another PC of the party right now
    /// (or just did): it is asked of partial peers once they hold it, and of
    /// this peer again only after [`DEFER_AFTER_SENT_ELSEWHERE`].
    SentElsewhere,
    /// An error, a reset or a refusal that will not change: dropped.
    Broken(String),
    /// Bytes that fail the chunk hash: dropped.
    BadHash,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PeerStatus {
    Active,
    /// Stopped serving; waits for its announcement to change.
    Stopped,
    Dropped(String),
}

#[derive(Debug, Clone)]
struct Peer {
    /// `None`: holds the whole game. `Some`: a partial peer's chunks.
    have: Option<HaveMap>,
    /// What a partial peer is fetching now (it will hold them soon).
    fetching: Option<HaveMap>,
    /// Chunks it refused as sent elsewhere, not asked again until then.
    deferred: BTreeMap<usize, Instant>,
    status: PeerStatus,
    rate: PeerRate,
    in_flight: usize,
    /// Bytes received over all its requests, as last reported.
    received: u64,
    /// When it last delivered a byte (or was first asked, after idling).
    progress_at: Instant,
    delivered_bytes: u64,
    /// How long it had been silent when the last of its requests was
    /// taken over by another peer's copy; cleared when it delivers again.
    went_silent: Option<Duration>,
}

impl Peer {
    fn holds(&self, chunk: usize) -> bool {
        self.have.as_ref().is_none_or(|h| h.has(chunk))
    }

    fn is_partial(&self) -> bool {
        self.have.is_some()
    }
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    peer: PeerIndex,
    chunk: usize,
    asked: Instant,
    /// Requests to that peer in flight when it was asked, itself included.
    sharing: usize,
}

/// What a verified delivery means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The first verified copy: write it, then report
    /// [`DownloadMachine::chunk_written`].
    First,
    /// Another copy already won, or the request was written off: drop it.
    Ignored,
}

/// The state of one download.
#[derive(Debug, Clone)]
pub struct DownloadMachine {
    lens: Vec<u64>,
    max_chunk_len: u64,
    /// Chunks verified and written (the journal's truth).
    written: HaveMap,
    /// Chunks verified (written or queued for writing).
    verified: HaveMap,
    /// Requests in flight per chunk.
    copies: Vec<u8>,
    /// Active partial peers holding each chunk.
    availability: Vec<u16>,
    /// Active partial peers fetching each chunk now.
    incoming: Vec<u16>,
    /// Chunks neither verified nor in flight, by their place in the random
    /// order.
    pending: BTreeSet<u32>,
    /// Place of each chunk in the random order, and the chunk at each place.
    rank: Vec<u32>,
    order: Vec<u32>,
    peers: Vec<Peer>,
    requests: BTreeMap<RequestId, InFlight>,
    next_id: u64,
    queued_writes: usize,
    /// Bytes of the requests in flight (every copy) and of the verified
    /// chunks waiting for the disk: at most [`MAX_IN_FLIGHT_BYTES`].
    held_bytes: u64,
    journal_dirty: bool,
    flushing: bool,
    last_flush: Instant,
    /// Since when no peer could be asked, while chunks are missing.
    idle_since: Option<Instant>,
    actions: Vec<Action>,
    gave_up: bool,
    /// Requests for a chunk another peer was still fetching.
    second_copies: usize,
    /// Which peer is offered a free place first.
    turn: usize,
}

impl DownloadMachine {
    /// A download of chunks of `lens` bytes, of which those `already`
    /// holds are verified and written (a resume). `seed` fixes the random
    /// order.
    pub fn new(lens: Vec<u64>, already: &HaveMap, seed: u64, now: Instant) -> Self {
        let n = lens.len();
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        let mut rank = vec![0u32; n];
        for (place, chunk) in order.iter().enumerate() {
            rank[*chunk as usize] = place as u32;
        }
        let mut written = HaveMap::empty(n);
        let mut pending = BTreeSet::new();
        for (chunk, place) in rank.iter().enumerate() {
            if already.has(chunk) {
                written.set(chunk);
            } else {
                pending.insert(*place);
            }
        }
        Self {
            max_chunk_len: lens.iter().copied().max().unwrap_or(1).max(1),
            lens,
            verified: written.clone(),
            written,
            copies: vec![0; n],
            availability: vec![0; n],
            incoming: vec![0; n],
            pending,
            rank,
            order,
            peers: Vec::new(),
            requests: BTreeMap::new(),
            next_id: 0,
            queued_writes: 0,
            held_bytes: 0,
            journal_dirty: false,
            flushing: false,
            last_flush: now,
            idle_since: None,
            actions: Vec::new(),
            gave_up: false,
            second_copies: 0,
            turn: 0,
        }
    }

    /// A machine for every piece of `plan` (its "chunks" are the pieces).
    pub fn for_plan(plan: &PiecePlan, already: &HaveMap, seed: u64, now: Instant) -> Self {
        Self::new(
            plan.pieces.iter().map(|p| p.len).collect(),
            already,
            seed,
            now,
        )
    }

    /// Every chunk is verified and written.
    pub fn is_finished(&self) -> bool {
        self.written.is_full()
    }

    /// Chunks verified and written, for the journal and for serving.
    pub fn written_map(&self) -> &HaveMap {
        &self.written
    }

    /// Chunks not yet verified.
    pub fn remaining(&self) -> usize {
        self.lens.len() - self.verified.count()
    }

    pub fn second_copies(&self) -> usize {
        self.second_copies
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.requests.len()
    }

    /// Requests in flight to `peer`.
    pub fn in_flight_to(&self, peer: PeerIndex) -> usize {
        self.peers.get(peer).map_or(0, |p| p.in_flight)
    }

    /// Verified bytes `peer` delivered that were written.
    pub fn delivered_by(&self, peer: PeerIndex) -> u64 {
        self.peers.get(peer).map_or(0, |p| p.delivered_bytes)
    }

    /// Why `peer` was dropped, if it was.
    pub fn dropped(&self, peer: PeerIndex) -> Option<&str> {
        match &self.peers.get(peer)?.status {
            PeerStatus::Dropped(reason) => Some(reason),
            _ => None,
        }
    }

    /// Whether `peer` waits for its announcement to change.
    pub fn is_stopped(&self, peer: PeerIndex) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| p.status == PeerStatus::Stopped)
    }

    /// The chunk and peer of a request still in flight.
    pub fn request(&self, id: RequestId) -> Option<(PeerIndex, usize)> {
        self.requests.get(&id).map(|r| (r.peer, r.chunk))
    }

    /// A peer appeared: `have` is `None` for one holding the whole game,
    /// or the chunks a partial peer holds. A map that does not fit the plan
    /// counts as holding nothing.
    pub fn add_peer(&mut self, have: Option<HaveMap>, now: Instant) -> PeerIndex {
        let index = self.peers.len();
        self.peers.push(Peer {
            have: None,
            fetching: None,
            deferred: BTreeMap::new(),
            status: PeerStatus::Active,
            rate: PeerRate::default(),
            in_flight: 0,
            received: 0,
            progress_at: now,
            went_silent: None,
            delivered_bytes: 0,
        });
        self.set_maps(index, have, None);
        index
    }

    /// A peer's announcement changed: its have-map (or now whole) and, for a
    /// partial peer, what it is fetching now. A peer that had stopped
    /// serving is asked again.
    pub fn peer_announced(
        &mut self,
        peer: PeerIndex,
        have: Option<HaveMap>,
        fetching: Option<HaveMap>,
    ) {
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        if matches!(p.status, PeerStatus::Dropped(_)) {
            return;
        }
        if p.status == PeerStatus::Stopped {
            p.status = PeerStatus::Active;
            self.count_availability(peer, 1);
        }
        self.set_maps(peer, have, fetching);
    }

    /// Replaces a peer's maps, keeping the availability counts in step. A
    /// have-map that does not fit the plan counts as holding nothing; such a
    /// fetching map is ignored.
    fn set_maps(&mut self, peer: PeerIndex, have: Option<HaveMap>, fetching: Option<HaveMap>) {
        let n = self.lens.len();
        self.count_availability(peer, -1);
        let p = &mut self.peers[peer];
        p.have = have.map(|h| if h.fits(n) { h } else { HaveMap::empty(n) });
        p.fetching = fetching.filter(|f| f.fits(n));
        self.count_availability(peer, 1);
    }

    /// The chunks this download has in flight, for its own announcement as
    /// a partial peer.
    pub fn fetching_map(&self) -> HaveMap {
        let mut map = HaveMap::empty(self.lens.len());
        for request in self.requests.values() {
            map.set(request.chunk);
        }
        map
    }

    /// Adds (`+1`) or takes away (`-1`) an active partial peer's chunks
    /// (held and being fetched) from the counts.
    fn count_availability(&mut self, peer: PeerIndex, sign: i32) {
        let p = &self.peers[peer];
        if p.status != PeerStatus::Active {
            return;
        }
        let step = |count: &mut u16| {
            *count = if sign > 0 {
                count.saturating_add(1)
            } else {
                count.saturating_sub(1)
            };
        };
        for (map, counts) in [
            (&p.have, &mut self.availability),
            (&p.fetching, &mut self.incoming),
        ] {
            if let Some(map) = map {
                for (chunk, count) in counts.iter_mut().enumerate() {
                    if map.has(chunk) {
                        step(count);
                    }
                }
            }
        }
    }

    /// `peer` has now received `total` bytes over all its requests.
    pub fn peer_received(&mut self, peer: PeerIndex, total: u64, now: Instant) {
        if let Some(p) = self.peers.get_mut(peer)
            && total > p.received
        {
            p.received = total;
            p.progress_at = now;
            p.went_silent = None;
        }
    }

    /// How long `peer` had been silent when another peer's copy replaced
    /// its request, if that is the last thing it did: a peer that stopped
    /// answering (killed, cable pulled) before its connection timed out.
    pub fn went_silent(&self, peer: PeerIndex) -> Option<Duration> {
        self.peers.get(peer)?.went_silent
    }

    fn open_request(&mut self, peer: PeerIndex, chunk: usize, now: Instant) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        if self.copies[chunk] > 0 {
            self.second_copies += 1;
        } else {
            self.pending.remove(&self.rank[chunk]);
        }
        self.copies[chunk] += 1;
        self.held_bytes += self.lens[chunk];
        let p = &mut self.peers[peer];
        if p.in_flight == 0 {
            // The stall clock starts when there is something to deliver.
            p.progress_at = now;
        }
        p.in_flight += 1;
        self.requests.insert(
            id,
            InFlight {
                peer,
                chunk,
                asked: now,
                sharing: p.in_flight,
            },
        );
        let swarm = !self.peers[peer].is_partial()
            && self
                .peers
                .iter()
                .any(|p| p.status == PeerStatus::Active && p.is_partial());
        self.actions.push(Action::Request {
            id,
            peer,
            chunk,
            swarm,
        });
        id
    }

    /// Takes a request off the books; its chunk goes back to pending when
    /// no other copy is in flight and it is not verified.
    fn close_request(&mut self, id: RequestId) -> Option<InFlight> {
        let request = self.requests.remove(&id)?;
        self.held_bytes = self.held_bytes.saturating_sub(self.lens[request.chunk]);
        let p = &mut self.peers[request.peer];
        p.in_flight = p.in_flight.saturating_sub(1);
        let chunk = request.chunk;
        self.copies[chunk] = self.copies[chunk].saturating_sub(1);
        if self.copies[chunk] == 0 && !self.verified.has(chunk) {
            self.pending.insert(self.rank[chunk]);
        }
        Some(request)
    }

    /// The request's bytes verified against the chunk hash.
    pub fn delivered(&mut self, id: RequestId, now: Instant) -> Delivery {
        let Some(&request) = self.requests.get(&id) else {
            return Delivery::Ignored;
        };
        let chunk = request.chunk;
        let first = !self.verified.has(chunk);
        // Verified before the request closes, so the chunk is not pending again.
        self.verified.set(chunk);
        self.close_request(id);
        let len = self.lens[chunk];
        let p = &mut self.peers[request.peer];
        p.rate.observe(
            len,
            request.sharing,
            now.saturating_duration_since(request.asked),
        );
        p.progress_at = now;
        if !first {
            return Delivery::Ignored;
        }
        p.delivered_bytes += len;
        self.queued_writes += 1;
        self.held_bytes += len;
        // Other copies are cancelled; a holder that had gone quiet is noted.
        let holders: Vec<PeerIndex> = self
            .requests
            .values()
            .filter(|r| r.chunk == chunk)
            .map(|r| r.peer)
            .collect();
        for holder in holders {
            let h = &mut self.peers[holder];
            let quiet = now.saturating_duration_since(h.progress_at);
            if quiet >= QUIET_HOLDER {
                h.went_silent = Some(quiet);
            }
        }
        self.cancel_where(|r| r.chunk == chunk);
        Delivery::First
    }

    /// The request failed.
    pub fn failed(&mut self, id: RequestId, failure: Failure, now: Instant) {
        let Some(request) = self.close_request(id) else {
            return;
        };
        let peer = request.peer;
        match failure {
            Failure::NotHeld => {
                let chunk = request.chunk;
                let p = &mut self.peers[peer];
                if let Some(have) = &mut p.have
                    && have.has(chunk)
                {
                    have.clear(chunk);
                    if p.status == PeerStatus::Active {
                        self.availability[chunk] = self.availability[chunk].saturating_sub(1);
                    }
                }
                self.peers[peer].progress_at = now;
            }
            Failure::SentElsewhere => {
                let p = &mut self.peers[peer];
                p.deferred
                    .insert(request.chunk, now + DEFER_AFTER_SENT_ELSEWHERE);
                p.progress_at = now;
            }
            Failure::Stopped(reason) => {
                tracing::debug!(peer, "stopped serving: {reason}");
                self.count_availability(peer, -1);
                self.peers[peer].status = PeerStatus::Stopped;
                self.cancel_all_of(peer);
            }
            Failure::Broken(reason) => self.drop_peer(peer, reason),
            Failure::BadHash => {
                self.drop_peer(peer, "it sent bytes that fail the chunk hash".to_owned());
            }
        }
    }

    /// A verified chunk is on disk.
    pub fn chunk_written(&mut self, chunk: usize) {
        self.queued_writes = self.queued_writes.saturating_sub(1);
        if let Some(len) = self.lens.get(chunk) {
            self.held_bytes = self.held_bytes.saturating_sub(*len);
        }
        self.written.set(chunk);
        self.journal_dirty = true;
    }

    /// The flush asked for is done.
    pub fn journal_flushed(&mut self, now: Instant) {
        self.flushing = false;
        self.last_flush = now;
    }

    /// Whether a journal flush is owed (chunks written since the last one).
    pub fn journal_dirty(&self) -> bool {
        self.journal_dirty
    }

    /// Closes every request in flight that `matches`, telling the driver to
    /// stop it.
    fn cancel_where(&mut self, matches: impl Fn(&InFlight) -> bool) {
        let ids: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, r)| matches(r))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.close_request(id);
            self.actions.push(Action::Cancel { id });
        }
    }

    fn cancel_all_of(&mut self, peer: PeerIndex) {
        self.cancel_where(|r| r.peer == peer);
    }

    /// Drops `peer` for this download; its chunks go elsewhere.
    pub fn drop_peer(&mut self, peer: PeerIndex, reason: String) {
        let Some(p) = self.peers.get(peer) else {
            return;
        };
        if matches!(p.status, PeerStatus::Dropped(_)) {
            return;
        }
        self.count_availability(peer, -1);
        self.peers[peer].status = PeerStatus::Dropped(reason.clone());
        self.cancel_all_of(peer);
        self.actions.push(Action::DropPeer { peer, reason });
    }

    /// Chunks that take about [`TARGET_LATENCY`] at `rate` bytes per second.
    fn chunks_in_target(&self, rate: f64) -> usize {
        (rate * TARGET_LATENCY.as_secs_f64() / self.max_chunk_len as f64).ceil() as usize
    }

    /// How many requests `peer` should have in flight: what it delivers in
    /// about [`TARGET_LATENCY`]; [`PROBE_WINDOW`] while its rate is unknown.
    fn window(&self, peer: PeerIndex) -> usize {
        let rate = self.peers[peer].rate.bytes_per_sec();
        rate.map_or(PROBE_WINDOW, |rate| {
            self.chunks_in_target(rate).clamp(1, MAX_WINDOW)
        })
    }

    /// How many requests the whole download should have in flight: what
    /// all its peers together deliver in about [`TARGET_LATENCY`] (their
    /// rates add up to this PC's downlink when that is the limit), so many
    /// sources do not queue more than a second of the downlink between them.
    fn total_window(&self) -> usize {
        let active: Vec<&Peer> = self
            .peers
            .iter()
            .filter(|p| p.status == PeerStatus::Active)
            .collect();
        let per_peer_max = active.len() * MAX_WINDOW;
        if active.iter().any(|p| p.rate.bytes_per_sec().is_none()) {
            return per_peer_max;
        }
        let rate: f64 = active.iter().filter_map(|p| p.rate.bytes_per_sec()).sum();
        (self.chunks_in_target(rate) + 1).clamp(MIN_WINDOW, per_peer_max.max(MIN_WINDOW))
    }

    /// Whether asking for `chunk` keeps the bytes the download holds (asked
    /// for, being checked, waiting for the disk) within
    /// [`MAX_IN_FLIGHT_BYTES`]: the one bound on its memory, counted in
    /// bytes because the pieces asked for at once may be the longest (up to
    /// 4 MiB where the mean is 1). With nothing held, any chunk fits.
    fn fits_held_bytes(&self, chunk: usize) -> bool {
        self.held_bytes == 0 || self.held_bytes + self.lens[chunk] <= MAX_IN_FLIGHT_BYTES
    }

    /// Seconds a new request of `len` bytes to `peer` would take, counting
    /// the requests it already has.
    fn expected_secs(&self, peer: PeerIndex, len: u64) -> Option<f64> {
        let p = &self.peers[peer];
        p.rate.request_secs(len, p.in_flight + 1)
    }

    /// Whether a whole peer should take `chunk`, which partial peers also
    /// hold: only if it would deliver it [`SEEDER_EDGE`] times as fast as every
    /// one of them.
    fn whole_beats_partials(&self, peer: PeerIndex, chunk: usize) -> bool {
        let len = self.lens[chunk];
        let Some(mine) = self.expected_secs(peer, len) else {
            return false;
        };
        self.peers.iter().enumerate().all(|(other, p)| {
            !(p.status == PeerStatus::Active && p.is_partial() && p.holds(chunk))
                || self
                    .expected_secs(other, len)
                    .is_some_and(|theirs| mine * SEEDER_EDGE < theirs)
        })
    }

    /// The pending chunk `peer` should be asked for next, if any.
    fn pick_pending(&self, peer: PeerIndex, now: Instant) -> Option<usize> {
        let p = &self.peers[peer];
        let mut best: Option<(u16, usize)> = None;
        // For a whole peer: a chunk no partial peer holds, though one says
        // it is fetching it (the seeder refuses it if it is really sending
        // it elsewhere; the announcement may be stale or its fetch stuck).
        let mut unheld: Option<(u16, usize)> = None;
        for place in &self.pending {
            let chunk = self.order[*place as usize] as usize;
            if !p.holds(chunk) || p.deferred.get(&chunk).is_some_and(|until| *until > now) {
                continue;
            }
            let available = self.availability[chunk];
            if p.is_partial() {
                // Rarest first; the peer itself is one holder.
                if available <= 1 {
                    return Some(chunk);
                }
            } else if available == 0 {
                // A whole peer's upload goes to chunks no partial peer has
                // or is fetching: the seeder sends each chunk about once.
                let incoming = self.incoming[chunk];
                if incoming == 0 {
                    return Some(chunk);
                }
                if unheld.is_none_or(|(count, _)| incoming < count) {
                    unheld = Some((incoming, chunk));
                }
                continue;
            }
            if best.is_none_or(|(count, _)| available < count) {
                best = Some((available, chunk));
            }
        }
        if let Some((_, chunk)) = unheld {
            return Some(chunk);
        }
        let (_, chunk) = best?;
        // A whole peer of unknown speed gets one request to learn it.
        let probe = p.rate.bytes_per_sec().is_none() && p.in_flight == 0;
        if p.is_partial() || probe || self.whole_beats_partials(peer, chunk) {
            Some(chunk)
        } else {
            None
        }
    }

    /// A chunk in flight elsewhere that `peer` would likely deliver first.
    fn pick_steal(&self, peer: PeerIndex, now: Instant) -> Option<usize> {
        let p = &self.peers[peer];
        let mut seen = BTreeSet::new();
        for request in self.requests.values() {
            let chunk = request.chunk;
            if !seen.insert(chunk)
                || self.copies[chunk] >= MAX_COPIES
                || self.verified.has(chunk)
                || !p.holds(chunk)
            {
                continue;
            }
            let holders: Vec<&InFlight> = self
                .requests
                .values()
                .filter(|r| r.chunk == chunk)
                .collect();
            if holders.iter().any(|r| r.peer == peer) {
                continue;
            }
            let len = self.lens[chunk];
            let holders: Vec<Holder> = holders
                .iter()
                .map(|r| {
                    let holder = &self.peers[r.peer];
                    Holder {
                        expected_secs: holder.rate.request_secs(len, holder.in_flight.max(1)),
                        asked_ago: now.saturating_duration_since(r.asked),
                        quiet_for: now.saturating_duration_since(holder.progress_at),
                    }
                })
                .collect();
            let swarming_seeder = !p.is_partial()
                && self
                    .peers
                    .iter()
                    .any(|q| q.status == PeerStatus::Active && q.is_partial());
            // With partial peers about, a seeder's upload is kept for chunks
            // the party lacks: it only rescues copies not counted on.
            let worth = if swarming_seeder {
                holders.iter().all(|h| !h.counted_on())
            } else {
                worth_stealing(self.expected_secs(peer, len), &holders)
            };
            if worth {
                return Some(chunk);
            }
        }
        None
    }

    /// Time is `now`: drops stalled peers, makes new requests, asks for a
    /// journal flush, gives up when nobody is left. Returns what to do.
    pub fn poll(&mut self, now: Instant) -> Vec<Action> {
        // Stalls: requests in flight and no byte for too long.
        for peer in 0..self.peers.len() {
            let p = &self.peers[peer];
            if p.status == PeerStatus::Active
                && p.in_flight > 0
                && now.saturating_duration_since(p.progress_at) >= STALL_AFTER
            {
                self.drop_peer(
                    peer,
                    format!(
                        "it delivered nothing for {} s while asked for chunks",
                        STALL_AFTER.as_secs()
                    ),
                );
            }
        }
        // New requests, unless the disk is behind. Peers take turns at the
        // first free place, so a full download window is shared out.
        if !self.gave_up && self.queued_writes < MAX_QUEUED_WRITES {
            let total = self.total_window();
            let count = self.peers.len();
            self.turn = (self.turn + 1) % count.max(1);
            let turn = self.turn;
            for peer in (0..count).map(|i| (i + turn) % count) {
                while self.peers[peer].status == PeerStatus::Active
                    && self.peers[peer].in_flight < self.window(peer)
                    && self.requests.len() < total
                {
                    let next = self
                        .pick_pending(peer, now)
                        .or_else(|| self.pick_steal(peer, now));
                    // Pieces waiting for the disk count against the bytes
                    // a download may hold (the disk behind, the requests in
                    // flight would still arrive on top of them).
                    match next {
                        Some(chunk) if self.fits_held_bytes(chunk) => {
                            self.open_request(peer, chunk, now);
                        }
                        _ => break,
                    }
                }
            }
        }
        if self.journal_dirty
            && !self.flushing
            && now.saturating_duration_since(self.last_flush) >= JOURNAL_EVERY
        {
            self.flushing = true;
            self.journal_dirty = false;
            self.actions.push(Action::FlushJournal);
        }
        self.check_lost(now);
        std::mem::take(&mut self.actions)
    }

    /// Asks for a last flush (the download is ending), if one is owed.
    pub fn final_flush(&mut self) -> bool {
        let owed = self.journal_dirty;
        self.journal_dirty = false;
        owed
    }

    fn check_lost(&mut self, now: Instant) {
        if self.gave_up || self.remaining() == 0 || !self.requests.is_empty() {
            self.idle_since = None;
            return;
        }
        let useful = self.peers.iter().any(|p| {
            p.status == PeerStatus::Active
                && self
                    .pending
                    .iter()
                    .any(|place| p.holds(self.order[*place as usize] as usize))
        });
        if useful {
            self.idle_since = None;
            return;
        }
        // Partial peers may verify more; stopped ones may come back.
        let may_come_back = self.peers.iter().any(|p| {
            p.status == PeerStatus::Stopped || (p.status == PeerStatus::Active && p.is_partial())
        });
        let grace = if may_come_back {
            STOPPED_GRACE
        } else {
            LOST_GRACE
        };
        let since = *self.idle_since.get_or_insert(now);
        if now.saturating_duration_since(since) < grace {
            return;
        }
        self.gave_up = true;
        let reasons: Vec<String> = self
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| match &p.status {
                PeerStatus::Dropped(reason) => format!("peer {i}: {reason}"),
                PeerStatus::Stopped => format!("peer {i}: stopped serving the game"),
                PeerStatus::Active => format!("peer {i}: holds none of the missing chunks"),
            })
            .collect();
        let reason = if reasons.is_empty() {
            "no peer".to_owned()
        } else {
            reasons.join("; ")
        };
        self.actions.push(Action::GiveUp { reason });
    }
}

#[cfg(test)]
mod tests;
