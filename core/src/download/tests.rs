//! The machine under a virtual clock: unit rules, a simulated LAN party
//! (one crowded seeder, fifteen swarming downloaders), and a property test
//! over any mix of speeds, deaths, lies and partial peers.

use super::*;
use proptest::prelude::*;

const MIB: u64 = 1 << 20;

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn machine(chunks: usize, t0: Instant) -> DownloadMachine {
    DownloadMachine::new(vec![MIB; chunks], &HaveMap::empty(chunks), 7, t0)
}

fn requests(actions: &[Action]) -> Vec<(RequestId, PeerIndex, usize)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Request {
                id, peer, chunk, ..
            } => Some((*id, *peer, *chunk)),
            _ => None,
        })
        .collect()
}

#[test]
fn have_maps_hold_bits_and_reject_misfits() {
    let mut map = HaveMap::empty(10);
    assert!(!map.has(3));
    map.set(3);
    map.set(99);
    assert!(map.has(3) && !map.has(99));
    assert_eq!(map.count(), 1);
    assert!(map.fits(10) && !map.fits(11));
    assert!(HaveMap::full(10).is_full());
    map.clear(3);
    assert_eq!(map.count(), 0);
}

#[test]
fn the_window_follows_what_a_peer_delivers() {
    let t0 = Instant::now();
    let mut m = machine(100, t0);
    let fast = m.add_peer(None, t0);
    let first = requests(&m.poll(t0));
    assert_eq!(first.len(), PROBE_WINDOW, "an unknown peer gets one probe");
    // 1 MiB in 10 ms: ~100 MiB/s, so the window opens wide.
    m.delivered(first[0].0, t0 + ms(10));
    let more = requests(&m.poll(t0 + ms(10)));
    assert_eq!(m.in_flight_to(fast), MAX_WINDOW, "{more:?}");

    // A crowded peer: 1 MiB in 5 s, 0.2 MiB/s.
    let mut m = machine(100, t0);
    let slow = m.add_peer(None, t0);
    let first = requests(&m.poll(t0));
    m.delivered(first[0].0, t0 + ms(5000));
    m.poll(t0 + ms(5000));
    assert_eq!(
        m.in_flight_to(slow),
        1,
        "a crowded peer gets one request at a time"
    );
}

#[test]
fn a_slow_peer_is_kept_and_a_silent_one_is_dropped() {
    let t0 = Instant::now();
    let mut m = machine(10, t0);
    let slow = m.add_peer(None, t0);
    let silent = m.add_peer(None, t0);
    m.poll(t0);
    // The slow peer trickles bytes every few seconds for a minute: kept,
    // though no chunk of it finishes in 20 s.
    let mut now = t0;
    for step in 1..=20 {
        now = t0 + ms(3000 * step);
        m.peer_received(slow, step * 1000, now);
        let actions = m.poll(now);
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::DropPeer { peer, .. } if *peer == slow)),
            "a peer making progress was dropped at {step}"
        );
    }
    assert!(m.dropped(slow).is_none());
    let reason = m.dropped(silent).expect("the silent peer is dropped");
    assert!(reason.contains("delivered nothing"), "{reason}");
    // Its chunks went to the slow peer's queue.
    assert!(m.poll(now).is_empty() || m.dropped(slow).is_none());
}

#[test]
fn a_seeder_is_asked_for_what_no_partial_peer_has_and_partials_rarest_first() {
    let t0 = Instant::now();
    let mut m = machine(8, t0);
    let mut a = HaveMap::empty(8);
    let mut b = HaveMap::empty(8);
    for chunk in [0, 1, 2, 3] {
        a.set(chunk);
    }
    for chunk in [2, 3, 4] {
        b.set(chunk);
    }
    let pa = m.add_peer(Some(a), t0);
    let pb = m.add_peer(Some(b), t0);
    let seeder = m.add_peer(None, t0);
    let asked = requests(&m.poll(t0));
    let of = |peer| -> Vec<usize> {
        asked
            .iter()
            .filter(|(_, p, _)| *p == peer)
            .map(|(_, _, c)| *c)
            .collect()
    };
    // Rarest first (one probe each): a takes a chunk only it has (0 or 1);
    // b takes 4, the one only b has.
    let got_a = of(pa);
    assert!(got_a == [0] || got_a == [1], "{asked:?}");
    assert_eq!(of(pb), [4], "{asked:?}");
    // The seeder takes only chunks no partial peer has: 5, 6, 7.
    assert!(!of(seeder).is_empty());
    assert!(of(seeder).iter().all(|c| *c >= 5), "{asked:?}");
}

