//! Serving: answering peers' requests, and streaming chunks under a guard.
//!
//! The order for a chunk is fixed: register the [`TransferGuard`] first, then
//! check eligibility (catalog version, `version.ini`, the path in the
//! manifest), then stream. Every await while streaming — disk read, network
//! send — is raced against the guard's token, the connection's shutdown and a
//! stall timer, so a cancelled or stalled transfer ends at once with a stream
//! reset whose code says why. Serving only ever reads.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use lanspread_core::library::{NotShareable, check_shareable};
use lanspread_core::paths::validate_relative_path;
use lanspread_core::{GameCatalog, GameId, GameVersion, OutboundTransfers, TransferGuard};
use quinn::VarInt;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::endpoint::{MAX_CONNECTIONS, MAX_CONNECTIONS_PER_HOST, MAX_REQUESTS_PER_CONNECTION};
use crate::library::LibrarySnapshot;
use crate::proto::{
    self, ByteRange, ErrorCode, FrameError, MAX_CHUNK_REQUEST_BYTES, MAX_CHUNK_REQUEST_RANGES,
    MAX_REQUEST_FRAME_BYTES, PeerHello, Request, Response, WireError,
};
use crate::swarm::{PartialShares, RecentSends};

/// Bytes read from disk and sent per step of a chunk transfer.
const SEND_PIECE_BYTES: usize = crate::buffers::BLOCK_BYTES;
/// A receiver that takes no bytes for this long loses the transfer.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a sent chunk counts as being sent while its receiver has not
/// acknowledged every byte.
const ACKED_WITHIN: Duration = Duration::from_secs(30);
/// Longest a library long-poll is held before it is answered unchanged.
pub const LIBRARY_LONG_POLL: Duration = Duration::from_secs(15);

/// The catalog in force; swapped whole when an organiser loads a new one.
#[derive(Debug, Clone)]
pub struct CatalogCell(Arc<RwLock<Arc<GameCatalog>>>);

impl CatalogCell {
    pub fn new(catalog: GameCatalog) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(catalog))))
    }

    pub fn get(&self) -> Arc<GameCatalog> {
        // The lock guards one Arc swap; a poisoned lock still holds a valid Arc.
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, catalog: GameCatalog) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(catalog);
    }
}

/// Everything the serving side needs, shared by every connection.
#[derive(Debug)]
pub struct ServeContext {
    pub games_dir: Option<PathBuf>,
    /// The upload cap for all transfers of this PC, and whether sharing
    /// is paused; both change live.
    pub upload_limit: Arc<crate::rate::LiveLimit>,
    /// Chunk transfers sent completely, since start.
    pub chunks_served: std::sync::atomic::AtomicU64,
    /// Payload bytes handed to QUIC for peers, since start.
    pub bytes_uploaded: Arc<std::sync::atomic::AtomicU64>,
    pub catalog: CatalogCell,
    pub transfers: OutboundTransfers,
    pub library: watch::Receiver<LibrarySnapshot>,
    pub hello: PeerHello,
    /// Games this PC is downloading and serves in part.
    pub partials: PartialShares,
    /// Chunks sent lately, for refusing a swarm's duplicate requests.
    pub recent: RecentSends,
    /// Where a peer that says hello is reported (its serving address), so
    /// a PC that connects to us becomes a peer we follow. Bounded; a full
    /// channel drops the report (the peer says hello again on reconnect).
    pub inbound: tokio::sync::mpsc::Sender<SocketAddr>,
}

/// Longest an inline refusal may take to write.
const REFUSAL_WRITE_WITHIN: Duration = Duration::from_secs(1);
/// How often, at most, refusals of one host are logged.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Counts connections per host (IP address); the guard gives the slot back.
/// Also remembers when each host's refusals were last logged, so a flood
/// writes a line every [`REFUSAL_LOG_EVERY`], not one per attempt.
#[derive(Debug, Default)]
struct ConnectionCounts(Mutex<Counts>);

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_host: HashMap<IpAddr, usize>,
    /// Per host: when a refusal was last logged, and refusals since.
    refusals: HashMap<IpAddr, (std::time::Instant, u64)>,
}

