//! Delta updates between real peers on loopback: a PC holding version 1 of
//! a game updates to version 2 and fetches only what changed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::path::Path;
use std::time::Duration;

use lanspread_core::{GameCatalog, GameId};
use lanspread_net::download::{DownloadReport, Phase};
use lanspread_net::{Reply, Request};
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
    peer.ask(Request::LoadCatalog { path: file.clone() })
        .blocking_wait()
        .unwrap();
    assert!(
        peer.handle.wait_until(Duration::from_secs(20), |s| {
            s.peers
                .values()
                .filter(|p| p.games.iter().any(|g| g.id.as_str() == "ut2004"))
                .count()
                == seeders.len()
        }),
        "the PC never saw the seeders"
    );
    (folder, peer)
}

fn update(pc: &TestPeer) -> DownloadReport {
    pc.ask(Request::Download {
        game: GameId::parse("ut2004").unwrap(),
    })
    .blocking_wait()
    .and_then(Reply::into_download)
    .unwrap()
}

#[test]
fn an_update_fetches_what_changed_reuses_the_rest_and_keeps_the_save() {
    let catalog = catalog_at("2");
    let new = GamesFolder::new();
    new.add_patch_version_2();
    let seeders = seeders(&new, &catalog);
    let (old, pc) = outdated_pc(&seeders, |_| {});
    let old_payload = payload(&old.game_dir("ut2004"));
    // What the Update button shows, worked out before anything moves.
    let plan = pc
        .ask(Request::PlanUpdate {
            game: GameId::parse("ut2004").unwrap(),
        })
        .blocking_wait()
        .and_then(Reply::into_plan)
        .unwrap();
    assert_eq!(
        pc.handle.state().update_plans["ut2004"],
        ("2".to_owned(), plan)
    );
    assert_eq!(payload(&old.game_dir("ut2004")), old_payload);

    // Update: the download, then a reinstall (version 1 was installed).
    let download = pc.ask(Request::Update {
        game: GameId::parse("ut2004").unwrap(),
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
    let message = download
        .blocking_wait()
        .and_then(Reply::into_message)
        .unwrap();
    assert!(message.contains("reinstalled"), "{message}");
    let progress = pc
        .handle
        .state()
        .downloads
        .get("ut2004")
        .cloned()
        .expect("the update's progress");
    let fetched: u64 = progress.peers.iter().map(|p| p.bytes).sum();
    let reused = progress.reused_bytes;
    // The save made in version 1 is carried into the fresh install.
    let local = old.game_dir("ut2004").join("local");
    assert_eq!(std::fs::read(local.join("save.dat")).unwrap(), b"level 12");
    assert!(local.join("Paks/new.pak").exists());

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
    let share = fetched as f64 / total as f64;
    eprintln!(
        "update: {fetched} of {total} bytes fetched ({:.1} %), {reused} reused",
        share * 100.0,
    );
    assert!(share <= 0.10, "{:.1} % fetched", share * 100.0);
    assert_eq!(plan.download_bytes, fetched, "{plan:?}");
    assert_eq!(plan.reused_bytes, reused, "{plan:?}");
    assert_eq!(fetched + reused, total);
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

/// A PC that reused most of an update serves those pieces to the others
/// at once: a PC without any copy, downloading the same version from a
/// slow seeder and from it, gets most of the game from the updating PC.
#[test]
fn a_pc_updating_by_reuse_serves_the_reused_pieces_to_others() {
    let catalog = catalog_at("2");
    let new = GamesFolder::new();
    new.add_patch_version_2();
    // One slow seeder (16 Mbit/s): the whole game from it alone would take
    // over two minutes.
    let seeder = TestPeer::start_with(Some(new.path()), &catalog, &[], |config| {
        config.upload_limit_bytes_per_sec = Some(2_000_000);
    });
    assert!(
        seeder
            .handle
            .wait_until(Duration::from_secs(60), |s| !s.local_games.is_empty())
    );
    let (_old, updating) = outdated_pc(std::slice::from_ref(&seeder), |_| {});
    let update = updating.ask(Request::Download {
        game: GameId::parse("ut2004").unwrap(),
    });
    assert!(
        updating.handle.wait_until(Duration::from_secs(60), |s| s
            .downloads
            .get("ut2004")
            .is_some_and(|p| p.phase == Phase::Fetching)),
        "the update never started fetching"
    );
    let empty = GamesFolder::new();
    let fresh = TestPeer::start(
        Some(empty.path()),
        &catalog,
        &[seeder.addr(), updating.addr()],
    );
    let report = fresh
        .ask(Request::Download {
            game: GameId::parse("ut2004").unwrap(),
        })
        .blocking_wait()
        .and_then(Reply::into_download)
        .unwrap();
    let from_updating = report
        .peers
        .iter()
        .find(|p| p.addr == updating.addr())
        .map_or(0, |p| p.bytes);
    eprintln!(
        "the fresh PC got {from_updating} of {} bytes from the updating PC",
        report.bytes
    );
    assert!(from_updating * 2 > report.bytes, "{report:?}");
    assert_eq!(
        payload(&empty.game_dir("ut2004")),
        payload(&new.game_dir("ut2004"))
    );
    update.blocking_wait().unwrap();
}

/// A download of version 2 stopped half-way, then the organiser moves the
/// game to version 3: what the unfinished download verified is reused.
#[test]
fn an_unfinished_download_of_an_earlier_version_is_reused() {
    let v2 = GamesFolder::new();
    v2.add_patch_version_2();
    let v3 = GamesFolder::new();
    v3.add_patch_version_2();
    v3.add_payload("ut2004", &[("Paks/p05.pak", 2 << 20)], 3)
        .write_version("ut2004", "3");
    let seeder_2 = TestPeer::start_with(Some(v2.path()), &catalog_at("2"), &[], |config| {
        config.upload_limit_bytes_per_sec = Some(10_000_000);
    });
    let seeder_3 = TestPeer::start(Some(v3.path()), &catalog_at("3"), &[]);
    for seeder in [&seeder_2, &seeder_3] {
        assert!(
            seeder
                .handle
                .wait_until(Duration::from_secs(60), |s| !s.local_games.is_empty())
        );
    }
    let folder = GamesFolder::new();
    let pc = TestPeer::start(
        Some(folder.path()),
        &catalog_at("2"),
        &[seeder_2.addr(), seeder_3.addr()],
    );
    let first = pc.ask(Request::Download {
        game: GameId::parse("ut2004").unwrap(),
    });
    assert!(
        pc.handle.wait_until(Duration::from_secs(60), |s| s
            .downloads
            .get("ut2004")
            .is_some_and(|p| p.total_bytes > 0 && p.done_bytes * 2 > p.total_bytes)),
        "the first download never got half-way"
    );
    pc.handle
        .send(Request::CancelDownload {
            game: GameId::parse("ut2004").unwrap(),
        })
        .unwrap();
    assert!(first.blocking_wait().is_err());
    let halfway = folder.path().join(".lanspread-staging/ut2004");
    assert!(halfway.is_dir(), "the stopped download keeps its staging");

    let catalog_dir = tempfile::tempdir().unwrap();
    let file = catalog_dir.path().join("party.ron");
    std::fs::write(&file, catalog_text_with_ut_version("3")).unwrap();
    pc.ask(Request::LoadCatalog { path: file.clone() })
        .blocking_wait()
        .unwrap();
    let report = update(&pc);
    eprintln!(
        "version 3: {} bytes fetched, {} reused from the unfinished version 2",
        report.bytes, report.reused_bytes
    );
    assert!(report.reused_bytes > 100 << 20, "{report:?}");
    assert_eq!(
        payload(&folder.game_dir("ut2004")),
        payload(&v3.game_dir("ut2004"))
    );
    assert!(
        !folder
            .path()
            .join(".lanspread-staging/ut2004.previous")
            .exists()
    );
}
