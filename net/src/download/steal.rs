//! The end game's policy: how fast each peer delivers, and whether asking a
//! second peer for a chunk still in flight is worth its bytes. Pure
//! arithmetic over times; the fetch loop in `mod.rs` applies it.

use std::time::Duration;

/// A peer's delivery rate lately, in bytes per second over all its requests
/// (a moving average; requests to one peer share its link).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PeerRate(Option<f64>);

impl PeerRate {
    /// A request of `len` bytes took `took` while `sharing` requests (itself
    /// included) were in flight to the peer.
    pub(super) fn observe(&mut self, len: u64, sharing: usize, took: Duration) {
        let sample = len as f64 * sharing as f64 / took.as_secs_f64().max(1e-6);
        self.0 = Some(match self.0 {
            Some(mean) => mean + (sample - mean) / 4.0,
            None => sample,
        });
    }

    /// How long a request of `len` bytes takes with `sharing` requests in
    /// flight, once the rate is known.
    pub(super) fn request_secs(self, len: u64, sharing: usize) -> Option<f64> {
        self.0.map(|rate| len as f64 * sharing as f64 / rate)
    }
}

/// Whether a second copy of a chunk, which the stealer would deliver in
/// `stealer_secs`, would likely arrive before the copy already asked of
/// `holders` (each: how long that request takes at the holder's rate and
/// load, and how long ago it was asked). A holder that is overdue (twice
/// its expected time) or has never delivered is not counted on. A stealer
/// with no rate yet steals (a new peer's speed is learnt from its first
/// requests). Between peers of one speed this steals only at the very end,
/// where an idle peer beats the tail of a busy one.
pub(super) fn worth_stealing(
    stealer_secs: Option<f64>,
    holders: &[(Option<f64>, Duration)],
) -> bool {
    let Some(stealer_secs) = stealer_secs else {
        return true;
    };
    holders.iter().all(|(holder_secs, asked_ago)| {
        let asked_ago = asked_ago.as_secs_f64();
        match holder_secs {
            Some(expected) if asked_ago <= 2.0 * expected => expected - asked_ago > stealer_secs,
            _ => true,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn a_peer_steals_only_when_its_copy_would_arrive_first() {
        // Equal peers, both busy: the copy in flight is ahead.
        assert!(!worth_stealing(Some(0.3), &[(Some(0.3), ms(10))]));
        // An idle peer against the tail of a busy one: ahead.
        assert!(worth_stealing(Some(0.04), &[(Some(0.3), ms(100))]));
        // ... but not against a chunk that is about to land.
        assert!(!worth_stealing(Some(0.04), &[(Some(0.3), ms(280))]));
        // A slow holder (3.4 s per request) is beaten by a fast stealer.
        assert!(worth_stealing(Some(0.3), &[(Some(3.4), ms(500))]));
        // An overdue holder (over twice its usual time) is not counted on.
        assert!(worth_stealing(Some(5.0), &[(Some(0.3), ms(700))]));
        // A holder that never delivered is not counted on either.
        assert!(worth_stealing(Some(5.0), &[(None, ms(1))]));
        // A stealer whose speed is unknown yet tries.
        assert!(worth_stealing(None, &[(Some(0.3), ms(1))]));
    }

    #[test]
    fn a_peers_rate_is_learnt_from_its_requests() {
        let mut rate = PeerRate::default();
        assert_eq!(rate.request_secs(1 << 20, 1), None);
        // 8 requests of 1 MiB sharing the link, each took 0.32 s: 25 MiB/s.
        rate.observe(1 << 20, 8, ms(320));
        let secs = rate.request_secs(1 << 20, 1).unwrap();
        assert!((secs - 0.04).abs() < 1e-9, "{secs}");
        assert!((rate.request_secs(1 << 20, 8).unwrap() - 0.32).abs() < 1e-9);
        // A slower sample moves the average a quarter of the way.
        rate.observe(1 << 20, 8, ms(640));
        let expected = 25.0 * 1_048_576.0 * 0.875;
        assert!((rate.0.unwrap() - expected).abs() < 1.0, "{:?}", rate.0);
    }
}