struct ConnectionSlot {
    counts: Arc<ConnectionCounts>,
    host: IpAddr,
}

impl ConnectionCounts {
    fn take(self: &Arc<Self>, remote: SocketAddr) -> Option<ConnectionSlot> {
        let host = remote.ip().to_canonical();
        // The mutex protects the counters; held for a few instructions.
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mine = counts.per_host.get(&host).copied().unwrap_or(0);
        if counts.total >= MAX_CONNECTIONS || mine >= MAX_CONNECTIONS_PER_HOST {
            counts.refused(host, remote);
            return None;
        }
        counts.total += 1;
        *counts.per_host.entry(host).or_default() += 1;
        Some(ConnectionSlot {
            counts: self.clone(),
            host,
        })
    }
}

impl Counts {
    fn refused(&mut self, host: IpAddr, remote: SocketAddr) {
        let now = std::time::Instant::now();
        if self.refusals.len() >= MAX_CONNECTIONS {
            self.refusals
                .retain(|_, (at, _)| now.duration_since(*at) < REFUSAL_LOG_EVERY);
        }
        let logged = match self.refusals.get_mut(&host) {
            None => Some(1),
            Some((at, since)) => {
                *since += 1;
                (now.duration_since(*at) >= REFUSAL_LOG_EVERY).then_some(*since)
            }
        };
        if let Some(refused) = logged {
            tracing::warn!(
                %remote,
                refused,
                "refusing connections: too many from this host (at most {MAX_CONNECTIONS_PER_HOST}, {MAX_CONNECTIONS} in all)"
            );
            self.refusals.insert(host, (now, 0));
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(count) = counts.per_host.get_mut(&self.host) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.per_host.remove(&self.host);
            }
        }
    }
}

/// Accepts connections until `shutdown` is cancelled; then closes them all
/// and waits for their tasks.
pub async fn accept_loop(
    endpoint: quinn::Endpoint,
    context: Arc<ServeContext>,
    shutdown: CancellationToken,
) {
    let counts = Arc::new(ConnectionCounts::default());
    let mut connections = JoinSet::new();
    loop {
        let incoming = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(result) = connections.join_next(), if !connections.is_empty() => {
                if let Err(err) = result {
                    tracing::warn!("a connection task failed: {err}");
                }
                continue;
            }
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
        };
        let remote = incoming.remote_address();
        let Some(slot) = counts.take(remote) else {
            incoming.refuse();
            continue;
        };
        let context = context.clone();
        let conn_token = shutdown.child_token();
        connections.spawn(
            async move {
                let _slot = slot;
                match incoming.await {
                    Ok(connection) => serve_connection(connection, context, conn_token).await,
                    Err(err) => tracing::debug!("handshake failed: {err}"),
                }
            }
            .instrument(tracing::info_span!("serve", peer = %remote)),
        );
    }
    while connections.join_next().await.is_some() {}
}

async fn serve_connection(
    connection: quinn::Connection,
    context: Arc<ServeContext>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(MAX_REQUESTS_PER_CONNECTION));
    // This connection's place in the upload cap's queue.
    let turn = Arc::new(crate::rate::Turn::default());
    // Requests in the order they came, for the chunks' send priorities.
    let mut arrived: u32 = 0;
    let proven_id = crate::endpoint::remote_peer_id(&connection);
    let mut requests = JoinSet::new();
    loop {
        let (mut send, recv) = tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                connection.close(VarInt::from_u32(proto::CLOSE_SHUTDOWN), b"shutting down");
                break;
            }
            Some(_) = requests.join_next(), if !requests.is_empty() => continue,
            stream = connection.accept_bi() => match stream {
                Ok(stream) => stream,
                Err(err) => {
                    tracing::debug!("connection ended: {err}");
                    break;
                }
            },
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let context = context.clone();
                let token = shutdown.clone();
                let remote = connection.remote_address();
                let turn = turn.clone();
                arrived = arrived.wrapping_add(1);
                let order = arrived;
                requests.spawn(async move {
                    let _permit = permit;
                    let stream = ServedStream {
                        remote,
                        turn: &turn,
                        order,
                        proven_id,
                    };
                    handle_stream(&context, &stream, &mut send, recv, &token).await;
                });
            }
            Err(_) => {
                // Answered inline: a frame and a finish, no disk, no waiting
                // on the peer beyond what quinn buffers.
                let refusal = WireError::new(
                    ErrorCode::TooManyStreams,
                    format!("at most {MAX_REQUESTS_PER_CONNECTION} requests at once"),
                );
                // Bounded: a client that never reads cannot hold this loop
                // (and with it shutdown) beyond a short wait.
                let frame = Response::Error(refusal);
                let refused = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => false,
                    written = tokio::time::timeout(REFUSAL_WRITE_WITHIN, proto::write_frame(&mut send, &frame)) => {
                        matches!(written, Ok(Ok(())))
                    }
                };
                if refused {
                    let _ = send.finish();
                } else {
                    let _ = send.reset(VarInt::from_u32(proto::RESET_CANCELLED));
                }
            }
        }
    }
    requests.abort_all();
    while requests.join_next().await.is_some() {}
}

