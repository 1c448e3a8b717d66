//! What a download reports while it runs and when it ends.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Where a download is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Asking peers for their manifests and voting.
    Manifests,
    /// Copying the chunks an older copy on this PC already holds.
    Reusing,
    /// Fetching and verifying chunks.
    Fetching,
    /// Waiting for uploads of the old version to stop, then swapping in.
    Swapping,
    Done,
    Failed,
}

impl Phase {
    /// The phase in a few words, for the window and the command line.
    pub fn label(self) -> &'static str {
        match self {
            Self::Manifests => "asking peers",
            Self::Reusing => "reusing the old version",
            Self::Fetching => "downloading",
            Self::Swapping => "finishing",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }
}

/// One peer's part in a download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerShare {
    pub addr: SocketAddr,
    pub name: String,
    /// Verified bytes this peer delivered.
    pub bytes: u64,
    pub dropped: bool,
    /// Why it was dropped or not used.
    pub reason: Option<String>,
}

/// A download's progress, published while it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownloadProgress {
    pub game: String,
    pub version: String,
    pub phase: Phase,
    pub total_bytes: u64,
    /// Verified bytes, including those found on disk when resuming and
    /// those reused from an older copy.
    pub done_bytes: u64,
    /// Bytes copied from the older copy on this PC instead of fetched.
    #[serde(default)]
    pub reused_bytes: u64,
    pub bytes_per_sec: f64,
    pub eta_secs: Option<u64>,
    pub peers: Vec<PeerShare>,
    /// Set when the phase is `Failed`.
    pub error: Option<String>,
}

impl DownloadProgress {
    pub fn peers_in_use(&self) -> usize {
        self.peers.iter().filter(|p| !p.dropped).count()
    }
}

/// The result of a finished download. Field names are stable (`get --json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownloadReport {
    pub id: String,
    pub version: String,
    /// Bytes fetched over the network in this run.
    pub bytes: u64,
    /// The whole download: finding sources, manifests, fetching, the swap.
    pub seconds: f64,
    /// The fetch alone: first chunk request to last chunk verified.
    #[serde(default)]
    pub fetch_seconds: f64,
    /// From the download's start to its first chunk request (sources,
    /// the vote, manifests, staging, reuse).
    #[serde(default)]
    pub start_seconds: f64,
    /// When the download started, in milliseconds since the Unix epoch
    /// (a benchmark compares it with when the process started and ended).
    #[serde(default)]
    pub started_at_unix_ms: u64,
    pub peers: Vec<PeerShare>,
    /// Bytes copied from an older copy on this PC (verified chunk by
    /// chunk) instead of fetched, in this run.
    #[serde(default)]
    pub reused_bytes: u64,
    /// Pieces fetched in this run.
    pub pieces_fetched: usize,
    /// Pieces the journal already listed.
    pub pieces_journaled: usize,
    /// Pieces found whole on disk though not yet journaled.
    pub pieces_rescued: usize,
    /// Pieces copied from an older copy in this run.
    #[serde(default)]
    pub pieces_reused: usize,
    pub total_pieces: usize,
}

/// Speed over a sliding window.
#[derive(Debug)]
pub struct SpeedMeter {
    window: Duration,
    samples: VecDeque<(Instant, u64)>,
}

impl SpeedMeter {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            samples: VecDeque::new(),
        }
    }

    /// Records the running total of bytes; returns bytes per second.
    pub fn record(&mut self, now: Instant, total: u64) -> f64 {
        self.samples.push_back((now, total));
        while let Some(&(t, _)) = self.samples.front() {
            if now.duration_since(t) > self.window && self.samples.len() > 2 {
                self.samples.pop_front();
            } else {
                break;
            }
        }
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, b0)), Some(&(t1, b1))) if t1 > t0 => {
                (b1.saturating_sub(b0)) as f64 / t1.duration_since(t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_is_measured_over_the_window() {
        let mut meter = SpeedMeter::new(Duration::from_secs(2));
        let t0 = Instant::now();
        assert_eq!(meter.record(t0, 0), 0.0);
        let speed = meter.record(t0 + Duration::from_secs(1), 1_000_000);
        assert!((speed - 1_000_000.0).abs() < 1.0);
        meter.record(t0 + Duration::from_secs(2), 2_000_000);
        let speed = meter.record(t0 + Duration::from_secs(5), 2_000_000);
        assert!(speed < 1_000_000.0, "old samples age out: {speed}");
    }
}
