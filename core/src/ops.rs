//! Local game operations on disk: install, uninstall, remove, and swapping a
//! new payload in. Each records its intent in the store first, moves things
//! with renames (atomic on one filesystem), and clears the intent last, so a
//! crash half-way is finished or rolled back by [`recover`] at the next
//! start: never a half-deleted or half-swapped game.
//!
//! Every function takes the [`OperationGuard`] of the game: proof that
//! `begin_operation` ran, so no upload of the game is live while it changes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::archive::{UnpackError, unpack_payload};
use crate::catalog::GameId;
use crate::layout::{self, INTERNAL_PREFIX, LOCAL_DIR};
use crate::library::read_version_ini;
use crate::manifest::{ManifestError, payload_files};
use crate::store::{Store, StoreError};
use crate::transfers::OperationGuard;
use crate::version::{GameVersion, VERSION_INI};

/// What an unfinished operation was doing, as recorded before it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Intent {
    Install,
    Uninstall,
    Remove {
        keep_local: bool,
    },
    /// Moving a downloaded payload from `staging` into the game folder.
    Swap {
        version: GameVersion,
        staging: PathBuf,
    },
}

/// Why an operation failed. What it changed is rolled back before it returns
/// (or, after a crash, by [`recover`]).
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("{0} has no complete payload here (no version.ini); download it first")]
    NoPayload(GameId),
    #[error("{0} is not installed")]
    NotInstalled(GameId),
    #[error("{0} is not on this PC")]
    NotHere(GameId),
    #[error("the operation guard is for {guard}, not {game}")]
    WrongGuard { guard: GameId, game: GameId },
    #[error("{0}: an install's guard cannot rewrite the payload (uploads may be running)")]
    LocalOnlyGuard(GameId),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error(transparent)]
    Payload(#[from] ManifestError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "{error}; putting things back failed too ({rollback}): the next start finishes or rolls it back"
    )]
    RollbackFailed {
        error: Box<OpError>,
        rollback: Box<OpError>,
    },
    #[error(
        "{action} {path}: it is in use ({source}); close the game, and any window or program using files in it, then try again"
    )]
    InUse {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
}

fn io<'p>(action: &'static str, path: &'p Path) -> impl Fn(std::io::Error) -> OpError + 'p {
    move |source| OpError::Io {
        action,
        path: path.display().to_string(),
        source,
    }
}

fn check_guard(guard: &OperationGuard, game: &GameId) -> Result<(), OpError> {
    if guard.game() == game {
        Ok(())
    } else {
        Err(OpError::WrongGuard {
            guard: guard.game().clone(),
            game: game.clone(),
        })
    }
}

/// As [`check_guard`], for operations that rewrite the payload (remove, the
/// swap): the guard must be one that ended every upload of the game.
fn check_payload_guard(guard: &OperationGuard, game: &GameId) -> Result<(), OpError> {
    check_guard(guard, game)?;
    if guard.rewrites_payload() {
        Ok(())
    } else {
        Err(OpError::LocalOnlyGuard(game.clone()))
    }
}

/// Folders the operations use, all inside the games folder (one filesystem,
/// so every move is a rename).
struct Places {
    game: PathBuf,
    local: PathBuf,
    install_tmp: PathBuf,
    local_old: PathBuf,
    local_trash: PathBuf,
    removed: PathBuf,
    replaced: PathBuf,
}

impl Places {
    fn new(games_dir: &Path, id: &GameId) -> Self {
        let game = layout::game_dir(games_dir, id);
        Self {
            local: game.join(LOCAL_DIR),
            install_tmp: game.join(format!("{INTERNAL_PREFIX}-install")),
            local_old: game.join(format!("{INTERNAL_PREFIX}-local-old")),
            local_trash: game.join(format!("{INTERNAL_PREFIX}-local-trash")),
            removed: games_dir.join(format!("{INTERNAL_PREFIX}-removed-{id}")),
            replaced: games_dir.join(format!("{INTERNAL_PREFIX}-replaced-{id}")),
            game,
        }
    }
}

