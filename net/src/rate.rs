//! An upload cap: a token bucket shared by every upload of this PC, which
//! the user can change (or pause) while uploads run.

use std::time::Duration;

use tokio::time::Instant;

/// Bytes per second for all uploads together, with a short burst allowance.
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_sec: f64,
    burst_bytes: f64,
    /// Tokens available (may go negative: a debt the next sender waits out)
    /// and when they were counted. Held only to update the two numbers.
    bucket: std::sync::Mutex<(f64, Instant)>,
}

impl RateLimit {
    pub fn new(bytes_per_sec: u64) -> Self {
        let rate = bytes_per_sec.max(1) as f64;
        let burst = (rate / 10.0).max(256.0 * 1024.0);
        Self {
            bytes_per_sec: rate,
            burst_bytes: burst,
            bucket: std::sync::Mutex::new((burst, Instant::now())),
        }
    }

    /// Waits until `bytes` may be sent.
    pub async fn take(&self, bytes: usize) {
        let wait = {
            let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let (tokens, at) = *bucket;
            let refilled = (tokens + now.duration_since(at).as_secs_f64() * self.bytes_per_sec)
                .min(self.burst_bytes);
            let left = refilled - bytes as f64;
            *bucket = (left, now);
            if left >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-left / self.bytes_per_sec)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// One connection's place in the cap's queue. A piece waits for tokens
/// only while it holds its connection's turn (a fair, first-come lock), so
/// every connection has at most one piece in the queue and connections
/// take turns, whatever number of chunks each asks for at once: the cap is
/// shared per PC, not per request.
#[derive(Debug, Default)]
pub struct Turn(tokio::sync::Mutex<()>);

impl RateLimit {
    /// Waits until `bytes` may be sent, in `turn`'s place.
    pub async fn take_in_turn(&self, turn: &Turn, bytes: usize) {
        let _turn = turn.0.lock().await;
        self.take(bytes).await;
    }
}

/// The cap in force, changed live: every piece looks it up before it
/// waits for tokens, so a new limit applies from the next piece on.
#[derive(Debug, Default)]
pub struct LiveLimit {
    /// `None`: no cap. Held only to clone or replace the `Arc`.
    current: std::sync::RwLock<Option<std::sync::Arc<RateLimit>>>,
    paused: std::sync::atomic::AtomicBool,
}

impl LiveLimit {
    pub fn new(bytes_per_sec: Option<u64>) -> Self {
        let limit = Self::default();
        limit.set(bytes_per_sec, false);
        limit
    }

    /// Applies a new cap (a fresh bucket) and pause state.
    pub fn set(&self, bytes_per_sec: Option<u64>, paused: bool) {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let unchanged = current.as_ref().map(|l| l.bytes_per_sec as u64) == bytes_per_sec;
        if !unchanged {
            *current = bytes_per_sec.map(|rate| std::sync::Arc::new(RateLimit::new(rate)));
        }
        self.paused
            .store(paused, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn current(&self) -> Option<std::sync::Arc<RateLimit>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until `bytes` may be sent under the cap in force, in `turn`'s
    /// place; at once when there is none.
    pub async fn take_in_turn(&self, turn: &Turn, bytes: usize) {
        if let Some(limit) = self.current() {
            limit.take_in_turn(turn, bytes).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn holds_the_rate() {
        let limit = RateLimit::new(1_000_000);
        let started = Instant::now();
        for _ in 0..20 {
            limit.take(100_000).await;
        }
        // 2 MB at 1 MB/s, minus the 256 KiB burst.
        let elapsed = started.elapsed().as_secs_f64();
        assert!((1.6..=2.1).contains(&elapsed), "{elapsed}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_live_limit_changes_from_the_next_piece() {
        let live = LiveLimit::new(None);
        let turn = Turn::default();
        let started = Instant::now();
        for _ in 0..20 {
            live.take_in_turn(&turn, 100_000).await;
        }
        assert!(started.elapsed() < Duration::from_millis(1));
        live.set(Some(1_000_000), false);
        let started = Instant::now();
        for _ in 0..20 {
            live.take_in_turn(&turn, 100_000).await;
        }
        let elapsed = started.elapsed().as_secs_f64();
        assert!((1.6..=2.1).contains(&elapsed), "{elapsed}");
        live.set(None, true);
        assert!(live.is_paused());
    }
}
