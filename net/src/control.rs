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

use lanspread_core::GameId;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::download::DownloadProgress;
use crate::platform::write_private_file;
use crate::runtime::{Command, PeerState};

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
    /// Download (or resume) the catalog's version; progress lines follow.
    Get {
        game: String,
    },
    /// Bring a game to the catalog's version; progress lines follow.
    Update {
        game: String,
    },
    Install {
        game: String,
    },
    Uninstall {
        game: String,
    },
    Remove {
        game: String,
        #[serde(default)]
        keep_local: bool,
    },
    /// Hand the running peer an organiser's newer catalog.
    CatalogLoad {
        path: PathBuf,
    },
    /// Start an installed game (the running peer watches it, for its
    /// sharing choice while a game runs).
    Play {
        game: String,
    },
}

impl ControlCommand {
    /// Commands that run for long: no read timeout on their answer.
    fn is_long(&self) -> bool {
        !matches!(
            self,
            Self::Status | Self::CatalogLoad { .. } | Self::Play { .. }
        )
    }
}

/// How often progress lines are sent at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

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

    pub async fn serve(
        self,
        state: watch::Receiver<PeerState>,
        commands: mpsc::Sender<Command>,
        shutdown: CancellationToken,
    ) {
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
            let (state, commands, token) = (state.clone(), commands.clone(), token.clone());
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let _permit = permit;
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => {}
                    _ = answer(stream, &token, state, &commands) => {}
                }
            });
        }
        tasks.abort_all();
        let _ = std::fs::remove_file(&self.file);
    }
}

async fn write_line(
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    value: &serde_json::Value,
) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await
}