fn remove_dir_if_exists(path: &Path) -> Result<(), OpError> {
    match crate::fsops::remove_dir_all(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(io_op("deleting", path, err)),
        _ => Ok(()),
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), OpError> {
    crate::fsops::rename(from, to).map_err(|err| io_op("moving", from, err))
}

/// An I/O error of a rename or delete; one that stayed "in use" through
/// the retries names its cause.
fn io_op(action: &'static str, path: &Path, source: std::io::Error) -> OpError {
    if crate::fsops::is_in_use(&source) {
        OpError::InUse {
            action,
            path: path.display().to_string(),
            source,
        }
    } else {
        io(action, path)(source)
    }
}

/// Writes `version.ini` atomically: a temporary file, flushed, then renamed.
pub fn write_version_ini(game_dir: &Path, version: &GameVersion) -> Result<(), OpError> {
    let tmp = game_dir.join(format!("{INTERNAL_PREFIX}-version.tmp"));
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp).map_err(io("writing", &tmp))?;
        file.write_all(version.to_ini().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io("writing", &tmp))?;
    }
    rename(&tmp, &game_dir.join(VERSION_INI))
}

/// Unpacks the payload into `local/` (through a temporary folder renamed
/// into place when complete). A previous `local/` is replaced only once the
/// new one is whole.
pub fn install(
    games_dir: &Path,
    id: &GameId,
    store: &Store,
    guard: &OperationGuard,
) -> Result<u64, OpError> {
    check_guard(guard, id)?;
    let places = Places::new(games_dir, id);
    if read_version_ini(&places.game.join(VERSION_INI))
        .ok()
        .flatten()
        .is_none()
    {
        return Err(OpError::NoPayload(id.clone()));
    }
    let files: Vec<_> = payload_files(&places.game)?
        .into_iter()
        .map(|(rel, _)| rel)
        .collect();
    store.put_intent(id.as_str(), &Intent::Install)?;
    remove_dir_if_exists(&places.install_tmp)?;
    std::fs::create_dir_all(&places.install_tmp).map_err(io("creating", &places.install_tmp))?;
    let unpacked = match unpack_payload(&places.game, &files, &places.install_tmp) {
        Ok(bytes) => bytes,
        Err(err) => {
            remove_dir_if_exists(&places.install_tmp)?;
            store.clear_intent(id.as_str())?;
            return Err(err.into());
        }
    };
    if places.local.exists() {
        remove_dir_if_exists(&places.local_old)?;
        rename(&places.local, &places.local_old)?;
    }
    rename(&places.install_tmp, &places.local)?;
    keep_players_files(&places)?;
    store.clear_intent(id.as_str())?;
    Ok(unpacked)
}

/// After a reinstall: the files of the replaced `local/` that the new
/// install does not have (saves, screenshots, the player's own configs)
/// move into the new `local/`; files the new install also has stay in
/// their old version in `local.previous/` (`local.previous.2`, … when one
/// is already there). Nothing the player made is deleted. Idempotent (a
/// crash half-way is finished by [`recover`]).
fn keep_players_files(places: &Places) -> Result<(), OpError> {
    if !places.local_old.is_dir() {
        return Ok(());
    }
    carry_over(&places.local_old, &places.local)?;
    if dir_is_empty(&places.local_old) {
        return remove_dir_if_exists(&places.local_old);
    }
    let parent = places.local.parent().unwrap_or(&places.local);
    let mut target = parent.join(layout::LOCAL_PREVIOUS_DIR);
    let mut n = 2;
    while target.exists() {
        target = parent.join(format!("{}.{n}", layout::LOCAL_PREVIOUS_DIR));
        n += 1;
    }
    rename(&places.local_old, &target)?;
    tracing::info!(kept = %target.display(), "the player's versions of reinstalled files");
    Ok(())
}

/// Moves every file under `from` whose path is free under `to` there;
/// folders left empty are deleted.
fn carry_over(from: &Path, to: &Path) -> Result<(), OpError> {
    let entries = std::fs::read_dir(from).map_err(io("reading", from))?;
    for entry in entries {
        let entry = entry.map_err(io("reading", from))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(io("reading", &source))?;
        if kind.is_dir() && target.is_dir() {
            carry_over(&source, &target)?;
            if dir_is_empty(&source) {
                remove_dir_if_exists(&source)?;
            }
        } else if !target.exists() && target.symlink_metadata().is_err() {
            rename(&source, &target)?;
        }
    }
    Ok(())
}

fn dir_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

/// Deletes `local/` only; the payload stays and is still shared.
pub fn uninstall(
    games_dir: &Path,
    id: &GameId,
    store: &Store,
    guard: &OperationGuard,
) -> Result<(), OpError> {
    check_guard(guard, id)?;
    let places = Places::new(games_dir, id);
    if !places.local.is_dir() {
        return Err(OpError::NotInstalled(id.clone()));
    }
    store.put_intent(id.as_str(), &Intent::Uninstall)?;
    remove_dir_if_exists(&places.local_trash)?;
    rename(&places.local, &places.local_trash)?;
    remove_dir_if_exists(&places.local_trash)?;
    store.clear_intent(id.as_str())?;
    Ok(())
}