/// Where a request came from, on its connection.
struct ServedStream<'a> {
    remote: SocketAddr,
    /// The connection's place in the upload cap's queue.
    turn: &'a crate::rate::Turn,
    /// The request's place among the connection's requests (1, 2, ...).
    order: u32,
    /// The peer id the connection's client certificate proves.
    proven_id: Option<[u8; 16]>,
}

async fn handle_stream(
    context: &ServeContext,
    stream: &ServedStream<'_>,
    send: &mut quinn::SendStream,
    mut recv: quinn::RecvStream,
    shutdown: &CancellationToken,
) {
    let request = tokio::select! {
        biased;
        () = shutdown.cancelled() => return,
        request = tokio::time::timeout(STALL_TIMEOUT, proto::read_frame::<Request>(&mut recv, MAX_REQUEST_FRAME_BYTES)) => request,
    };
    let request = match request {
        Ok(Ok(request)) => request,
        Ok(Err(FrameError::TooLarge { len, limit })) => {
            let error = WireError::new(
                ErrorCode::FrameTooLarge,
                format!("a request of {len} bytes is over the {limit}-byte limit"),
            );
            return respond(send, &Response::Error(error)).await;
        }
        Ok(Err(err)) => {
            let error = WireError::new(ErrorCode::BadRequest, err.to_string());
            return respond(send, &Response::Error(error)).await;
        }
        Err(_) => return, // the peer never sent a request
    };
    // Nothing more is read from the peer on this stream.
    let _ = recv.stop(VarInt::from_u32(0));
    match request {
        Request::Hello(theirs) => {
            // The id it says must be the one its certificate proves.
            if stream.proven_id != Some(theirs.peer_id) {
                let error = WireError::new(
                    ErrorCode::BadRequest,
                    "the peer id in your hello is not the one your certificate proves",
                );
                return respond(send, &Response::Error(error)).await;
            }
            // Its serving address: the same socket it connected from, at
            // the port it says it listens on.
            let _ = context
                .inbound
                .try_send(SocketAddr::new(stream.remote.ip(), theirs.listen_port));
            let mut hello = context.hello.clone();
            hello.catalog_fingerprint = *context.catalog.get().fingerprint().as_bytes();
            respond(send, &Response::Hello(hello)).await;
        }
        Request::Library { newer_than } => {
            let response = library_response(context, newer_than, shutdown).await;
            respond(send, &response).await;
        }
        Request::Manifest { game, version } => {
            let response = match manifest_response(context, &game, &version) {
                Ok(response) => response,
                Err(error) => Response::Error(error),
            };
            respond(send, &response).await;
        }
        Request::Chunk {
            game,
            version,
            ranges,
            swarm,
        } => {
            let first = ranges
                .first()
                .map_or((String::new(), 0), |r| (r.path.clone(), r.offset));
            let span = tracing::debug_span!("chunk", game = %game, path = %first.0, offset = first.1, ranges = ranges.len());
            let ask = ChunkRequest {
                game: &game,
                version: &version,
                ranges: &ranges,
                swarm,
                to: stream.proven_id,
            };
            // A connection's chunks are sent one after the other, oldest
            // first (answers to other requests before any): each arrives
            // as soon as the connection's share of the uplink allows, and
            // can be served on by its receiver while the next one travels.
            let priority = -1 - (stream.order % (1 << 30)) as i32;
            let _ = send.set_priority(priority);
            serve_chunk(context, stream.turn, send, &ask, shutdown)
                .instrument(span)
                .await;
        }
    }
}

