//! Play and sharing while playing, between real peers on loopback: a game
//! started from its catalog launch entry (a small script), the "while a
//! game runs" choice, and an upload limit changed while an upload runs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::time::{Duration, Instant};

use lanspread_core::{GameCatalog, GameId, SharingPolicy, WhilePlaying};
use lanspread_net::{ApiError, Reply, Request};
use lanspread_tests::{GamesFolder, TestPeer};

const MIB: usize = 1024 * 1024;

fn id(s: &str) -> GameId {
    GameId::parse(s).unwrap()
}

fn ut_folder(catalog: &GameCatalog, mib: usize) -> GamesFolder {
    let folder = GamesFolder::new();
    folder
        .add_payload(
            "ut2004",
            &[("ut2004.zip", mib * MIB), ("readme.txt", 1000)],
            7,
        )
        .write_catalog_version("ut2004", catalog);
    folder
}

#[cfg(unix)]
#[test]
fn play_starts_the_game_and_sharing_pauses_while_it_runs() {
    // The game: a script that leaves a mark in its working folder (local/)
    // and runs until a file appears there, so the test decides when it ends.
    let catalog = lanspread_tests::catalog_with_ut_launch("bin/game.sh", &["--fullscreen"]);
    let folder = ut_folder(&catalog, 2);
    folder.add_local_script(
        "ut2004",
        "bin/game.sh",
        "echo \"$@\" > ../started\nwhile [ ! -e ../quit ]; do sleep 0.05; done",
    );
    let local = folder.path().join("ut2004/local");
    let seeder = TestPeer::start_with(Some(folder.path()), &catalog, &[], |config| {
        config.while_playing = WhilePlaying::Pause;
    });
    assert!(
        seeder
            .handle
            .wait_until(Duration::from_secs(20), |s| !s.local_games.is_empty())
    );
    let watcher = TestPeer::start(None, &catalog, &[seeder.addr()]);
    let sees_ut = |s: &lanspread_net::PeerState| {
        s.peers
            .values()
            .any(|p| p.games.iter().any(|g| g.id.as_str() == "ut2004"))
    };
    assert!(watcher.handle.wait_until(Duration::from_secs(10), sees_ut));

    let answer = seeder
        .ask(Request::Play { game: id("ut2004") })
        .blocking_wait();
    let started_at = Instant::now();
    assert!(answer.is_ok(), "{answer:?}");
    assert!(
        seeder.handle.state().running.contains(&id("ut2004")),
        "running as soon as Play answers"
    );
    // The game got its arguments and runs in its own folder.
    assert!(wait_for(Duration::from_secs(5), || local
        .join("started")
        .exists()));
    assert_eq!(
        std::fs::read_to_string(local.join("started"))
            .unwrap()
            .trim(),
        "--fullscreen"
    );
    // Paused: nothing offered, and the other PC sees it within 3 s.
    assert!(
        seeder
            .handle
            .wait_until(Duration::from_secs(1), |s| s.sharing.paused
                && s.sharing.because_playing
                && s.local_games.is_empty())
    );
    assert!(
        watcher
            .handle
            .wait_until(Duration::from_secs(3), |s| !sees_ut(s)),
        "the other PC still sees the game {:?} after Play",
        started_at.elapsed()
    );

    // The game ends: sharing comes back by itself.
    std::fs::write(local.join("quit"), b"").unwrap();
    let ended_at = Instant::now();
    assert!(
        seeder
            .handle
            .wait_until(Duration::from_secs(2), |s| s.running.is_empty()
                && !s.sharing.paused
                && !s.local_games.is_empty()),
        "still running or paused {:?} after the game ended",
        ended_at.elapsed()
    );
    assert!(watcher.handle.wait_until(Duration::from_secs(3), sees_ut));

    // Without an installed copy there is nothing to start.
    std::fs::remove_dir_all(&local).unwrap();
    let refused = seeder
        .ask(Request::Play { game: id("ut2004") })
        .blocking_wait();
    assert!(
        matches!(&refused, Err(ApiError::Play { reason, .. }) if reason.contains("not installed")),
        "{refused:?}"
    );
}

#[test]
fn an_upload_limit_set_while_uploading_holds_within_two_seconds() {
    let catalog = GameCatalog::embedded().unwrap();
    let folder = ut_folder(&catalog, 48);
    // Capped at 16 MB/s so the transfer is still running when the limit
    // changes.
    let seeder = TestPeer::start_with(Some(folder.path()), &catalog, &[], |config| {
        config.upload_limit_bytes_per_sec = Some(16_000_000);
    });
    assert!(
        seeder
            .handle
            .wait_until(Duration::from_secs(20), |s| !s.local_games.is_empty())
    );
    let target = GamesFolder::new();
    let downloader = TestPeer::start(Some(target.path()), &catalog, &[seeder.addr()]);
    assert!(downloader.handle.wait_until(Duration::from_secs(10), |s| {
        s.peers
            .values()
            .any(|p| p.games.iter().any(|g| g.id.as_str() == "ut2004"))
    }));
    let download = downloader.ask(Request::Download { game: id("ut2004") });
    // Measured where the limit acts: the bytes the seeder hands to QUIC
    // (the downloader counts whole pieces, a MiB or more at a time).
    let sent = || seeder.handle.bytes_uploaded();
    assert!(wait_for(Duration::from_secs(20), || sent() > 2_000_000));
    let before = (Instant::now(), sent());
    std::thread::sleep(Duration::from_millis(500));
    let before_rate = (sent() - before.1) as f64 / before.0.elapsed().as_secs_f64();

    const LIMIT: u64 = 3_000_000;
    seeder
        .handle
        .send(Request::SetSharing {
            policy: SharingPolicy {
                upload_limit_bytes_per_sec: Some(LIMIT),
                while_playing: WhilePlaying::KeepSharing,
            },
        })
        .unwrap();
    let changed_at = Instant::now();
    assert!(
        seeder
            .handle
            .wait_until(Duration::from_secs(1), |s| s.sharing.limit_bytes_per_sec
                == Some(LIMIT))
    );
    // From 2 s after the change on, the transfer runs at the new limit.
    std::thread::sleep(Duration::from_secs(2).saturating_sub(changed_at.elapsed()));
    let from = (Instant::now(), sent());
    std::thread::sleep(Duration::from_secs(2));
    let after_rate = (sent() - from.1) as f64 / from.0.elapsed().as_secs_f64();
    eprintln!(
        "before the change {:.1} MB/s, from 2 s after it {:.2} MB/s (limit {:.1})",
        before_rate / 1e6,
        after_rate / 1e6,
        LIMIT as f64 / 1e6
    );
    assert!(
        before_rate > 2.0 * LIMIT as f64,
        "the transfer ran at {before_rate:.0} B/s before the change: the test proves nothing"
    );
    // The limit, with room for one piece of burst over two seconds.
    assert!(
        after_rate <= LIMIT as f64 * 1.15,
        "{after_rate:.0} B/s 2 s after a limit of {LIMIT} B/s"
    );
    assert!(after_rate > 0.0, "the transfer stopped instead of slowing");

    // Lifted again, the download completes.
    seeder
        .handle
        .send(Request::SetSharing {
            policy: SharingPolicy::default(),
        })
        .unwrap();
    let report = download
        .blocking_wait()
        .and_then(Reply::into_download)
        .unwrap();
    assert_eq!(report.bytes, 48 * MIB as u64 + 1000);
}

fn wait_for(within: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ok()
}