#[test]
fn a_seeder_takes_a_partials_chunk_when_it_is_much_faster() {
    let t0 = Instant::now();
    let mut m = machine(6, t0);
    let partial = m.add_peer(Some(HaveMap::full(6)), t0);
    let seeder = m.add_peer(None, t0);
    // Two rounds: peers take turns at free places.
    let mut first = requests(&m.poll(t0));
    first.extend(requests(&m.poll(t0)));
    let of = |asked: &[(RequestId, PeerIndex, usize)], peer| {
        asked.iter().filter(|(_, p, _)| *p == peer).count()
    };
    // Both speeds are unknown: one chunk each, to learn them.
    assert_eq!(of(&first, partial), PROBE_WINDOW, "{first:?}");
    assert_eq!(of(&first, seeder), PROBE_WINDOW, "{first:?}");
    let probe = first.iter().find(|(_, p, _)| *p == seeder).unwrap().0;
    // It delivers in 10 ms; the partial peer takes 4 s for one chunk. Now
    // the seeder is far faster: it takes the chunks still pending.
    assert_eq!(m.delivered(probe, t0 + ms(10)), Delivery::First);
    let slow = first.iter().find(|(_, p, _)| *p == partial).unwrap().0;
    assert_eq!(m.delivered(slow, t0 + ms(4000)), Delivery::First);
    let later = requests(&m.poll(t0 + ms(4000)));
    assert!(of(&later, seeder) >= 2, "{later:?}");
}

#[test]
fn not_held_asks_elsewhere_and_stopped_waits_for_a_new_announcement() {
    let t0 = Instant::now();
    let mut m = machine(2, t0);
    let partial = m.add_peer(Some(HaveMap::full(2)), t0);
    let asked = requests(&m.poll(t0));
    assert_eq!(asked.len(), PROBE_WINDOW);
    m.failed(asked[0].0, Failure::NotHeld, t0);
    assert!(m.dropped(partial).is_none());
    // The chunk it lacks is not asked of it again: the other one is.
    let again = requests(&m.poll(t0 + ms(1)));
    assert_eq!(again.len(), 1, "{again:?}");
    assert_ne!(again[0].2, asked[0].2, "{again:?}");
    assert!(requests(&m.poll(t0 + ms(1))).is_empty());
    // Its own swap starts: it stops serving; the download waits.
    m.failed(again[0].0, Failure::Stopped("swap".into()), t0 + ms(2));
    assert!(m.is_stopped(partial));
    let waiting = m.poll(t0 + ms(3000));
    assert!(
        !waiting.iter().any(|a| matches!(a, Action::GiveUp { .. })),
        "a stopped peer is waited for: {waiting:?}"
    );
    // It comes back whole: both chunks are asked of it (one, then the
    // other once the first answer measured it).
    m.peer_announced(partial, None, None);
    let back = requests(&m.poll(t0 + ms(3001)));
    assert_eq!(back.len(), 1, "{back:?}");
    m.delivered(back[0].0, t0 + ms(3011));
    let rest = requests(&m.poll(t0 + ms(3011)));
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_ne!(rest[0].2, back[0].2);
}

#[test]
fn with_every_peer_gone_the_download_gives_up_after_the_grace() {
    let t0 = Instant::now();
    let mut m = machine(3, t0);
    let p = m.add_peer(None, t0);
    let asked = requests(&m.poll(t0));
    m.failed(asked[0].0, Failure::Broken("reset".into()), t0);
    assert_eq!(m.dropped(p), Some("reset"));
    assert!(
        !m.poll(t0 + ms(100))
            .iter()
            .any(|a| matches!(a, Action::GiveUp { .. }))
    );
    let late = m.poll(t0 + LOST_GRACE + ms(200));
    assert!(
        late.iter()
            .any(|a| matches!(a, Action::GiveUp { reason } if reason.contains("reset")))
    );
}

