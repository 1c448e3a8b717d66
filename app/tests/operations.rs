//! `get`, `install`, `uninstall`, `remove`, `update` and `catalog load` as
//! real processes: killed downloads resume, hostile archives are refused,
//! errors are clear and leave the disk as it was.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{eventually, json, lanspread, last_json_line, serve, serve_with, status};
use lanspread_core::GameCatalog;
use lanspread_core::download::MAX_WINDOW;
use lanspread_tests::{GamesFolder, tree_hashes};

const MIB: usize = 1024 * 1024;

fn catalog() -> GameCatalog {
    GameCatalog::embedded().unwrap()
}

/// Runs `get` until its download, as `status` shows it on `data`, is
/// `far_enough`; kills it (no goodbye, like a crash); runs `meanwhile`;
/// then runs `get` again to the end and returns that run's output.
fn kill_when_then_rerun(
    get: impl Fn() -> std::process::Command,
    data: &std::path::Path,
    far_enough: impl Fn(&serde_json::Value) -> Option<bool>,
    meanwhile: impl FnOnce(),
) -> std::process::Output {
    let mut first = get()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(30), || {
        status(data).and_then(|s| {
            let download = s["downloads"].as_array()?.first()?.clone();
            far_enough(&download)?.then_some(())
        })
    });
    first.kill().unwrap();
    first.wait().unwrap();
    meanwhile();
    get().output().unwrap()
}