/// Deletes the payload (and `local/` unless `keep_local`). The game folder
/// leaves in one rename, so peers and scans never see half of it.
pub fn remove(
    games_dir: &Path,
    id: &GameId,
    keep_local: bool,
    store: &Store,
    guard: &OperationGuard,
) -> Result<(), OpError> {
    check_payload_guard(guard, id)?;
    let places = Places::new(games_dir, id);
    restore_set_aside(&places)?;
    if !places.game.is_dir() {
        return Err(OpError::NotHere(id.clone()));
    }
    store.put_intent(id.as_str(), &Intent::Remove { keep_local })?;
    if let Err(err) = rename(&places.game, &places.removed) {
        store.clear_intent(id.as_str())?;
        return Err(err);
    }
    if let Err(err) = finish_remove(&places, keep_local) {
        // Put the game back as it was, now, before the error is shown.
        return Err(roll_back(store, id, err, || {
            if places.local.is_dir() && !places.removed.join(LOCAL_DIR).exists() {
                rename(&places.local, &places.removed.join(LOCAL_DIR))?;
            }
            if places.game.is_dir() {
                remove_dir_if_exists(&places.game)?;
            }
            rename(&places.removed, &places.game)
        }));
    }
    store.clear_intent(id.as_str())?;
    Ok(())
}

/// A folder set aside by an operation that failed and could not be rolled
/// back (or by a crash before recovery ran) is never deleted with the
/// player's `local/` in it: the whole game goes back into place if the
/// game folder is gone, else its `local/` does if the game has none. Only
/// then is the rest deleted.
fn restore_set_aside(places: &Places) -> Result<(), OpError> {
    for aside in [&places.replaced, &places.removed] {
        if !aside.is_dir() {
            continue;
        }
        if !places.game.exists() {
            rename(aside, &places.game)?;
            tracing::warn!(game = %places.game.display(), "put a set-aside game folder back");
            continue;
        }
        let local = aside.join(LOCAL_DIR);
        if local.is_dir() && !places.local.exists() {
            rename(&local, &places.local)?;
            tracing::warn!(game = %places.game.display(), "put a set-aside local/ back");
        }
        remove_dir_if_exists(aside)?;
    }
    Ok(())
}

/// Runs `undo` after `err` (an operation failed half-way): on success the
/// intent is cleared and `err` is returned as it was; if undoing fails too,
/// the intent stays for recovery at the next start, and both are told.
fn roll_back(
    store: &Store,
    id: &GameId,
    err: OpError,
    undo: impl FnOnce() -> Result<(), OpError>,
) -> OpError {
    match undo() {
        Ok(()) => {
            if let Err(store_err) = store.clear_intent(id.as_str()) {
                tracing::warn!("rolled back, but the intent stays: {store_err}");
            }
            tracing::warn!(game = %id, "rolled back: {err}");
            err
        }
        Err(undo_err) => OpError::RollbackFailed {
            error: Box::new(err),
            rollback: Box::new(undo_err),
        },
    }
}

fn finish_remove(places: &Places, keep_local: bool) -> Result<(), OpError> {
    let kept = places.removed.join(LOCAL_DIR);
    if keep_local && kept.is_dir() {
        std::fs::create_dir_all(&places.game).map_err(io("creating", &places.game))?;
        if !places.local.exists() {
            rename(&kept, &places.local)?;
        }
    }
    if keep_local {
        // The player's files a reinstall kept aside stay too.
        for entry in std::fs::read_dir(&places.removed).map_err(io("reading", &places.removed))? {
            let entry = entry.map_err(io("reading", &places.removed))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let target = places.game.join(&*name);
            if layout::is_local_previous(&name) && !target.exists() {
                std::fs::create_dir_all(&places.game).map_err(io("creating", &places.game))?;
                rename(&entry.path(), &target)?;
            }
        }
    }
    clean_up(&places.removed);
    Ok(())
}

/// Deletes what an operation that succeeded left behind. Best-effort: a
/// file held open (Windows) keeps the folder until the next operation on
/// the game deletes it ([`restore_set_aside`]); success stays success.
fn clean_up(path: &Path) {
    if let Err(err) = remove_dir_if_exists(path) {
        tracing::warn!("left for later: {err}");
    }
}

