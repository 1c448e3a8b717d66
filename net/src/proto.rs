//! The wire: messages, framing, limits and error codes.
//!
//! One request per bidirectional QUIC stream. The client writes one
//! [`Request`] frame and finishes its side; the server answers with one
//! [`Response`] frame, and for a chunk request the raw file bytes follow the
//! header on the same stream. A frame is a little-endian `u32` length and
//! that many bytes of postcard. Every frame has a hard size limit, checked
//! before anything is allocated. Every refusal is a [`WireError`] with an
//! [`ErrorCode`] the other side can show to its user.
//!
//! The protocol version lives in the ALPN string; peers speaking another
//! version fail the QUIC handshake instead of misreading each other.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use lanspread_core::download::{HaveMap, MAX_PIECE_CHUNKS};
use lanspread_core::manifest::Manifest;
use lanspread_core::{Blake3Hash, GameId, GameVersion};

/// ALPN protocol id; bump the number for an incompatible wire change, and
/// for a new manifest format (peers cutting chunks by other rules offer
/// other manifests of the same files, and a vote among them would show
/// honest peers as disagreeing). 5: manifest format 3.
pub const ALPN: &[u8] = b"lanspread/5";
/// The protocol version carried in hello, for display.
pub const PROTOCOL_VERSION: u32 = 5;

/// Largest request frame a server accepts (a piece of many small files
/// names up to [`lanspread_core::download::MAX_PIECE_PATH_BYTES`] of paths).
pub const MAX_REQUEST_FRAME_BYTES: u32 = 64 * 1024;
/// Largest response frame other than a manifest.
pub const MAX_RESPONSE_FRAME_BYTES: u32 = 1024 * 1024;
/// Largest manifest response (a 1 TiB game of 1 MiB chunks is about 36 MiB).
pub const MAX_MANIFEST_FRAME_BYTES: u32 = 48 * 1024 * 1024;
/// Most bytes one chunk request may ask for, over all its ranges.
pub const MAX_CHUNK_REQUEST_BYTES: u64 = 16 * 1024 * 1024;
/// Most byte ranges in one chunk request.
pub const MAX_CHUNK_REQUEST_RANGES: usize = MAX_PIECE_CHUNKS;
/// Most peer addresses one library answer carries.
pub const MAX_EXCHANGED_PEERS: usize = 64;
/// Longest display name carried in hello.
pub const MAX_NAME_LEN: usize = 64;

/// QUIC application error code on a stream reset when a transfer is
/// cancelled (an update or remove started on the serving PC).
pub const RESET_CANCELLED: u32 = 1;
/// Stream reset code when the receiver stalled for too long.
pub const RESET_STALLED: u32 = 2;
/// Stream reset code when reading the file failed mid-stream.
pub const RESET_READ_FAILED: u32 = 3;
/// Connection close code for a peer that went over the connection limit.
pub const CLOSE_TOO_MANY_CONNECTIONS: u32 = 10;
/// Connection close code for a clean shutdown.
pub const CLOSE_SHUTDOWN: u32 = 0;

/// What a peer says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHello {
    pub peer_id: [u8; 16],
    pub name: String,
    pub protocol_version: u32,
    /// BLAKE3 of the catalog in force: equal means the same games and versions.
    pub catalog_fingerprint: [u8; 32],
    /// The UDP port this peer serves on.
    pub listen_port: u16,
}

/// One game a peer offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncedGame {
    pub id: GameId,
    pub version: GameVersion,
    pub total_bytes: u64,
    pub manifest_digest: Blake3Hash,
    /// `None`: the whole game, ready and verified. `Some`: the peer is still
    /// downloading this version (the manifest it adopted is
    /// `manifest_digest`) and serves the chunks it has verified. Partial
    /// peers never vote on a manifest.
    pub partial: Option<PartialHave>,
}

impl AnnouncedGame {
    pub fn is_whole(&self) -> bool {
        self.partial.is_none()
    }
}