#[test]
fn a_killed_download_resumes_and_refetches_only_what_was_in_flight() {
    let catalog = catalog();
    let seed = GamesFolder::new();
    seed.add_payload(
        "ut2004",
        &[("ut2004.zip", 48 * MIB), ("extra.pak", 2 * MIB)],
        21,
    )
    .write_catalog_version("ut2004", &catalog);
    let seed_data = tempfile::tempdir().unwrap();
    // 200 Mbit/s: the download takes about two seconds.
    let seeder = serve_with(
        seed_data.path(),
        seed.path(),
        "Seeder",
        &[],
        &["--upload-limit", "200"],
    );
    eventually(Duration::from_secs(20), || {
        status(seed_data.path()).filter(|s| s["games"].as_array().is_some_and(|g| !g.is_empty()))
    });

    let target = GamesFolder::new();
    let data = tempfile::tempdir().unwrap();
    let get = |data: &std::path::Path| {
        let mut cmd = lanspread(data);
        cmd.args(["get", "ut2004", "--no-discovery", "--json", "--peer"])
            .arg(seeder.addr.to_string())
            .arg("--games")
            .arg(target.path());
        cmd
    };
    // Killed (no goodbye, like a crash) once it is well under way.
    let out = kill_when_then_rerun(
        || get(data.path()),
        data.path(),
        |download| {
            let done = download["done_bytes"].as_u64()?;
            let total = download["total_bytes"].as_u64()?;
            Some(total > 0 && done * 10 >= total * 3)
        },
        || {
            assert!(
                !target.game_dir("ut2004").exists(),
                "nothing looks complete before it is"
            );
        },
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = last_json_line(&out.stdout);
    let total = report["total_pieces"].as_u64().unwrap();
    let fetched = report["pieces_fetched"].as_u64().unwrap();
    let journaled = report["pieces_journaled"].as_u64().unwrap();
    let rescued = report["pieces_rescued"].as_u64().unwrap();
    assert_eq!(fetched + journaled + rescued, total, "{report}");
    assert!(journaled + rescued > 0, "the second run resumed: {report}");
    for field in ["id", "version", "bytes", "seconds", "peers"] {
        assert!(!report[field].is_null(), "{field} missing: {report}");
    }
    assert_eq!(report["peers"][0]["addr"], seeder.addr.to_string());
    assert_eq!(
        tree_hashes(&seed.game_dir("ut2004")),
        tree_hashes(&target.game_dir("ut2004"))
    );

    // The seeder counted every chunk it sent whole: the excess over the
    // game's chunk count is what was fetched twice.
    let served = status(seed_data.path()).unwrap()["chunks_served"]
        .as_u64()
        .unwrap();
    let refetched = served - total;
    eprintln!(
        "resume: {journaled} journaled, {rescued} rescued, {fetched} fetched again; {refetched} chunks sent twice"
    );
    assert!(
        refetched <= 2 * MAX_WINDOW as u64,
        "{refetched} chunks fetched twice; at most the in-flight ones may be"
    );
}

fn write_tar(path: &std::path::Path, entries: &[(&str, &[u8])]) {
    let mut bytes = Vec::new();
    for (name, data) in entries {
        // A hand-built header, so hostile names reach the archive as they are.
        let mut header = [0u8; 512];
        header[..name.len()].copy_from_slice(name.as_bytes());
        header[100..107].copy_from_slice(b"0000644");
        header[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        header[136..147].copy_from_slice(b"00000000000");
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
        header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(data);
        bytes.resize(bytes.len().div_ceil(512) * 512, 0);
    }
    bytes.resize(bytes.len() + 1024, 0);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn install_uninstall_remove_and_a_hostile_archive() {
    let catalog = catalog();
    let games = GamesFolder::new();
    let game = games.game_dir("q3a");
    std::fs::create_dir_all(&game).unwrap();
    write_tar(
        &game.join("q3a.tar"),
        &[("baseq3/pak0.pk3", b"pak"), ("quake3.exe", b"exe")],
    );
    games.write_catalog_version("q3a", &catalog);
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        lanspread(data.path())
            .args(args)
            .arg("--games")
            .arg(games.path())
            .output()
            .unwrap()
    };
    let out = run(&["install", "q3a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(game.join("local/baseq3/pak0.pk3")).unwrap(),
        b"pak"
    );
    let out = run(&["uninstall", "q3a"]);
    assert!(out.status.success());
    assert!(!game.join("local").exists() && game.join("q3a.tar").exists());

    // An archive entry that climbs out: refused, nothing written outside.
    write_tar(
        &game.join("q3a.tar"),
        &[("ok.txt", b"ok"), ("../../evil", b"pwned")],
    );
    let out = run(&["install", "q3a"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("../../evil") && stderr.contains("not a safe path"),
        "{stderr}"
    );
    assert!(!games.path().join("evil").exists());
    assert!(!games.path().parent().unwrap().join("evil").exists());
    assert!(!game.join("local").exists());
    let hidden: Vec<_> = std::fs::read_dir(&game)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".lanspread"))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");

    let out = run(&["remove", "q3a"]);
    assert!(out.status.success());
    assert!(!game.exists());
    let out = run(&["install", "q3a"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no complete payload"));
}

#[test]
fn unknown_games_and_missing_versions_are_clear_errors_that_change_nothing() {
    let catalog = catalog();
    let outdated = GamesFolder::new();
    outdated
        .add_payload("cs16", &[("cs16.zip", 5000)], 3)
        .write_version("cs16", "19990619");
    let seed_data = tempfile::tempdir().unwrap();
    let seeder = serve(seed_data.path(), outdated.path(), "Old", &[]);
    let target = GamesFolder::new();
    let data = tempfile::tempdir().unwrap();
    let get = |game: &str| {
        lanspread(data.path())
            .args(["get", game, "--no-discovery", "--peer"])
            .arg(seeder.addr.to_string())
            .arg("--games")
            .arg(target.path())
            .output()
            .unwrap()
    };
    let out = get("no-such-game");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in the catalog"));
    let out = get("cs16");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = catalog.get_str("cs16").unwrap().version.to_string();
    assert!(
        stderr.contains("no peer on the LAN has cs16") && stderr.contains(&expected),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 0);
}

#[test]
fn a_running_peer_carries_out_commands_and_takes_a_newer_catalog() {
    let catalog = catalog();
    let games = GamesFolder::new();
    games
        .add_payload("ut2004", &[("ut2004.bin", 300_000)], 4)
        .write_catalog_version("ut2004", &catalog);
    let data = tempfile::tempdir().unwrap();
    let _running = serve(data.path(), games.path(), "Host", &[]);
    eventually(Duration::from_secs(10), || {
        status(data.path()).filter(|s| s["games"].as_array().is_some_and(|g| g.len() == 1))
    });
    // Commands on the same data folder go through the running peer.
    let out = lanspread(data.path())
        .args(["install", "ut2004", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        last_json_line(&out.stdout)["message"]
            .as_str()
            .unwrap()
            .contains("installed")
    );
    assert!(games.game_dir("ut2004").join("local/ut2004.bin").exists());
    // A different games folder is refused rather than touched.
    let other = GamesFolder::new();
    let out = lanspread(data.path())
        .args(["uninstall", "ut2004", "--games"])
        .arg(other.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("shares"));

    // A newer catalog: the payload no longer matches and is not shared.
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
    let out = lanspread(data.path())
        .args(["catalog", "load"])
        .arg(&newer)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(Duration::from_secs(5), || {
        let s = status(data.path())?;
        let shared = s["games"].as_array()?.iter().any(|g| g["shared"] == true);
        (!shared).then_some(())
    });
    // A broken catalog is refused and the running one stays.
    std::fs::write(&newer, "(edition: \"x\", games: [ (id: ) ])").unwrap();
    let out = lanspread(data.path())
        .args(["catalog", "load"])
        .arg(&newer)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
    let s = json(lanspread(data.path()).args(["status", "--json"]));
    assert_eq!(s["name"], "Host");
}

/// Disk full: a small tmpfs as the games folder (needs root, like the lab).
#[test]
fn a_game_that_does_not_fit_is_refused_before_anything_is_written() {
    if !lanspread_tests::lab::root_or_skip() {
        return;
    }
    let catalog = catalog();
    let seed = GamesFolder::new();
    seed.add_payload("ut2004", &[("ut2004.zip", 40 * MIB)], 5)
        .write_catalog_version("ut2004", &catalog);
    let seed_data = tempfile::tempdir().unwrap();
    let seeder = serve(seed_data.path(), seed.path(), "Seeder", &[]);
    eventually(Duration::from_secs(10), || {
        status(seed_data.path()).filter(|s| s["games"].as_array().is_some_and(|g| !g.is_empty()))
    });
    let small = lanspread_tests::lab::SmallDisk::mount("16m").unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = lanspread(data.path())
        .args(["get", "ut2004", "--no-discovery", "--peer"])
        .arg(seeder.addr.to_string())
        .arg("--games")
        .arg(small.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not enough free space"), "{stderr}");
    assert_eq!(std::fs::read_dir(small.path()).unwrap().count(), 0);
}

/// An update that reuses most of the old version, killed while it fetches
/// the rest and started again: it completes; the second run neither copies
/// nor fetches again what the first one journaled (only the pieces in
/// flight are fetched twice).
#[test]
fn a_killed_update_resumes_without_copying_or_fetching_twice() {
    let text = lanspread_tests::catalog_text_with_ut_version("2");
    let catalog_dir = tempfile::tempdir().unwrap();
    let catalog_file = catalog_dir.path().join("party.ron");
    std::fs::write(&catalog_file, text).unwrap();

    // Version 1 here: 40 MiB; version 2 replaces one 24 MiB file of it.
    let old_files = [("base.pak", 16 * MIB), ("maps.pak", 24 * MIB)];
    let seed = GamesFolder::new();
    seed.add_payload("ut2004", &old_files, 31)
        .add_payload("ut2004", &[("maps.pak", 24 * MIB)], 32)
        .write_version("ut2004", "2");
    let target = GamesFolder::new();
    target
        .add_payload("ut2004", &old_files, 31)
        .write_version("ut2004", "1");

    let seed_data = tempfile::tempdir().unwrap();
    let catalog_arg = catalog_file.to_str().unwrap();
    let seeder = serve_with(
        seed_data.path(),
        seed.path(),
        "Seeder",
        &[],
        &["--catalog", catalog_arg, "--upload-limit", "40"],
    );
    eventually(Duration::from_secs(20), || {
        status(seed_data.path()).filter(|s| s["games"].as_array().is_some_and(|g| !g.is_empty()))
    });
    let data = tempfile::tempdir().unwrap();
    let get = |data: &std::path::Path| {
        let mut cmd = lanspread(data);
        cmd.args(["get", "ut2004", "--no-discovery", "--json", "--catalog"])
            .arg(&catalog_file)
            .arg("--peer")
            .arg(seeder.addr.to_string())
            .arg("--games")
            .arg(target.path());
        cmd
    };
    // Killed once it reused the 16 MiB and fetched a third of the rest.
    let out = kill_when_then_rerun(
        || get(data.path()),
        data.path(),
        |download| {
            let reused = download["reused_bytes"].as_u64()?;
            let done = download["done_bytes"].as_u64()?;
            Some(reused >= 15 * MIB as u64 && done >= reused + 8 * MIB as u64)
        },
        || {},
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = last_json_line(&out.stdout);
    eprintln!("second run: {report}");
    assert_eq!(report["pieces_reused"], 0, "copied again: {report}");
    assert_eq!(report["reused_bytes"], 0, "copied again: {report}");
    let total = report["total_pieces"].as_u64().unwrap();
    let fetched = report["pieces_fetched"].as_u64().unwrap();
    let journaled = report["pieces_journaled"].as_u64().unwrap();
    let rescued = report["pieces_rescued"].as_u64().unwrap();
    assert_eq!(fetched + journaled + rescued, total, "{report}");
    let mut expected = tree_hashes(&seed.game_dir("ut2004"));
    expected.remove("version.ini");
    let mut got = tree_hashes(&target.game_dir("ut2004"));
    got.remove("version.ini");
    assert_eq!(got, expected);
    // Every piece the seeder sent whole beyond those of the changed file
    // was in flight when the first run died.
    let store_dir = tempfile::tempdir().unwrap();
    let store = lanspread_core::Store::open(store_dir.path()).unwrap();
    let manifest = lanspread_core::manifest::build_manifest(
        &seed.game_dir("ut2004"),
        &lanspread_core::GameId::parse("ut2004").unwrap(),
        &lanspread_core::GameVersion::parse("2").unwrap(),
        &store,
    )
    .unwrap()
    .manifest;
    let plan = lanspread_core::download::PiecePlan::new(&manifest);
    let maps = manifest
        .files
        .iter()
        .position(|f| f.path.as_str() == "maps.pak")
        .unwrap();
    let changed = (0..plan.len())
        .filter(|p| plan.piece_chunks(*p).iter().any(|c| c.file == maps))
        .count() as u64;
    let served = status(seed_data.path()).unwrap()["chunks_served"]
        .as_u64()
        .unwrap();
    eprintln!("the seeder sent {served} pieces for {changed} changed; {fetched} in the second run");
    assert!(
        served >= changed && served - changed <= 2 * MAX_WINDOW as u64,
        "{served} pieces sent for {changed} changed"
    );
}
