//! The local control socket: how `lanspread status` (and, later, `get`,
//! `update`, …) talk to the peer running on a data folder.
//!
//! A TCP listener on 127.0.0.1 with a random port; `control.json` in the data
//! folder (owner-only permissions) holds the port and a random token, and
//! every request must carry the token. One JSON object per line each way.
//! Loopback TCP is used on every platform so Windows and Unix share one
//! tested code path; the token file's permissions are what keep other users
//! out.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::platform::write_private_file;
use crate::runtime::PeerState;

const CONTROL_FILE: &str = "control.json";
/// Longest request or answer line.
const MAX_LINE_BYTES: u64 = 64 * 1024;
/// Control connections served at once.
const MAX_CONTROL_CONNECTIONS: usize = 8;
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize, Deserialize)]
struct ControlFile {
    port: u16,
    token: String,
    pid: u32,
}

/// A request on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ControlCommand {
    Status,
}

#[derive(Debug, Serialize, Deserialize)]
struct ControlRequest {
    token: String,
    #[serde(flatten)]
    command: ControlCommand,
}

/// The answer to `status`. Field names are stable: scripts read them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub addr: Option<SocketAddr>,
    pub name: String,
    pub peer_id: String,
    pub peers: Vec<StatusPeer>,
    pub games: Vec<StatusGame>,
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
                let game = lanspread_core::GameId::parse(&id).ok();
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
            name: state.name.clone(),
            peer_id: state.peer_id.clone(),
            peers: state
                .peers
                .values()
                .map(|p| StatusPeer {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    addr: p.addr,
                    games: p.games.len(),
                })
                .collect(),
            games,
        }
    }
}

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no lanspread is running on the data folder {0}")]
    NotRunning(String),
    #[error("talking to the running lanspread: {0}")]
    Io(#[from] std::io::Error),
    #[error("the running lanspread answered: {0}")]
    Refused(String),
    #[error("bad answer from the running lanspread: {0}")]
    Decode(#[from] serde_json::Error),
}

/// The listening control socket.
#[derive(Debug)]
pub struct ControlServer {
    listener: tokio::net::TcpListener,
    token: String,
    file: PathBuf,
}

impl ControlServer {
    pub async fn bind(data_dir: &Path) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let port = listener.local_addr()?.port();
        let token: String = (0..32)
            .map(|_| format!("{:x}", rand::random::<u8>() % 16))
            .collect();
        let file = data_dir.join(CONTROL_FILE);
        let contents = ControlFile {
            port,
            token: token.clone(),
            pid: std::process::id(),
        };
        write_private_file(
            &file,
            &serde_json::to_vec(&contents).map_err(std::io::Error::other)?,
        )?;
        Ok(Self {
            listener,
            token,
            file,
        })
    }

    pub async fn serve(self, state: watch::Receiver<PeerState>, shutdown: CancellationToken) {
        let permits = Arc::new(Semaphore::new(MAX_CONTROL_CONNECTIONS));
        let token = Arc::new(self.token);
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
                accepted = self.listener.accept() => accepted,
            };
            let Ok((stream, _)) = accepted else { continue };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                continue; // dropped: the client sees the connection close
            };
            let state = state.clone();
            let token = token.clone();
            tasks.spawn(async move {
                let _permit = permit;
                let _ = tokio::time::timeout(CONTROL_TIMEOUT, answer(stream, &token, &state)).await;
            });
        }
        tasks.abort_all();
        let _ = std::fs::remove_file(&self.file);
    }
}

async fn answer(
    stream: tokio::net::TcpStream,
    token: &str,
    state: &watch::Receiver<PeerState>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    tokio::io::AsyncReadExt::take(tokio::io::BufReader::new(read), MAX_LINE_BYTES)
        .read_line(&mut line)
        .await?;
    let reply = match serde_json::from_str::<ControlRequest>(&line) {
        Err(err) => serde_json::json!({ "error": format!("bad request: {err}") }),
        Ok(request) if request.token != token => serde_json::json!({ "error": "wrong token" }),
        Ok(request) => match request.command {
            ControlCommand::Status => {
                let report = StatusReport::from_state(&state.borrow());
                serde_json::to_value(report)
                    .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
            }
        },
    };
    let mut bytes = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await?;
    write.shutdown().await
}

/// Sends `command` to the peer running on `data_dir` and returns its answer.
pub fn request(
    data_dir: &Path,
    command: ControlCommand,
) -> Result<serde_json::Value, ControlError> {
    let not_running = || ControlError::NotRunning(data_dir.display().to_string());
    if !crate::data_lock::is_locked(data_dir) {
        return Err(not_running());
    }
    let file: ControlFile = match std::fs::read(data_dir.join(CONTROL_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes)?,
        Err(_) => return Err(not_running()),
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, file.port));
    let mut stream = TcpStream::connect_timeout(&addr, CONTROL_TIMEOUT)?;
    stream.set_read_timeout(Some(CONTROL_TIMEOUT))?;
    stream.set_write_timeout(Some(CONTROL_TIMEOUT))?;
    let mut line = serde_json::to_vec(&ControlRequest {
        token: file.token,
        command,
    })?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(std::io::Read::take(stream, MAX_LINE_BYTES)).read_line(&mut answer)?;
    let value: serde_json::Value = serde_json::from_str(&answer)?;
    if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
        return Err(ControlError::Refused(error.to_owned()));
    }
    Ok(value)
}
