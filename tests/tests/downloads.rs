//! Aggregated downloads between real peers on loopback: generated payloads
//! of random content, seeders that die, lie, update or remove mid-transfer.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use lanspread_core::{GameCatalog, GameId};
use lanspread_net::download::DownloadReport;
use lanspread_net::{Reply, Request};
use lanspread_tests::{GamesFolder, TestPeer, tamper_with, tree_hashes};

const MIB: usize = 1024 * 1024;

fn catalog() -> GameCatalog {
    GameCatalog::embedded().unwrap()
}

fn id(s: &str) -> GameId {
    GameId::parse(s).unwrap()
}

/// A seeder folder of ut2004 (three files, `mib` MiB in all), identical for
/// the same `seed`.
fn ut_folder(catalog: &GameCatalog, mib: usize, seed: u64) -> GamesFolder {
    let folder = GamesFolder::new();
    folder
        .add_payload(
            "ut2004",
            &[
                ("ut2004.zip", mib * MIB - 300_000),
                ("Maps/extra.pak", 299_000),
                ("readme.txt", 1000),
            ],
            seed,
        )
        .write_catalog_version("ut2004", catalog);
    folder
}

/// Starts a seeder; `limit_mbit` caps its uploads so a test can act mid-way.
fn seeder(
    folder: &GamesFolder,
    catalog: &GameCatalog,
    limit_mbit: Option<u64>,
    peers: &[SocketAddr],
) -> TestPeer {
    let peer = TestPeer::start_with(Some(folder.path()), catalog, peers, |config| {
        config.upload_limit_bytes_per_sec = limit_mbit.map(|m| m * 125_000);
    });
    assert!(
        peer.handle
            .wait_until(Duration::from_secs(20), |s| !s.local_games.is_empty()),
        "the seeder never announced its game"
    );
    peer
}

/// A downloader with its own empty games folder, waiting until it sees
/// `sources` peers offering ut2004.
fn downloader(
    catalog: &GameCatalog,
    peers: &[SocketAddr],
    sources: usize,
) -> (GamesFolder, TestPeer) {
    let folder = GamesFolder::new();
    let peer = TestPeer::start(Some(folder.path()), catalog, peers);
    assert!(
        peer.handle.wait_until(Duration::from_secs(10), |s| {
            s.peers
                .values()
                .filter(|p| p.games.iter().any(|g| g.id.as_str() == "ut2004"))
                .count()
                >= sources
        }),
        "the downloader never saw its sources"
    );
    (folder, peer)
}

fn share_of(report: &DownloadReport, addr: SocketAddr) -> &lanspread_net::download::PeerShare {
    report.peers.iter().find(|p| p.addr == addr).unwrap()
}

/// Blocks until the downloader's progress on ut2004 passes `fraction`.
fn wait_for_progress(peer: &TestPeer, fraction: f64) {
    assert!(
        peer.handle.wait_until(Duration::from_secs(30), |s| {
            s.downloads.get("ut2004").is_some_and(|p| {
                p.total_bytes > 0 && p.done_bytes as f64 >= fraction * p.total_bytes as f64
            })
        }),
        "the download never got going"
    );
}

fn assert_same_game(a: &Path, b: &Path) {
    assert_eq!(
        tree_hashes(&a.join("ut2004")),
        tree_hashes(&b.join("ut2004"))
    );
}

#[test]
fn three_seeders_one_downloader_identical_and_everyone_contributes() {
    let catalog = catalog();
    let folders: Vec<GamesFolder> = (0..3).map(|_| ut_folder(&catalog, 24, 1)).collect();
    let seeders: Vec<TestPeer> = folders
        .iter()
        .map(|f| seeder(f, &catalog, Some(80), &[]))
        .collect();
    // Capped at 10 MB/s each, the download lasts long enough that a seeder
    // whose runtime is briefly descheduled still gets to contribute.
    let addrs: Vec<SocketAddr> = seeders.iter().map(TestPeer::addr).collect();
    let (target, peer) = downloader(&catalog, &addrs, 3);
    let report = peer.download("ut2004").unwrap();
    assert_same_game(folders[0].path(), target.path());
    for addr in &addrs {
        let share = share_of(&report, *addr);
        assert!(share.bytes > 0 && !share.dropped, "{share:?}");
    }
    assert_eq!(report.bytes, 24 * MIB as u64);
    assert_eq!(report.pieces_fetched, report.total_pieces);
    // No staging or journal is left behind.
    assert!(!target.path().join(".lanspread-staging").exists());
    // The new copy is shared in turn.
    assert!(
        peer.handle
            .wait_until(Duration::from_secs(15), |s| s.local_games.len() == 1)
    );
}