async fn respond(send: &mut quinn::SendStream, response: &Response) {
    if let Ok(Ok(())) =
        tokio::time::timeout(STALL_TIMEOUT, proto::write_frame(send, response)).await
    {
        let _ = send.finish();
    } else {
        let _ = send.reset(VarInt::from_u32(proto::RESET_STALLED));
    }
}

async fn library_response(
    context: &ServeContext,
    newer_than: Option<u64>,
    shutdown: &CancellationToken,
) -> Response {
    let mut library = context.library.clone();
    if let Some(seen) = newer_than {
        let wait = library.wait_for(|snapshot| snapshot.revision > seen);
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {}
            _ = tokio::time::timeout(LIBRARY_LONG_POLL, wait) => {}
        }
    }
    let snapshot = library.borrow();
    Response::Library {
        revision: snapshot.revision,
        games: snapshot.games.clone(),
        catalog_fingerprint: snapshot.catalog_fingerprint,
        peers: snapshot
            .peers
            .iter()
            .take(proto::MAX_EXCHANGED_PEERS)
            .copied()
            .collect(),
    }
}

/// The eligibility check shared by manifest and chunk requests: the game is
/// in the catalog, at the requested version, its `version.ini` agrees, and
/// its manifest is ready.
fn eligible_manifest(
    context: &ServeContext,
    game: &GameId,
    version: &GameVersion,
) -> Result<Arc<lanspread_core::Manifest>, WireError> {
    let catalog = context.catalog.get();
    let Some(expected) = catalog.expected_version(game) else {
        return Err(WireError::new(
            ErrorCode::UnknownGame,
            format!("{game} is not in this PC's catalog"),
        ));
    };
    if expected != version {
        return Err(WireError::new(
            ErrorCode::WrongVersion,
            format!("this PC's catalog has {game} at version {expected}, not {version}"),
        ));
    }
    let Some(games_dir) = &context.games_dir else {
        return Err(WireError::new(
            ErrorCode::NotShareable,
            "this PC shares no games",
        ));
    };
    match check_shareable(games_dir, &catalog, game) {
        Ok(_) => {}
        Err(NotShareable::NotInCatalog(_)) => {
            return Err(WireError::new(
                ErrorCode::UnknownGame,
                format!("{game} is not in the catalog"),
            ));
        }
        Err(err @ NotShareable::WrongVersion { .. }) => {
            return Err(WireError::new(ErrorCode::WrongVersion, err.to_string()));
        }
    }
    let library = context.library.borrow();
    match library.manifests.get(game) {
        Some(manifest) if &manifest.version == version => Ok(manifest.clone()),
        _ => Err(WireError::new(
            ErrorCode::NotShareable,
            format!("{game} {version} is not ready to share yet"),
        )),
    }
}

fn manifest_response(
    context: &ServeContext,
    game: &GameId,
    version: &GameVersion,
) -> Result<Response, WireError> {
    if context.transfers.snapshot().is_active(game) {
        return Err(busy(game));
    }
    let manifest = eligible_manifest(context, game, version)?;
    Ok(Response::Manifest(Box::new((*manifest).clone())))
}

fn busy(game: &GameId) -> WireError {
    WireError::new(
        ErrorCode::Busy,
        format!("{game} is being updated or removed on this PC"),
    )
}

/// One chunk request as the server read it.
struct ChunkRequest<'a> {
    game: &'a GameId,
    version: &'a GameVersion,
    ranges: &'a [ByteRange],
    swarm: bool,
    /// The peer id its connection proves, for "who downloads it from us".
    to: Option<[u8; 16]>,
}

