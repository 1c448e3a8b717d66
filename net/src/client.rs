//! Asking a peer for things: one request per stream, typed answers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use lanspread_core::manifest::{Manifest, ManifestError};
use lanspread_core::{GameId, GameVersion};
use quinn::VarInt;

use crate::buffers::{Piece, chunk_buffers};
use crate::endpoint::{SERVER_NAME, remote_peer_id};
use crate::proto::{
    self, AnnouncedGame, ByteRange, FrameError, MAX_MANIFEST_FRAME_BYTES, MAX_RESPONSE_FRAME_BYTES,
    PeerHello, Request, Response, WireError,
};

/// Why a request to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {message}")]
    Connect { addr: SocketAddr, message: String },
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("the peer refused: {0}")]
    Refused(WireError),
    #[error("the peer stopped the transfer (code {0})")]
    Reset(u64),
    #[error("bad answer from the peer: {0}")]
    Frame(#[from] FrameError),
    #[error("the peer sent a manifest that is not valid: {0}")]
    BadManifest(#[from] ManifestError),
    #[error("the peer answered with {0} where another answer was expected")]
    Unexpected(&'static str),
    #[error("stream: {0}")]
    Stream(String),
    #[error("the peer claims an id its certificate does not prove (an impostor)")]
    NotItsId,
}

impl ClientError {
    /// The refusal's code, if the peer refused with one.
    pub fn code(&self) -> Option<proto::ErrorCode> {
        match self {
            Self::Refused(error) => Some(error.code),
            _ => None,
        }
    }
}

/// A response frame's bytes, decoded; a refusal becomes the error.
fn decode_response(bytes: &[u8]) -> Result<Response, ClientError> {
    match proto::decode_frame::<Response>(bytes)? {
        Response::Error(error) => Err(ClientError::Refused(error)),
        other => Ok(other),
    }
}

fn kind(response: &Response) -> &'static str {
    match response {
        Response::Hello(_) => "hello",
        Response::Library { .. } => "library",
        Response::Manifest(_) => "manifest",
        Response::ChunkHeader { .. } => "chunk",
        Response::Error(_) => "error",
    }
}

/// A peer's answer to a library request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryAnswer {
    pub revision: u64,
    pub games: Vec<AnnouncedGame>,
    pub catalog_fingerprint: [u8; 32],
    /// Addresses of the peers it follows (peer exchange).
    pub peers: Vec<SocketAddr>,
}

/// A connection to one peer.
#[derive(Debug, Clone)]
pub struct PeerClient {
    connection: quinn::Connection,
    /// The peer id its certificate proves.
    proven_id: Option<[u8; 16]>,
}

impl PeerClient {
    /// Connects from our endpoint to the peer at `addr`.
    pub async fn connect(
        endpoint: &quinn::Endpoint,
        addr: SocketAddr,
    ) -> Result<Self, ClientError> {
        let connect_err = |message: String| ClientError::Connect { addr, message };
        let connecting = endpoint
            .connect(addr, SERVER_NAME)
            .map_err(|e| connect_err(e.to_string()))?;
        let connection = connecting.await.map_err(|e| connect_err(e.to_string()))?;
        let proven_id = remote_peer_id(&connection);
        Ok(Self {
            connection,
            proven_id,
        })
    }

    /// The peer id the peer's certificate proves (the handshake checked
    /// that it holds the key).
    pub fn proven_id(&self) -> Option<[u8; 16]> {
        self.proven_id
    }

    pub fn remote_address(&self) -> SocketAddr {
        self.connection.remote_address()
    }

    pub fn connection(&self) -> &quinn::Connection {
        &self.connection
    }

    pub fn close(&self) {
        self.connection
            .close(VarInt::from_u32(proto::CLOSE_SHUTDOWN), b"bye");
    }

    /// Sends `request` on a new stream and reads the first response frame.
    async fn request(
        &self,
        request: &Request,
        limit: u32,
    ) -> Result<(Response, quinn::RecvStream), ClientError> {
        let (bytes, recv) = self.request_bytes(request, limit).await?;
        Ok((decode_response(&bytes)?, recv))
    }

    /// As [`Self::request`], leaving the response frame undecoded (a big
    /// one is decoded off the async threads).
    async fn request_bytes(
        &self,
        request: &Request,
        limit: u32,
    ) -> Result<(Vec<u8>, quinn::RecvStream), ClientError> {
        let (mut send, mut recv) = self.connection.open_bi().await?;
        proto::write_frame(&mut send, request).await?;
        let _ = send.finish();
        let bytes = proto::read_frame_bytes(&mut recv, limit)
            .await
            .map_err(|err| reset_code(&err).map_or(ClientError::Frame(err), ClientError::Reset))?;
        Ok((bytes, recv))
    }

    pub async fn hello(&self, ours: &PeerHello) -> Result<PeerHello, ClientError> {
        match self
            .request(&Request::Hello(ours.clone()), MAX_RESPONSE_FRAME_BYTES)
            .await?
        {
            (Response::Hello(theirs), _) if Some(theirs.peer_id) == self.proven_id => Ok(theirs),
            (Response::Hello(_), _) => Err(ClientError::NotItsId),
            (other, _) => Err(ClientError::Unexpected(kind(&other))),
        }
    }

