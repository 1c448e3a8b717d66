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
