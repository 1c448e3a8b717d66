//! The one vocabulary for asking a running peer to do something: the
//! window, the command line (through the control socket) and the tests all
//! send a [`Request`] and get a [`Reply`] or a typed [`ApiError`] back. The
//! runtime answers every request in one place (`runtime::handler`).
//!
//! These are serde types: the control socket carries them as JSON lines,
//! versioned by [`API_VERSION`]. Adding a command is one variant here and
//! one arm in the handler.

use std::net::SocketAddr;
use std::path::PathBuf;

use lanspread_core::{GameId, SharingPolicy};
use serde::{Deserialize, Serialize};

use crate::download::{DownloadProgress, DownloadReport, UpdatePlan};
use crate::runtime::PeerState;

/// The version of this vocabulary on the control socket. A request of
/// another version is refused with [`ApiError::Version`] (a `lanspread`
/// binary talking to a running one of another release), never guessed at.
pub const API_VERSION: u32 = 1;

/// What a peer can be asked to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// The peer's state, as [`StatusReport`].
    Status,
    /// Connect to a peer by `HOST:PORT`.
    AddPeer {
        target: String,
    },
    /// Scan the games folder now.
    Rescan,
    /// Download (or resume) the catalog's version of a game.
    Download {
        game: GameId,
    },
    /// Stop a running download (it resumes next time).
    CancelDownload {
        game: GameId,
    },
    /// Work out what updating a game would download and reuse; the answer
    /// is also kept in [`PeerState::update_plans`] (for the Update button).
    PlanUpdate {
        game: GameId,
    },
    /// Bring a game to the catalog's version; reinstalls if it was installed.
    Update {
        game: GameId,
    },
    Install {
        game: GameId,
    },
    Uninstall {
        game: GameId,
    },
    Remove {
        game: GameId,
        #[serde(default)]
        keep_local: bool,
    },
    /// Replace the catalog with an organiser's file.
    LoadCatalog {
        path: PathBuf,
    },
    /// Start an installed game from its catalog `launch` entry, detached.
    Play {
        game: GameId,
    },
    /// Change the upload limit and the choice for while a game runs; it
    /// applies at once, to uploads already running too.
    SetSharing {
        policy: SharingPolicy,
    },
}

impl Request {
    /// Answered at once from what the runtime holds; everything else runs
    /// as its own job (a download, a connect, an operation on disk).
    pub fn is_instant(&self) -> bool {
        matches!(
            self,
            Self::Status | Self::Rescan | Self::CancelDownload { .. } | Self::SetSharing { .. }
        )
    }

    /// Takes as long as a download or an operation on a whole game: a
    /// client waits for the answer without a timeout.
    pub fn takes_long(&self) -> bool {
        matches!(
            self,
            Self::Download { .. }
                | Self::Update { .. }
                | Self::PlanUpdate { .. }
                | Self::Install { .. }
                | Self::Uninstall { .. }
                | Self::Remove { .. }
        )
    }

    /// The game whose download progress is reported while this runs.
    pub fn download_of(&self) -> Option<&GameId> {
        match self {
            Self::Download { game } | Self::Update { game } => Some(game),
            _ => None,
        }
    }
}

/// What a request answers when it worked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// For [`Request::Status`].
    Status(Box<StatusReport>),
    /// For [`Request::AddPeer`]: the address it resolved to.
    PeerAdded { addr: SocketAddr },
    /// For [`Request::Download`] (also when the game was already here:
    /// `total_pieces` is 0).
    Downloaded(DownloadReport),
    /// For [`Request::PlanUpdate`].
    UpdatePlan(UpdatePlan),
    /// What happened, in words (update, install, uninstall, remove,
    /// catalog load, play).
    Message { message: String },
    /// Taken (rescan, cancel, sharing change).
    Done,
}

impl Reply {
    /// The download report, when this is one.
    pub fn into_download(self) -> Result<DownloadReport, ApiError> {
        match self {
            Self::Downloaded(report) => Ok(report),
            other => Err(other.unexpected()),
        }
    }

    pub fn into_status(self) -> Result<StatusReport, ApiError> {
        match self {
            Self::Status(report) => Ok(*report),
            other => Err(other.unexpected()),
        }
    }

    pub fn into_plan(self) -> Result<UpdatePlan, ApiError> {
        match self {
            Self::UpdatePlan(plan) => Ok(plan),
            other => Err(other.unexpected()),
        }
    }

    /// The sentence of a [`Reply::Message`].
    pub fn into_message(self) -> Result<String, ApiError> {
        match self {
            Self::Message { message } => Ok(message),
            other => Err(other.unexpected()),
        }
    }

    fn unexpected(&self) -> ApiError {
        ApiError::UnexpectedReply {
            reply: format!("{self:?}").chars().take(80).collect(),
        }
    }
}

/// Why a request failed. Typed across every boundary (runtime, control
/// socket, window); the text is what a person reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum ApiError {
    #[error("{game} is not in the catalog")]
    NotInCatalog { game: String },
    #[error("this lanspread has no games folder; start it with --games DIR")]
    NoGamesFolder,
    #[error("{game} is already downloading")]
    AlreadyDownloading { game: String },
    #[error("the download of {game} was cancelled; it resumes where it stopped next time")]
    Cancelled { game: String },
    /// The download failed; `reason` says why, for people.
    #[error("{reason}")]
    Download { game: String, reason: String },
    /// An update or remove (or install) of the game runs on this PC.
    #[error("{reason}")]
    Busy { game: String, reason: String },
    /// Installing, uninstalling or removing failed on disk.
    #[error("{reason}")]
    Operation { game: String, reason: String },
    #[error("{reason}")]
    Catalog { path: PathBuf, reason: String },
    #[error("{game} cannot be started: {reason}")]
    Play { game: String, reason: String },
    #[error("peer {target}: {reason}")]
    Peer { target: String, reason: String },
    #[error("bad request: {reason}")]
    BadRequest { reason: String },
    #[error("wrong token")]
    WrongToken,
    #[error(
        "the running lanspread speaks version {ours} of the control protocol, this one {theirs}: use the same lanspread for both"
    )]
    Version { ours: u32, theirs: u32 },
    #[error("the peer is too busy to take the request; try again")]
    Overloaded,
    #[error("lanspread stopped before it answered")]
    Stopped,
    #[error("internal error: {reason}")]
    Internal { reason: String },
    #[error("unexpected answer: {reply}")]
    UnexpectedReply { reply: String },
}

