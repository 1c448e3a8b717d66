//! An upload cap: a token bucket shared by every upload of this PC.

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
}
