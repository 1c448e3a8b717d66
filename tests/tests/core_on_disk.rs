//! The core on a real games folder: scan, share and manifest together, with
//! the store on a real disk and the transfer registry in between.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use lanspread_core::library::{PayloadState, scan_library};
use lanspread_core::manifest::build_manifest;
use lanspread_core::{GameCatalog, GameId, OutboundTransfers, Store};
use lanspread_tests::GamesFolder;

#[tokio::test]
async fn a_shared_games_manifest_is_stable_and_cached_across_restarts() {
    let catalog = GameCatalog::embedded().unwrap();
    let games = GamesFolder::five_states(&catalog);
    let data = tempfile::tempdir().unwrap();
    let scan = scan_library(games.path(), &catalog).unwrap();
    let transfers = OutboundTransfers::new();
    let shared: Vec<String> = scan
        .shared_games(&transfers)
        .iter()
        .map(|g| g.id.to_string())
        .collect();
    assert_eq!(shared, ["q3a", "ut2004"]);

    let ut = GameId::parse("ut2004").unwrap();
    let version = scan.get(&ut).unwrap().local_version.clone().unwrap();
    let first = {
        let store = Store::open(data.path()).unwrap();
        build_manifest(&games.game_dir("ut2004"), &ut, &version, &store).unwrap()
    };
    assert_eq!(first.hashed_bytes, 305_000);
    assert_eq!(first.manifest.total_len_bytes(), 305_000);
    // A new process (store reopened) finds every hash in the cache.
    let store = Store::open(data.path()).unwrap();
    let second = build_manifest(&games.game_dir("ut2004"), &ut, &version, &store).unwrap();
    assert_eq!(second.hashed_bytes, 0);
    assert_eq!(second.manifest.digest(), first.manifest.digest());
    assert_eq!(store.cached_file_count().unwrap(), 2);

    // The outdated game is on disk but never shared.
    let cs = scan.get(&GameId::parse("cs16").unwrap()).unwrap();
    assert_eq!(cs.payload, PayloadState::Outdated);
}

/// Disk full in the middle of a swap (a small tmpfs, root): `version.ini`
/// cannot be written after the new payload moved in; the old copy and the
/// save in `local/` are back in place before the error returns, and the
/// staged payload is kept for the next try, which succeeds once there is
/// room.
#[tokio::test]
async fn a_disk_full_during_the_swap_leaves_the_old_copy_and_local_intact() {
    if !lanspread_tests::lab::root_or_skip() {
        return;
    }
    let mount = lanspread_tests::lab::SmallDisk::mount("4m").unwrap();
    let games = mount.path();
    let game = games.join("ut2004");
    std::fs::create_dir_all(game.join("local/Saves")).unwrap();
    std::fs::write(game.join("old.pak"), vec![1u8; 1 << 20]).unwrap();
    std::fs::write(game.join("version.ini"), "version=1\n").unwrap();
    std::fs::write(game.join("local/Saves/slot1.sav"), b"level 12").unwrap();
    let staging = games.join(".lanspread-staging/ut2004");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("new.pak"), vec![2u8; 1 << 20]).unwrap();
    // Fill what is left, to the last page.
    let filler = games.join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).unwrap();
        while file.write_all(&[0u8; 4096]).is_ok() {}
    }

    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).unwrap();
    let transfers = OutboundTransfers::new();
    let ut = GameId::parse("ut2004").unwrap();
    let v2 = lanspread_core::GameVersion::parse("2").unwrap();
    let guard = transfers.begin_operation(&ut).await.unwrap();
    let err = lanspread_core::ops::swap_in(games, &ut, &staging, &v2, &store, &guard).unwrap_err();
    eprintln!("the swap on a full disk: {err}");
    assert!(err.to_string().contains("writing"), "{err}");
    assert_eq!(
        std::fs::read(game.join("version.ini")).unwrap(),
        b"version=1\n"
    );
    assert!(game.join("old.pak").exists() && !game.join("new.pak").exists());
    assert_eq!(
        std::fs::read(game.join("local/Saves/slot1.sav")).unwrap(),
        b"level 12"
    );
    assert!(staging.join("new.pak").exists());
    assert!(!games.join(".lanspread-replaced-ut2004").exists());
    assert!(store.intent_games().unwrap().is_empty());

    // Room again: the next try swaps in, the save still there.
    std::fs::remove_file(&filler).unwrap();
    lanspread_core::ops::swap_in(games, &ut, &staging, &v2, &store, &guard).unwrap();
    assert!(game.join("new.pak").exists() && !game.join("old.pak").exists());
    assert_eq!(
        std::fs::read(game.join("local/Saves/slot1.sav")).unwrap(),
        b"level 12"
    );
}

/// An install whose archives say they hold more than the disk has free is
/// refused before anything is written (a small tmpfs, root).
#[tokio::test]
async fn an_install_that_does_not_fit_is_refused_before_writing() {
    if !lanspread_tests::lab::root_or_skip() {
        return;
    }
    let mount = lanspread_tests::lab::SmallDisk::mount("100m").unwrap();
    let game = mount.path().join("ut2004");
    std::fs::create_dir_all(&game).unwrap();
    {
        // 10 MiB stored (not compressed): not a bomb, just too big.
        let mut zip = zip::ZipWriter::new(std::fs::File::create(game.join("game.zip")).unwrap());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        zip.start_file("data.bin", options).unwrap();
        std::io::Write::write_all(&mut zip, &vec![7u8; 10 << 20]).unwrap();
        zip.finish().unwrap();
    }
    std::fs::write(game.join("version.ini"), "version=1\n").unwrap();
    // 70 MiB free: less than the 64 MiB margin plus 10 MiB.
    std::fs::write(mount.path().join("filler"), vec![0u8; 0]).unwrap();
    let free = fs4::available_space(mount.path()).unwrap();
    std::fs::write(
        mount.path().join("filler"),
        vec![0u8; (free - (70 << 20)) as usize],
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).unwrap();
    let transfers = OutboundTransfers::new();
    let ut = GameId::parse("ut2004").unwrap();
    let guard = transfers.begin_operation(&ut).await.unwrap();
    let err = lanspread_core::ops::install(mount.path(), &ut, &store, &guard).unwrap_err();
    eprintln!("{err}");
    assert!(err.to_string().contains("free"), "{err}");
    assert!(!game.join("local").exists());
    assert!(!game.join(".lanspread-install").exists());
}