/// The answer to `status`. Field names are stable: scripts read them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub addr: Option<SocketAddr>,
    /// The games folder the running peer shares.
    pub games_dir: Option<PathBuf>,
    pub name: String,
    pub peer_id: String,
    pub peers: Vec<StatusPeer>,
    pub games: Vec<StatusGame>,
    /// Downloads running or just ended.
    pub downloads: Vec<DownloadProgress>,
    /// Chunk transfers sent completely since start.
    pub chunks_served: u64,
    /// A game being hashed now (a first scan), if any.
    #[serde(default)]
    pub hashing: Option<crate::library::HashingProgress>,
    /// The upload limit and pause in force now.
    #[serde(default)]
    pub sharing: lanspread_core::SharingInForce,
    /// Games started from this lanspread that still run.
    #[serde(default)]
    pub running: Vec<String>,
    /// A peer connected to this PC since it started.
    #[serde(default)]
    pub reached_by_peers: bool,
    /// Peers followed for a while and none connected in: a firewall?
    #[serde(default)]
    pub maybe_firewalled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusPeer {
    pub id: String,
    pub name: String,
    pub addr: SocketAddr,
    pub games: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusGame {
    pub id: String,
    /// Live uploads of this game.
    pub outbound: usize,
    /// An update or remove is in progress.
    pub active: bool,
    /// Announced to peers right now.
    pub shared: bool,
}

impl StatusReport {
    pub fn from_state(state: &PeerState) -> Self {
        let mut ids: std::collections::BTreeSet<String> =
            state.local_games.iter().map(|g| g.id.to_string()).collect();
        ids.extend(state.transfers.outbound.keys().map(ToString::to_string));
        ids.extend(state.transfers.active.iter().map(ToString::to_string));
        let games = ids
            .into_iter()
            .map(|id| {
                let game = GameId::parse(&id).ok();
                let count = game
                    .as_ref()
                    .map_or(0, |g| state.transfers.outbound_count(g));
                let active = game.as_ref().is_some_and(|g| state.transfers.is_active(g));
                let shared = state.local_games.iter().any(|g| g.id.as_str() == id);
                StatusGame {
                    id,
                    outbound: count,
                    active,
                    shared,
                }
            })
            .collect();
        Self {
            addr: state.listen_addr,
            games_dir: state.games_dir.clone(),
            name: state.name.clone(),
            peer_id: state.peer_id.clone(),
            peers: state
                .peers
                .values()
                .map(|p| StatusPeer {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    addr: p.addr,
                    games: p.games.iter().filter(|g| g.is_whole()).count(),
                })
                .collect(),
            games,
            downloads: state.downloads.values().cloned().collect(),
            chunks_served: state.chunks_served,
            hashing: state.hashing.clone(),
            sharing: state.sharing,
            running: state.running.iter().map(ToString::to_string).collect(),
            reached_by_peers: state.reached_by_peers,
            maybe_firewalled: state.maybe_firewalled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(raw: &str) -> GameId {
        GameId::parse(raw).unwrap()
    }

    #[test]
    fn requests_and_errors_read_back_as_they_were_written() {
        let requests = [
            Request::Status,
            Request::AddPeer {
                target: "10.0.0.2:4433".into(),
            },
            Request::Download { game: id("ut2004") },
            Request::Remove {
                game: id("cs16"),
                keep_local: true,
            },
            Request::LoadCatalog {
                path: PathBuf::from("party.ron"),
            },
            Request::SetSharing {
                policy: SharingPolicy {
                    upload_limit_bytes_per_sec: Some(1_250_000),
                    while_playing: lanspread_core::WhilePlaying::LimitMbit(5),
                },
            },
        ];
        for request in requests {
            let line = serde_json::to_string(&request).unwrap();
            assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), request);
        }
        let error = ApiError::Busy {
            game: "ut2004".into(),
            reason: "being updated".into(),
        };
        let line = serde_json::to_string(&error).unwrap();
        assert!(line.contains(r#""error":"busy""#), "{line}");
        assert_eq!(serde_json::from_str::<ApiError>(&line).unwrap(), error);
    }

    #[test]
    fn a_bad_game_id_is_refused_when_the_request_is_read() {
        let line = r#"{"request":"download","game":"../etc"}"#;
        assert!(serde_json::from_str::<Request>(line).is_err());
        let line = r#"{"request":"download","game":"ut2004"}"#;
        assert_eq!(
            serde_json::from_str::<Request>(line).unwrap(),
            Request::Download { game: id("ut2004") }
        );
    }

    #[test]
    fn a_reply_of_another_kind_is_a_typed_error() {
        let err = Reply::Done.into_download().unwrap_err();
        assert!(matches!(err, ApiError::UnexpectedReply { .. }), "{err:?}");
        assert_eq!(
            Reply::Message {
                message: "ok".into()
            }
            .into_message(),
            Ok("ok".to_owned())
        );
    }
}
