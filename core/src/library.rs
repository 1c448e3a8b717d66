//! The local library: what the games folder holds, game by game.
//!
//! Scanning reads folder listings and `version.ini` files only; it never
//! writes, and folders that are not in the catalog are reported as unknown
//! and never touched. A game is *shareable* when it is in the catalog, its
//! `version.ini` names the catalog's version, and no local operation is
//! active on it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::catalog::{GameCatalog, GameId};
use crate::layout::{self, LOCAL_DIR, is_payload_entry};
use crate::transfers::OutboundTransfers;
use crate::version::{GameVersion, MAX_VERSION_INI_BYTES, VERSION_INI, parse_version_ini};

/// What a game's payload looks like on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadState {
    /// No payload files and no `version.ini` (perhaps only `local/`).
    None,
    /// Files but no readable `version.ini`: a download that did not finish,
    /// or a sentinel that cannot be read.
    Incomplete,
    /// `version.ini` names the catalog's version.
    Current,
    /// `version.ini` names another version (or the game is not in the catalog).
    Outdated,
}

/// One folder of the games folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalGame {
    /// The folder's name (the game id, for catalog games).
    pub folder: String,
    /// The game id, when the folder name is a valid one.
    pub id: Option<GameId>,
    pub in_catalog: bool,
    pub payload: PayloadState,
    /// The version `version.ini` names.
    pub local_version: Option<GameVersion>,
    pub catalog_version: Option<GameVersion>,
    /// `local/` exists.
    pub installed: bool,
    /// What is wrong, in words, when something is (a broken `version.ini`).
    pub problem: Option<String>,
}

impl LocalGame {
    /// In the catalog and at the catalog's version (operations aside).
    pub fn shareable(&self) -> bool {
        self.in_catalog && self.payload == PayloadState::Current
    }
}

/// A scan of one games folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryScan {
    pub games_dir: PathBuf,
    /// One per folder, ordered by folder name.
    pub games: Vec<LocalGame>,
}

/// The state of a catalog game from the user's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GameState {
    /// Not on this PC.
    Missing,
    /// Some files, not complete.
    Incomplete,
    /// Downloaded at the catalog's version, not installed.
    Downloaded,
    /// Downloaded at the catalog's version and installed.
    Installed,
    /// On this PC at an older version than the catalog's (or one that
    /// cannot be ordered against it).
    UpdateAvailable,
    /// On this PC at a version newer than the catalog's: updating would
    /// go back to the catalog's version, so it is not called an update.
    DiffersFromCatalog,
}

/// Folders an operating system keeps at a drive's root, never games: a
/// games folder at `D:\` (or a USB stick) lists them.
fn is_system_folder(name: &str) -> bool {
    name.starts_with('$')
        || ["System Volume Information", "RECYCLER", "lost+found"]
            .iter()
            .any(|system| system.eq_ignore_ascii_case(name))
}

/// Why the games folder could not be scanned.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the games folder {path}: {source}")]
pub struct LibraryError {
    pub path: String,
    pub source: std::io::Error,
}

/// Scans every folder of `games_dir`. Hidden folders (names starting with
/// `.`, which include lanspread's staging) and plain files are skipped.
pub fn scan_library(games_dir: &Path, catalog: &GameCatalog) -> Result<LibraryScan, LibraryError> {
    let err = |source| LibraryError {
        path: games_dir.display().to_string(),
        source,
    };
    let mut games = Vec::new();
    for entry in std::fs::read_dir(games_dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || is_system_folder(&name) {
            continue;
        }
        // `metadata` follows a symlinked game folder, as a user would expect.
        if !entry.path().metadata().is_ok_and(|m| m.is_dir()) {
            continue;
        }
        games.push(scan_folder(&entry.path(), &name, catalog));
    }
    games.sort_by(|a, b| a.folder.cmp(&b.folder));
    Ok(LibraryScan {
        games_dir: games_dir.to_path_buf(),
        games,
    })
}

/// Scans one game's folder (which may not exist: then payload is `None`).
pub fn scan_game(games_dir: &Path, id: &GameId, catalog: &GameCatalog) -> LocalGame {
    scan_folder(&layout::game_dir(games_dir, id), id.as_str(), catalog)
}

fn scan_folder(dir: &Path, folder: &str, catalog: &GameCatalog) -> LocalGame {
    let id = GameId::parse(folder).ok();
    let catalog_version = id
        .as_ref()
        .and_then(|id| catalog.expected_version(id))
        .cloned();
    let installed = dir.join(LOCAL_DIR).is_dir();
    let mut problem = None;
    let local_version = match read_version_ini(&dir.join(VERSION_INI)) {
        Ok(version) => version,
        Err(message) => {
            problem = Some(message);
            None
        }
    };
    let payload = match (&local_version, &catalog_version) {
        (Some(local), Some(expected)) if local == expected => PayloadState::Current,
        (Some(_), _) => PayloadState::Outdated,
        (None, _) if problem.is_some() || has_payload_files(dir) => PayloadState::Incomplete,
        (None, _) => PayloadState::None,
    };
    LocalGame {
        folder: folder.to_owned(),
        in_catalog: catalog_version.is_some(),
        id,
        payload,
        local_version,
        catalog_version,
        installed,
        problem,
    }
}

