//! `serve`, `peers`, `list` and `status` as real processes on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{eventually, json, lanspread, serve};
use lanspread_core::GameCatalog;
use lanspread_tests::GamesFolder;

#[test]
fn serve_list_peers_and_status_work_together() {
    let catalog = GameCatalog::embedded().unwrap();
    let games = GamesFolder::five_states(&catalog);
    let data = tempfile::tempdir().unwrap();
    let served = serve(data.path(), games.path(), "Alpha", &[]);
    assert_eq!(served.addr.ip().to_string(), "127.0.0.1");
    assert_ne!(served.addr.port(), 0, "the chosen port is printed");

    let probe = tempfile::tempdir().unwrap();
    // The seeder announces once its manifests are built; poll until then.
    let games_on_lan = eventually(Duration::from_secs(10), || {
        let list = json(
            lanspread(probe.path())
                .args(["list", "--no-discovery", "--json", "--peer"])
                .arg(served.addr.to_string()),
        );
        (list.as_array().unwrap().len() == 2).then_some(list)
    });
    let ut = games_on_lan
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == "ut2004")
        .unwrap();
    assert_eq!(ut["title"], "Unreal Tournament 2004");
    assert_eq!(
        ut["version"],
        catalog.get_str("ut2004").unwrap().version.as_str()
    );
    assert_eq!(ut["peers"], 1);

    let peers = json(
        lanspread(probe.path())
            .args(["peers", "--no-discovery", "--json", "--peer"])
            .arg(served.addr.to_string()),
    );
    let peers = peers.as_array().unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0]["name"], "Alpha");
    assert_eq!(peers[0]["addr"], served.addr.to_string());
    assert_eq!(peers[0]["games"], 2);
    assert_eq!(peers[0]["id"].as_str().unwrap().len(), 32);
    // The probing commands kept no data folder of their own.
    assert_eq!(std::fs::read_dir(probe.path()).unwrap().count(), 0);

    let status = json(lanspread(data.path()).args(["status", "--json"]));
    assert_eq!(status["addr"], served.addr.to_string());
    assert!(status["peers"].is_array());
    let status_games = status["games"].as_array().unwrap();
    let ut = status_games.iter().find(|g| g["id"] == "ut2004").unwrap();
    assert_eq!(ut["outbound"], 0);
    assert_eq!(ut["active"], false);
}

#[test]
fn two_serving_peers_find_each_other_by_address() {
    let catalog = GameCatalog::embedded().unwrap();
    let games_a = GamesFolder::five_states(&catalog);
    let games_b = GamesFolder::new();
    games_b
        .add_payload("bf2", &[("bf2.zip", 2000)], 7)
        .write_catalog_version("bf2", &catalog);
    let (data_a, data_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = serve(data_a.path(), games_a.path(), "Alpha", &[]);
    let _b = serve(data_b.path(), games_b.path(), "Bravo", &[a.addr]);
    let peer = eventually(Duration::from_secs(10), || {
        let status = json(lanspread(data_b.path()).args(["status", "--json"]));
        let peers = status["peers"].as_array().unwrap().clone();
        peers
            .into_iter()
            .find(|p| p["name"] == "Alpha" && p["games"] == 2)
    });
    assert_eq!(peer["addr"], a.addr.to_string());

    // Alpha dies without a word (kill -9): it drops off Bravo's list.
    drop(a);
    let killed = Instant::now();
    eventually(Duration::from_secs(8), || {
        let status = json(lanspread(data_b.path()).args(["status", "--json"]));
        status["peers"].as_array().unwrap().is_empty().then_some(())
    });
    eprintln!("a killed peer dropped off after {:?}", killed.elapsed());
}

#[test]
fn one_data_folder_belongs_to_one_process() {
    let catalog = GameCatalog::embedded().unwrap();
    let games = GamesFolder::five_states(&catalog);
    let data = tempfile::tempdir().unwrap();
    let first = serve(data.path(), games.path(), "First", &[]);
    let out = lanspread(data.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-discovery",
            "--games",
        ])
        .arg(games.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use"), "{stderr}");
    assert!(
        stderr.contains("\"First\"") && stderr.contains(&first.addr.to_string()),
        "{stderr}"
    );
}

/// A second window on a data folder in use (a second double-click): it
/// says lanspread is already running and exits, before touching anything
/// there; the running one's log is left as it was.
#[test]
fn a_second_window_on_the_same_data_folder_says_so_and_leaves_the_log_alone() {
    let catalog = GameCatalog::embedded().unwrap();
    let games = GamesFolder::five_states(&catalog);
    let data = tempfile::tempdir().unwrap();
    let first = serve(data.path(), games.path(), "First", &[]);
    let log = data.path().join("lanspread.log");
    std::fs::write(&log, "the running lanspread's log\n").unwrap();
    let before = std::fs::metadata(&log).unwrap().modified().unwrap();
    let out = lanspread(data.path())
        .arg("--no-discovery")
        // No display and no dialog: the window must not get that far.
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env("LANSPREAD_NO_DIALOGS", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already running"), "{stderr}");
    assert!(stderr.contains(&first.addr.to_string()), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "the running lanspread's log\n"
    );
    assert_eq!(std::fs::metadata(&log).unwrap().modified().unwrap(), before);
}

#[test]
fn status_without_a_running_peer_says_so() {
    let data = tempfile::tempdir().unwrap();
    let out = lanspread(data.path())
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no lanspread is running"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn ctrl_c_and_sigterm_stop_serve_cleanly_and_free_the_data_folder() {
    let catalog = GameCatalog::embedded().unwrap();
    let games = GamesFolder::five_states(&catalog);
    let data = tempfile::tempdir().unwrap();
    for signal in ["-INT", "-TERM"] {
        let mut served = serve(data.path(), games.path(), "Alpha", &[]);
        let interrupted = Command::new("kill")
            .args([signal, &served.child.id().to_string()])
            .status()
            .unwrap();
        assert!(interrupted.success());
        let status = eventually(Duration::from_secs(10), || served.child.try_wait().unwrap());
        assert!(status.success(), "{signal}: {status:?}");
        assert!(!data.path().join("control.json").exists(), "{signal}");
    }
    // The folder is free for the next process.
    let _again = serve(data.path(), games.path(), "Again", &[]);
}

/// Portable mode: a `portable` file beside the executable, or the
/// `portable.txt` that Explorer makes when it hides the extension, puts the
/// data folder beside the executable too.
#[test]
fn portable_mode_accepts_portable_and_portable_txt() {
    for marker in ["portable", "portable.txt"] {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("lanspread");
        std::fs::copy(common::BIN, &exe).unwrap();
        std::fs::write(dir.path().join(marker), b"").unwrap();
        let out = Command::new(&exe).args(["status"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let beside = dir.path().join("lanspread-data");
        assert!(
            stderr.contains(&beside.display().to_string()),
            "{marker}: {stderr}"
        );
    }
}