#[test]
fn a_seeder_killed_mid_download_does_not_stop_it() {
    let catalog = catalog();
    let folders: Vec<GamesFolder> = (0..2).map(|_| ut_folder(&catalog, 16, 2)).collect();
    let mut seeders: Vec<Option<TestPeer>> = folders
        .iter()
        .map(|f| Some(seeder(f, &catalog, Some(40), &[])))
        .collect();
    let addrs: Vec<SocketAddr> = seeders.iter().map(|s| s.as_ref().unwrap().addr()).collect();
    let (target, peer) = downloader(&catalog, &addrs, 2);
    let answer = peer.ask(Request::Download { game: id("ut2004") });
    wait_for_progress(&peer, 0.2);
    drop(seeders[0].take());
    let report = answer
        .blocking_wait()
        .and_then(Reply::into_download)
        .unwrap();
    assert_same_game(folders[1].path(), target.path());
    let killed = share_of(&report, addrs[0]);
    assert!(killed.dropped && killed.reason.is_some(), "{killed:?}");
    assert!(!share_of(&report, addrs[1]).dropped);
}

/// Flips one byte in the middle of a file, keeping size and mtime.
fn corrupt_keeping_mtime(path: &Path) {
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

#[test]
fn a_seeder_with_flipped_bytes_is_outvoted() {
    let catalog = catalog();
    // The third has the same sizes and other bytes: its manifest disagrees.
    let folders = [
        ut_folder(&catalog, 8, 3),
        ut_folder(&catalog, 8, 3),
        tampered_folder(&catalog, 8, 3),
    ];
    let seeders: Vec<TestPeer> = folders
        .iter()
        .map(|f| seeder(f, &catalog, None, &[]))
        .collect();
    let addrs: Vec<SocketAddr> = seeders.iter().map(TestPeer::addr).collect();
    let (target, peer) = downloader(&catalog, &addrs, 3);
    let report = peer.download("ut2004").unwrap();
    assert_same_game(folders[0].path(), target.path());
    let liar = share_of(&report, addrs[2]);
    assert_eq!(liar.bytes, 0);
    assert!(liar.dropped);
    assert!(
        liar.reason.as_deref().unwrap().contains("disagrees"),
        "{liar:?}"
    );
}

#[test]
fn a_seeder_lying_only_in_chunk_data_is_dropped_on_the_first_bad_chunk() {
    let catalog = catalog();
    let folders: Vec<GamesFolder> = (0..3).map(|_| ut_folder(&catalog, 8, 4)).collect();
    // The honest seeders are slowed down, so the liar's answers arrive first
    // (otherwise the honest ones may finish and steal its chunks before it
    // ever delivers one, which is fine for the user but tests nothing).
    let mut seeders: Vec<TestPeer> = folders[..2]
        .iter()
        .map(|f| seeder(f, &catalog, Some(40), &[]))
        .collect();
    // The liar's manifest is built and cached by a first run; with it
    // stopped (so no rescan sees a half-written file), its bytes go bad
    // behind the cache, keeping sizes and mtimes; then it serves again.
    let liar_data = tempfile::tempdir().unwrap();
    let keep_data = |config: &mut lanspread_net::PeerConfig| {
        config.data_dir = Some(liar_data.path().to_path_buf());
    };
    let first_run = TestPeer::start_with(Some(folders[2].path()), &catalog, &[], keep_data);
    assert!(
        first_run
            .handle
            .wait_until(Duration::from_secs(20), |s| !s.local_games.is_empty()),
        "the liar never announced its game"
    );
    drop(first_run);
    let zip = folders[2].game_dir("ut2004").join("ut2004.zip");
    let mtime = std::fs::metadata(&zip).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&zip).unwrap();
    // Every chunk holds a bad byte: one every 512 KiB (a chunk is at least
    // 768 KiB unless it is a file's last), and the last one.
    for at in (10..bytes.len()).step_by(512 * 1024) {
        bytes[at] ^= 0xff;
    }
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&zip, bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&zip)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    corrupt_keeping_mtime(&folders[2].game_dir("ut2004").join("Maps/extra.pak"));
    corrupt_keeping_mtime(&folders[2].game_dir("ut2004").join("readme.txt"));
    let liar = TestPeer::start_with(Some(folders[2].path()), &catalog, &[], keep_data);
    assert!(
        liar.handle
            .wait_until(Duration::from_secs(20), |s| !s.local_games.is_empty()),
        "the liar never announced its game again"
    );
    seeders.push(liar);
    let addrs: Vec<SocketAddr> = seeders.iter().map(TestPeer::addr).collect();
    let (target, peer) = downloader(&catalog, &addrs, 3);
    let report = peer.download("ut2004").unwrap();
    // Compare with an honest seeder: the liar's folder is now different.
    assert_same_game(folders[0].path(), target.path());
    let liar = share_of(&report, addrs[2]);
    assert!(liar.dropped, "{report:?}");
    assert!(
        liar.reason.as_deref().unwrap().contains("chunk hash"),
        "{liar:?}"
    );
    assert_eq!(liar.bytes, 0, "no byte of the liar was kept");
}

