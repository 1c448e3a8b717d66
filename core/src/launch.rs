//! Starting an installed game: the catalog's `launch` entries, and where
//! they point on disk.
//!
//! A catalog entry may say how to start its game once installed: an
//! executable path relative to the game's `local/` folder, arguments, and a
//! working folder, per platform where it differs. Every path goes through
//! the one path function ([`crate::paths::validate_relative_path`]) when
//! the catalog is loaded, and is resolved under `local/` (symbolic links
//! that leave it are refused) when the game is started: nothing outside
//! `local/` is ever started.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::catalog::{CatalogEntry, GameId};
use crate::paths::{PathError, resolve_within, validate_relative_path};

/// Most arguments one launch entry may carry.
pub const MAX_LAUNCH_ARGS: usize = 64;
/// Longest single argument, in bytes.
pub const MAX_LAUNCH_ARG_BYTES: usize = 1024;
/// Most launch entries per game (one per platform, and a default).
pub const MAX_LAUNCH_ENTRIES: usize = 4;
/// The platforms an entry may name, as Rust's `std::env::consts::OS` says.
pub const LAUNCH_PLATFORMS: [&str; 3] = ["windows", "linux", "macos"];

/// How to start a game on one platform (or on every platform without an
/// entry of its own, when `os` is absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchEntry {
    /// `windows`, `linux` or `macos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// The executable, relative to `local/`, `/`-separated.
    pub exe: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// The working folder, relative to `local/`; the executable's folder
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

impl LaunchEntry {
    /// Checks what the catalog says, when it is loaded.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(os) = &self.os
            && !LAUNCH_PLATFORMS.contains(&os.as_str())
        {
            return Err(format!(
                "launch os {os:?} is not one of {}",
                LAUNCH_PLATFORMS.join(", ")
            ));
        }
        validate_relative_path(&self.exe).map_err(|e| format!("launch exe: {e}"))?;
        if let Some(dir) = &self.dir {
            validate_relative_path(dir).map_err(|e| format!("launch dir: {e}"))?;
        }
        if self.args.len() > MAX_LAUNCH_ARGS {
            return Err(format!("launch has more than {MAX_LAUNCH_ARGS} args"));
        }
        if self
            .args
            .iter()
            .any(|a| a.len() > MAX_LAUNCH_ARG_BYTES || a.contains('\0'))
        {
            return Err(format!(
                "a launch arg is longer than {MAX_LAUNCH_ARG_BYTES} bytes or holds a NUL"
            ));
        }
        Ok(())
    }
}

/// Checks a game's launch entries: each valid, at most one per platform
/// and one default.
pub fn validate_entries(entries: &[LaunchEntry]) -> Result<(), String> {
    if entries.len() > MAX_LAUNCH_ENTRIES {
        return Err(format!(
            "at most {MAX_LAUNCH_ENTRIES} launch entries (one per platform and a default)"
        ));
    }
    for (n, entry) in entries.iter().enumerate() {
        entry.validate()?;
        if entries[..n].iter().any(|e| e.os == entry.os) {
            return Err(format!(
                "two launch entries for {}",
                entry.os.as_deref().unwrap_or("every platform")
            ));
        }
    }
    Ok(())
}

/// The entry for platform `os`: its own, else the default one.
pub fn entry_for<'a>(entries: &'a [LaunchEntry], os: &str) -> Option<&'a LaunchEntry> {
    entries
        .iter()
        .find(|e| e.os.as_deref() == Some(os))
        .or_else(|| entries.iter().find(|e| e.os.is_none()))
}

/// What to start, resolved on disk under the game's `local/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchPlan {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub dir: PathBuf,
}

/// Why a game cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("the catalog does not say how to start {0} on this platform; open its folder instead")]
    NoLaunch(GameId),
    #[error("{0} is not installed; install it first")]
    NotInstalled(GameId),
    #[error("{game}: {source}")]
    Path { game: GameId, source: PathError },
    #[error("{game}: {path} is not there (is the game installed completely?)")]
    Missing { game: GameId, path: String },
    #[error("{game}: {path} is outside the game's local folder")]
    Outside { game: GameId, path: String },
}