impl ChunkRequest<'_> {
    /// Where the swarm's "sent elsewhere" memory files it: its first range.
    fn send_key(&self) -> (GameId, String, u64) {
        let (path, offset) = self
            .ranges
            .first()
            .map_or((String::new(), 0), |r| (r.path.clone(), r.offset));
        (self.game.clone(), path, offset)
    }
}

/// Checks the request's shape: some ranges, not too many, not too many
/// bytes in all.
fn check_request(ask: &ChunkRequest<'_>) -> Result<u64, WireError> {
    let total = ask
        .ranges
        .iter()
        .try_fold(0u64, |sum, r| sum.checked_add(r.len))
        .filter(|t| *t > 0 && *t <= MAX_CHUNK_REQUEST_BYTES);
    match total {
        Some(total) if ask.ranges.len() <= MAX_CHUNK_REQUEST_RANGES => Ok(total),
        _ => Err(WireError::new(
            ErrorCode::BadRequest,
            format!(
                "a request asks for 1..={MAX_CHUNK_REQUEST_RANGES} ranges and 1..={MAX_CHUNK_REQUEST_BYTES} bytes in all, not {} ranges",
                ask.ranges.len()
            ),
        )),
    }
}

/// Checks a byte range against a manifest entry.
fn check_range(
    entry: &lanspread_core::manifest::FileEntry,
    range: &ByteRange,
) -> Result<(), WireError> {
    let in_range = range
        .offset
        .checked_add(range.len)
        .is_some_and(|end| end <= entry.len_bytes);
    if range.len == 0 || !in_range {
        return Err(WireError::new(
            ErrorCode::BadRequest,
            format!(
                "bytes {}+{} are not a range of {} ({} bytes)",
                range.offset, range.len, entry.path, entry.len_bytes
            ),
        ));
    }
    Ok(())
}

/// Where one range's bytes are read from.
enum RangeFile {
    /// A whole game's payload file, opened when its turn comes.
    Payload(PathBuf),
    /// A partial game's staging file (bytes verified and written).
    Staging(Arc<crate::swarm::PartialGame>, usize),
}

impl RangeFile {
    async fn open(&self) -> std::io::Result<Arc<std::fs::File>> {
        match self {
            Self::Payload(path) => {
                let file = tokio::fs::File::open(path).await?;
                Ok(Arc::new(file.into_std().await))
            }
            Self::Staging(partial, index) => partial.files.get(*index),
        }
    }
}

/// Where each range of the request is read from: a whole game's payload,
/// or a partial game's staging files (only bytes verified and written).
fn locate_ranges(
    context: &ServeContext,
    ask: &ChunkRequest<'_>,
) -> Result<Vec<RangeFile>, WireError> {
    let (game, version) = (ask.game, ask.version);
    let mut located = Vec::with_capacity(ask.ranges.len());
    if let Some(partial) = context.partials.get(game)
        && &partial.manifest.version == version
        && context.catalog.get().expected_version(game) == Some(version)
    {
        for range in ask.ranges {
            let path = validate_relative_path(&range.path)
                .map_err(|e| WireError::new(ErrorCode::BadPath, e.to_string()))?;
            let Some(index) = partial.manifest.file_index(&path) else {
                return Err(WireError::new(
                    ErrorCode::NotInManifest,
                    format!("{path} is not a file of {game} {version}"),
                ));
            };
            check_range(&partial.manifest.files[index], range)?;
            if !partial.holds_range(index, range.offset, range.len) {
                return Err(WireError::new(
                    ErrorCode::NotHeld,
                    format!(
                        "this PC is still downloading {game} and does not hold those bytes yet"
                    ),
                ));
            }
            located.push(RangeFile::Staging(partial.clone(), index));
        }
        return Ok(located);
    }
    let manifest = eligible_manifest(context, game, version)?;
    let games_dir = context
        .games_dir
        .as_deref()
        .ok_or_else(|| WireError::new(ErrorCode::NotShareable, "this PC shares no games"))?;
    let game_dir = lanspread_core::layout::game_dir(games_dir, game);
    for range in ask.ranges {
        let path = validate_relative_path(&range.path)
            .map_err(|e| WireError::new(ErrorCode::BadPath, e.to_string()))?;
        let Some(entry) = manifest.file(&path) else {
            return Err(WireError::new(
                ErrorCode::NotInManifest,
                format!("{path} is not a file of {game} {version}"),
            ));
        };
        check_range(entry, range)?;
        let disk_path = lanspread_core::paths::resolve_within_any_spelling(&game_dir, &path)
            .map_err(|e| WireError::new(ErrorCode::BadPath, e.to_string()))?;
        located.push(RangeFile::Payload(disk_path));
    }
    Ok(located)
}