#[test]
fn a_newer_catalog_stops_uploads_at_once_and_update_swaps_after_zero() {
    let old_catalog = catalog();
    let newer_text = lanspread_tests::catalog_text_with_ut_version("20991231");
    let newer = GameCatalog::parse(&newer_text, "newer.ron").unwrap();
    let catalog_dir = tempfile::tempdir().unwrap();
    let newer_file = catalog_dir.path().join("newer.ron");
    std::fs::write(&newer_file, &newer_text).unwrap();

    // N already has the new version; A and B seed the old one to D.
    let new_folder = ut_folder(&newer, 6, 50);
    let n = seeder(&new_folder, &newer, None, &[]);
    let folders: Vec<GamesFolder> = (0..2).map(|_| ut_folder(&old_catalog, 16, 5)).collect();
    let a = seeder(&folders[0], &old_catalog, Some(40), &[n.addr()]);
    let b = seeder(&folders[1], &old_catalog, Some(40), &[]);
    let (target, d) = downloader(&old_catalog, &[a.addr(), b.addr()], 2);
    let download = d.ask(Request::Download { game: id("ut2004") });
    wait_for_progress(&d, 0.15);
    let ut = id("ut2004");
    let uploading = a.handle.state();
    assert!(
        uploading.transfers.outbound_count(&ut) > 0,
        "A is uploading"
    );
    // ...and knows to whom: the id D's certificate proves.
    let receivers: Vec<String> = uploading
        .transfers
        .receivers_of(&ut)
        .map(str::to_owned)
        .collect();
    assert_eq!(receivers, vec![d.handle.peer_id()]);

    // A is handed the newer catalog: its uploads of the old version stop now.
    let loaded_at = Instant::now();
    let loaded = a
        .ask(Request::LoadCatalog {
            path: newer_file.clone(),
        })
        .blocking_wait()
        .and_then(Reply::into_message)
        .unwrap();
    assert!(loaded.contains("newer.ron"), "{loaded}");
    assert!(
        a.handle
            .wait_until(Duration::from_secs(1), |s| s.transfers.outbound_count(&ut)
                == 0)
    );
    eprintln!(
        "uploads stopped {:?} after the catalog load",
        loaded_at.elapsed()
    );
    // ...and it no longer announces the game it cannot serve.
    assert!(
        a.handle
            .wait_until(Duration::from_secs(3), |s| s.local_games.is_empty())
    );

    // A updates from N, which has the new version.
    let message = a
        .ask(Request::Update { game: ut.clone() })
        .blocking_wait()
        .and_then(Reply::into_message)
        .unwrap();
    assert!(message.contains("updated"), "{message}");
    assert_same_game(new_folder.path(), folders[0].path());
    assert_eq!(a.handle.state().transfers.outbound_count(&ut), 0);

    // D finished from B, with the old version, byte for byte.
    let report = download
        .blocking_wait()
        .and_then(Reply::into_download)
        .unwrap();
    assert_same_game(folders[1].path(), target.path());
    let dropped = share_of(&report, a.addr());
    assert!(dropped.dropped, "{dropped:?}");
}

