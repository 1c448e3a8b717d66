//! Fixtures shared by lanspread's integration tests: games folders on a real
//! disk, filled with generated payloads of random content.
//!
//! The tests themselves live in `tests/tests/` (several crates working
//! together) and in each crate's own `tests/` folder.
//!
//! Fixtures panic on a failed setup step: that is a broken test machine, and
//! the panic message says which step.
#![allow(clippy::expect_used)]

pub mod lab;

use std::path::{Path, PathBuf};

use std::net::SocketAddr;

use lanspread_core::{GameCatalog, GameVersion};
use lanspread_net::{PeerConfig, PeerHandle};
use rand::{Rng, SeedableRng};

/// A temporary games folder that is removed when dropped.
#[derive(Debug)]
pub struct GamesFolder {
    dir: tempfile::TempDir,
}

impl Default for GamesFolder {
    fn default() -> Self {
        Self::new()
    }
}

impl GamesFolder {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary folder for test games"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn game_dir(&self, id: &str) -> PathBuf {
        self.dir.path().join(id)
    }

    /// Writes payload files of random content (deterministic per `seed`):
    /// each `(relative path, length)`.
    pub fn add_payload(&self, id: &str, files: &[(&str, usize)], seed: u64) -> &Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for (rel, len) in files {
            let path = self.game_dir(id).join(rel);
            std::fs::create_dir_all(path.parent().expect("a file inside the game"))
                .expect("create game folders");
            let mut bytes = vec![0u8; *len];
            rng.fill(&mut bytes[..]);
            std::fs::write(&path, bytes).expect("write a payload file");
        }
        self
    }

    /// Writes `version.ini` naming `version`.
    pub fn write_version(&self, id: &str, version: &str) -> &Self {
        let version = GameVersion::parse(version).expect("a valid test version");
        std::fs::create_dir_all(self.game_dir(id)).expect("create the game folder");
        std::fs::write(self.game_dir(id).join("version.ini"), version.to_ini())
            .expect("write version.ini");
        self
    }

    /// Writes `version.ini` naming the catalog's version of `id`.
    pub fn write_catalog_version(&self, id: &str, catalog: &GameCatalog) -> &Self {
        let entry = catalog.get_str(id).expect("a catalog game");
        self.write_version(id, entry.version.as_str())
    }

    /// Creates an installed copy under `local/`.
    pub fn add_local(&self, id: &str) -> &Self {
        let local = self.game_dir(id).join("local");
        std::fs::create_dir_all(&local).expect("create local/");
        std::fs::write(local.join("game.exe"), b"installed").expect("write an installed file");
        self
    }

    /// The folder of the five states a library scan must tell apart:
    /// `ut2004` current, `cs16` outdated, `aoe2` incomplete, `q3a` current and
    /// installed, `my-homebrew` not in the catalog.
    pub fn five_states(catalog: &GameCatalog) -> Self {
        let folder = Self::new();
        folder
            .add_payload(
                "ut2004",
                &[("ut2004.zip", 300_000), ("Maps/extra.pak", 5_000)],
                1,
            )
            .write_catalog_version("ut2004", catalog);
        folder
            .add_payload("cs16", &[("cs16.zip", 20_000)], 2)
            .write_version("cs16", "19990619");
        folder.add_payload("aoe2", &[("aoe2.zip", 50_000)], 3);
        folder
            .add_payload("q3a", &[("q3a.zip", 10_000)], 4)
            .write_catalog_version("q3a", catalog)
            .add_local("q3a");
        folder.add_payload("my-homebrew", &[("readme.txt", 100)], 5);
        folder
    }
}

/// A peer running in this process on loopback, discovery off, with its own
/// data folder (removed when dropped, after the peer has stopped).
#[derive(Debug)]
pub struct TestPeer {
    pub handle: PeerHandle,
    _data: tempfile::TempDir,
}

impl TestPeer {
    /// Starts a peer sharing `games` (if any) that connects to `peers`.
    pub fn start(games: Option<&Path>, catalog: &GameCatalog, peers: &[SocketAddr]) -> Self {
        Self::start_with(games, catalog, peers, |_| {})
    }