#[test]
fn the_disk_paces_requests_and_the_journal_is_flushed_once_a_second() {
    let t0 = Instant::now();
    let mut m = machine(64, t0);
    m.add_peer(None, t0);
    let mut now = t0;
    let mut delivered = 0;
    // Deliver everything as fast as asked, never writing: requests stop
    // once MAX_QUEUED_WRITES verified chunks wait for the disk.
    for _ in 0..100 {
        now += ms(1);
        for (id, _, _) in requests(&m.poll(now)) {
            if m.delivered(id, now) == Delivery::First {
                delivered += 1;
            }
        }
    }
    assert!(
        (MAX_QUEUED_WRITES..MAX_QUEUED_WRITES + MAX_WINDOW).contains(&delivered),
        "{delivered}"
    );
    assert!(!m.poll(now).contains(&Action::FlushJournal));
    m.chunk_written(0);
    assert!(m.poll(t0 + JOURNAL_EVERY).contains(&Action::FlushJournal));
    m.chunk_written(1);
    assert!(
        !m.poll(t0 + JOURNAL_EVERY + ms(10))
            .contains(&Action::FlushJournal),
        "one flush at a time"
    );
    m.journal_flushed(t0 + JOURNAL_EVERY + ms(20));
    assert!(
        m.poll(t0 + 2 * JOURNAL_EVERY + ms(20))
            .contains(&Action::FlushJournal)
    );
}

#[test]
fn pieces_waiting_for_the_disk_count_against_the_bytes_held() {
    let t0 = Instant::now();
    let mut m = machine(100, t0);
    for _ in 0..4 {
        m.add_peer(None, t0);
    }
    let budget = (MAX_IN_FLIGHT_BYTES / MIB) as usize;
    let (mut in_flight, mut waiting, mut most_held) = (Vec::new(), 0, 0);
    let mut now = t0;
    // Each step one piece arrives and none is written (a disk far behind).
    for _ in 0..60 {
        now += ms(1);
        in_flight.extend(requests(&m.poll(now)).into_iter().map(|(id, _, _)| id));
        most_held = most_held.max(in_flight.len() + waiting);
        if !in_flight.is_empty() && m.delivered(in_flight.remove(0), now) == Delivery::First {
            waiting += 1;
        }
    }
    assert!(waiting >= MAX_QUEUED_WRITES, "{waiting}");
    assert_eq!(most_held, budget, "asked for or waiting for the disk");
}

#[test]
fn the_bytes_held_stay_bounded_when_the_longest_pieces_come_together() {
    // Many small pieces (tiny files: a piece closes at MAX_PIECE_CHUNKS
    // chunks or MAX_PIECE_PATH_BYTES of paths) make the mean short; the
    // pieces asked for at once may still be the 4 MiB ones.
    let mut lens = vec![4 * MIB; 60];
    lens.extend(std::iter::repeat_n(4 << 10, 300));
    let n = lens.len();
    let t0 = Instant::now();
    let mut m = DownloadMachine::new(lens.clone(), &HaveMap::empty(n), 7, t0);
    for _ in 0..4 {
        m.add_peer(None, t0);
    }
    let (mut in_flight, mut waiting) = (Vec::new(), Vec::new());
    let (mut most_held, mut written) = (0u64, 0);
    let mut now = t0;
    // One piece arrives per step; the disk writes one every third step.
    for step in 0..5_000 {
        now += ms(1);
        in_flight.extend(requests(&m.poll(now)).into_iter().map(|(id, _, c)| (id, c)));
        let held: u64 = in_flight
            .iter()
            .chain(&waiting)
            .map(|(_, c)| lens[*c])
            .sum();
        most_held = most_held.max(held);
        if !in_flight.is_empty() {
            let (id, chunk) = in_flight.remove(0);
            if m.delivered(id, now) == Delivery::First {
                waiting.push((id, chunk));
            }
        }
        if step % 3 == 0 && !waiting.is_empty() {
            let (_, chunk) = waiting.remove(0);
            m.chunk_written(chunk);
            written += 1;
        }
    }
    assert_eq!(written, n, "the download finishes");
    assert!(most_held > MAX_IN_FLIGHT_BYTES / 2, "{most_held}");
    assert!(most_held <= MAX_IN_FLIGHT_BYTES, "{} MiB", most_held / MIB);
}

