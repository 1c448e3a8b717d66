//! The command line as scripts use it: real processes, real folders.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

mod common;

use std::process::Command;

use lanspread_core::GameCatalog;
use lanspread_tests::GamesFolder;
use serde_json::Value;

/// `lanspread --data DATA`: never the real user's data folder.
fn lanspread(data: &tempfile::TempDir) -> Command {
    common::lanspread(data.path())
}

fn json_of(cmd: &mut Command) -> Value {
    common::json(cmd)
}

#[test]
fn help_lists_the_subcommands() {
    let data = tempfile::tempdir().unwrap();
    let out = lanspread(&data).arg("--help").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for sub in ["catalog", "library"] {
        assert!(text.contains(sub), "{text}");
    }
    assert!(
        text.contains("--catalog") && text.contains("--data"),
        "{text}"
    );
}

#[test]
fn catalog_json_has_forty_games_with_id_title_version() {
    let data = tempfile::tempdir().unwrap();
    let games = json_of(lanspread(&data).args(["catalog", "--json"]));
    let games = games.as_array().unwrap();
    assert!(games.len() >= 40, "{} games", games.len());
    for game in games {
        for field in ["id", "title", "version"] {
            assert!(
                game[field].as_str().is_some_and(|s| !s.is_empty()),
                "{game}"
            );
        }
    }
    let table = lanspread(&data).arg("catalog").output().unwrap();
    assert!(
        String::from_utf8(table.stdout)
            .unwrap()
            .contains("Unreal Tournament 2004")
    );
    // Reading the catalog creates nothing in the data folder.
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0);
}

#[test]
fn library_json_reports_every_state() {
    let data = tempfile::tempdir().unwrap();
    let catalog = GameCatalog::embedded().unwrap();
    let folder = GamesFolder::five_states(&catalog);
    let rows = json_of(
        lanspread(&data)
            .args(["library", "--json", "--games"])
            .arg(folder.path()),
    );
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 5);
    let row = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap().clone();
    let ut_version = catalog.get_str("ut2004").unwrap().version.to_string();

    let ut = row("ut2004");
    assert_eq!(ut["in_catalog"], true);
    assert_eq!(ut["payload"], "current");
    assert_eq!(ut["local_version"], ut_version.as_str());
    assert_eq!(ut["catalog_version"], ut_version.as_str());
    assert_eq!(ut["installed"], false);
    assert_eq!(ut["shareable"], true);

    let cs = row("cs16");
    assert_eq!(cs["payload"], "outdated");
    assert_eq!(cs["local_version"], "19990619");
    assert_eq!(cs["shareable"], false);

    let aoe = row("aoe2");
    assert_eq!(aoe["payload"], "incomplete");
    assert_eq!(aoe["local_version"], Value::Null);
    assert_eq!(aoe["shareable"], false);

    let q3 = row("q3a");
    assert_eq!(q3["payload"], "current");
    assert_eq!(q3["installed"], true);
    assert_eq!(q3["shareable"], true);

    let unknown = row("my-homebrew");
    assert_eq!(unknown["in_catalog"], false);
    assert_eq!(unknown["catalog_version"], Value::Null);
    assert_eq!(unknown["shareable"], false);
    // Never touched: its file is still exactly there.
    let readme = folder.game_dir("my-homebrew").join("readme.txt");
    assert_eq!(std::fs::read(readme).unwrap().len(), 100);

    let table = lanspread(&data)
        .args(["library", "--games"])
        .arg(folder.path())
        .output()
        .unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.contains("(not in catalog)") && table.contains("outdated"),
        "{table}"
    );
}

#[test]
fn an_organisers_catalog_replaces_the_embedded_one() {
    let data = tempfile::tempdir().unwrap();
    let catalog = GameCatalog::embedded().unwrap();
    let folder = GamesFolder::five_states(&catalog);
    let newer = data.path().join("newer.ron");
    let text = lanspread_core::catalog::EMBEDDED_CATALOG_RON.replacen(
        &format!(
            "version: \"{}\"",
            catalog.get_str("ut2004").unwrap().version
        ),
        "version: \"20991231\"",
        1,
    );
    std::fs::write(&newer, text).unwrap();
    let rows = json_of(
        lanspread(&data)
            .arg("--catalog")
            .arg(&newer)
            .args(["library", "--json", "--games"])
            .arg(folder.path()),
    );
    let rows = rows.as_array().unwrap();
    let ut = rows.iter().find(|r| r["id"] == "ut2004").unwrap();
    assert_eq!(ut["payload"], "outdated");
    assert_eq!(ut["catalog_version"], "20991231");
    assert_eq!(ut["shareable"], false);
}

