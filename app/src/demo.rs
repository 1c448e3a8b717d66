//! The demo: three headless peers in this process, on 127.0.0.1 with
//! discovery off, sharing generated games from a temporary folder, so a
//! newcomer can press Download and watch a real aggregated transfer, then
//! Install, Update and Remove.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use lanspread_core::{GameCatalog, GameVersion};
use lanspread_net::{PeerConfig, PeerHandle};
use rand::{RngCore, SeedableRng};

/// Upload cap of each demo peer: slow enough to watch, fast enough to wait for.
pub const DEMO_UPLOAD_MBIT: u64 = 80;

/// One generated game: id, files (name, MiB), and which demo peers hold it.
type DemoGame = (&'static str, &'static [(&'static str, usize)], [bool; 3]);

const GAMES: &[DemoGame] = &[
    (
        "ut2004",
        &[("ut2004-setup.pak", 120), ("bonus-maps.pak", 20)],
        [true, true, true],
    ),
    ("q3a", &[("baseq3.pak", 60)], [true, false, true]),
    ("cs16", &[("cstrike.pak", 40)], [false, true, true]),
    ("aoe2", &[("aoe2.pak", 30)], [true, true, false]),
    ("openarena", &[("openarena.pak", 20)], [false, true, true]),
];

/// The running demo peers and their files; everything goes when dropped.
#[derive(Debug)]
pub struct Demo {
    pub peers: Vec<PeerHandle>,
    /// Games folder and data folder for the window's own peer.
    pub own_games: PathBuf,
    pub own_data: PathBuf,
    /// Removed (with every generated file) when the demo ends.
    #[cfg_attr(not(test), allow(dead_code))]
    root: tempfile::TempDir,
}

impl Demo {
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.peers.iter().map(PeerHandle::listen_addr).collect()
    }

    /// The games folder of demo peer `index`.
    #[cfg(test)]
    pub fn peer_games(&self, index: usize) -> PathBuf {
        self.root.path().join(format!("peer{index}/games"))
    }

    /// Generates the games and starts the three peers; `percent` is told
    /// how much of the games is written.
    pub fn start(catalog: &GameCatalog, percent: &dyn Fn(u8)) -> anyhow::Result<Self> {
        let root = tempfile::Builder::new()
            .prefix("lanspread-demo-")
            .tempdir()?;
        let originals = root.path().join("originals");
        let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
        let mut block = vec![0u8; 1 << 20];
        let total: usize = GAMES
            .iter()
            .flat_map(|(_, files, _)| files.iter().map(|(_, mib)| mib))
            .sum();
        let mut written = 0;
        for (id, files, _) in GAMES {
            let dir = originals.join(id);
            std::fs::create_dir_all(&dir)?;
            for (name, mib) in *files {
                let mut file = std::io::BufWriter::new(std::fs::File::create(dir.join(name))?);
                for _ in 0..*mib {
                    rng.fill_bytes(&mut block);
                    file.write_all(&block)?;
                    written += 1;
                    percent(u8::try_from(written * 100 / total.max(1)).unwrap_or(100));
                }
                file.flush()?;
            }
        }
        let mut peers = Vec::new();
        for index in 0..3 {
            let games = root.path().join(format!("peer{index}/games"));
            for (id, files, holders) in GAMES {
                if !holders[index] {
                    continue;
                }
                let dir = games.join(id);
                std::fs::create_dir_all(&dir)?;
                for (name, _) in *files {
                    link_or_copy(&originals.join(id).join(name), &dir.join(name))?;
                }
                let version = &catalog
                    .get_str(id)
                    .with_context(|| format!("{id} is not in the catalog"))?
                    .version;
                std::fs::write(dir.join("version.ini"), version.to_ini())?;
            }
            let mut config = PeerConfig::loopback(catalog.clone());
            config.games_dir = Some(games);
            config.data_dir = Some(root.path().join(format!("peer{index}/data")));
            config.name = ["Arcade PC", "Backroom PC", "Couch PC"][index].to_owned();
            config.upload_limit_bytes_per_sec = Some(DEMO_UPLOAD_MBIT * 125_000);
            peers.push(PeerHandle::start(config, None)?);
        }
        // The window's own folder: an older aoe2, installed, to show Update.
        let own_games = root.path().join("you/games");
        let old = own_games.join("aoe2");
        std::fs::create_dir_all(old.join("local"))?;
        std::fs::write(old.join("aoe2.pak"), b"an older build of the game")?;
        std::fs::write(old.join("local/aoe2.pak"), b"an older build of the game")?;
        std::fs::write(
            old.join("version.ini"),
            GameVersion::parse("20190101")?.to_ini(),
        )?;
        // And a game only this PC has, installed: Play, and the last-copy
        // warning on Remove. Its "game" (Unix) runs for a minute.
        let only_here = own_games.join("ut99");
        std::fs::create_dir_all(only_here.join("local/System"))?;
        rng.fill_bytes(&mut block);
        std::fs::write(only_here.join("ut99.pak"), &block)?;
        let version = &catalog
            .get_str("ut99")
            .context("ut99 is not in the catalog")?
            .version;
        std::fs::write(only_here.join("version.ini"), version.to_ini())?;
        write_demo_game(&only_here.join("local/System/ut-bin"))?;
        Ok(Self {
            peers,
            own_data: root.path().join("you/data"),
            own_games,
            root,
        })
    }

    /// Waits until every demo peer announces its games (hashing done).
    #[cfg(test)]
    pub fn wait_until_shared(&self, timeout: std::time::Duration) -> bool {
        self.peers.iter().enumerate().all(|(index, peer)| {
            let expected = GAMES.iter().filter(|(_, _, h)| h[index]).count();
            peer.wait_until(timeout, |s| s.local_games.len() == expected)
        })
    }
}

/// The demo's stand-in for a game: on Unix a script that runs for a
/// minute (the card says "running"); elsewhere nothing runnable is made
/// and Play says the executable is not there.
fn write_demo_game(path: &Path) -> std::io::Result<()> {
    std::fs::write(path, b"#!/bin/sh\nsleep 60\n")?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::hard_link(from, to).or_else(|_| std::fs::copy(from, to).map(|_| ()))
}