async fn answer(
    stream: tokio::net::TcpStream,
    token: &str,
    state: watch::Receiver<PeerState>,
    commands: &mpsc::Sender<Command>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::AsyncReadExt::take(tokio::io::BufReader::new(read), MAX_LINE_BYTES);
    tokio::time::timeout(CONTROL_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let outcome = match serde_json::from_str::<ControlRequest>(&line) {
        Err(err) => Err(format!("bad request: {err}")),
        Ok(request) if request.token != token => Err("wrong token".to_owned()),
        Ok(request) => run_command(request.command, state, commands, &mut write).await,
    };
    let last = match outcome {
        Ok(done) => serde_json::json!({ "done": done }),
        Err(error) => serde_json::json!({ "error": error }),
    };
    write_line(&mut write, &last).await?;
    write.shutdown().await
}

fn game_id(raw: &str) -> Result<GameId, String> {
    GameId::parse(raw).map_err(|e| e.to_string())
}

/// Carries out one command, writing progress lines for downloads.
async fn run_command(
    command: ControlCommand,
    mut state: watch::Receiver<PeerState>,
    commands: &mpsc::Sender<Command>,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
) -> Result<serde_json::Value, String> {
    let to_value =
        |v: Result<String, String>| v.map(|message| serde_json::json!({ "message": message }));
    let (download_of, reply): (Option<GameId>, _) = match command {
        ControlCommand::Status => {
            let report = StatusReport::from_state(&state.borrow());
            return serde_json::to_value(report).map_err(|e| e.to_string());
        }
        ControlCommand::Get { game } => {
            let game = game_id(&game)?;
            let (reply, answer) = oneshot::channel();
            send(
                commands,
                Command::Download {
                    game: game.clone(),
                    reply,
                },
            )
            .await?;
            let answer = async move {
                match answer.await {
                    Ok(Ok(report)) => serde_json::to_value(report).map_err(|e| e.to_string()),
                    Ok(Err(err)) => Err(err),
                    Err(_) => Err("the peer stopped".to_owned()),
                }
            };
            (
                Some(game),
                Box::pin(answer) as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>,
            )
        }
        other => {
            let (reply, answer) = oneshot::channel();
            let (game, command) = match other {
                ControlCommand::Update { game } => {
                    let game = game_id(&game)?;
                    (Some(game.clone()), Command::Update { game, reply })
                }
                ControlCommand::Install { game } => (
                    None,
                    Command::Install {
                        game: game_id(&game)?,
                        reply,
                    },
                ),
                ControlCommand::Uninstall { game } => (
                    None,
                    Command::Uninstall {
                        game: game_id(&game)?,
                        reply,
                    },
                ),
                ControlCommand::Remove { game, keep_local } => (
                    None,
                    Command::Remove {
                        game: game_id(&game)?,
                        keep_local,
                        reply,
                    },
                ),
                ControlCommand::CatalogLoad { path } => {
                    (None, Command::LoadCatalog { path, reply })
                }
                ControlCommand::Play { game } => (
                    None,
                    Command::Play {
                        game: game_id(&game)?,
                        reply,
                    },
                ),
                ControlCommand::Status | ControlCommand::Get { .. } => {
                    return Err("internal: command handled above".to_owned());
                }
            };
            send(commands, command).await?;
            let answer = async move {
                match answer.await {
                    Ok(result) => to_value(result),
                    Err(_) => Err("the peer stopped".to_owned()),
                }
            };
            (
                game,
                Box::pin(answer) as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>,
            )
        }
    };
    let mut reply = reply;
    let mut last_sent: Option<(tokio::time::Instant, DownloadProgress)> = None;
    let mut client_gone = false;
    loop {
        tokio::select! {
            result = &mut reply => return result,
            changed = state.changed(), if download_of.is_some() && !client_gone => {
                if changed.is_err() {
                    return reply.await;
                }
                let progress = download_of
                    .as_ref()
                    .and_then(|game| state.borrow_and_update().downloads.get(game.as_str()).cloned());
                let Some(progress) = progress else { continue };
                let due = last_sent.as_ref().is_none_or(|(at, previous)| {
                    at.elapsed() >= PROGRESS_EVERY || previous.phase != progress.phase
                });
                if due {
                    let line = serde_json::json!({ "progress": progress });
                    if write_line(write, &line).await.is_err() {
                        // The command goes on; nobody is listening for lines.
                        client_gone = true;
                    }
                    last_sent = Some((tokio::time::Instant::now(), progress));
                }
            }
        }
    }
}

async fn send(commands: &mpsc::Sender<Command>, command: Command) -> Result<(), String> {
    tokio::time::timeout(CONTROL_TIMEOUT, commands.send(command))
        .await
        .map_err(|_| "the peer is too busy to take the command".to_owned())?
        .map_err(|_| "the peer stopped".to_owned())
}

/// Sends `command` to the peer running on `data_dir` and returns its final
/// answer; `on_progress` sees every progress line before it.
pub fn request_with_progress(
    data_dir: &Path,
    command: ControlCommand,
    mut on_progress: impl FnMut(&DownloadProgress),
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
    let stream = TcpStream::connect_timeout(&addr, CONTROL_TIMEOUT)?;
    let long = command.is_long();
    stream.set_read_timeout((!long).then_some(CONTROL_TIMEOUT))?;
    stream.set_write_timeout(Some(CONTROL_TIMEOUT))?;
    let mut line = serde_json::to_vec(&ControlRequest {
        token: file.token,
        command,
    })?;
    line.push(b'\n');
    (&stream).write_all(&line)?;
    let mut reader = BufReader::new(&stream);
    loop {
        let mut answer = String::new();
        let read = std::io::Read::take(&mut reader, MAX_LINE_BYTES).read_line(&mut answer)?;
        if read == 0 {
            return Err(ControlError::Refused(
                "the running lanspread closed the connection without an answer".to_owned(),
            ));
        }
        let value: serde_json::Value = serde_json::from_str(&answer)?;
        if let Some(progress) = value.get("progress") {
            if let Ok(progress) = serde_json::from_value::<DownloadProgress>(progress.clone()) {
                on_progress(&progress);
            }
            continue;
        }
        if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
            return Err(ControlError::Refused(error.to_owned()));
        }
        return Ok(value
            .get("done")
            .cloned()
            .unwrap_or(serde_json::Value::Null));
    }
}

/// Sends `command` to the peer running on `data_dir` and returns its answer.
pub fn request(
    data_dir: &Path,
    command: ControlCommand,
) -> Result<serde_json::Value, ControlError> {
    request_with_progress(data_dir, command, |_| {})
}

/// Whether a lanspread runs on `data_dir` right now.
pub fn is_running(data_dir: &Path) -> bool {
    crate::data_lock::is_locked(data_dir)
}