#[test]
fn a_broken_or_missing_catalog_given_on_the_command_line_is_an_error() {
    let data = tempfile::tempdir().unwrap();
    let broken = data.path().join("party.ron");
    std::fs::write(&broken, "(\n  edition: \"x\",\n  games: [ (id: 7) ],\n)\n").unwrap();
    let games = tempfile::tempdir().unwrap();
    for (file, needle) in [
        (&broken, "line 3"),
        (&data.path().join("missing.ron"), "missing.ron"),
    ] {
        for args in [
            vec!["catalog", "--json"],
            vec![
                "serve",
                "--no-discovery",
                "--listen",
                "127.0.0.1:0",
                "--games",
            ],
        ] {
            let mut cmd = lanspread(&data);
            cmd.arg("--catalog").arg(file).args(&args);
            if args[0] == "serve" {
                cmd.arg(games.path());
            }
            let out = cmd.output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains(needle), "{stderr}");
            assert!(out.stdout.is_empty(), "nothing was listed or served");
        }
    }
}

#[test]
fn a_missing_games_folder_is_a_clear_error() {
    let data = tempfile::tempdir().unwrap();
    let out = lanspread(&data)
        .args(["library", "--games", "/no/such/folder"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/no/such/folder") && stderr.contains("--games"),
        "{stderr}"
    );
}

#[test]
fn catalog_pin_writes_a_catalog_with_the_digests_of_good_copies() {
    let catalog = GameCatalog::embedded().unwrap();
    let games = GamesFolder::five_states(&catalog);
    let data = tempfile::tempdir().unwrap();
    let out_file = data.path().join("pinned.ron");
    let out = lanspread(&data)
        .args(["catalog", "pin", "--games"])
        .arg(games.path())
        .arg("--out")
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pinned = GameCatalog::from_file(&out_file).unwrap();
    // The games at the catalog's version are pinned, the others are not.
    let pinned_ids: Vec<&str> = pinned
        .entries()
        .filter(|e| e.pinned_manifest().is_some())
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(pinned_ids, ["q3a", "ut2004"]);
    // The pin is the digest of the copy's manifest.
    let scratch = tempfile::tempdir().unwrap();
    let store = lanspread_core::Store::open(scratch.path()).unwrap();
    let ut = pinned.get_str("ut2004").unwrap();
    let manifest = lanspread_core::manifest::build_manifest(
        &games.game_dir("ut2004"),
        &ut.id,
        &ut.version,
        &store,
    )
    .unwrap()
    .manifest;
    assert_eq!(ut.pinned_manifest(), Some(manifest.digest()));
    // The pinned catalog is a catalog like any other (same games, versions).
    assert_eq!(pinned.len(), catalog.len());
    assert!(
        !data.path().join("store").exists(),
        "no data folder was made"
    );
}

/// `lanspread play ID` with no lanspread running: the catalog's launch
/// entry is started from `local/` of `--games DIR`, and the command ends.
#[cfg(unix)]
#[test]
fn play_starts_an_installed_game_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog_file = dir.path().join("party.ron");
    std::fs::write(
        &catalog_file,
        lanspread_tests::catalog_text_with_ut_launch("bin/start.sh", &["-windowed"]),
    )
    .unwrap();
    let catalog = GameCatalog::from_file(&catalog_file).unwrap();
    let folder = GamesFolder::new();
    folder
        .add_payload("ut2004", &[("ut2004.zip", 1000)], 1)
        .write_catalog_version("ut2004", &catalog);
    let play = |folder: &GamesFolder| {
        lanspread(&data)
            .arg("--catalog")
            .arg(&catalog_file)
            .args(["play", "ut2004", "--games"])
            .arg(folder.path())
            .output()
            .unwrap()
    };
    // Not installed yet: a clear error, nothing started.
    let out = play(&folder);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not installed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    folder.add_local_script("ut2004", "bin/start.sh", "echo \"$@\" > played");
    let out = play(&folder);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Unreal Tournament 2004 started"));
    let marker = folder.path().join("ut2004/local/bin/played");
    let started = std::time::Instant::now();
    while !marker.exists() {
        assert!(started.elapsed().as_secs() < 5, "the game never ran");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().trim(),
        "-windowed"
    );
    // The embedded catalog says nothing of how to start Counter-Strike.
    let out = lanspread(&data)
        .args(["play", "cs16", "--games"])
        .arg(folder.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not say how to start"));
}