#[test]
fn removing_a_game_while_it_is_uploaded_stops_the_uploads_and_hides_it() {
    let catalog = catalog();
    let folders: Vec<GamesFolder> = (0..2).map(|_| ut_folder(&catalog, 16, 6)).collect();
    let a = seeder(&folders[0], &catalog, Some(40), &[]);
    let b = seeder(&folders[1], &catalog, Some(40), &[]);
    let (target, d) = downloader(&catalog, &[a.addr(), b.addr()], 2);
    let download = d.ask(Request::Download { game: id("ut2004") });
    wait_for_progress(&d, 0.15);
    let removed = a
        .ask(Request::Remove {
            game: id("ut2004"),
            keep_local: false,
        })
        .blocking_wait()
        .and_then(Reply::into_message)
        .unwrap();
    assert!(removed.contains("removed"), "{removed}");
    assert!(!folders[0].game_dir("ut2004").exists());
    // D's view of A loses the game at once.
    let a_addr = a.addr();
    assert!(d.waits_to_see(a_addr, &[], Duration::from_secs(2)));
    let report = download
        .blocking_wait()
        .and_then(Reply::into_download)
        .unwrap();
    assert_same_game(folders[1].path(), target.path());
    assert!(share_of(&report, a_addr).dropped);
}

#[test]
fn losing_every_peer_is_a_clear_error_and_the_game_folder_is_untouched() {
    let catalog = catalog();
    let folder = ut_folder(&catalog, 16, 7);
    let mut only = Some(seeder(&folder, &catalog, Some(40), &[]));
    let addr = only.as_ref().unwrap().addr();
    let (target, d) = downloader(&catalog, &[addr], 1);
    let download = d.ask(Request::Download { game: id("ut2004") });
    wait_for_progress(&d, 0.1);
    drop(only.take());
    let err = download.blocking_wait().unwrap_err();
    assert!(err.to_string().contains("every peer was lost"), "{err}");
    assert!(!target.game_dir("ut2004").exists());
    // What was verified stays staged for a resume.
    assert!(target.path().join(".lanspread-staging/ut2004").is_dir());
}

