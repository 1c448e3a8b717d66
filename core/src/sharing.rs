//! How much this PC uploads: the user's upload limit, and what happens to
//! sharing while a game started from lanspread is running.

use serde::{Deserialize, Serialize};

/// Bytes per second in one Mbit/s.
pub const BYTES_PER_MBIT: u64 = 125_000;

/// What sharing does while a game started from lanspread runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum WhilePlaying {
    /// Keep sharing as usual (within the upload limit, if one is set).
    #[default]
    KeepSharing,
    /// Upload at most this many Mbit/s while playing.
    LimitMbit(u32),
    /// Upload nothing while playing: the games are not offered.
    Pause,
}

/// The user's choice, from Settings or the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SharingPolicy {
    /// All uploads together; `None`: as fast as the link goes.
    pub upload_limit_bytes_per_sec: Option<u64>,
    pub while_playing: WhilePlaying,
}

/// What applies now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SharingInForce {
    /// All uploads together; `None`: no limit.
    pub limit_bytes_per_sec: Option<u64>,
    /// Nothing is offered or uploaded.
    pub paused: bool,
    /// The limit or pause is there because a game is running.
    pub because_playing: bool,
}

impl SharingPolicy {
    /// What applies while a game runs (`playing`) or not.
    pub fn in_force(&self, playing: bool) -> SharingInForce {
        let always = SharingInForce {
            limit_bytes_per_sec: self.upload_limit_bytes_per_sec,
            paused: false,
            because_playing: false,
        };
        if !playing {
            return always;
        }
        match self.while_playing {
            WhilePlaying::KeepSharing => always,
            WhilePlaying::LimitMbit(mbit) => {
                let playing_limit = u64::from(mbit) * BYTES_PER_MBIT;
                SharingInForce {
                    limit_bytes_per_sec: Some(
                        self.upload_limit_bytes_per_sec
                            .map_or(playing_limit, |limit| limit.min(playing_limit)),
                    ),
                    paused: false,
                    because_playing: true,
                }
            }
            WhilePlaying::Pause => SharingInForce {
                limit_bytes_per_sec: self.upload_limit_bytes_per_sec,
                paused: true,
                because_playing: true,
            },
        }
    }
}

impl SharingInForce {
    /// The top bar's words, when something limits sharing.
    pub fn words(&self) -> Option<String> {
        let mbit = |bytes: u64| bytes.div_ceil(BYTES_PER_MBIT);
        match (self.paused, self.limit_bytes_per_sec, self.because_playing) {
            (true, _, true) => Some("sharing paused while you play".to_owned()),
            (true, _, false) => Some("sharing paused".to_owned()),
            (false, Some(limit), true) => Some(format!(
                "sharing limited to {} Mbit/s while you play",
                mbit(limit)
            )),
            (false, Some(limit), false) => {
                Some(format!("uploads limited to {} Mbit/s", mbit(limit)))
            }
            (false, None, _) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playing_applies_the_choice_and_never_raises_the_limit() {
        let mut policy = SharingPolicy {
            upload_limit_bytes_per_sec: Some(50 * BYTES_PER_MBIT),
            while_playing: WhilePlaying::LimitMbit(10),
        };
        assert_eq!(
            policy.in_force(false).limit_bytes_per_sec,
            Some(50 * BYTES_PER_MBIT)
        );
        assert_eq!(
            policy.in_force(true).limit_bytes_per_sec,
            Some(10 * BYTES_PER_MBIT)
        );
        assert_eq!(
            policy.in_force(true).words().as_deref(),
            Some("sharing limited to 10 Mbit/s while you play")
        );
        policy.while_playing = WhilePlaying::LimitMbit(80);
        assert_eq!(
            policy.in_force(true).limit_bytes_per_sec,
            Some(50 * BYTES_PER_MBIT)
        );
        policy.while_playing = WhilePlaying::Pause;
        assert!(policy.in_force(true).paused && !policy.in_force(false).paused);
        policy.while_playing = WhilePlaying::KeepSharing;
        assert_eq!(policy.in_force(true), policy.in_force(false));
        assert_eq!(
            policy.in_force(false).words().as_deref(),
            Some("uploads limited to 50 Mbit/s")
        );
        assert_eq!(SharingPolicy::default().in_force(true).words(), None);
    }
}
