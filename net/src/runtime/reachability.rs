//! Whether the others can reach this PC: a PC that connects to us becomes
//! a peer we follow, and that one did says no firewall is in the way; peers
//! followed for a while with none connecting in suggest one is.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::PeerState;
use crate::discovery::{PeerDirectory, PeerSource};

/// How long this PC follows peers without any connecting back before the
/// window says a firewall may be in the way. Every peer follows a PC that
/// connects to it, so in a party that can reach us one does within seconds.
pub const UNREACHED_AFTER: Duration = Duration::from_secs(30);
const REACHABILITY_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Whether to suspect a firewall: peers followed for [`UNREACHED_AFTER`]
/// (`peers_since`: since when the table has not been empty) and none ever
/// connected in.
pub fn maybe_firewalled(
    reached: bool,
    peers_since: Option<std::time::Instant>,
    now: std::time::Instant,
) -> bool {
    !reached
        && peers_since.is_some_and(|since| now.saturating_duration_since(since) >= UNREACHED_AFTER)
}

/// Follows every PC that connects in (`inbound`: their addresses), and
/// keeps [`PeerState::reached_by_peers`] and
/// [`PeerState::maybe_firewalled`] current.
pub(super) async fn track_reachability(
    mut inbound: mpsc::Receiver<SocketAddr>,
    directory: PeerDirectory,
    state: watch::Sender<PeerState>,
    shutdown: CancellationToken,
) {
    let mut check = tokio::time::interval(REACHABILITY_CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut peers_since: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            addr = inbound.recv() => match addr {
                Some(addr) => {
                    directory.add_heard_of(addr, PeerSource::Inbound);
                    state.send_if_modified(|s| {
                        let changed = !s.reached_by_peers || s.maybe_firewalled;
                        s.reached_by_peers = true;
                        s.maybe_firewalled = false;
                        changed
                    });
                }
                None => break,
            },
            _ = check.tick() => {
                let now = std::time::Instant::now();
                let has_peers = !state.borrow().peers.is_empty();
                peers_since = if has_peers { peers_since.or(Some(now)) } else { None };
                state.send_if_modified(|s| {
                    let hint = maybe_firewalled(s.reached_by_peers, peers_since, now);
                    let changed = s.maybe_firewalled != hint;
                    s.maybe_firewalled = hint;
                    changed
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_firewall_is_suspected_only_after_peers_never_reached_us() {
        let t0 = std::time::Instant::now();
        let later = t0 + UNREACHED_AFTER;
        assert!(maybe_firewalled(false, Some(t0), later));
        assert!(!maybe_firewalled(false, Some(t0), t0 + UNREACHED_AFTER / 2));
        assert!(
            !maybe_firewalled(true, Some(t0), later),
            "a peer connected in"
        );
        assert!(!maybe_firewalled(false, None, later), "no peer at all");
    }
}