/// `Ok(None)` when there is no `version.ini`; `Err` says what is wrong with one.
pub fn read_version_ini(path: &Path) -> Result<Option<GameVersion>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("cannot read version.ini: {err}")),
    };
    if meta.len() > MAX_VERSION_INI_BYTES as u64 {
        return Err(format!(
            "version.ini is larger than {MAX_VERSION_INI_BYTES} bytes"
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read version.ini: {e}"))?;
    parse_version_ini(&bytes)
        .map(Some)
        .map_err(|e| e.to_string())
}

fn has_payload_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|entry| is_payload_entry(&entry.file_name().to_string_lossy()))
    })
}

impl LibraryScan {
    pub fn get(&self, id: &GameId) -> Option<&LocalGame> {
        self.games.iter().find(|g| g.id.as_ref() == Some(id))
    }

    /// The user-facing state of a catalog game.
    pub fn state_of(&self, id: &GameId) -> GameState {
        match self.get(id) {
            None => GameState::Missing,
            Some(game) => match game.payload {
                PayloadState::Current if game.installed => GameState::Installed,
                PayloadState::Current => GameState::Downloaded,
                PayloadState::Outdated => match (&game.local_version, &game.catalog_version) {
                    (Some(here), Some(catalog)) if here.is_newer_than(catalog) => {
                        GameState::DiffersFromCatalog
                    }
                    _ => GameState::UpdateAvailable,
                },
                PayloadState::Incomplete => GameState::Incomplete,
                PayloadState::None if game.installed => GameState::Installed,
                PayloadState::None => GameState::Missing,
            },
        }
    }

    /// The games this PC offers to peers right now: shareable, and no
    /// operation active. A game under `begin_operation` is absent.
    pub fn shared_games(&self, transfers: &OutboundTransfers) -> Vec<SharedGame> {
        let active = transfers.active_games();
        self.shared_games_excluding(&active)
    }

    /// As [`Self::shared_games`], given the set of active games.
    pub fn shared_games_excluding(&self, active: &BTreeSet<GameId>) -> Vec<SharedGame> {
        self.games
            .iter()
            .filter(|g| g.shareable())
            .filter_map(|g| {
                let id = g.id.clone()?;
                let version = g.local_version.clone()?;
                (!active.contains(&id)).then_some(SharedGame { id, version })
            })
            .collect()
    }
}

/// One game in the library a peer announces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SharedGame {
    pub id: GameId,
    pub version: GameVersion,
}

/// Why a game may not be served right now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotShareable {
    #[error("{0} is not in the catalog")]
    NotInCatalog(String),
    #[error("{id} is at version {local:?} here; the catalog wants {expected}")]
    WrongVersion {
        id: GameId,
        local: Option<GameVersion>,
        expected: GameVersion,
    },
}