#[test]
fn no_peer_with_the_catalog_version_is_a_clear_error_and_changes_nothing() {
    let catalog = catalog();
    let outdated = GamesFolder::new();
    outdated
        .add_payload("ut2004", &[("ut2004.zip", 10_000)], 8)
        .write_version("ut2004", "19990101");
    let a = TestPeer::start(Some(outdated.path()), &catalog, &[]);
    let target = GamesFolder::new();
    let d = TestPeer::start(Some(target.path()), &catalog, &[a.addr()]);
    assert!(
        d.handle
            .wait_until(Duration::from_secs(10), |s| s.peers.len() == 1)
    );
    let err = d.download("ut2004").unwrap_err();
    assert!(
        err.to_string().contains("no peer on the LAN has ut2004"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 0);
    let err = d.download("not-a-game").unwrap_err();
    assert!(err.to_string().contains("not in the catalog"), "{err}");
}

#[test]
fn a_downloader_serves_what_it_verified_and_pausing_stops_those_uploads() {
    let catalog = catalog();
    let ut = id("ut2004");
    let folder = ut_folder(&catalog, 24, 11);
    let seeder = seeder(&folder, &catalog, Some(40), &[]);
    // D1 uploads at 8 Mbit/s, so its uploads last long enough to be seen.
    let first_dir = GamesFolder::new();
    let first = TestPeer::start_with(Some(first_dir.path()), &catalog, &[seeder.addr()], |c| {
        c.upload_limit_bytes_per_sec = Some(1_000_000);
    });
    assert!(first.waits_to_see(seeder.addr(), &["ut2004"], Duration::from_secs(10)));
    let first_download = first.ask(Request::Download { game: ut.clone() });
    wait_for_progress(&first, 0.3);
    // D2 knows the seeder and D1, and sees D1 as a partial source.
    let second_dir = GamesFolder::new();
    let second = TestPeer::start(
        Some(second_dir.path()),
        &catalog,
        &[seeder.addr(), first.addr()],
    );
    assert!(second.handle.wait_until(Duration::from_secs(10), |s| {
        s.peers.values().any(|p| {
            p.addr == first.addr()
                && p.games
                    .iter()
                    .any(|g| g.id == ut && g.partial.as_ref().is_some_and(|h| h.have.count() > 0))
        })
    }));
    let second_download = second.ask(Request::Download { game: ut.clone() });
    // D2 takes verified chunks from D1...
    assert!(
        second.handle.wait_until(Duration::from_secs(15), |s| {
            s.downloads.get("ut2004").is_some_and(|d| {
                d.peers
                    .iter()
                    .any(|p| p.addr == first.addr() && p.bytes > 0)
            })
        }),
        "D2 took nothing from D1"
    );
    // ... and D1's uploads of them are counted like any upload.
    assert!(
        first
            .handle
            .wait_until(Duration::from_secs(10), |s| s.transfers.outbound_count(&ut)
                > 0),
        "D1 never served D2"
    );
    // Pausing D1's download stops its partial uploads at once.
    first
        .handle
        .send(Request::CancelDownload { game: ut.clone() })
        .unwrap();
    let paused = Instant::now();
    assert!(
        first.handle.wait_until(Duration::from_millis(250), |s| s
            .transfers
            .outbound_count(&ut)
            == 0),
        "D1's partial uploads outlived the pause"
    );
    eprintln!(
        "partial uploads stopped {:?} after the pause",
        paused.elapsed()
    );
    let cancelled = first_download.blocking_wait().unwrap_err();
    assert!(cancelled.to_string().contains("cancelled"), "{cancelled}");
    // D2 finishes from the seeder, byte for byte, and D1 had helped.
    let report = second_download
        .blocking_wait()
        .and_then(Reply::into_download)
        .unwrap();
    assert_same_game(folder.path(), second_dir.path());
    let from_first = share_of(&report, first.addr());
    assert!(from_first.bytes > 0, "{report:?}");
    assert!(from_first.dropped, "{from_first:?}");
}

/// A folder of ut2004 like [`ut_folder`] with bytes flipped in its big
/// file (same sizes): its manifest disagrees with the honest one.
fn tampered_folder(catalog: &GameCatalog, mib: usize, seed: u64) -> GamesFolder {
    let folder = ut_folder(catalog, mib, seed);
    tamper_with(&folder.game_dir("ut2004").join("ut2004.zip"));
    folder
}

/// One honest seeder and one with a tampered copy, both typed in, the
/// download asked for at once: the vote waits for both and a 1 vs 1
/// conflict installs nothing, whichever address comes first.
#[test]
fn a_one_against_one_conflict_installs_nothing_in_either_order() {
    let catalog = catalog();
    let honest_folder = ut_folder(&catalog, 4, 5);
    let tampered = tampered_folder(&catalog, 4, 5);
    let honest = seeder(&honest_folder, &catalog, None, &[]);
    let liar = seeder(&tampered, &catalog, None, &[]);
    for order in [[honest.addr(), liar.addr()], [liar.addr(), honest.addr()]] {
        let target = GamesFolder::new();
        let peer = TestPeer::start(Some(target.path()), &catalog, &order);
        let err = peer.download("ut2004").unwrap_err();
        assert!(err.to_string().contains("disagree"), "{err}");
        assert!(!target.game_dir("ut2004").exists(), "nothing is installed");
    }
}

/// A download from one honest seeder, and two PCs with another copy join
/// before it ends: just before the swap the copy downloaded no longer has
/// the majority, so nothing is installed (and the chunks stay for later).
#[test]
fn a_majority_that_changed_before_the_swap_stops_the_install() {
    let catalog = catalog();
    let honest_folder = ut_folder(&catalog, 8, 6);
    let honest = seeder(&honest_folder, &catalog, Some(16), &[]);
    let (target, peer) = downloader(&catalog, &[honest.addr()], 1);
    let ut = id("ut2004");
    let answer = peer.ask(Request::Download { game: ut });
    wait_for_progress(&peer, 0.1);
    let others: Vec<GamesFolder> = (0..2).map(|_| tampered_folder(&catalog, 8, 6)).collect();
    let liars: Vec<TestPeer> = others
        .iter()
        .map(|f| seeder(f, &catalog, None, &[]))
        .collect();
    for liar in &liars {
        peer.handle
            .ask_blocking(Request::AddPeer {
                target: liar.addr().to_string(),
            })
            .unwrap();
    }
    let err = answer.blocking_wait().unwrap_err();
    assert!(
        err.to_string().contains("no longer has the majority"),
        "{err}"
    );
    assert!(!target.game_dir("ut2004").exists(), "nothing is installed");
    // The verified chunks stay for a later download.
    let staged = target.path().join(".lanspread-staging").join("ut2004");
    assert!(staged.is_dir(), "the staging is kept");
}

/// The organiser pinned the right copy: one honest seeder against three
/// PCs with another copy (three voices, a majority without the pin) still
/// installs the honest copy, and the others are named.
#[test]
fn a_pinned_manifest_wins_over_any_number_of_liars() {
    let plain = catalog();
    let honest_folder = ut_folder(&plain, 4, 8);
    // The pin, as `catalog pin` computes it from a good copy.
    let scratch = tempfile::tempdir().unwrap();
    let store = lanspread_core::Store::open(scratch.path()).unwrap();
    let ut = id("ut2004");
    let version = plain.expected_version(&ut).unwrap().clone();
    let good = lanspread_core::manifest::build_manifest(
        &honest_folder.game_dir("ut2004"),
        &ut,
        &version,
        &store,
    )
    .unwrap()
    .manifest;
    let pins = std::collections::BTreeMap::from([(ut.clone(), good.digest())]);
    let text = plain.to_ron_with_pins(&pins).unwrap();
    let pinned = GameCatalog::parse(&text, "pinned.ron").unwrap();
    let liar_folders: Vec<GamesFolder> = (0..3).map(|_| tampered_folder(&pinned, 4, 8)).collect();
    let honest = seeder(&honest_folder, &pinned, None, &[]);
    let liars: Vec<TestPeer> = liar_folders
        .iter()
        .map(|f| seeder(f, &pinned, None, &[]))
        .collect();
    let mut addrs: Vec<SocketAddr> = liars.iter().map(TestPeer::addr).collect();
    addrs.push(honest.addr());
    let (target, peer) = downloader(&pinned, &addrs, 4);
    let report = peer.download("ut2004").unwrap();
    assert_same_game(honest_folder.path(), target.path());
    for liar in &liars {
        let share = share_of(&report, liar.addr());
        assert_eq!(share.bytes, 0);
        assert!(
            share.reason.as_deref().unwrap().contains("pins"),
            "{share:?}"
        );
    }
}

/// A seeder installs (and then uninstalls) the game while a PC downloads
/// it: only `local/` changes, so its uploads go on, the game is never
/// hidden, and the download takes every byte from it.
#[test]
fn installing_while_others_download_leaves_the_uploads_alone() {
    let catalog = catalog();
    let folder = GamesFolder::new();
    folder
        .add_payload("ut2004", &[("game.pak", 8 * MIB), ("readme.txt", 1000)], 11)
        .write_catalog_version("ut2004", &catalog);
    let seeder = seeder(&folder, &catalog, Some(24), &[]);
    let ut = id("ut2004");
    // Whether the seeder ever hid the game or stopped an upload.
    let mut watch = seeder.handle.transfers().subscribe();
    let hidden = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = hidden.clone();
    let watched = ut.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            while watch.changed().await.is_ok() {
                if watch.borrow_and_update().is_active(&watched) {
                    seen.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    });
    let (target, peer) = downloader(&catalog, &[seeder.addr()], 1);
    let answer = peer.ask(Request::Download { game: ut.clone() });
    wait_for_progress(&peer, 0.2);
    let installed = seeder
        .ask(Request::Install { game: ut.clone() })
        .blocking_wait();
    assert!(installed.is_ok(), "{installed:?}");
    assert!(folder.game_dir("ut2004").join("local/game.pak").is_file());
    assert!(
        seeder.handle.state().local_games.iter().any(|g| g.id == ut),
        "still shared"
    );
    let uninstalled = seeder
        .ask(Request::Uninstall { game: ut.clone() })
        .blocking_wait();
    assert!(uninstalled.is_ok(), "{uninstalled:?}");
    let report = answer
        .blocking_wait()
        .and_then(Reply::into_download)
        .unwrap();
    assert_same_game(folder.path(), target.path());
    let share = share_of(&report, seeder.addr());
    assert!(!share.dropped, "{share:?}");
    assert!(
        !hidden.load(std::sync::atomic::Ordering::Relaxed),
        "the seeder hid the game or stopped its uploads"
    );
    assert_eq!(seeder.handle.transfers().snapshot().local.len(), 0);
}