/// What a partial peer holds and is fetching, one bit per chunk of the
/// manifest it adopted. Sent at most twice a second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialHave {
    pub have: HaveMap,
    pub fetching: HaveMap,
}

/// A request: the first and only frame the client sends on a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Hello(PeerHello),
    /// The peer's library. With `newer_than`, the answer waits (up to the
    /// server's long-poll limit) until the library's revision is newer: a
    /// push notification without a second channel, and bursts coalesce.
    Library {
        newer_than: Option<u64>,
    },
    Manifest {
        game: GameId,
        version: GameVersion,
    },
    /// Byte ranges of payload files (one piece: a part of one big file,
    /// or many small files), answered as one run of bytes in the order
    /// asked. Paths are validated by the server.
    Chunk {
        game: GameId,
        version: GameVersion,
        ranges: Vec<ByteRange>,
        /// The asker can get this chunk from partial peers later: a PC that
        /// is sending (or just sent) the same bytes to another PC refuses
        /// with [`ErrorCode::SentElsewhere`], so a seeder's upload goes to
        /// chunks the party does not have yet.
        swarm: bool,
    },
}

/// `len` bytes at `offset` of the payload file `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRange {
    pub path: String,
    pub offset: u64,
    pub len: u64,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The game is not in this peer's catalog.
    UnknownGame,
    /// This peer does not have the requested version.
    WrongVersion,
    /// The game is here but not ready to share (incomplete, still hashing).
    NotShareable,
    /// An update or remove of the game is in progress here.
    Busy,
    /// The request could not be decoded or makes no sense.
    BadRequest,
    /// A path that is not a safe relative payload path.
    BadPath,
    /// A path that is safe but not a file of this game version.
    NotInManifest,
    /// A frame over the size limit.
    FrameTooLarge,
    /// Too many requests at once on this connection.
    TooManyStreams,
    /// Something failed on the serving side (a disk error).
    Internal,
    /// A partial peer does not hold (all of) this byte range yet.
    NotHeld,
    /// A swarm request for bytes this PC is sending to another PC now, or
    /// just sent: ask the partial peers once they announce them.
    SentElsewhere,
}