// ---------------------------------------------------------------------------
// A simulated party: fluid links, each request gets an equal share of its
// uploader's uplink and its downloader's downlink.

#[derive(Debug, Clone)]
struct Node {
    up_bytes_per_sec: f64,
    down_bytes_per_sec: f64,
    /// Dies (stops sending, and never answers) at this time.
    dies_at: Option<Duration>,
    /// Sends bad bytes for every chunk from this time on.
    lies_from: Option<Duration>,
    /// Stops sending bytes (but keeps its connections) at this time.
    stalls_at: Option<Duration>,
    /// A whole copy from the start; else a downloader.
    seeder: bool,
}

struct Sim {
    nodes: Vec<Node>,
    /// Per downloader node: its machine and which node each peer index is.
    machines: BTreeMap<usize, (DownloadMachine, Vec<usize>)>,
    /// (downloader, request) -> (uploader, chunk, bytes left, bytes received)
    live: BTreeMap<(usize, RequestId), (usize, usize, f64)>,
    received: BTreeMap<(usize, PeerIndex), f64>,
    writes: BTreeMap<usize, Vec<u32>>,
    uploaded: Vec<f64>,
    finished_at: BTreeMap<usize, Duration>,
    dropped: Vec<(usize, usize, String)>,
    gave_up: Vec<usize>,
    /// (uploader, chunk) -> when it last finished sending it.
    sent_at: BTreeMap<(usize, usize), Duration>,
}

impl Sim {
    fn new(nodes: Vec<Node>, chunks: usize, seed: u64, t0: Instant) -> Self {
        let mut machines = BTreeMap::new();
        let mut writes = BTreeMap::new();
        for (d, node) in nodes.iter().enumerate() {
            if node.seeder {
                continue;
            }
            let mut m = DownloadMachine::new(
                vec![MIB; chunks],
                &HaveMap::empty(chunks),
                seed.wrapping_add(d as u64 * 7919),
                t0,
            );
            let mut map = Vec::new();
            for (u, other) in nodes.iter().enumerate() {
                if u == d {
                    continue;
                }
                let have = (!other.seeder).then(|| HaveMap::empty(chunks));
                m.add_peer(have, t0);
                map.push(u);
            }
            machines.insert(d, (m, map));
            writes.insert(d, vec![0; chunks]);
        }
        let n = nodes.len();
        Self {
            nodes,
            machines,
            live: BTreeMap::new(),
            received: BTreeMap::new(),
            writes,
            uploaded: vec![0.0; n],
            finished_at: BTreeMap::new(),
            dropped: Vec::new(),
            gave_up: Vec::new(),
            sent_at: BTreeMap::new(),
        }
    }

    fn holds(&self, node: usize, chunk: usize) -> bool {
        self.nodes[node].seeder
            || self
                .machines
                .get(&node)
                .is_some_and(|(m, _)| m.written_map().has(chunk))
    }

    fn alive(&self, node: usize, at: Duration) -> bool {
        self.nodes[node].dies_at.is_none_or(|d| at < d)
    }

