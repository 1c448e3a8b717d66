//! The local control socket: how the command line (`status`, `get`,
//! `update`, `play`, …) talks to the peer running on a data folder. It
//! carries the [`crate::api`] vocabulary and nothing else: a transport.
//!
//! A TCP listener on 127.0.0.1 with a random port; `control.json` in the data
//! folder (owner-only permissions) holds the port and a random token, and
//! every request must carry the token and the vocabulary's version
//! ([`API_VERSION`]). One JSON object per line each way: the request
//! (`{"api":1,"token":…,"request":"download","game":"ut2004"}`), then
//! `{"progress":…}` lines while a download runs, then `{"ok":{"reply":…}}` or
//! `{"err":{"error":…}}`.
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
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::api::{API_VERSION, ApiError, Reply, Request};
use crate::download::DownloadProgress;
use crate::platform::write_private_file;
use crate::runtime::PeerState;
use crate::runtime::handler::Envelope;

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

/// How often progress lines are sent at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// A request line: the vocabulary's version, the token, and the request.
#[derive(Debug, Serialize, Deserialize)]
struct RequestLine {
    api: u32,
    token: String,
    #[serde(flatten)]
    request: Request,
}

/// An answer line: progress lines while a download runs, then the result.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum AnswerLine {
    Progress(DownloadProgress),
    Ok(Reply),
    Err(ApiError),
}

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no lanspread is running on the data folder {0}")]
    NotRunning(String),
    #[error("talking to the running lanspread: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Api(#[from] ApiError),
    #[error("the running lanspread closed the connection without an answer")]
    NoAnswer,
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

    pub(crate) async fn serve(
        self,
        state: watch::Receiver<PeerState>,
        requests: mpsc::Sender<Envelope>,
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
            let (state, requests, token) = (state.clone(), requests.clone(), token.clone());
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let _permit = permit;
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => {}
                    _ = answer(stream, &token, state, &requests) => {}
                }
            });
        }
        tasks.abort_all();
        let _ = std::fs::remove_file(&self.file);
    }
}

async fn write_line(
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    line: &AnswerLine,
) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(line).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await
}

/// Reads a request line: the version and token first, so a request of
/// another version is told so rather than "bad request".
fn read_request(line: &str, token: &str) -> Result<Request, ApiError> {
    let bad = |err: serde_json::Error| ApiError::BadRequest {
        reason: err.to_string(),
    };
    let value: serde_json::Value = serde_json::from_str(line).map_err(bad)?;
    if value.get("token").and_then(|t| t.as_str()) != Some(token) {
        return Err(ApiError::WrongToken);
    }
    let theirs = value.get("api").and_then(serde_json::Value::as_u64);
    if theirs != Some(u64::from(API_VERSION)) {
        return Err(ApiError::Version {
            ours: API_VERSION,
            theirs: theirs.and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
        });
    }
    serde_json::from_value::<RequestLine>(value)
        .map(|line| line.request)
        .map_err(bad)
}

