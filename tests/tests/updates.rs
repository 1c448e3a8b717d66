//! Delta updates between real peers on loopback: a PC holding version 1 of
//! a game updates to version 2 and fetches only what changed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::path::Path;
use std::time::Duration;

use lanspread_core::{GameCatalog, GameId};
use lanspread_net::Command;
use lanspread_net::download::{DownloadReport, Phase};
use lanspread_tests::{GamesFolder, TestPeer, catalog_text_with_ut_version, tree_hashes};

const MIB: usize = 1024 * 1024;

/// The embedded catalog with ut2004 at `version`.
fn catalog_at(version: &str) -> GameCatalog {
    GameCatalog::parse(&catalog_text_with_ut_version(version), "test.ron").unwrap()
}

/// The payload of a game folder (without `local/`).
fn payload(dir: &Path) -> std::collections::BTreeMap<String, String> {
    let mut tree = tree_hashes(dir);
    tree.retain(|path, _| !path.starts_with("local/"));
    tree
}

fn seeders(folder: &GamesFolder, catalog: &GameCatalog) -> Vec<TestPeer> {
    (0..2)
        .map(|_| {
            let peer = TestPeer::start_with(Some(folder.path()), catalog, &[], |config| {
                // 80 Mbit/s each: the fetch takes long enough to look at.
                config.upload_limit_bytes_per_sec = Some(10_000_000);
            });
            assert!(
                peer.handle
                    .wait_until(Duration::from_secs(60), |s| !s.local_games.is_empty()),
                "a seeder never announced version 2"
            );
            peer
        })
        .collect()
}

/// A PC sharing version 1 (installed, with a save) as its catalog said,
/// until `meanwhile` ran and the organiser's catalog with version 2 was
/// loaded; it then sees both seeders.
fn outdated_pc(seeders: &[TestPeer], meanwhile: impl FnOnce(&Path)) -> (GamesFolder, TestPeer) {
    let folder = GamesFolder::new();
    folder.add_patch_version_1();
    folder.add_local("ut2004");
    std::fs::write(
        folder.game_dir("ut2004").join("local/save.dat"),
        b"level 12",
    )
    .unwrap();
    let addrs: Vec<_> = seeders.iter().map(TestPeer::addr).collect();
    let peer = TestPeer::start(Some(folder.path()), &catalog_at("1"), &addrs);
    assert!(
        peer.handle
            .wait_until(Duration::from_secs(60), |s| !s.local_games.is_empty()),
        "the PC never shared version 1"
    );
    meanwhile(&folder.game_dir("ut2004"));
    let catalog_dir = tempfile::tempdir().unwrap();
    let file = catalog_dir.path().join("party.ron");
    std::fs::write(&file, catalog_text_with_ut_version("2")).unwrap();
    peer.ask(|reply| Command::LoadCatalog {
        path: file.clone(),
        reply,
    })
    .blocking_recv()
    .unwrap()
    .unwrap();
    assert!(
        peer.handle.wait_until(Duration::from_secs(20), |s| {
            s.peers
                .values()
                .filter(|p| p.games.iter().any(|g| g.id.as_str() == "ut2004"))
                .count()
                == 2
        }),
        "the PC never saw both seeders"
    );
    (folder, peer)
}

fn update(pc: &TestPeer) -> DownloadReport {
    pc.ask(|reply| Command::Download {
        game: GameId::parse("ut2004").unwrap(),
        reply,
    })
    .blocking_recv()
    .unwrap()
    .unwrap()
}

#[test]
fn an_update_fetches_what_changed_and_reuses_the_rest() {
    let catalog = catalog_at("2");
    let new = GamesFolder::new();
    new.add_patch_version_2();
    let seeders = seeders(&new, &catalog);
    let (old, pc) = outdated_pc(&seeders, |_| {});
    let old_payload = payload(&old.game_dir("ut2004"));

    let download = pc.ask(|reply| Command::Download {
        game: GameId::parse("ut2004").unwrap(),
        reply,
    });
    // While it fetches, version 1 is where it was, untouched.
    assert!(
        pc.handle.wait_until(Duration::from_secs(30), |s| s
            .downloads
            .get("ut2004")
            .is_some_and(|p| p.phase == Phase::Fetching && p.reused_bytes > 0)),
        "the update never reused anything"
    );
    assert_eq!(payload(&old.game_dir("ut2004")), old_payload);
    let report = download.blocking_recv().unwrap().unwrap();

    assert_eq!(
        payload(&old.game_dir("ut2004")),
        payload(&new.game_dir("ut2004"))
    );
    let total: u64 = payload(&new.game_dir("ut2004"))
        .keys()
        .filter(|p| *p != "version.ini")
        .map(|p| {
            std::fs::metadata(new.game_dir("ut2004").join(p))
                .unwrap()
                .len()
        })
        .sum();
    let share = report.bytes as f64 / total as f64;
    eprintln!(
        "update: {} of {} bytes fetched ({:.1} %), {} reused in {} pieces; {:.2} s",
        report.bytes,
        total,
        share * 100.0,
        report.reused_bytes,
        report.pieces_reused,
        report.seconds
    );
    assert!(share <= 0.10, "{:.1} % fetched", share * 100.0);
    assert_eq!(report.bytes + report.reused_bytes, total);
}

#[test]
fn a_corrupted_chunk_of_the_old_copy_is_fetched_not_copied() {
    let catalog = catalog_at("2");
    let new = GamesFolder::new();
    new.add_patch_version_2();
    let seeders = seeders(&new, &catalog);
    let (clean, clean_pc) = outdated_pc(&seeders, |_| {});
    // One byte of an unchanged 10 MiB file flips after version 1 was
    // hashed, size and mtime kept: the hash cache still believes it.
    let (dirty, dirty_pc) = outdated_pc(&seeders, |game| {
        let victim = game.join("Paks/p12.pak");
        let mtime = std::fs::metadata(&victim).unwrap().modified().unwrap();
        let mut bytes = std::fs::read(&victim).unwrap();
        bytes[3 * MIB] ^= 0xff;
        std::fs::write(&victim, bytes).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&victim)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    });

    let clean_report = update(&clean_pc);
    let dirty_report = update(&dirty_pc);
    let expected = payload(&new.game_dir("ut2004"));
    assert_eq!(payload(&clean.game_dir("ut2004")), expected);
    assert_eq!(payload(&dirty.game_dir("ut2004")), expected);
    let extra = dirty_report.bytes - clean_report.bytes;
    eprintln!("the corrupted chunk cost {extra} more bytes fetched");
    assert!(extra > 0 && extra <= 8 * MIB as u64, "{extra}");
}