/// Where `entry`'s launch for platform `os` points under `games_dir`.
pub fn plan_launch(
    games_dir: &Path,
    entry: &CatalogEntry,
    os: &str,
) -> Result<LaunchPlan, LaunchError> {
    let game = &entry.id;
    let launch = entry_for(&entry.launch, os).ok_or_else(|| LaunchError::NoLaunch(game.clone()))?;
    let local = crate::layout::local_dir(games_dir, game);
    if !local.is_dir() {
        return Err(LaunchError::NotInstalled(game.clone()));
    }
    let path_err = |source| LaunchError::Path {
        game: game.clone(),
        source,
    };
    let inside = |raw: &str| -> Result<PathBuf, LaunchError> {
        let rel = validate_relative_path(raw).map_err(path_err)?;
        let resolved = resolve_within(&local, &rel).map_err(path_err)?;
        let missing = || LaunchError::Missing {
            game: game.clone(),
            path: raw.to_owned(),
        };
        // Resolved with every link followed, it must still be under local/.
        let real = resolved.canonicalize().map_err(|_| missing())?;
        let root = local.canonicalize().map_err(|_| missing())?;
        if !real.starts_with(&root) {
            return Err(LaunchError::Outside {
                game: game.clone(),
                path: raw.to_owned(),
            });
        }
        Ok(real)
    };
    let program = inside(&launch.exe)?;
    if !program.is_file() {
        return Err(LaunchError::Missing {
            game: game.clone(),
            path: launch.exe.clone(),
        });
    }
    let dir = match &launch.dir {
        Some(dir) => inside(dir)?,
        None => program
            .parent()
            .map_or_else(|| local.clone(), Path::to_path_buf),
    };
    if !dir.is_dir() {
        return Err(LaunchError::Missing {
            game: game.clone(),
            path: launch.dir.clone().unwrap_or_default(),
        });
    }
    Ok(LaunchPlan {
        program,
        args: launch.args.clone(),
        dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(launch: Vec<LaunchEntry>) -> CatalogEntry {
        let mut entry = crate::GameCatalog::embedded()
            .unwrap()
            .get_str("ut2004")
            .unwrap()
            .clone();
        entry.launch = launch;
        entry
    }

    fn exe(os: Option<&str>, exe: &str) -> LaunchEntry {
        LaunchEntry {
            os: os.map(str::to_owned),
            exe: exe.to_owned(),
            args: vec!["-log".to_owned()],
            dir: None,
        }
    }

    #[test]
    fn the_platforms_own_entry_wins_over_the_default() {
        let entries = vec![
            exe(None, "System/ut2004-bin"),
            exe(Some("windows"), "System/UT2004.exe"),
        ];
        assert_eq!(
            entry_for(&entries, "windows").unwrap().exe,
            "System/UT2004.exe"
        );
        assert_eq!(
            entry_for(&entries, "linux").unwrap().exe,
            "System/ut2004-bin"
        );
        assert!(entry_for(&entries[1..], "linux").is_none());
        assert!(validate_entries(&entries).is_ok());
        assert!(validate_entries(&[exe(None, "a"), exe(None, "b")]).is_err());
        assert!(validate_entries(&[exe(Some("amiga"), "a")]).is_err());
        for bad in [
            "../x.exe",
            "/bin/sh",
            "C:/x.exe",
            "a\\b.exe",
            "local/../../x",
        ] {
            assert!(validate_entries(&[exe(None, bad)]).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_files_under_local_are_started() {
        let games = tempfile::tempdir().unwrap();
        let local = games.path().join("ut2004/local");
        let outside = games.path().join("ut2004/evil.sh");
        std::fs::create_dir_all(local.join("System")).unwrap();
        std::fs::write(local.join("System/ut2004-bin"), b"#!/bin/sh\n").unwrap();
        std::fs::write(&outside, b"#!/bin/sh\n").unwrap();

        let plan = plan_launch(
            games.path(),
            &entry(vec![exe(None, "System/ut2004-bin")]),
            "linux",
        )
        .unwrap();
        assert_eq!(
            plan.program,
            local.join("System/ut2004-bin").canonicalize().unwrap()
        );
        assert_eq!(plan.dir, local.join("System").canonicalize().unwrap());
        assert_eq!(plan.args, ["-log"]);

        assert!(matches!(
            plan_launch(games.path(), &entry(vec![]), "linux"),
            Err(LaunchError::NoLaunch(_))
        ));
        assert!(matches!(
            plan_launch(
                games.path(),
                &entry(vec![exe(None, "System/missing")]),
                "linux"
            ),
            Err(LaunchError::Missing { .. })
        ));
        // A link inside local/ that points out of it is refused.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&outside, local.join("go.sh")).unwrap();
            let refused = plan_launch(games.path(), &entry(vec![exe(None, "go.sh")]), "linux");
            assert!(
                matches!(
                    refused,
                    Err(LaunchError::Path { .. } | LaunchError::Outside { .. })
                ),
                "{refused:?}"
            );
        }
        std::fs::remove_dir_all(&local).unwrap();
        assert!(matches!(
            plan_launch(
                games.path(),
                &entry(vec![exe(None, "System/ut2004-bin")]),
                "linux"
            ),
            Err(LaunchError::NotInstalled(_))
        ));
    }
}