async fn answer(
    stream: tokio::net::TcpStream,
    token: &str,
    state: watch::Receiver<PeerState>,
    requests: &mpsc::Sender<Envelope>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::AsyncReadExt::take(tokio::io::BufReader::new(read), MAX_LINE_BYTES);
    tokio::time::timeout(CONTROL_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let outcome = match read_request(&line, token) {
        Err(err) => Err(err),
        Ok(request) => forward(request, state, requests, &mut write).await,
    };
    let last = match outcome {
        Ok(reply) => AnswerLine::Ok(reply),
        Err(error) => AnswerLine::Err(error),
    };
    write_line(&mut write, &last).await?;
    write.shutdown().await
}

/// Hands the request to the runtime and waits for its answer, writing
/// progress lines while a download it started runs.
async fn forward(
    request: Request,
    mut state: watch::Receiver<PeerState>,
    requests: &mpsc::Sender<Envelope>,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
) -> Result<Reply, ApiError> {
    let download_of = request.download_of().cloned();
    let (reply, answer) = oneshot::channel();
    let envelope = Envelope {
        request,
        reply: Some(reply),
    };
    tokio::time::timeout(CONTROL_TIMEOUT, requests.send(envelope))
        .await
        .map_err(|_| ApiError::Overloaded)?
        .map_err(|_| ApiError::Stopped)?;
    let mut answer = std::pin::pin!(async move { answer.await.unwrap_or(Err(ApiError::Stopped)) });
    let Some(game) = download_of else {
        return answer.await;
    };
    let mut last_sent: Option<(tokio::time::Instant, DownloadProgress)> = None;
    let mut client_gone = false;
    loop {
        tokio::select! {
            result = &mut answer => return result,
            changed = state.changed(), if !client_gone => {
                if changed.is_err() {
                    return answer.await;
                }
                let progress = state.borrow_and_update().downloads.get(game.as_str()).cloned();
                let Some(progress) = progress else { continue };
                let due = last_sent.as_ref().is_none_or(|(at, previous)| {
                    at.elapsed() >= PROGRESS_EVERY || previous.phase != progress.phase
                });
                if due {
                    if write_line(write, &AnswerLine::Progress(progress.clone())).await.is_err() {
                        // The request goes on; nobody is listening for lines.
                        client_gone = true;
                    }
                    last_sent = Some((tokio::time::Instant::now(), progress));
                }
            }
        }
    }
}

/// Sends `request` to the peer running on `data_dir` and returns its
/// reply; `on_progress` sees every progress line before it.
pub fn request_with_progress(
    data_dir: &Path,
    request: Request,
    mut on_progress: impl FnMut(&DownloadProgress),
) -> Result<Reply, ControlError> {
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
    stream.set_read_timeout((!request.takes_long()).then_some(CONTROL_TIMEOUT))?;
    stream.set_write_timeout(Some(CONTROL_TIMEOUT))?;
    let mut line = serde_json::to_vec(&RequestLine {
        api: API_VERSION,
        token: file.token,
        request,
    })?;
    line.push(b'\n');
    (&stream).write_all(&line)?;
    let mut reader = BufReader::new(&stream);
    loop {
        let mut answer = String::new();
        let read = std::io::Read::take(&mut reader, MAX_LINE_BYTES).read_line(&mut answer)?;
        if read == 0 {
            return Err(ControlError::NoAnswer);
        }
        match serde_json::from_str::<AnswerLine>(&answer)? {
            AnswerLine::Progress(progress) => on_progress(&progress),
            AnswerLine::Ok(reply) => return Ok(reply),
            AnswerLine::Err(error) => return Err(error.into()),
        }
    }
}

/// Sends `request` to the peer running on `data_dir` and returns its reply.
pub fn request(data_dir: &Path, request: Request) -> Result<Reply, ControlError> {
    request_with_progress(data_dir, request, |_| {})
}

/// Whether a lanspread runs on `data_dir` right now.
pub fn is_running(data_dir: &Path) -> bool {
    crate::data_lock::is_locked(data_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PeerConfig, PeerHandle};
    use lanspread_core::{GameCatalog, GameId};

    fn peer_on(data: &Path) -> PeerHandle {
        let mut config = PeerConfig::loopback(GameCatalog::embedded().unwrap());
        config.data_dir = Some(data.to_path_buf());
        PeerHandle::start(config, None).unwrap()
    }

    /// Sends one raw line and reads the answer line back.
    fn raw(data: &Path, line: &str) -> AnswerLine {
        let file: ControlFile =
            serde_json::from_slice(&std::fs::read(data.join(CONTROL_FILE)).unwrap()).unwrap();
        let line = line.replace("TOKEN", &file.token);
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, file.port)).unwrap();
        stream.set_read_timeout(Some(CONTROL_TIMEOUT)).unwrap();
        (&stream).write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut answer = String::new();
        BufReader::new(&stream).read_line(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap()
    }

    #[test]
    fn requests_and_typed_errors_cross_the_socket() {
        let data = tempfile::tempdir().unwrap();
        let peer = peer_on(data.path());
        let status = request(data.path(), Request::Status)
            .and_then(|reply| Ok(reply.into_status()?))
            .unwrap();
        assert_eq!(status.peer_id, peer.peer_id());
        // A peer without a games folder cannot download: the error arrives
        // as the same variant the runtime returned, not as a sentence.
        let game = GameId::parse("ut2004").unwrap();
        match request(data.path(), Request::Download { game }) {
            Err(ControlError::Api(ApiError::NoGamesFolder)) => {}
            other => panic!("{other:?}"),
        }
        // A request of another vocabulary version, or with a wrong token,
        // is refused as such; a malformed one is a bad request.
        match raw(
            data.path(),
            r#"{"api":99,"token":"TOKEN","request":"status"}"#,
        ) {
            AnswerLine::Err(ApiError::Version { ours, theirs }) => {
                assert_eq!((ours, theirs), (API_VERSION, 99));
            }
            other => panic!("{other:?}"),
        }
        match raw(
            data.path(),
            r#"{"api":1,"token":"nope","request":"status"}"#,
        ) {
            AnswerLine::Err(ApiError::WrongToken) => {}
            other => panic!("{other:?}"),
        }
        match raw(
            data.path(),
            r#"{"api":1,"token":"TOKEN","request":"download","game":"../x"}"#,
        ) {
            AnswerLine::Err(ApiError::BadRequest { .. }) => {}
            other => panic!("{other:?}"),
        }
        match raw(
            data.path(),
            r#"{"api":1,"token":"TOKEN","request":"status"}"#,
        ) {
            AnswerLine::Ok(Reply::Status(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}