    /// Runs until every downloader finished or gave up, or `limit` passed.
    fn run(&mut self, t0: Instant, step: Duration, limit: Duration) {
        let mut at = Duration::ZERO;
        let announce_every = ms(500);
        let mut next_announce = Duration::ZERO;
        while at < limit {
            let now = t0 + at;
            if at >= next_announce {
                next_announce += announce_every;
                let maps: BTreeMap<usize, (HaveMap, HaveMap)> = self
                    .machines
                    .iter()
                    .map(|(d, (m, _))| (*d, (m.written_map().clone(), m.fetching_map())))
                    .collect();
                for (m, map) in self.machines.values_mut() {
                    for (peer, node) in map.iter().enumerate() {
                        // A dead peer's connection times out: it leaves.
                        if self.nodes[*node]
                            .dies_at
                            .is_some_and(|d| at >= d + Duration::from_secs(4))
                        {
                            m.drop_peer(peer, "connection lost".into());
                        }
                        if let Some((have, fetching)) = maps.get(node) {
                            // A finished downloader announces itself whole.
                            let partial = !have.is_full();
                            if self.nodes[*node].dies_at.is_none_or(|d| at < d) {
                                m.peer_announced(
                                    peer,
                                    partial.then(|| have.clone()),
                                    partial.then(|| fetching.clone()),
                                );
                            }
                        }
                    }
                }
            }
            // Each downloader decides.
            let downloaders: Vec<usize> = self.machines.keys().copied().collect();
            for d in downloaders {
                if self.finished_at.contains_key(&d) || self.gave_up.contains(&d) {
                    continue;
                }
                let actions = {
                    let (m, _) = self.machines.get_mut(&d).expect("machine");
                    m.poll(now)
                };
                for action in actions {
                    match action {
                        Action::Request {
                            id,
                            peer,
                            chunk,
                            swarm,
                        } => {
                            let node = self.machines[&d].1[peer];
                            // A seeder refuses a swarm request for a chunk it
                            // is sending to another PC, or sent in the last 3 s.
                            let elsewhere = swarm
                                && (self.live.iter().any(|((other, _), (u, c, _))| {
                                    *other != d && *u == node && *c == chunk
                                }) || self
                                    .sent_at
                                    .get(&(node, chunk))
                                    .is_some_and(|t| at.saturating_sub(*t) < ms(3000)));
                            if elsewhere && self.alive(node, at) {
                                let (m, _) = self.machines.get_mut(&d).expect("machine");
                                m.failed(id, Failure::SentElsewhere, now);
                            } else if !self.alive(node, at) {
                                // A dead peer never answers: the stall rule drops it.
                                self.live.insert((d, id), (node, chunk, f64::INFINITY));
                            } else if !self.holds(node, chunk) {
                                let (m, _) = self.machines.get_mut(&d).expect("machine");
                                m.failed(id, Failure::NotHeld, now);
                            } else {
                                self.live.insert((d, id), (node, chunk, MIB as f64));
                            }
                        }
                        Action::Cancel { id } => {
                            self.live.remove(&(d, id));
                        }
                        Action::FlushJournal => {
                            let (m, _) = self.machines.get_mut(&d).expect("machine");
                            m.journal_flushed(now);
                        }
                        Action::DropPeer { peer, reason } => {
                            let node = self.machines[&d].1[peer];
                            self.dropped.push((d, node, reason));
                        }
                        Action::GiveUp { .. } => self.gave_up.push(d),
                    }
                }
            }
            // Bytes move.
            let mut up_load = vec![0usize; self.nodes.len()];
            let mut down_load = vec![0usize; self.nodes.len()];
            for ((d, _), (u, _, _)) in &self.live {
                if self.sending(*u, at) {
                    up_load[*u] += 1;
                    down_load[*d] += 1;
                }
            }
            let mut done = Vec::new();
            let keys: Vec<(usize, RequestId)> = self.live.keys().copied().collect();
            for key in keys {
                let (d, _) = key;
                let Some(&(u, chunk, left)) = self.live.get(&key) else {
                    continue;
                };
                if !self.sending(u, at) {
                    continue;
                }
                let rate = (self.nodes[u].up_bytes_per_sec / up_load[u] as f64)
                    .min(self.nodes[d].down_bytes_per_sec / down_load[d] as f64);
                let moved = (rate * step.as_secs_f64()).min(left);
                self.uploaded[u] += moved;
                let (m, map) = self.machines.get_mut(&d).expect("machine");
                let peer = map.iter().position(|n| *n == u).expect("peer");
                let total = self.received.entry((d, peer)).or_default();
                *total += moved;
                m.peer_received(peer, *total as u64, now + step);
                if left - moved <= 0.5 {
                    self.sent_at.insert((u, chunk), at);
                    done.push((key, u, chunk));
                    self.live.remove(&key);
                } else if let Some(entry) = self.live.get_mut(&key) {
                    entry.2 = left - moved;
                }
            }
            at += step;
            let now = t0 + at;
            for ((d, id), u, chunk) in done {
                let liar = self.nodes[u].lies_from.is_some_and(|l| at >= l);
                let (m, _) = self.machines.get_mut(&d).expect("machine");
                if liar {
                    m.failed(id, Failure::BadHash, now);
                } else if m.delivered(id, now) == Delivery::First {
                    m.chunk_written(chunk);
                    self.writes.get_mut(&d).expect("writes")[chunk] += 1;
                }
                if m.is_finished() {
                    self.finished_at.entry(d).or_insert(at);
                }
            }
            if self.finished_at.len() + self.gave_up.len() == self.machines.len() {
                break;
            }
        }
    }