    /// The peer's library; with `newer_than`, waits for a change first.
    pub async fn library(&self, newer_than: Option<u64>) -> Result<LibraryAnswer, ClientError> {
        let request = Request::Library { newer_than };
        match self.request(&request, MAX_RESPONSE_FRAME_BYTES).await? {
            (
                Response::Library {
                    revision,
                    games,
                    catalog_fingerprint,
                    mut peers,
                },
                _,
            ) => {
                peers.truncate(proto::MAX_EXCHANGED_PEERS);
                Ok(LibraryAnswer {
                    revision,
                    games,
                    catalog_fingerprint,
                    peers,
                })
            }
            (other, _) => Err(ClientError::Unexpected(kind(&other))),
        }
    }

    /// The manifest of one game version, validated before it is returned.
    pub async fn manifest(
        &self,
        game: &GameId,
        version: &GameVersion,
    ) -> Result<Manifest, ClientError> {
        let request = Request::Manifest {
            game: game.clone(),
            version: version.clone(),
        };
        let (bytes, _) = self
            .request_bytes(&request, MAX_MANIFEST_FRAME_BYTES)
            .await?;
        // Up to 48 MiB from a peer: decoded and checked off the async threads.
        let (game, version) = (game.clone(), version.clone());
        tokio::task::spawn_blocking(move || match decode_response(&bytes)? {
            Response::Manifest(manifest) => {
                if manifest.game != game || manifest.version != version {
                    return Err(ClientError::Unexpected("a manifest of another game"));
                }
                manifest.validate()?;
                Ok(*manifest)
            }
            other => Err(ClientError::Unexpected(kind(&other))),
        })
        .await
        .map_err(|e| ClientError::Stream(e.to_string()))?
    }

    /// Opens a chunk transfer: returns the stream positioned at the first
    /// byte, and the byte count the peer promised.
    pub async fn open_chunk(&self, chunk: &ChunkAsk<'_>) -> Result<quinn::RecvStream, ClientError> {
        let request = Request::Chunk {
            game: chunk.game.clone(),
            version: chunk.version.clone(),
            ranges: chunk.ranges.clone(),
            swarm: chunk.swarm,
        };
        match self.request(&request, MAX_RESPONSE_FRAME_BYTES).await? {
            (Response::ChunkHeader { len: promised }, recv) if promised == chunk.len() => Ok(recv),
            (Response::ChunkHeader { .. }, _) => {
                Err(ClientError::Unexpected("a chunk of another size"))
            }
            (other, _) => Err(ClientError::Unexpected(kind(&other))),
        }
    }

    /// Fetches a byte range into memory, adding every byte received to
    /// `received` as it arrives (a download tells a slow peer from a
    /// stalled one by it).
    pub async fn chunk(
        &self,
        chunk: &ChunkAsk<'_>,
        received: &AtomicU64,
    ) -> Result<Piece, ClientError> {
        let mut recv = self.open_chunk(chunk).await?;
        let len =
            usize::try_from(chunk.len()).map_err(|_| ClientError::Unexpected("a huge chunk"))?;
        // Filled from quinn's own buffers as they arrive (one copy), into
        // reused blocks taken one at a time as the bytes come (no page
        // faults, no pass zeroing them first, no memory held for bytes not
        // yet here).
        let mut piece = Piece::new(len);
        while let Some(block) = piece.next_block(chunk_buffers()) {
            let mut filled = 0;
            while filled < block.len() {
                match recv.read_chunk(block.len() - filled, true).await {
                    Ok(Some(part)) => {
                        let end = filled + part.bytes.len();
                        // quinn hands out at most what was asked for.
                        let Some(into) = block.get_mut(filled..end) else {
                            return Err(ClientError::Unexpected("more bytes than asked for"));
                        };
                        into.copy_from_slice(&part.bytes);
                        filled = end;
                        received.fetch_add(part.bytes.len() as u64, Ordering::Relaxed);
                    }
                    Ok(None) => return Err(ClientError::Frame(FrameError::Truncated)),
                    Err(quinn::ReadError::Reset(code)) => {
                        return Err(ClientError::Reset(code.into_inner()));
                    }
                    Err(err) => return Err(ClientError::Stream(err.to_string())),
                }
            }
        }
        Ok(piece)
    }
}

/// One chunk request: byte ranges of files of a game version.
#[derive(Debug, Clone)]
pub struct ChunkAsk<'a> {
    pub game: &'a GameId,
    pub version: &'a GameVersion,
    pub ranges: Vec<ByteRange>,
    /// See [`Request::Chunk`]'s `swarm`.
    pub swarm: bool,
}

impl ChunkAsk<'_> {
    /// The bytes asked for, over all ranges.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|r| r.len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads exactly `buffer.len()` bytes of a chunk, mapping a reset to its code.
pub async fn read_exact(
    recv: &mut quinn::RecvStream,
    buffer: &mut [u8],
) -> Result<(), ClientError> {
    match recv.read_exact(buffer).await {
        Ok(()) => Ok(()),
        Err(quinn::ReadExactError::FinishedEarly(_)) => {
            Err(ClientError::Frame(FrameError::Truncated))
        }
        Err(quinn::ReadExactError::ReadError(quinn::ReadError::Reset(code))) => {
            Err(ClientError::Reset(code.into_inner()))
        }
        Err(quinn::ReadExactError::ReadError(err)) => Err(ClientError::Stream(err.to_string())),
    }
}

fn reset_code(err: &FrameError) -> Option<u64> {
    match err {
        FrameError::Io(io) => reset_code_io(io),
        _ => None,
    }
}

fn reset_code_io(err: &std::io::Error) -> Option<u64> {
    let read_error = err.get_ref()?.downcast_ref::<quinn::ReadError>()?;
    match read_error {
        quinn::ReadError::Reset(code) => Some(code.into_inner()),
        _ => None,
    }
}