/// Moves a complete, verified payload from `staging` into the game folder,
/// keeping `local/`, and writes `version.ini` last. The old payload (if any)
/// leaves in one rename and is deleted after the new one is in place.
pub fn swap_in(
    games_dir: &Path,
    id: &GameId,
    staging: &Path,
    version: &GameVersion,
    store: &Store,
    guard: &OperationGuard,
) -> Result<(), OpError> {
    check_payload_guard(guard, id)?;
    let places = Places::new(games_dir, id);
    restore_set_aside(&places)?;
    store.put_intent(
        id.as_str(),
        &Intent::Swap {
            version: version.clone(),
            staging: staging.to_path_buf(),
        },
    )?;
    let had_game = places.game.exists();
    if had_game && let Err(err) = rename(&places.game, &places.replaced) {
        // Nothing moved (the game folder is in use, say): nothing to undo.
        store.clear_intent(id.as_str())?;
        return Err(err);
    }
    if let Err(err) = finish_swap(&places, staging, version) {
        // The new payload goes back to staging (a later try swaps it in
        // without fetching it again), the old game back into place.
        return Err(roll_back(store, id, err, || {
            let local = places.local.clone();
            if places.game.is_dir() && !staging.exists() {
                if had_game && local.is_dir() && !places.replaced.join(LOCAL_DIR).exists() {
                    rename(&local, &places.replaced.join(LOCAL_DIR))?;
                }
                rename(&places.game, staging)?;
            }
            if had_game && places.replaced.is_dir() && !places.game.exists() {
                rename(&places.replaced, &places.game)?;
            }
            Ok(())
        }));
    }
    store.clear_intent(id.as_str())?;
    Ok(())
}

/// The idempotent second half of a swap: from any point after the old
/// folder was moved aside, brings the game to "new payload, old local/,
/// version.ini written". If the staged payload is gone and the new one is
/// not in place, the old folder is put back instead (rolled back).
fn finish_swap(places: &Places, staging: &Path, version: &GameVersion) -> Result<SwapEnd, OpError> {
    if !places.game.exists() {
        if staging.is_dir() {
            rename(staging, &places.game)?;
        } else if places.replaced.is_dir() {
            rename(&places.replaced, &places.game)?;
            return Ok(SwapEnd::RolledBack);
        } else {
            return Ok(SwapEnd::RolledBack);
        }
    }
    let old_local = places.replaced.join(LOCAL_DIR);
    if old_local.is_dir() && !places.local.exists() {
        rename(&old_local, &places.local)?;
    }
    write_version_ini(&places.game, version)?;
    clean_up(&places.replaced);
    Ok(SwapEnd::Finished)
}

enum SwapEnd {
    Finished,
    RolledBack,
}

/// What recovery did for one game.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub game: String,
    pub intent: Intent,
    /// `true`: the operation was completed; `false`: undone.
    pub finished: bool,
}

