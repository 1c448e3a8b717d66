//! Helpers for the tests that run `lanspread` as real processes.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test file uses a part

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_lanspread");

/// `lanspread --data DATA`.
pub fn lanspread(data: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data").arg(data);
    cmd
}

/// A `lanspread serve` process, killed when dropped.
pub struct Served {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve` on loopback with discovery off, plus `extra` arguments,
/// and waits for its `listening on` line.
pub fn serve_with(
    data: &Path,
    games: &Path,
    name: &str,
    peers: &[SocketAddr],
    extra: &[&str],
) -> Served {
    serve_limited(data, games, name, peers, extra, None)
}

/// `cmd` run by `sh` under `ulimit -n open_files` (Unix).
pub fn with_open_file_limit(cmd: &Command, open_files: u32) -> Command {
    let mut limited = Command::new("sh");
    limited
        .arg("-c")
        .arg(format!("ulimit -n {open_files} && exec \"$0\" \"$@\""))
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => limited.env(key, value),
            None => limited.env_remove(key),
        };
    }
    limited
}

/// [`serve_with`], under an open-file limit when one is given.
pub fn serve_limited(
    data: &Path,
    games: &Path,
    name: &str,
    peers: &[SocketAddr],
    extra: &[&str],
    open_files: Option<u32>,
) -> Served {
    let mut cmd = lanspread(data);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--no-discovery",
        "--name",
        name,
        "--games",
    ])
    .arg(games)
    .args(extra)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    for peer in peers {
        cmd.arg("--peer").arg(peer.to_string());
    }
    if let Some(limit) = open_files {
        cmd = with_open_file_limit(&cmd, limit);
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    Served { child, addr }
}

pub fn serve(data: &Path, games: &Path, name: &str, peers: &[SocketAddr]) -> Served {
    serve_with(data, games, name, peers, &[])
}

/// Runs `cmd`, asserts success, parses stdout as JSON.
pub fn json(cmd: &mut Command) -> Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The last line of stdout as JSON.
pub fn last_json_line(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Polls `check` until it returns `Some` or `timeout` passes. A failure is
/// reported at the caller's line.
#[track_caller]
pub fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(started.elapsed() < timeout, "gave up after {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `status --json` of the peer on `data`, if one answers.
pub fn status(data: &Path) -> Option<Value> {
    let out = lanspread(data).args(["status", "--json"]).output().ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())?
}
