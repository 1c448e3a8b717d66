//! Play: starting an installed game from its catalog `launch` entry, and
//! knowing while it runs (the card says "running", and the sharing choice
//! for "while a game is running" applies).
//!
//! Only games started by this lanspread are known to run: their processes
//! are children of ours. A game started another way, or a launcher that
//! starts the real game and exits at once, is not seen (or only as long
//! as the launcher lives).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use lanspread_core::launch::{LaunchError, plan_launch};
use lanspread_core::{CatalogEntry, GameId};

/// Most games started from this lanspread watched at once.
pub const MAX_RUNNING: usize = 16;

/// Why a game could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PlayError {
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error("{game}: starting {program} failed: {source}")]
    Spawn {
        game: GameId,
        program: String,
        source: std::io::Error,
    },
    #[error("{MAX_RUNNING} games started from lanspread are running already")]
    TooMany,
}

/// Starts `entry`'s game from `games_dir`, detached; the child is returned
/// to be watched (dropping it leaves the game running).
pub fn start_game(
    games_dir: &Path,
    entry: &CatalogEntry,
) -> Result<std::process::Child, PlayError> {
    let plan = plan_launch(games_dir, entry, std::env::consts::OS)?;
    tracing::info!(
        game = %entry.id,
        program = %plan.program.display(),
        "starting the game"
    );
    crate::platform::spawn_detached(&plan.program, &plan.args, &plan.dir).map_err(|source| {
        PlayError::Spawn {
            game: entry.id.clone(),
            program: plan.program.display().to_string(),
            source,
        }
    })
}

/// The games started from this lanspread that still run.
#[derive(Debug, Default)]
pub struct Running {
    /// Held for a push or a sweep, never across an await.
    children: Mutex<Vec<(GameId, std::process::Child)>>,
}

impl Running {
    /// Starts a game and watches it; answers its process id.
    pub fn start(&self, games_dir: &Path, entry: &CatalogEntry) -> Result<u32, PlayError> {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        sweep(&mut children);
        if children.len() >= MAX_RUNNING {
            return Err(PlayError::TooMany);
        }
        let child = start_game(games_dir, entry)?;
        let pid = child.id();
        children.push((entry.id.clone(), child));
        Ok(pid)
    }

    /// Forgets the games that ended; answers the ones still running.
    pub fn sweep(&self) -> BTreeSet<GameId> {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        sweep(&mut children);
        children.iter().map(|(game, _)| game.clone()).collect()
    }
}

fn sweep(children: &mut Vec<(GameId, std::process::Child)>) {
    // An error from try_wait means the child cannot be watched: forget it.
    children.retain_mut(|(_, child)| matches!(child.try_wait(), Ok(None)));
}
