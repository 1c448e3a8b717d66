//! The peer table: peers found by mDNS (see `mdns`), typed in by address,
//! heard of from other peers or connecting to us.
//!
//! Each known address gets one session task: connect, exchange hellos, then
//! long-poll the peer's library so a change arrives as soon as it happens.
//! The session ends when the connection does (QUIC's idle timeout notices a
//! silent peer within seconds) and the peer leaves the table with it.
//! Manual peers are retried until shutdown, mDNS peers until their
//! announcement goes away, with a back-off while they cannot be reached.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lanspread_core::{Blake3Hash, GameId, GameVersion};
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::client::{ClientError, PeerClient};
use crate::proto::{AnnouncedGame, PeerHello, clean_name};
use crate::runtime::{Event, PeerState};
use crate::serve::CatalogCell;

mod mdns;
pub use mdns::{
    DiscoveryConfig, MAX_ADDRS_PER_ANNOUNCEMENT, MAX_ANNOUNCED_PEERS, SERVICE_TYPE,
    announced_addrs, run_mdns,
};

/// How long connecting and the hello may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// First pause between attempts to reach a peer; it doubles up to the last.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_LAST: Duration = Duration::from_secs(8);

/// How we learned of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerSource {
    Manual,
    Mdns,
    /// It connected to us and said hello.
    Inbound,
    /// Another peer told us its address (peer exchange).
    Exchange,
}

impl PeerSource {
    /// Typed in or announced on the LAN: followed until told otherwise. A
    /// peer we only heard of is dropped after a few failed attempts.
    fn is_sticky(self) -> bool {
        matches!(self, Self::Manual | Self::Mdns)
    }
}

/// Most addresses followed at once (sessions and their retries); addresses
/// heard of (inbound, exchanged) are not followed beyond it.
pub const MAX_FOLLOWED: usize = 256;
/// Failed attempts after which an address only heard of is given up.
const HEARD_OF_ATTEMPTS: u32 = 3;

/// A peer in the table.
#[derive(Debug, Clone, Serialize)]
pub struct RemotePeer {
    /// Peer id, hex.
    pub id: String,
    pub name: String,
    pub addr: SocketAddr,
    pub source: PeerSource,
    /// Whether its catalog is the same as ours (both may change while
    /// running: `catalog load`).
    pub same_catalog: bool,
    /// Its catalog's fingerprint, as it last said.
    #[serde(skip)]
    pub catalog_fingerprint: [u8; 32],
    pub games: Vec<AnnouncedGame>,
    /// The revision of its library we hold; `None` until the first answer.
    #[serde(skip)]
    pub library_revision: Option<u64>,
    #[serde(skip)]
    pub last_seen: Instant,
}

/// The live connection of every peer in the table, by id: kept beside the
/// published state, not in it (the window clones the state every frame;
/// downloads take their connections from here).
#[derive(Debug, Clone, Default)]
pub struct Connections(Arc<Mutex<HashMap<String, PeerClient>>>);