    fn sending(&self, node: usize, at: Duration) -> bool {
        self.alive(node, at) && self.nodes[node].stalls_at.is_none_or(|s| at < s)
    }
}

fn link(mbit: f64, seeder: bool) -> Node {
    Node {
        up_bytes_per_sec: mbit * 125_000.0,
        down_bytes_per_sec: mbit * 125_000.0,
        dies_at: None,
        lies_from: None,
        stalls_at: None,
        seeder,
    }
}

/// One seeder and `downloaders` PCs at 50 Mbit, all starting at once:
/// (time of the last to finish, seeder's upload in game sizes, the sim).
fn party(downloaders: usize, chunks: usize) -> (f64, f64, Sim) {
    let t0 = Instant::now();
    let mut nodes = vec![link(50.0, true)];
    nodes.extend((0..downloaders).map(|_| link(50.0, false)));
    let mut sim = Sim::new(nodes, chunks, 42, t0);
    sim.run(t0, ms(10), Duration::from_secs(600));
    let last = sim
        .finished_at
        .values()
        .max()
        .copied()
        .unwrap_or(Duration::MAX);
    let game = (chunks as u64 * MIB) as f64;
    (last.as_secs_f64(), sim.uploaded[0] / game, sim)
}

#[test]
fn fifteen_downloaders_from_one_crowded_seeder_all_finish_and_share() {
    let chunks = 64;
    let (alone, _, _) = party(1, chunks);
    let (last, seeder_share, sim) = party(15, chunks);
    eprintln!(
        "simulated party: one download {alone:.1} s, last of 15 {last:.1} s ({:.2}x), seeder sent {seeder_share:.2}x the game",
        last / alone
    );
    assert_eq!(sim.finished_at.len(), 15, "gave up: {:?}", sim.gave_up);
    assert!(sim.dropped.is_empty(), "{:?}", sim.dropped);
    for (d, writes) in &sim.writes {
        assert!(writes.iter().all(|w| *w == 1), "downloader {d}: {writes:?}");
    }
    // The seeder sends each chunk about once; the swarm copies the rest.
    assert!(
        seeder_share <= 1.3,
        "seeder sent {seeder_share:.2}x the game"
    );
    // The lab's bound: the last within twice the time of one alone.
    assert!(last <= alone * 2.0, "{last:.1} s vs {alone:.1} s alone");
}