/// A refusal, with words for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// A response: the first frame the server sends on a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Hello(PeerHello),
    Library {
        revision: u64,
        games: Vec<AnnouncedGame>,
        /// The serving PC's catalog now (it may load another while running).
        catalog_fingerprint: [u8; 32],
        /// Peer exchange: addresses of the peers this PC follows and that
        /// answered it (at most [`MAX_EXCHANGED_PEERS`]), so one typed
        /// address is enough to find the whole party without multicast.
        peers: Vec<std::net::SocketAddr>,
    },
    Manifest(Box<Manifest>),
    /// `len` raw bytes follow on the stream.
    ChunkHeader {
        len: u64,
    },
    Error(WireError),
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is over the {limit}-byte limit")]
    TooLarge { len: u32, limit: u32 },
    #[error("the stream ended before the frame was complete")]
    Truncated,
    #[error("frame could not be decoded: {0}")]
    Decode(#[from] postcard::Error),
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes one frame.
pub async fn write_frame<T: Serialize>(
    out: &mut (impl AsyncWrite + Unpin),
    message: &T,
) -> Result<(), FrameError> {
    let bytes = postcard::to_allocvec(message)?;
    let len = u32::try_from(bytes.len()).map_err(|_| FrameError::TooLarge {
        len: u32::MAX,
        limit: u32::MAX,
    })?;
    let mut buffer = Vec::with_capacity(4 + bytes.len());
    buffer.extend_from_slice(&len.to_le_bytes());
    buffer.extend_from_slice(&bytes);
    out.write_all(&buffer).await?;
    Ok(())
}

/// Reads the length prefix of a frame and checks it against `limit`.
pub async fn read_frame_len(
    input: &mut (impl AsyncRead + Unpin),
    limit: u32,
) -> Result<u32, FrameError> {
    let mut prefix = [0u8; 4];
    input
        .read_exact(&mut prefix)
        .await
        .map_err(eof_is_truncated)?;
    let len = u32::from_le_bytes(prefix);
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    Ok(len)
}

/// Reads one frame's bytes (at most `limit`), to be decoded elsewhere (a
/// manifest is decoded and validated on a blocking thread).
pub async fn read_frame_bytes(
    input: &mut (impl AsyncRead + Unpin),
    limit: u32,
) -> Result<Vec<u8>, FrameError> {
    let len = read_frame_len(input, limit).await?;
    let mut bytes = vec![0u8; len as usize];
    input
        .read_exact(&mut bytes)
        .await
        .map_err(eof_is_truncated)?;
    Ok(bytes)
}

/// Reads one frame of at most `limit` bytes.
pub async fn read_frame<T: for<'de> Deserialize<'de>>(
    input: &mut (impl AsyncRead + Unpin),
    limit: u32,
) -> Result<T, FrameError> {
    decode_frame(&read_frame_bytes(input, limit).await?)
}

/// Decodes one frame's bytes (see [`read_frame_bytes`]).
pub fn decode_frame<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, FrameError> {
    Ok(postcard::from_bytes(bytes)?)
}

fn eof_is_truncated(err: std::io::Error) -> FrameError {
    if err.kind() == std::io::ErrorKind::UnexpectedEof {
        FrameError::Truncated
    } else {
        FrameError::Io(err)
    }
}

/// Display names are trimmed to a sane length and stripped of control
/// characters before they are shown anywhere.
pub fn clean_name(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_LEN)
        .collect();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() {
        "unnamed PC".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_largest_piece_request_fits_in_a_request_frame() {
        let path_len = lanspread_core::download::MAX_PIECE_PATH_BYTES / MAX_CHUNK_REQUEST_RANGES;
        let request = Request::Chunk {
            game: GameId::parse("ut2004").unwrap(),
            version: GameVersion::parse("2024-01-01").unwrap(),
            ranges: (0..MAX_CHUNK_REQUEST_RANGES)
                .map(|i| ByteRange {
                    path: format!("{i:0path_len$}"),
                    offset: u64::MAX,
                    len: u64::MAX,
                })
                .collect(),
            swarm: true,
        };
        let mut buffer = Vec::new();
        write_frame(&mut buffer, &request).await.unwrap();
        assert!(
            buffer.len() <= MAX_REQUEST_FRAME_BYTES as usize,
            "{}",
            buffer.len()
        );
    }

    #[tokio::test]
    async fn frames_round_trip_and_limits_hold() {
        let request = Request::Chunk {
            game: GameId::parse("ut2004").unwrap(),
            version: GameVersion::parse("1").unwrap(),
            ranges: vec![ByteRange {
                path: "Maps/a.ut2".into(),
                offset: 7,
                len: 9,
            }],
            swarm: true,
        };
        let mut buffer = Vec::new();
        write_frame(&mut buffer, &request).await.unwrap();
        let back: Request = read_frame(&mut buffer.as_slice(), MAX_REQUEST_FRAME_BYTES)
            .await
            .unwrap();
        assert_eq!(back, request);

        let err = read_frame::<Request>(&mut buffer.as_slice(), 4)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { limit: 4, .. }));
        let err = read_frame::<Request>(&mut &buffer[..buffer.len() - 1], 1 << 20)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::Truncated));
        let garbage = [3u8, 0, 0, 0, 0xff, 0xff, 0xff];
        let err = read_frame::<Request>(&mut garbage.as_slice(), 1 << 20)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::Decode(_)));
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("  Frag\u{7}master \n"), "Fragmaster");
        assert_eq!(clean_name(""), "unnamed PC");
        assert_eq!(clean_name(&"x".repeat(500)).len(), MAX_NAME_LEN);
    }
}