/// Registers the guard, then checks the request and every range.
fn prepare_chunk(
    context: &ServeContext,
    ask: &ChunkRequest<'_>,
) -> Result<(TransferGuard, u64, Vec<RangeFile>), WireError> {
    // 1. The guard, before anything is checked (a pause cancels every
    // guard registered before it; this one sees the pause below).
    let guard = context
        .transfers
        .register_to(ask.game, ask.to.as_ref().map(crate::discovery::id_hex))
        .map_err(|_| busy(ask.game))?;
    if context.upload_limit.is_paused() {
        return Err(WireError::new(
            ErrorCode::Busy,
            "this PC's owner paused sharing while playing",
        ));
    }
    // 2. Eligibility, and where the bytes are.
    let total = check_request(ask)?;
    let located = locate_ranges(context, ask)?;
    Ok((guard, total, located))
}

/// How a chunk transfer ended, for the log.
enum Ended {
    Done,
    Cancelled,
    Stalled,
    ReadFailed(std::io::Error),
    PeerGone,
}

async fn serve_chunk(
    context: &ServeContext,
    turn: &crate::rate::Turn,
    send: &mut quinn::SendStream,
    ask: &ChunkRequest<'_>,
    shutdown: &CancellationToken,
) {
    let (guard, total, located) = match prepare_chunk(context, ask) {
        Ok(ready) => ready,
        Err(error) => return respond(send, &Response::Error(error)).await,
    };
    let key = ask.send_key();
    let Some(mut sending) = context
        .recent
        .begin(key, ask.swarm, std::time::Instant::now())
    else {
        drop(guard);
        tracing::debug!(game = %ask.game, "refused: sent elsewhere");
        let error = WireError::new(
            ErrorCode::SentElsewhere,
            "this PC is sending those bytes to another PC of the party; ask the partial peers",
        );
        return respond(send, &Response::Error(error)).await;
    };
    let pace = (&*context.upload_limit, turn);
    let mut ended = send_header(send, total, &guard, shutdown).await;
    for (range, file) in ask.ranges.iter().zip(&located) {
        if !matches!(ended, Ended::Done) {
            break;
        }
        let file = match file.open().await {
            Ok(file) => file,
            Err(err) => {
                ended = Ended::ReadFailed(err);
                break;
            }
        };
        ended = stream_range(
            send,
            &file,
            range,
            &guard,
            shutdown,
            pace,
            &context.bytes_uploaded,
        )
        .await;
        // Close the file before the guard goes: once the count is zero, an
        // operation may move the folder (Windows refuses that with files
        // open).
        drop(file);
    }
    drop(located);
    let code = match &ended {
        Ended::Done => {
            let _ = send.finish();
            context
                .chunks_served
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            None
        }
        Ended::Cancelled => Some(proto::RESET_CANCELLED),
        Ended::Stalled => Some(proto::RESET_STALLED),
        Ended::ReadFailed(err) => {
            tracing::warn!("reading failed mid-transfer: {err}");
            Some(proto::RESET_READ_FAILED)
        }
        Ended::PeerGone => None,
    };
    if let Some(code) = code {
        let _ = send.reset(VarInt::from_u32(code));
        tracing::debug!(code, "transfer ended early");
    }
    // The guard drops after the last byte was read and the file closed.
    drop(guard);
    if matches!(ended, Ended::Done) {
        // The bytes are handed to quinn, not yet received: quinn buffers
        // a connection's sends, and a crowded uplink takes seconds to drain
        // them. Until the receiver acknowledged them all, they count as
        // being sent (a swarm asking for them again is sent to the partial
        // peer that is about to hold them).
        let acked = tokio::select! {
            () = shutdown.cancelled() => false,
            stopped = tokio::time::timeout(ACKED_WITHIN, send.stopped()) => {
                matches!(stopped, Ok(Ok(None)))
            }
        };
        sending.finished = acked;
        let (path, offset) = ask
            .ranges
            .first()
            .map_or(("", 0), |r| (r.path.as_str(), r.offset));
        tracing::debug!(game = %ask.game, path, offset, swarm = ask.swarm, acked, "chunk sent");
    }
    drop(sending);
}