    /// As [`TestPeer::start`], with a last say over the config.
    pub fn start_with(
        games: Option<&Path>,
        catalog: &GameCatalog,
        peers: &[SocketAddr],
        tweak: impl FnOnce(&mut PeerConfig),
    ) -> Self {
        let data = tempfile::tempdir().expect("a data folder for a test peer");
        let mut config = PeerConfig::loopback(catalog.clone());
        config.games_dir = games.map(Path::to_path_buf);
        config.data_dir = Some(data.path().to_path_buf());
        config.manual_peers = peers.iter().map(ToString::to_string).collect();
        config.name = "test peer".into();
        tweak(&mut config);
        let handle = PeerHandle::start(config, None).expect("a test peer starts");
        Self {
            handle,
            _data: data,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.handle.listen_addr()
    }

    pub fn data_dir(&self) -> &Path {
        self._data.path()
    }

    /// Hands the peer a request; its answer comes on the returned
    /// [`lanspread_net::Answer`].
    pub fn ask(&self, request: lanspread_net::Request) -> lanspread_net::Answer {
        self.handle
            .request(request)
            .expect("the peer takes requests")
    }

    /// Downloads `game` and waits for the answer.
    pub fn download(
        &self,
        game: &str,
    ) -> Result<lanspread_net::download::DownloadReport, lanspread_net::ApiError> {
        let game = lanspread_core::GameId::parse(game).expect("a valid game id");
        self.ask(lanspread_net::Request::Download { game })
            .blocking_wait()
            .and_then(lanspread_net::Reply::into_download)
    }

    /// Blocks until this peer sees a peer at `addr` announcing exactly
    /// `games` (ids in order), for at most `timeout`; returns whether it did.
    pub fn waits_to_see(
        &self,
        addr: SocketAddr,
        games: &[&str],
        timeout: std::time::Duration,
    ) -> bool {
        self.handle.wait_until(timeout, |state| {
            state.peers.values().any(|p| {
                p.addr == addr && p.games.iter().map(|g| g.id.as_str()).collect::<Vec<_>>() == games
            })
        })
    }
}

/// The embedded catalog's text with `ut2004` at `version` (an organiser's
/// catalog that moved the game on).
pub fn catalog_text_with_ut_version(version: &str) -> String {
    let embedded = GameCatalog::embedded().expect("the embedded catalog");
    let current = &embedded
        .get_str("ut2004")
        .expect("ut2004 in the catalog")
        .version;
    lanspread_core::catalog::EMBEDDED_CATALOG_RON.replacen(
        &format!("version: \"{current}\""),
        &format!("version: \"{version}\""),
        1,
    )
}

/// The embedded catalog's text with a `launch` entry for `ut2004`: `exe`
/// (relative to `local/`) with `args`, on every platform.
pub fn catalog_text_with_ut_launch(exe: &str, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    // The embedded entry's own launch line goes; this one replaces it.
    let text = lanspread_core::catalog::EMBEDDED_CATALOG_RON;
    let entry = text.find("id: \"ut2004\",").expect("ut2004 in the catalog");
    let next = text[entry + 1..]
        .find("id: \"")
        .map_or(text.len(), |n| entry + 1 + n);
    let text = match text[entry..next].find("launch:") {
        Some(at) => {
            let start = entry + at;
            let end = text[start..].find('\n').map_or(text.len(), |n| start + n);
            format!("{}{}", &text[..start], &text[end..])
        }
        None => text.to_owned(),
    };
    text.replacen(
        "id: \"ut2004\",",
        &format!(
            "id: \"ut2004\", launch: [(exe: {exe:?}, args: [{}])],",
            args.join(", ")
        ),
        1,
    )
}

/// [`catalog_text_with_ut_launch`], loaded.
pub fn catalog_with_ut_launch(exe: &str, args: &[&str]) -> GameCatalog {
    GameCatalog::parse(
        &catalog_text_with_ut_launch(exe, args),
        "test catalog with a launch entry",
    )
    .expect("a valid catalog")
}

impl GamesFolder {
    /// Writes an executable shell script at `local/<name>` of `id` (a game
    /// to Play in tests).
    #[cfg(unix)]
    pub fn add_local_script(&self, id: &str, name: &str, body: &str) -> &Self {
        use std::os::unix::fs::PermissionsExt;
        let path = self.game_dir(id).join("local").join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create local/");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write the script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("make it executable");
        self
    }

    /// Version 1 of a patched game (`ut2004`, 252 MiB): a 136 MiB archive,
    /// ten files of 2 MiB, ten of 10 MiB and fifty small maps.
    pub fn add_patch_version_1(&self) -> &Self {
        let mut files: Vec<(String, usize)> = vec![("Paks/big.pak".into(), 136 << 20)];
        files.extend((0..10).map(|i| (format!("Paks/p{i:02}.pak"), 2 << 20)));
        files.extend((10..20).map(|i| (format!("Paks/p{i:02}.pak"), 10 << 20)));
        files.extend((0..50).map(|i| (format!("Maps/m{i:02}.map"), 40_000 + i * 997)));
        let files: Vec<(&str, usize)> = files.iter().map(|(n, l)| (n.as_str(), *l)).collect();
        self.add_payload("ut2004", &files, 1)
            .write_version("ut2004", "1")
    }

    /// Version 2 of the patched game, as a realistic patch makes it from
    /// version 1: three files replaced, one added, one removed, 1 MiB
    /// inserted in the middle of the big archive, the rest identical.
    pub fn add_patch_version_2(&self) -> &Self {
        self.add_patch_version_1();
        let dir = self.game_dir("ut2004");
        let big = dir.join("Paks/big.pak");
        let old = std::fs::read(&big).expect("the big archive");
        let middle = old.len() / 2 + 12_345;
        let mut new = old[..middle].to_vec();
        new.extend((0..1usize << 20).map(|i| 0x5a ^ (i * 31 % 251) as u8));
        new.extend_from_slice(&old[middle..]);
        std::fs::write(&big, new).expect("the patched archive");
        self.add_payload(
            "ut2004",
            &[
                ("Paks/p00.pak", 2 << 20),
                ("Paks/p01.pak", 2 << 20),
                ("Maps/m07.map", 40_000 + 7 * 997),
                ("Paks/new.pak", 2 << 20),
            ],
            2,
        );
        std::fs::remove_file(dir.join("Paks/p19.pak")).expect("a file the patch removes");
        self.write_version("ut2004", "2")
    }
}

/// Flips every 4096th byte of the file at `path`, keeping its size: a
/// tampered copy whose manifest disagrees with the honest one.
pub fn tamper_with(path: &Path) {
    let mut bytes = std::fs::read(path).expect("a readable file to tamper with");
    for byte in bytes.iter_mut().step_by(4096) {
        *byte ^= 0x55;
    }
    std::fs::write(path, bytes).expect("the tampered file is written");
}

/// Every file under `dir` (relative path with `/`) and the BLAKE3 of its
/// contents: two trees are identical when their maps are equal.
pub fn tree_hashes(dir: &Path) -> std::collections::BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("a readable folder")
            .map(|e| e.expect("a folder entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .expect("inside the root")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                let bytes = std::fs::read(&path).expect("a readable file");
                out.insert(rel, blake3::hash(&bytes).to_hex().to_string());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}
