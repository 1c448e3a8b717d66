//! Sharing while a game runs: applies the user's sharing policy (upload
//! limit, keep / limit / pause while playing) live, as games started from
//! this lanspread start and end.

use std::sync::Arc;
use std::time::Duration;

use lanspread_core::OutboundTransfers;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::PeerState;

/// What [`keep_sharing`] works with.
pub(super) struct SharingInputs {
    pub(super) policy: watch::Receiver<lanspread_core::SharingPolicy>,
    pub(super) running: Arc<crate::play::Running>,
    pub(super) limit: Arc<crate::rate::LiveLimit>,
    pub(super) transfers: OutboundTransfers,
    pub(super) in_force: watch::Sender<lanspread_core::SharingInForce>,
}

/// How often the games started from here are checked for having ended.
const PLAYING_CHECK_EVERY: Duration = Duration::from_millis(500);

/// Applies the sharing policy: at once when it changes, and when a game
/// started from here starts or ends (checked twice a second). A pause
/// stops every upload at once and announces no games until it ends.
pub(super) async fn keep_sharing(
    mut inputs: SharingInputs,
    state: watch::Sender<PeerState>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(PLAYING_CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let running = inputs.running.sweep();
        let policy = *inputs.policy.borrow_and_update();
        let now = policy.in_force(!running.is_empty());
        let before = *inputs.in_force.borrow();
        if now != before || state.borrow().sharing != now {
            // The flag first, then the cancel: an upload registered in
            // between sees the flag; one registered before is cancelled.
            inputs.limit.set(now.limit_bytes_per_sec, now.paused);
            if now.paused && !before.paused {
                for game in inputs.transfers.snapshot().outbound.keys() {
                    inputs.transfers.cancel_transfers(game);
                }
            }
            tracing::info!(
                "sharing: {}",
                now.words().unwrap_or_else(|| "no limit".to_owned())
            );
            inputs.in_force.send_replace(now);
        }
        state.send_if_modified(|s| {
            let changed = s.running != running || s.sharing != now;
            s.running = running;
            s.sharing = now;
            changed
        });
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            changed = inputs.policy.changed() => if changed.is_err() { break },
            _ = tick.tick() => {}
        }
    }
}