/// Reads `len` bytes at `offset` on a blocking thread, straight into a
/// reused block that is then handed to quinn without another copy (it
/// returns to the pool once quinn saw it acknowledged).
async fn read_piece(
    file: &Arc<std::fs::File>,
    offset: u64,
    len: usize,
) -> Result<bytes::Bytes, std::io::Error> {
    let file = file.clone();
    tokio::task::spawn_blocking(move || {
        let mut piece = crate::buffers::chunk_buffers().block(len);
        crate::platform::read_exact_at(&file, &mut piece, offset).map(|()| piece.into_bytes())
    })
    .await
    .map_err(std::io::Error::other)?
}

async fn send_header(
    send: &mut quinn::SendStream,
    len: u64,
    guard: &TransferGuard,
    shutdown: &CancellationToken,
) -> Ended {
    let header_frame = Response::ChunkHeader { len };
    let header = proto::write_frame(send, &header_frame);
    let sent = tokio::select! {
        biased;
        () = guard.cancelled() => return Ended::Cancelled,
        () = shutdown.cancelled() => return Ended::Cancelled,
        sent = tokio::time::timeout(STALL_TIMEOUT, header) => sent,
    };
    match sent {
        Err(_) => Ended::Stalled,
        Ok(Err(_)) => Ended::PeerGone,
        Ok(Ok(())) => Ended::Done,
    }
}

async fn stream_range(
    send: &mut quinn::SendStream,
    file: &Arc<std::fs::File>,
    range: &ByteRange,
    guard: &TransferGuard,
    shutdown: &CancellationToken,
    pace: (&crate::rate::LiveLimit, &crate::rate::Turn),
    uploaded: &std::sync::atomic::AtomicU64,
) -> Ended {
    let (offset, len) = (range.offset, range.len);
    let mut done = 0u64;
    while done < len {
        let want = SEND_PIECE_BYTES.min((len - done) as usize);
        // The read is not abandoned on cancellation but awaited (it is one
        // short read): the file must be closed before the guard goes.
        let mut read = std::pin::pin!(read_piece(file, offset + done, want));
        let piece = tokio::select! {
            biased;
            () = guard.cancelled() => {
                let _ = read.await;
                return Ended::Cancelled;
            }
            () = shutdown.cancelled() => {
                let _ = read.await;
                return Ended::Cancelled;
            }
            piece = &mut read => piece,
        };
        let piece = match piece {
            Ok(piece) => piece,
            Err(err) => return Ended::ReadFailed(err),
        };
        let (limit, turn) = pace;
        tokio::select! {
            biased;
            () = guard.cancelled() => return Ended::Cancelled,
            () = shutdown.cancelled() => return Ended::Cancelled,
            () = limit.take_in_turn(turn, want) => {}
        }
        let write = send.write_chunk(piece);
        let written = tokio::select! {
            biased;
            () = guard.cancelled() => return Ended::Cancelled,
            () = shutdown.cancelled() => return Ended::Cancelled,
            written = tokio::time::timeout(STALL_TIMEOUT, write) => written,
        };
        match written {
            Err(_) => return Ended::Stalled,
            Ok(Err(_)) => return Ended::PeerGone,
            Ok(Ok(())) => {}
        }
        uploaded.fetch_add(want as u64, std::sync::atomic::Ordering::Relaxed);
        done += want as u64;
    }
    Ended::Done
}
