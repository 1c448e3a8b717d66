//! Discovery for real: mDNS between `lanspread serve` processes in network
//! namespaces joined by a bridge the test builds and removes itself.
//! Needs root; elsewhere it prints why it was skipped (and fails in CI).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::process::Stdio;
use std::time::{Duration, Instant};

use lanspread_core::GameCatalog;
use lanspread_tests::GamesFolder;
use lanspread_tests::lab::Lab;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_lanspread");

fn status(lab: &Lab, host: usize, data: &std::path::Path) -> Option<Value> {
    let out = lab
        .command(host, BIN)
        .arg("--data")
        .arg(data)
        .args(["status", "--json"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())?
}

#[test]
fn two_peers_discover_each_other_over_mdns_in_namespaces() {
    let Some(mut lab) = Lab::new(2) else { return };
    let catalog = GameCatalog::embedded().unwrap();
    let games: Vec<GamesFolder> = (0..2).map(|_| GamesFolder::new()).collect();
    games[0]
        .add_payload("ut2004", &[("ut.zip", 1000)], 1)
        .write_catalog_version("ut2004", &catalog);
    games[1]
        .add_payload("aoe2", &[("aoe.zip", 1000)], 2)
        .write_catalog_version("aoe2", &catalog);
    let data: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    for host in 0..2 {
        let mut serve = lab.command(host, BIN);
        serve
            .arg("--data")
            .arg(data[host].path())
            .args(["serve", "--listen", "0.0.0.0:4747", "--interface", "eth0"])
            .args(["--name", &format!("host{host}"), "--games"])
            .arg(games[host].path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        lab.spawn(serve).unwrap();
    }
    // Both running: from here, each must see the other within a few seconds.
    let started = Instant::now();
    let deadline = Duration::from_secs(10);
    let mut seen = [false, false];
    while !(seen[0] && seen[1]) {
        assert!(
            started.elapsed() < deadline,
            "peers not discovered: {seen:?}"
        );
        for host in 0..2 {
            let other = format!("host{}", 1 - host);
            let other_ip = lab.hosts[1 - host].ip.to_string();
            seen[host] = status(&lab, host, data[host].path()).is_some_and(|s| {
                s["peers"].as_array().is_some_and(|peers| {
                    peers.iter().any(|p| {
                        p["name"] == other.as_str()
                            && p["games"] == 1
                            && p["addr"].as_str().is_some_and(|a| a.starts_with(&other_ip))
                    })
                })
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("discovered each other {:?} after start", started.elapsed());
}
