//! The layout of a games folder on disk, in one place.
//!
//! ```text
//! <games>/<id>/              one game
//! <games>/<id>/version.ini   written last: the payload is complete, and its version
//! <games>/<id>/local/        the installed game: played, so changed, never served
//! <games>/<id>/<anything>    the payload: what peers download
//! <games>/.lanspread*        lanspread's own staging and temporary folders
//! <games>/<id>/.lanspread*   lanspread's own temporary files inside a game
//! ```

use std::path::{Path, PathBuf};

use crate::catalog::GameId;
use crate::version::VERSION_INI;

/// The folder inside a game's folder that holds the installed game.
pub const LOCAL_DIR: &str = "local";

/// `<games>/<id>/local.previous` (and `local.previous.2`, …): what a
/// reinstall could not carry over from the `local/` it replaced (files the
/// new install also has, in the player's version). Never served.
pub const LOCAL_PREVIOUS_DIR: &str = "local.previous";

/// Prefix of every file or folder lanspread creates for its own bookkeeping
/// (staging, partial files, temporary unpack folders).
pub const INTERNAL_PREFIX: &str = ".lanspread";

/// Whether a name is one of lanspread's own temporary files or folders
/// (in any case: on Windows and macOS `.LANSPREAD-x` is `.lanspread-x`).
pub fn is_internal_name(name: &str) -> bool {
    name.get(..INTERNAL_PREFIX.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(INTERNAL_PREFIX))
}

/// Whether a top-level entry of a game folder belongs to the payload. The
/// reserved names match in any case, on every platform: on Windows and
/// macOS `LOCAL/x` would land in the user's install, `Version.ini` on the
/// version marker.
pub fn is_payload_entry(name: &str) -> bool {
    !name.eq_ignore_ascii_case(LOCAL_DIR)
        && !name.eq_ignore_ascii_case(VERSION_INI)
        && !is_local_previous(name)
        && !is_internal_name(name)
}

/// Whether a top-level name is one of the `local.previous*` folders (any case).
pub fn is_local_previous(name: &str) -> bool {
    name.get(..LOCAL_PREVIOUS_DIR.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(LOCAL_PREVIOUS_DIR))
}

/// `<games>/<id>`.
pub fn game_dir(games_dir: &Path, id: &GameId) -> PathBuf {
    games_dir.join(id.as_str())
}

/// `<games>/<id>/local`.
pub fn local_dir(games_dir: &Path, id: &GameId) -> PathBuf {
    game_dir(games_dir, id).join(LOCAL_DIR)
}

/// `<games>/<id>/version.ini`.
pub fn version_ini_path(games_dir: &Path, id: &GameId) -> PathBuf {
    game_dir(games_dir, id).join(VERSION_INI)
}