/// The serve-eligibility check for one game (the caller has already
/// registered its transfer guard, which refuses active games): the game is
/// in the catalog and its `version.ini` names the catalog's version.
pub fn check_shareable(
    games_dir: &Path,
    catalog: &GameCatalog,
    id: &GameId,
) -> Result<GameVersion, NotShareable> {
    let expected = catalog
        .expected_version(id)
        .ok_or_else(|| NotShareable::NotInCatalog(id.to_string()))?;
    let local = read_version_ini(&layout::version_ini_path(games_dir, id))
        .ok()
        .flatten();
    match local {
        Some(version) if &version == expected => Ok(version),
        local => Err(NotShareable::WrongVersion {
            id: id.clone(),
            local,
            expected: expected.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> GameCatalog {
        GameCatalog::embedded().unwrap()
    }

    fn id(s: &str) -> GameId {
        GameId::parse(s).unwrap()
    }

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn every_state_is_recognised() {
        let cat = catalog();
        let tmp = tempfile::tempdir().unwrap();
        let g = tmp.path();
        let v = |id: &str| cat.get_str(id).unwrap().version.to_ini();
        write(&g.join("ut2004/ut2004.zip"), b"x");
        write(&g.join("ut2004/version.ini"), v("ut2004").as_bytes());
        write(&g.join("cs16/cs16.zip"), b"x");
        write(&g.join("cs16/version.ini"), b"19990101");
        write(&g.join("ut99/ut99.zip"), b"x");
        write(&g.join("ut99/version.ini"), b"29990101");
        write(&g.join("aoe2/aoe2.zip.part"), b"x");
        write(&g.join("q3a/q3a.zip"), b"x");
        write(&g.join("q3a/version.ini"), v("q3a").as_bytes());
        write(&g.join("q3a/local/quake3.exe"), b"x");
        write(&g.join("my-mod/readme.txt"), b"x");
        write(&g.join("Some Folder/x"), b"x");
        write(&g.join("wc3/version.ini"), b"\xff\xfe\x00");
        write(&g.join("sc1/local/sc.exe"), b"x");
        write(&g.join(".lanspread-staging/ut2004/x"), b"x");
        write(&g.join("loose-file.txt"), b"x");
        // A games folder at a drive's root.
        write(&g.join("$RECYCLE.BIN/S-1-5-21/desktop.ini"), b"x");
        write(&g.join("System Volume Information/IndexerVolumeGuid"), b"x");

        let scan = scan_library(g, &cat).unwrap();
        let folders: Vec<&str> = scan.games.iter().map(|g| g.folder.as_str()).collect();
        assert_eq!(
            folders,
            [
                "Some Folder",
                "aoe2",
                "cs16",
                "my-mod",
                "q3a",
                "sc1",
                "ut2004",
                "ut99",
                "wc3"
            ]
        );
        let by = |f: &str| scan.games.iter().find(|g| g.folder == f).unwrap();

        assert_eq!(by("ut2004").payload, PayloadState::Current);
        assert!(by("ut2004").shareable() && !by("ut2004").installed);
        assert_eq!(scan.state_of(&id("ut2004")), GameState::Downloaded);

        assert_eq!(by("cs16").payload, PayloadState::Outdated);
        assert_eq!(
            by("cs16").local_version.as_ref().unwrap().as_str(),
            "19990101"
        );
        assert!(!by("cs16").shareable());
        assert_eq!(scan.state_of(&id("cs16")), GameState::UpdateAvailable);
        // A newer copy than the catalog's is not "an update".
        assert_eq!(by("ut99").payload, PayloadState::Outdated);
        assert_eq!(scan.state_of(&id("ut99")), GameState::DiffersFromCatalog);

        assert_eq!(by("aoe2").payload, PayloadState::Incomplete);
        assert_eq!(scan.state_of(&id("aoe2")), GameState::Incomplete);

        assert!(by("q3a").installed && by("q3a").shareable());
        assert_eq!(scan.state_of(&id("q3a")), GameState::Installed);

        assert!(!by("my-mod").in_catalog && by("my-mod").id.is_some());
        assert!(!by("Some Folder").in_catalog && by("Some Folder").id.is_none());
        assert!(!by("my-mod").shareable());

        assert_eq!(by("wc3").payload, PayloadState::Incomplete);
        assert!(by("wc3").problem.as_ref().unwrap().contains("version.ini"));

        assert_eq!(by("sc1").payload, PayloadState::None);
        assert_eq!(scan.state_of(&id("sc1")), GameState::Installed);
        assert_eq!(scan.state_of(&id("bf2")), GameState::Missing);

        let shared: Vec<String> = scan
            .shared_games(&OutboundTransfers::new())
            .into_iter()
            .map(|s| s.id.to_string())
            .collect();
        assert_eq!(shared, ["q3a", "ut2004"]);
    }

    #[tokio::test]
    async fn snapshots_never_show_an_active_game() {
        let cat = catalog();
        let tmp = tempfile::tempdir().unwrap();
        for game in ["ut2004", "cs16"] {
            write(&tmp.path().join(game).join("data.bin"), b"x");
            write(
                &tmp.path().join(game).join("version.ini"),
                cat.get_str(game).unwrap().version.to_ini().as_bytes(),
            );
        }
        let scan = scan_library(tmp.path(), &cat).unwrap();
        let transfers = OutboundTransfers::new();
        let reader = transfers.register(&id("ut2004")).unwrap();
        let op = tokio::spawn({
            let transfers = transfers.clone();
            async move { transfers.begin_operation(&id("ut2004")).await }
        });
        // Active from the moment the operation starts, before readers are gone.
        while !transfers.snapshot().is_active(&id("ut2004")) {
            tokio::task::yield_now().await;
        }
        let ids = |s: &LibraryScan| -> Vec<String> {
            s.shared_games(&transfers)
                .into_iter()
                .map(|g| g.id.to_string())
                .collect()
        };
        assert_eq!(ids(&scan), ["cs16"]);
        drop(reader);
        let guard = op.await.unwrap().unwrap();
        assert_eq!(ids(&scan), ["cs16"]);
        drop(guard);
        assert_eq!(ids(&scan), ["cs16", "ut2004"]);
    }

    #[test]
    fn eligibility_follows_version_ini_and_catalog() {
        let cat = catalog();
        let tmp = tempfile::tempdir().unwrap();
        let ut = id("ut2004");
        assert!(matches!(
            check_shareable(tmp.path(), &cat, &ut),
            Err(NotShareable::WrongVersion { local: None, .. })
        ));
        let expected = cat.expected_version(&ut).unwrap().clone();
        let written = format!("\u{feff}{expected}\r\n");
        write(&tmp.path().join("ut2004/version.ini"), written.as_bytes());
        assert_eq!(check_shareable(tmp.path(), &cat, &ut).unwrap(), expected);
        write(&tmp.path().join("ut2004/version.ini"), b"1");
        assert!(check_shareable(tmp.path(), &cat, &ut).is_err());
        assert!(matches!(
            check_shareable(tmp.path(), &cat, &id("not-a-game")),
            Err(NotShareable::NotInCatalog(_))
        ));
    }
}