impl Connections {
    /// The connection to the peer with this id, while its session lives.
    pub fn get(&self, id: &str) -> Option<PeerClient> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    fn insert(&self, id: String, client: PeerClient) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, client);
    }

    fn remove(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// Hex of a peer id.
pub fn id_hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Owns the session tasks and writes the peer table into the published state.
#[derive(Debug, Clone)]
pub struct PeerDirectory {
    inner: Arc<DirectoryInner>,
}

#[derive(Debug)]
struct DirectoryInner {
    endpoint: quinn::Endpoint,
    ours: PeerHello,
    /// Our catalog now (the one in `ours` is from start).
    catalog: CatalogCell,
    state: watch::Sender<PeerState>,
    events: broadcast::Sender<Event>,
    shutdown: CancellationToken,
    /// Addresses with a live session or supervisor; protects against two
    /// sessions to one address. Held only to insert or remove.
    sessions: Mutex<HashMap<SocketAddr, CancellationToken>>,
    /// The connection of each peer in the table.
    connections: Connections,
    tasks: tokio_util::task::TaskTracker,
}

/// How one session ended.
#[derive(Debug)]
enum SessionEnd {
    /// The address is our own endpoint.
    Myself,
    /// The peer (this id) is already in the table through another address.
    Duplicate(String),
    Failed(ClientError),
    Shutdown,
}

impl PeerDirectory {
    pub fn new(
        endpoint: quinn::Endpoint,
        ours: PeerHello,
        catalog: CatalogCell,
        state: watch::Sender<PeerState>,
        events: broadcast::Sender<Event>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(DirectoryInner {
                endpoint,
                ours,
                catalog,
                state,
                events,
                shutdown,
                sessions: Mutex::new(HashMap::new()),
                connections: Connections::default(),
                tasks: tokio_util::task::TaskTracker::new(),
            }),
        }
    }

    /// Adds a peer typed in by address (`HOST:PORT`); retried until shutdown.
    pub async fn add_manual(&self, target: &str) -> Result<SocketAddr, String> {
        let addr = resolve(target).await?;
        self.follow(addr, PeerSource::Manual);
        Ok(addr)
    }

    /// A peer that connected to us, or that another peer told us of:
    /// followed while it answers, given up after a few failed attempts, or
    /// at once when it is already in the table through another address.
    pub fn add_heard_of(&self, addr: SocketAddr, source: PeerSource) {
        self.follow(addr, source);
    }

    /// A peer announced over mDNS: followed, and reconnected after a lost
    /// connection (a cable pulled and plugged back), until its announcement
    /// goes away ([`PeerDirectory::forget`]) or shutdown.
    pub fn add_discovered(&self, addr: SocketAddr) {
        self.follow(addr, PeerSource::Mdns);
    }

    /// The addresses one mDNS announcement gave, best first (see
    /// [`crate::adapters`]): one session, to the best address that answers;
    /// the others are tried in turn only while it does not.
    pub fn add_discovered_group(&self, addrs: Vec<SocketAddr>) {
        self.follow_alternatives(addrs, PeerSource::Mdns);
    }

    fn follow(&self, addr: SocketAddr, source: PeerSource) {
        self.follow_alternatives(vec![addr], source);
    }

    /// One task per peer: a session, and after it ends another attempt,
    /// backing off from 1 s to 8 s while the peer cannot be reached (each
    /// failed attempt moves on to the next of its addresses).
    fn follow_alternatives(&self, addrs: Vec<SocketAddr>, source: PeerSource) {
        let Some((token, addrs)) = self.claim_group(addrs, source) else {
            return;
        };
        let first = addrs[0];
        match source {
            PeerSource::Manual => self.inner.state.send_modify(|state| {
                state.unanswered_typed.insert(first);
            }),
            PeerSource::Exchange => self.inner.state.send_modify(|state| {
                state.unanswered_exchanged.insert(first);
            }),
            PeerSource::Mdns | PeerSource::Inbound => {}
        }
        let this = self.clone();
        let span = tracing::info_span!("peer", addr = %first, ?source);
        self.inner.tasks.spawn(
            async move {
                let mut pause = RETRY_FIRST;
                let mut failures = 0;
                let mut current = 0;
                loop {
                    let addr = addrs[current];
                    let started = std::time::Instant::now();
                    let end = this.run_session(addr, source, &token).await;
                    // Answered (or not) once: a download need not wait for it.
                    this.inner.state.send_if_modified(|state| {
                        state.unanswered_typed.remove(&first)
                            | state.unanswered_exchanged.remove(&first)
                    });
                    match end {
                        SessionEnd::Myself => {
                            tracing::debug!("that address is this PC; not following it");
                            break;
                        }
                        SessionEnd::Shutdown => break,
                        SessionEnd::Duplicate(_) if !source.is_sticky() => break,
                        SessionEnd::Duplicate(id) => {
                            // One session per peer: wait, without
                            // reconnecting, until the other one ends.
                            let mut table = this.inner.state.subscribe();
                            tokio::select! {
                                biased;
                                () = token.cancelled() => break,
                                _ = table.wait_for(|s| !s.peers.contains_key(&id)) => {}
                            }
                            current = 0;
                            continue;
                        }
                        SessionEnd::Failed(err) => {
                            tracing::debug!("{err}");
                            failures += 1;
                            current = (current + 1) % addrs.len();
                            if !source.is_sticky() && failures >= HEARD_OF_ATTEMPTS {
                                break;
                            }
                        }
                    }
                    if started.elapsed() > RETRY_LAST {
                        failures = 0;
                        current = 0;
                    }
                    // A session that lasted a while was a real connection:
                    // try again soon. Repeated failures back off.
                    pause = if started.elapsed() > RETRY_LAST {
                        RETRY_FIRST
                    } else {
                        (pause * 2).min(RETRY_LAST)
                    };
                    tokio::select! {
                        biased;
                        () = token.cancelled() => break,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                for addr in &addrs {
                    this.release(*addr);
                }
            }
            .instrument(span),
        );
    }

    /// The connections of the peers in the table.
    pub fn connections(&self) -> Connections {
        self.inner.connections.clone()
    }

    /// Ends the session to `addr`, if any (an mDNS goodbye).
    pub fn forget(&self, addr: SocketAddr) {
        let sessions = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(token) = sessions.get(&addr) {
            token.cancel();
        }
    }

    /// Claims the addresses of `addrs` that no task follows yet, under one
    /// token; `None` when none is left (or the table is full).
    fn claim_group(
        &self,
        addrs: Vec<SocketAddr>,
        source: PeerSource,
    ) -> Option<(CancellationToken, Vec<SocketAddr>)> {
        let mut sessions = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if self.inner.shutdown.is_cancelled()
            || (!source.is_sticky() && sessions.len() >= MAX_FOLLOWED)
        {
            return None;
        }
        let mut free: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
        for addr in addrs {
            if !sessions.contains_key(&addr) && !free.contains(&addr) {
                free.push(addr);
            }
        }
        if free.is_empty() {
            return None;
        }
        let token = self.inner.shutdown.child_token();
        for addr in &free {
            sessions.insert(*addr, token.clone());
        }
        Some((token, free))
    }

    fn release(&self, addr: SocketAddr) {
        let mut sessions = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        sessions.remove(&addr);
    }

    /// Waits for every session task to end (after shutdown was cancelled).
    pub async fn join(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    async fn run_session(
        &self,
        addr: SocketAddr,
        source: PeerSource,
        token: &CancellationToken,
    ) -> SessionEnd {
        let handshake = async {
            let client = PeerClient::connect(&self.inner.endpoint, addr).await?;
            let theirs = client.hello(&self.inner.ours).await?;
            Ok::<_, ClientError>((client, theirs))
        };
        let (client, theirs) = tokio::select! {
            biased;
            () = token.cancelled() => return SessionEnd::Shutdown,
            result = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake) => match result {
                Ok(Ok(pair)) => pair,
                Ok(Err(err)) => return SessionEnd::Failed(err),
                Err(_) => return SessionEnd::Failed(ClientError::Connect {
                    addr,
                    message: "no answer".into(),
                }),
            },
        };
        if theirs.peer_id == self.inner.ours.peer_id {
            client.close();
            return SessionEnd::Myself;
        }
        let id = id_hex(&theirs.peer_id);
        let peer = RemotePeer {
            id: id.clone(),
            name: clean_name(&theirs.name),
            addr,
            source,
            same_catalog: theirs.catalog_fingerprint == self.our_fingerprint(),
            catalog_fingerprint: theirs.catalog_fingerprint,
            games: Vec::new(),
            library_revision: None,
            last_seen: Instant::now(),
        };
        let mut inserted = false;
        self.inner.state.send_if_modified(|state| {
            if state.peers.contains_key(&id) {
                return false;
            }
            // The connection is there before the peer is seen in the table.
            self.inner.connections.insert(id.clone(), client.clone());
            state.peers.insert(id.clone(), peer.clone());
            state.table_changed_at = Some(Instant::now());
            inserted = true;
            true
        });
        if !inserted {
            client.close();
            return SessionEnd::Duplicate(id);
        }
        tracing::info!(peer = %id, name = %peer.name, "peer joined");
        let _ = self.inner.events.send(Event::PeerJoined {
            id: id.clone(),
            name: peer.name.clone(),
            addr,
        });
        let end = self.follow_library(&client, &id, token).await;
        client.close();
        self.inner.state.send_modify(|state| {
            state.peers.remove(&id);
            self.inner.connections.remove(&id);
            state.table_changed_at = Some(Instant::now());
        });
        tracing::info!(peer = %id, "peer left");
        let _ = self.inner.events.send(Event::PeerLeft { id });
        end
    }

    fn our_fingerprint(&self) -> [u8; 32] {
        *self.inner.catalog.get().fingerprint().as_bytes()
    }

    async fn follow_library(
        &self,
        client: &PeerClient,
        id: &str,
        token: &CancellationToken,
    ) -> SessionEnd {
        let mut revision = None;
        loop {
            let answer = tokio::select! {
                biased;
                () = token.cancelled() => return SessionEnd::Shutdown,
                answer = client.library(revision) => answer,
            };
            let answer = match answer {
                Ok(answer) => answer,
                Err(err) => return SessionEnd::Failed(err),
            };
            let changed = revision != Some(answer.revision);
            revision = Some(answer.revision);
            if changed {
                for addr in &answer.peers {
                    self.add_heard_of(*addr, PeerSource::Exchange);
                }
            }
            let ours = self.our_fingerprint();
            self.inner.state.send_if_modified(|state| {
                let Some(peer) = state.peers.get_mut(id) else {
                    return false;
                };
                peer.last_seen = Instant::now();
                if !changed {
                    return false;
                }
                // Partial downloads' have-maps move all the time; what
                // settles a vote is who holds which game whole.
                let whole = |games: &[AnnouncedGame]| -> Vec<(GameId, GameVersion, Blake3Hash)> {
                    games
                        .iter()
                        .filter(|g| g.is_whole())
                        .map(|g| (g.id.clone(), g.version.clone(), g.manifest_digest))
                        .collect()
                };
                let games_changed = whole(&peer.games) != whole(&answer.games);
                peer.games = answer.games;
                peer.library_revision = Some(answer.revision);
                peer.catalog_fingerprint = answer.catalog_fingerprint;
                peer.same_catalog = answer.catalog_fingerprint == ours;
                let addr = peer.addr;
                if games_changed {
                    state.table_changed_at = Some(Instant::now());
                }
                state.unanswered_typed.remove(&addr);
                state.unanswered_exchanged.remove(&addr);
                true
            });
            if changed {
                let _ = self
                    .inner
                    .events
                    .send(Event::RemoteLibraryChanged { id: id.to_owned() });
            }
        }
    }
}

/// Resolves `HOST:PORT` (an IP literal needs no name lookup).
pub async fn resolve(target: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = target.parse::<SocketAddr>() {
        return Ok(addr);
    }
    match tokio::net::lookup_host(target).await {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("{target} has no address")),
        Err(err) => Err(format!(
            "cannot resolve {target} (expected HOST:PORT): {err}"
        )),
    }
}