#[test]
fn a_swarm_survives_a_partial_peer_that_vanishes_and_one_that_lies() {
    let t0 = Instant::now();
    let chunks = 48;
    let mut nodes = vec![link(50.0, true)];
    nodes.extend((0..6).map(|_| link(50.0, false)));
    nodes[1].dies_at = Some(Duration::from_secs(3));
    nodes[2].lies_from = Some(Duration::from_secs(2));
    nodes[3].stalls_at = Some(Duration::from_secs(4));
    let mut sim = Sim::new(nodes, chunks, 3, t0);
    sim.run(t0, ms(10), Duration::from_secs(600));
    for d in 4..=6 {
        assert!(
            sim.finished_at.contains_key(&d),
            "downloader {d} did not finish: gave up {:?}, dropped {:?}",
            sim.gave_up,
            sim.dropped
        );
        assert!(
            sim.writes[&d].iter().all(|w| *w == 1),
            "{:?}",
            sim.writes[&d]
        );
    }
    // The dead, the liar and the staller were dropped; nobody else was.
    for (by, node, reason) in &sim.dropped {
        assert!(
            [1, 2, 3].contains(node),
            "downloader {by} dropped {node}, which made progress: {reason}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// For any mix of peer speeds, deaths, stalls, lies and partial peers
    /// (with one honest seeder that lives), every downloader writes every
    /// chunk exactly once and no peer that keeps delivering is dropped.
    #[test]
    fn every_chunk_is_written_exactly_once(
        chunks in 1usize..40,
        peers in prop::collection::vec(
            (5.0f64..200.0, any::<bool>(), prop::option::of(0u64..20), prop::option::of(0u64..20), prop::option::of(0u64..20)),
            1..6,
        ),
        seed in any::<u64>(),
    ) {
        let t0 = Instant::now();
        let mut nodes = vec![link(100.0, true)];
        let mut faulty = Vec::new();
        for (i, (mbit, seeder, dies, lies, stalls)) in peers.iter().enumerate() {
            let mut node = link(*mbit, *seeder);
            node.dies_at = dies.map(Duration::from_secs);
            node.lies_from = lies.map(Duration::from_secs);
            node.stalls_at = stalls.map(Duration::from_secs);
            if dies.is_some() || lies.is_some() || stalls.is_some() {
                faulty.push(i + 1);
                // A faulty node is never a downloader we check.
                node.seeder = true;
            }
            nodes.push(node);
        }
        let mut sim = Sim::new(nodes, chunks, seed, t0);
        sim.run(t0, ms(20), Duration::from_secs(900));
        for (d, writes) in &sim.writes {
            prop_assert!(sim.finished_at.contains_key(d), "downloader {} did not finish", d);
            prop_assert!(writes.iter().all(|w| *w == 1), "downloader {}: {:?}", d, writes);
        }
        for (_, node, reason) in &sim.dropped {
            prop_assert!(faulty.contains(node), "node {} dropped: {}", node, reason);
        }
    }
}

#[test]
fn a_peer_steals_only_when_its_copy_would_arrive_first() {
    let h = |expected: Option<f64>, asked: u64, quiet: u64| Holder {
        expected_secs: expected,
        asked_ago: ms(asked),
        quiet_for: ms(quiet),
    };
    // Equal peers, both busy: the copy in flight is ahead.
    assert!(!worth_stealing(Some(0.3), &[h(Some(0.3), 10, 0)]));
    // An idle peer against the tail of a busy one: ahead.
    assert!(worth_stealing(Some(0.04), &[h(Some(0.3), 100, 0)]));
    // ... but not against a chunk that is about to land.
    assert!(!worth_stealing(Some(0.04), &[h(Some(0.3), 280, 0)]));
    // A slow holder (3.4 s per request) is beaten by a fast stealer.
    assert!(worth_stealing(Some(0.3), &[h(Some(3.4), 500, 0)]));
    // An overdue holder (over twice its usual time) is not counted on.
    assert!(worth_stealing(Some(5.0), &[h(Some(0.3), 700, 0)]));
    // A holder of unknown speed is counted on while its peer delivers...
    assert!(!worth_stealing(Some(0.1), &[h(None, 5000, 100)]));
    // ... and not once it has been quiet for a while.
    assert!(worth_stealing(Some(5.0), &[h(None, 5000, 2000)]));
    // A stealer of unknown speed takes over only what is not counted on.
    assert!(!worth_stealing(None, &[h(Some(0.3), 1, 0)]));
    assert!(worth_stealing(None, &[h(Some(0.3), 700, 0)]));
}

#[test]
fn a_peers_rate_is_learnt_from_its_requests() {
    let mut rate = PeerRate::default();
    assert_eq!(rate.request_secs(1 << 20, 1), None);
    // 8 requests of 1 MiB sharing the link, each took 0.32 s: 25 MiB/s.
    rate.observe(1 << 20, 8, ms(320));
    let secs = rate.request_secs(1 << 20, 1).unwrap();
    assert!((secs - 0.04).abs() < 1e-9, "{secs}");
    assert!((rate.request_secs(1 << 20, 8).unwrap() - 0.32).abs() < 1e-9);
    // A slower sample moves the average a quarter of the way.
    rate.observe(1 << 20, 8, ms(640));
    let expected = 25.0 * 1_048_576.0 * 0.875;
    assert!((rate.bytes_per_sec().unwrap() - expected).abs() < 1.0);
}

#[test]
fn a_peer_whose_chunk_was_taken_over_after_it_went_quiet_is_noted() {
    let t0 = Instant::now();
    let mut m = machine(2, t0);
    let quiet = m.add_peer(None, t0);
    let asked = requests(&m.poll(t0));
    assert_eq!(asked.len(), 1);
    // It answers fast once (its speed is known), then goes silent.
    m.peer_received(quiet, MIB, t0 + ms(10));
    assert_eq!(m.delivered(asked[0].0, t0 + ms(10)), Delivery::First);
    let second = requests(&m.poll(t0 + ms(10)));
    assert_eq!(second.len(), 1);
    // Another peer joins and, the first being quiet for 3 s, steals it.
    let other = m.add_peer(None, t0 + ms(3010));
    let stolen = requests(&m.poll(t0 + ms(3010)));
    let steal = stolen.iter().find(|(_, p, _)| *p == other).unwrap();
    assert_eq!(steal.2, second[0].2);
    assert!(m.went_silent(quiet).is_none());
    assert_eq!(m.delivered(steal.0, t0 + ms(3050)), Delivery::First);
    let noted = m.went_silent(quiet).unwrap();
    assert!(noted >= Duration::from_secs(3), "{noted:?}");
    assert!(m.went_silent(other).is_none());
    assert!(
        m.dropped(quiet).is_none(),
        "noted, not dropped: it never failed"
    );
}

#[test]
fn small_files_share_pieces_and_big_chunks_stand_alone() {
    use crate::manifest::{ChunkEntry, FileEntry};
    use crate::paths::validate_relative_path;
    let chunked = |path: String, lens: &[u32]| FileEntry {
        path: validate_relative_path(&path).unwrap(),
        len_bytes: lens.iter().map(|l| u64::from(*l)).sum(),
        chunks: lens
            .iter()
            .map(|len| ChunkEntry {
                len: *len,
                hash: Blake3Hash::of(&len.to_le_bytes()),
            })
            .collect(),
    };
    // 600 files of 4 KiB, then a 3-chunk archive, then one empty file.
    let mut files: Vec<FileEntry> = (0..600)
        .map(|i| chunked(format!("a/{i:04}.dat"), &[4096]))
        .collect();
    files.push(chunked("b.pak".into(), &[1 << 20, 3 << 20, 5]));
    files.push(chunked("c.txt".into(), &[]));
    let manifest = Manifest {
        game: crate::GameId::parse("ut2004").unwrap(),
        version: crate::GameVersion::parse("1").unwrap(),
        files,
    };
    manifest.validate().unwrap();
    let plan = PiecePlan::new(&manifest);
    assert_eq!(plan.chunks.len(), 603);
    // 192 small files per piece (768 KiB fills it), then the rest with
    // the archive's first chunk, its second alone, its 5-byte tail alone.
    let lens: Vec<(usize, u64)> = plan
        .pieces
        .iter()
        .map(|p| (p.chunks.len(), p.len))
        .collect();
    assert_eq!(
        lens,
        [
            (192, 192 * 4096),
            (192, 192 * 4096),
            (192, 192 * 4096),
            (25, 24 * 4096 + (1 << 20)),
            (1, 3 << 20),
            (1, 5)
        ]
    );
    // Every chunk in exactly one piece, in order; ranges join a file's
    // neighbouring chunks.
    let mut next = 0;
    for (index, piece) in plan.pieces.iter().enumerate() {
        assert_eq!(piece.chunks.start, next);
        next = piece.chunks.end;
        for chunk in piece.chunks.clone() {
            assert_eq!(plan.piece_of_chunk(chunk), index);
        }
        assert!(piece.len <= MAX_PIECE_BYTES);
    }
    assert_eq!(next, plan.chunks.len());
    assert_eq!(plan.ranges(0).len(), 192);
    assert_eq!(plan.ranges(3).last().unwrap().len, 1 << 20);
    assert_eq!(plan.pieces_of_range(600, 0, 4 << 20), [3, 4]);
    assert_eq!(plan.pieces_of_range(600, (4 << 20) + 1, 4), [5]);
    // The chunk limit: 1,000 files of 1 byte are four pieces.
    let tiny = Manifest {
        game: crate::GameId::parse("ut2004").unwrap(),
        version: crate::GameVersion::parse("1").unwrap(),
        files: (0..1000)
            .map(|i| chunked(format!("t/{i:04}"), &[1]))
            .collect(),
    };
    let plan = PiecePlan::new(&tiny);
    assert_eq!(plan.len(), 4);
    assert!(
        plan.pieces
            .iter()
            .all(|p| p.chunks.len() <= MAX_PIECE_CHUNKS)
    );
    assert_eq!(plan.pieces_of_range(3, 0, 1), [0]);
}