/// Finishes or rolls back every operation a crash interrupted. Run at start,
/// before anything is served.
pub fn recover(games_dir: &Path, store: &Store) -> Result<Vec<Recovered>, OpError> {
    let mut done = Vec::new();
    for game in store.intent_games()? {
        let Ok(id) = GameId::parse(&game) else {
            store.clear_intent(&game)?;
            continue;
        };
        let Some(intent) = store.intent::<Intent>(&game)? else {
            continue;
        };
        let places = Places::new(games_dir, &id);
        let finished = match &intent {
            Intent::Install => {
                remove_dir_if_exists(&places.install_tmp)?;
                if !places.local.exists() && places.local_old.is_dir() {
                    rename(&places.local_old, &places.local)?;
                    false
                } else {
                    // The new local/ is in place: the player's files go
                    // where a finished install puts them.
                    let had_old = places.local_old.exists();
                    keep_players_files(&places)?;
                    had_old
                }
            }
            Intent::Uninstall => {
                let was_moved = places.local_trash.exists();
                remove_dir_if_exists(&places.local_trash)?;
                was_moved
            }
            Intent::Remove { keep_local } => {
                let was_moved = places.removed.exists();
                if was_moved {
                    finish_remove(&places, *keep_local)?;
                }
                was_moved
            }
            Intent::Swap { version, staging } => {
                if places.replaced.exists() || !places.game.exists() {
                    matches!(finish_swap(&places, staging, version)?, SwapEnd::Finished)
                } else {
                    // The old folder was never moved: nothing happened yet.
                    false
                }
            }
        };
        store.clear_intent(&game)?;
        tracing::info!(game = %game, ?intent, finished, "recovered an interrupted operation");
        done.push(Recovered {
            game,
            intent,
            finished,
        });
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfers::OutboundTransfers;

    fn id(s: &str) -> GameId {
        GameId::parse(s).unwrap()
    }

    struct Setup {
        _tmp: tempfile::TempDir,
        games: PathBuf,
        store: Store,
        transfers: OutboundTransfers,
    }

    fn setup() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let games = tmp.path().join("games");
        let game = games.join("ut2004");
        std::fs::create_dir_all(game.join("Maps")).unwrap();
        std::fs::write(game.join("Maps/deck.ut2"), b"deck").unwrap();
        std::fs::write(game.join("readme.txt"), b"hi").unwrap();
        std::fs::write(game.join("version.ini"), b"1").unwrap();
        let store = Store::open(&tmp.path().join("data")).unwrap();
        Setup {
            _tmp: tmp,
            games,
            store,
            transfers: OutboundTransfers::new(),
        }
    }

    fn op(s: &Setup, game: &str) -> OperationGuard {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(s.transfers.begin_operation(&id(game))).unwrap()
    }

    #[test]
    fn install_uninstall_remove() {
        let s = setup();
        let ut = id("ut2004");
        let guard = op(&s, "ut2004");
        install(&s.games, &ut, &s.store, &guard).unwrap();
        let local = s.games.join("ut2004/local");
        assert_eq!(std::fs::read(local.join("Maps/deck.ut2")).unwrap(), b"deck");
        // Reinstalling replaces local/ and keeps what the player made: a
        // save the new install does not have is carried over; the
        // player's version of a file it has is kept in local.previous/.
        std::fs::create_dir_all(local.join("Saves")).unwrap();
        std::fs::write(local.join("Saves/slot1.sav"), b"level 12").unwrap();
        std::fs::write(local.join("Maps/deck.ut2"), b"my edit").unwrap();
        install(&s.games, &ut, &s.store, &guard).unwrap();
        assert_eq!(
            std::fs::read(local.join("Saves/slot1.sav")).unwrap(),
            b"level 12"
        );
        assert_eq!(std::fs::read(local.join("Maps/deck.ut2")).unwrap(), b"deck");
        let previous = s.games.join("ut2004/local.previous");
        assert_eq!(
            std::fs::read(previous.join("Maps/deck.ut2")).unwrap(),
            b"my edit"
        );
        assert!(!previous.join("Saves").exists());
        // A second reinstall over an edit keeps both earlier versions.
        std::fs::write(local.join("Maps/deck.ut2"), b"edit 2").unwrap();
        install(&s.games, &ut, &s.store, &guard).unwrap();
        assert_eq!(
            std::fs::read(s.games.join("ut2004/local.previous.2/Maps/deck.ut2")).unwrap(),
            b"edit 2"
        );
        assert_eq!(
            std::fs::read(previous.join("Maps/deck.ut2")).unwrap(),
            b"my edit"
        );
        // Kept files are never part of the payload.
        let shared: Vec<String> = payload_files(&s.games.join("ut2004"))
            .unwrap()
            .into_iter()
            .map(|(rel, _)| rel.to_string())
            .collect();
        assert!(shared.iter().all(|p| !p.starts_with("local")), "{shared:?}");
        std::fs::remove_dir_all(&previous).unwrap();
        std::fs::remove_dir_all(s.games.join("ut2004/local.previous.2")).unwrap();
        uninstall(&s.games, &ut, &s.store, &guard).unwrap();
        assert!(!local.exists());
        assert!(s.games.join("ut2004/version.ini").exists());
        assert!(matches!(
            uninstall(&s.games, &ut, &s.store, &guard),
            Err(OpError::NotInstalled(_))
        ));
        install(&s.games, &ut, &s.store, &guard).unwrap();
        remove(&s.games, &ut, true, &s.store, &guard).unwrap();
        assert!(local.join("readme.txt").exists());
        assert!(!s.games.join("ut2004/version.ini").exists());
        assert!(!s.games.join("ut2004/readme.txt").exists());
        remove(&s.games, &ut, false, &s.store, &guard).unwrap();
        assert!(!s.games.join("ut2004").exists());
        assert!(s.store.intent_games().unwrap().is_empty());
        assert_eq!(std::fs::read_dir(&s.games).unwrap().count(), 0);
    }

    #[test]
    fn folders_in_use_for_a_moment_are_waited_out_and_for_good_change_nothing() {
        use crate::fsops::{clear_injected, inject_in_use};
        let s = setup();
        let ut = id("ut2004");
        let guard = op(&s, "ut2004");
        let game = s.games.join("ut2004");
        // Held three times each (a scanner opening the new files): install,
        // swap and remove go through.
        inject_in_use(&game.join(".lanspread-install"), 3);
        install(&s.games, &ut, &s.store, &guard).unwrap();
        assert!(game.join("local/readme.txt").exists());
        let staging = s.games.join(".lanspread-staging/ut2004");
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(staging.join("new.pak"), b"new").unwrap();
        inject_in_use(&game, 3);
        inject_in_use(&staging, 3);
        let v2 = GameVersion::parse("2").unwrap();
        swap_in(&s.games, &ut, &staging, &v2, &s.store, &guard).unwrap();
        assert_eq!(std::fs::read(game.join("new.pak")).unwrap(), b"new");
        assert!(game.join("local/readme.txt").exists());

        // Held for good (the game is running from its folder): a clear
        // message, the game as it was, the staged payload kept.
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(staging.join("newer.pak"), b"newer").unwrap();
        inject_in_use(&game, usize::MAX);
        let v3 = GameVersion::parse("3").unwrap();
        let err = swap_in(&s.games, &ut, &staging, &v3, &s.store, &guard).unwrap_err();
        assert!(matches!(err, OpError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("close the game"), "{err}");
        assert_eq!(
            read_version_ini(&game.join("version.ini")).unwrap(),
            Some(v2.clone())
        );
        assert!(game.join("new.pak").exists() && game.join("local/readme.txt").exists());
        assert!(staging.join("newer.pak").exists());
        assert!(s.store.intent_games().unwrap().is_empty());
        let err = remove(&s.games, &ut, false, &s.store, &guard).unwrap_err();
        assert!(matches!(err, OpError::InUse { .. }), "{err}");
        assert!(game.join("new.pak").exists() && game.join("local/readme.txt").exists());
        assert!(s.store.intent_games().unwrap().is_empty());
        clear_injected(&game);

        inject_in_use(&game, 3);
        remove(&s.games, &ut, false, &s.store, &guard).unwrap();
        assert!(!game.exists());
    }

    #[test]
    fn a_guard_for_another_game_is_refused() {
        let s = setup();
        let guard = op(&s, "cs16");
        assert!(matches!(
            install(&s.games, &id("ut2004"), &s.store, &guard),
            Err(OpError::WrongGuard { .. })
        ));
    }

    #[test]
    fn a_failed_install_leaves_nothing_behind() {
        let s = setup();
        let game = s.games.join("ut2004");
        std::fs::write(game.join("broken.zip"), b"not a zip").unwrap();
        let guard = op(&s, "ut2004");
        assert!(install(&s.games, &id("ut2004"), &s.store, &guard).is_err());
        assert!(!game.join("local").exists());
        assert!(!game.join(".lanspread-install").exists());
        assert!(s.store.intent_games().unwrap().is_empty());
    }

    #[test]
    fn swap_keeps_local_and_writes_version_last() {
        let s = setup();
        let ut = id("ut2004");
        let guard = op(&s, "ut2004");
        install(&s.games, &ut, &s.store, &guard).unwrap();
        let staging = s.games.join(".lanspread-staging/ut2004");
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(staging.join("new.pak"), b"new").unwrap();
        let v2 = GameVersion::parse("2").unwrap();
        swap_in(&s.games, &ut, &staging, &v2, &s.store, &guard).unwrap();
        let game = s.games.join("ut2004");
        assert_eq!(std::fs::read(game.join("new.pak")).unwrap(), b"new");
        assert!(!game.join("readme.txt").exists());
        assert!(game.join("local/readme.txt").exists());
        assert_eq!(
            read_version_ini(&game.join("version.ini")).unwrap(),
            Some(v2)
        );
        assert!(!staging.exists());
        assert!(!s.games.join(".lanspread-replaced-ut2004").exists());
    }

    /// Simulates a crash at every step of a swap by replaying the disk state
    /// the steps leave, and checks recovery ends whole.
    #[test]
    fn recovery_finishes_or_rolls_back_every_interrupted_step() {
        let v2 = GameVersion::parse("2").unwrap();
        // Crash after the old folder moved aside, before the new one moved in.
        let s = setup();
        let places = Places::new(&s.games, &id("ut2004"));
        let staging = s.games.join(".lanspread-staging/ut2004");
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(staging.join("new.pak"), b"new").unwrap();
        std::fs::create_dir_all(places.game.join("local")).unwrap();
        s.store
            .put_intent(
                "ut2004",
                &Intent::Swap {
                    version: v2.clone(),
                    staging: staging.clone(),
                },
            )
            .unwrap();
        rename(&places.game, &places.replaced).unwrap();
        let done = recover(&s.games, &s.store).unwrap();
        assert!(done[0].finished);
        assert!(places.game.join("new.pak").exists() && places.local.exists());
        assert_eq!(
            read_version_ini(&places.game.join("version.ini")).unwrap(),
            Some(v2.clone())
        );
        assert!(!places.replaced.exists());

        // Crash after the move aside, with the staged payload lost: rolled back.
        let s = setup();
        let places = Places::new(&s.games, &id("ut2004"));
        s.store
            .put_intent(
                "ut2004",
                &Intent::Swap {
                    version: v2.clone(),
                    staging: s.games.join("gone"),
                },
            )
            .unwrap();
        rename(&places.game, &places.replaced).unwrap();
        let done = recover(&s.games, &s.store).unwrap();
        assert!(!done[0].finished);
        assert!(places.game.join("readme.txt").exists());
        assert_eq!(
            read_version_ini(&places.game.join("version.ini"))
                .unwrap()
                .unwrap()
                .as_str(),
            "1"
        );

        // Crash in the middle of a remove that keeps local/.
        let s = setup();
        let places = Places::new(&s.games, &id("ut2004"));
        std::fs::create_dir_all(places.game.join("local")).unwrap();
        std::fs::write(places.game.join("local/save"), b"s").unwrap();
        s.store
            .put_intent("ut2004", &Intent::Remove { keep_local: true })
            .unwrap();
        rename(&places.game, &places.removed).unwrap();
        recover(&s.games, &s.store).unwrap();
        assert!(places.local.join("save").exists());
        assert!(!places.game.join("readme.txt").exists());
        assert!(!places.removed.exists());

        // Crash during an install: the half-unpacked folder goes, the old
        // local/ comes back.
        let s = setup();
        let places = Places::new(&s.games, &id("ut2004"));
        std::fs::create_dir_all(places.install_tmp.join("half")).unwrap();
        std::fs::create_dir_all(&places.local_old).unwrap();
        std::fs::write(places.local_old.join("save"), b"s").unwrap();
        s.store.put_intent("ut2004", &Intent::Install).unwrap();
        let done = recover(&s.games, &s.store).unwrap();
        assert!(!done[0].finished);
        assert!(places.local.join("save").exists());
        assert!(!places.install_tmp.exists());

        // Crash during an uninstall after the rename: finished.
        let s = setup();
        let places = Places::new(&s.games, &id("ut2004"));
        std::fs::create_dir_all(&places.local_trash).unwrap();
        s.store.put_intent("ut2004", &Intent::Uninstall).unwrap();
        assert!(recover(&s.games, &s.store).unwrap()[0].finished);
        assert!(!places.local_trash.exists());
        assert!(s.store.intent_games().unwrap().is_empty());
    }

    /// The game's places, with a save in its `local/`.
    fn installed_with_a_save(s: &Setup, game: &GameId) -> Places {
        let places = Places::new(&s.games, game);
        std::fs::create_dir_all(places.local.join("Saves")).unwrap();
        std::fs::write(places.local.join("Saves/slot1.sav"), b"level 12").unwrap();
        places
    }

    /// A swap that fails after the old folder was moved aside puts it back
    /// at once (here the staged payload is on another filesystem, so the
    /// rename fails for real); the next try swaps in and the save is there.
    #[test]
    fn a_failed_swap_rolls_back_at_once_and_the_save_survives_the_next() {
        let s = setup();
        let ut = id("ut2004");
        let guard = op(&s, "ut2004");
        let places = installed_with_a_save(&s, &ut);
        let Ok(elsewhere) = tempfile::tempdir_in("/dev/shm") else {
            eprintln!("skipped: no /dev/shm for a second filesystem");
            return;
        };
        let staging = elsewhere.path().join("ut2004");
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(staging.join("new.pak"), b"new").unwrap();
        let v2 = GameVersion::parse("2").unwrap();
        let err = swap_in(&s.games, &ut, &staging, &v2, &s.store, &guard).unwrap_err();
        assert!(matches!(err, OpError::Io { .. }), "{err}");
        // As it was: the old payload and local/ in place, nothing aside, no
        // intent left, the staged payload where it was.
        assert!(places.game.join("readme.txt").exists());
        assert_eq!(
            std::fs::read(places.local.join("Saves/slot1.sav")).unwrap(),
            b"level 12"
        );
        assert!(!places.replaced.exists());
        assert!(s.store.intent_games().unwrap().is_empty());
        assert!(staging.join("new.pak").exists());

        // Downloaded again (staged where it belongs): swapped in, save kept.
        let again = s.games.join(".lanspread-staging/ut2004");
        std::fs::create_dir_all(&again).unwrap();
        std::fs::write(again.join("new.pak"), b"new").unwrap();
        swap_in(&s.games, &ut, &again, &v2, &s.store, &guard).unwrap();
        assert!(places.game.join("new.pak").exists());
        assert_eq!(
            std::fs::read(places.local.join("Saves/slot1.sav")).unwrap(),
            b"level 12"
        );
    }

    /// A folder set aside by an operation that could not be rolled back
    /// (its local/ with a save in it) is put back before the next operation
    /// on the game, never deleted with the save.
    #[test]
    fn a_set_aside_local_is_put_back_before_anything_deletes_it() {
        for aside_name in [".lanspread-replaced-ut2004", ".lanspread-removed-ut2004"] {
            let s = setup();
            let ut = id("ut2004");
            let guard = op(&s, "ut2004");
            let places = installed_with_a_save(&s, &ut);
            // The game folder left, the new one never came.
            rename(&places.game, &s.games.join(aside_name)).unwrap();
            let staging = s.games.join(".lanspread-staging/ut2004");
            std::fs::create_dir_all(&staging).unwrap();
            std::fs::write(staging.join("new.pak"), b"new").unwrap();
            let v2 = GameVersion::parse("2").unwrap();
            swap_in(&s.games, &ut, &staging, &v2, &s.store, &guard).unwrap();
            assert_eq!(
                std::fs::read(places.local.join("Saves/slot1.sav")).unwrap(),
                b"level 12",
                "{aside_name}"
            );
            assert!(!s.games.join(aside_name).exists());

            // The same with a remove that keeps local/.
            rename(&places.game, &s.games.join(aside_name)).unwrap();
            remove(&s.games, &ut, true, &s.store, &guard).unwrap();
            assert_eq!(
                std::fs::read(places.local.join("Saves/slot1.sav")).unwrap(),
                b"level 12",
                "{aside_name}"
            );
        }
    }

    /// Archives that unpack to far more than their size are refused, by
    /// what their index says (a zip) or while unpacking (a tar.gz says
    /// nothing up front), and nothing is left behind.
    #[test]
    fn a_zip_bomb_is_refused_and_nothing_is_left() {
        use std::io::{Read, Write};
        let zeros = 300u64 << 20;
        let zip_bomb = |path: &Path| {
            let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .large_file(true);
            zip.start_file("zeros.bin", options).unwrap();
            std::io::copy(&mut std::io::repeat(0).take(zeros), &mut zip).unwrap();
            zip.finish().unwrap();
        };
        let tar_bomb = |path: &Path| {
            let gz = flate2::write::GzEncoder::new(
                std::fs::File::create(path).unwrap(),
                flate2::Compression::best(),
            );
            let mut tar = tar::Builder::new(gz);
            let mut header = tar::Header::new_gnu();
            header.set_size(zeros);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, "zeros.bin", std::io::repeat(0).take(zeros))
                .unwrap();
            tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
        };
        for (name, make) in [
            ("bomb.zip", &zip_bomb as &dyn Fn(&Path)),
            ("bomb.tar.gz", &tar_bomb),
        ] {
            let s = setup();
            let game = s.games.join("ut2004");
            make(&game.join(name));
            let archive_len = std::fs::metadata(game.join(name)).unwrap().len();
            assert!(archive_len < 2 << 20, "{name}: {archive_len} bytes");
            let guard = op(&s, "ut2004");
            let err = install(&s.games, &id("ut2004"), &s.store, &guard).unwrap_err();
            assert!(
                matches!(err, OpError::Unpack(UnpackError::TooLarge { .. })),
                "{name}: {err}"
            );
            assert!(err.to_string().contains("zip bomb"), "{err}");
            assert!(!game.join("local").exists());
            assert!(!game.join(".lanspread-install").exists());
            assert!(s.store.intent_games().unwrap().is_empty());
        }
    }
}
