//! The LAN lab: real `lanspread serve` processes, one per network namespace,
//! discovery ON (mDNS on each host's `eth0`), links shaped with tbf. Nothing
//! leaves the lab's own namespaces. Needs root: skipped with a printed
//! reason elsewhere, a failure in CI (`LANSPREAD_REQUIRE_NETNS=1`).
//!
//! The tests run one at a time (they share two cores and measure time).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{BIN, eventually};
use lanspread_core::GameCatalog;
use lanspread_tests::lab::Lab;
use lanspread_tests::{GamesFolder, tamper_with, tree_hashes};
use serde_json::Value;

/// One lab test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const MIB: usize = 1024 * 1024;

/// No downloader in a swarm may wait this long for its next 64 KiB ("no
/// downloader starved for seconds").
const STARVED: Duration = Duration::from_secs(3);

/// A lab whose hosts each have a data folder and a games folder.
struct Party {
    lab: Lab,
    root: tempfile::TempDir,
    /// The serve process of each host, once started.
    served: Vec<Option<usize>>,
}

impl Party {
    fn new(hosts: usize) -> Option<Self> {
        let lab = Lab::new(hosts)?;
        let mut root = tempfile::tempdir().unwrap();
        // LANSPREAD_LAB_KEEP=1 keeps every host's folders (logs included).
        if std::env::var("LANSPREAD_LAB_KEEP").is_ok_and(|v| v == "1") {
            root.disable_cleanup(true);
            eprintln!("lab folders kept in {}", root.path().display());
        }
        for host in 0..hosts {
            std::fs::create_dir_all(root.path().join(format!("h{host}/games"))).unwrap();
        }
        Some(Self {
            lab,
            root,
            served: vec![None; hosts],
        })
    }

    /// Where `host`'s `serve` logs: `h<host>/serve.log` when the lab's
    /// folders are kept (LANSPREAD_LAB_KEEP=1), else nowhere.
    fn log(&self, host: usize) -> Stdio {
        if std::env::var("LANSPREAD_LAB_KEEP").is_ok_and(|v| v == "1") {
            let path = self.root.path().join(format!("h{host}/serve.log"));
            std::fs::File::create(path).map_or_else(|_| Stdio::null(), Stdio::from)
        } else {
            Stdio::null()
        }
    }

    fn data(&self, host: usize) -> PathBuf {
        self.root.path().join(format!("h{host}/data"))
    }

    fn games(&self, host: usize) -> PathBuf {
        self.root.path().join(format!("h{host}/games"))
    }

    /// Starts `lanspread serve` in `host` with discovery on `eth0`.
    fn serve(&mut self, host: usize, extra: &[&str]) {
        let mut cmd = self.lab.command(host, BIN);
        cmd.arg("--data")
            .arg(self.data(host))
            .args(["serve", "--listen", "0.0.0.0:4747", "--interface", "eth0"])
            .args(["--name", &format!("h{host}"), "--games"])
            .arg(self.games(host))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(self.log(host));
        self.served[host] = Some(self.lab.spawn(cmd).unwrap());
    }

    /// `serve` with discovery on every adapter it picks by default (no
    /// `--interface`).
    fn serve_default_adapters(&mut self, host: usize) {
        let mut cmd = self.lab.command(host, BIN);
        cmd.arg("--data")
            .arg(self.data(host))
            .args(["serve", "--listen", "0.0.0.0:4747"])
            .args(["--name", &format!("h{host}"), "--games"])
            .arg(self.games(host))
            .stdout(Stdio::null())
            .stderr(self.log(host));
        self.served[host] = Some(self.lab.spawn(cmd).unwrap());
    }

    /// Runs `lanspread ARGS` inside `host` against its data folder.
    fn run(&self, host: usize, args: &[&str]) -> std::process::Output {
        self.lab
            .command(host, BIN)
            .arg("--data")
            .arg(self.data(host))
            .args(args)
            .output()
            .unwrap()
    }

    fn status(&self, host: usize) -> Option<Value> {
        let out = self.run(host, &["status", "--json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())?
    }

    fn peer_names(&self, host: usize) -> Vec<String> {
        self.status(host)
            .and_then(|s| {
                s["peers"].as_array().map(|peers| {
                    peers
                        .iter()
                        .filter_map(|p| p["name"].as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default()
    }

    /// Waits until `host` follows peers named `names` that announce a game.
    fn wait_for_sources(&self, host: usize, names: &[String]) {
        eventually(Duration::from_secs(20), || {
            let status = self.status(host)?;
            let peers = status["peers"].as_array()?;
            names
                .iter()
                .all(|n| {
                    peers
                        .iter()
                        .any(|p| p["name"] == n.as_str() && p["games"].as_u64() >= Some(1))
                })
                .then_some(())
        });
    }

    /// `get ID --json` through the peer running in `host`; the report.
    fn get(&self, host: usize, game: &str) -> Value {
        let out = self.run(host, &["get", game, "--json"]);
        assert!(
            out.status.success(),
            "get in h{host}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        common::last_json_line(&out.stdout)
    }

    /// Starts `get ID --json` through the peer in `host`, in the background.
    fn start_get(&self, host: usize, game: &str) -> std::thread::JoinHandle<std::process::Output> {
        let mut cmd = self.lab.command(host, BIN);
        cmd.arg("--data")
            .arg(self.data(host))
            .args(["get", game, "--json"]);
        std::thread::spawn(move || cmd.output().unwrap())
    }

    /// Waits until the download running in `host` is past `percent` %.
    fn wait_for_progress(&self, host: usize, percent: u64) {
        eventually(Duration::from_secs(20), || {
            let status = self.status(host)?;
            let d = status["downloads"].as_array()?.first()?.clone();
            (d["done_bytes"].as_u64()? * 100 > d["total_bytes"].as_u64()? * percent).then_some(())
        });
    }

    fn kill(&mut self, host: usize) {
        if let Some(index) = self.served[host].take() {
            let child = self.lab.child(index);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes ut2004 (random bytes, `mib` MiB in two files) into `games` of the
/// first host and hard-links it into the others: identical seeders.
fn seed(party: &Party, hosts: &[usize], mib: usize, version: &str) {
    let first = GamesFolder::new();
    first
        .add_payload(
            "ut2004",
            &[("ut2004.pak", mib * MIB - MIB), ("extra.pak", MIB)],
            77,
        )
        .write_version("ut2004", version);
    for &host in hosts {
        let dir = party.games(host).join("ut2004");
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["ut2004.pak", "extra.pak", "version.ini"] {
            std::fs::copy(first.game_dir("ut2004").join(name), dir.join(name)).unwrap();
        }
    }
}

fn catalog_version() -> String {
    GameCatalog::embedded()
        .unwrap()
        .get_str("ut2004")
        .unwrap()
        .version
        .to_string()
}

fn share_of<'a>(report: &'a Value, party: &Party, host: usize) -> &'a Value {
    let ip = party.lab.hosts[host].ip.to_string();
    report["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["addr"]
                .as_str()
                .is_some_and(|a| a.starts_with(&format!("{ip}:")))
        })
        .unwrap_or_else(|| panic!("h{host} is not in {report}"))
}

fn same_game(a: &Path, b: &Path) {
    assert_eq!(
        tree_hashes(&a.join("ut2004")),
        tree_hashes(&b.join("ut2004"))
    );
}

/// Two PCs on the LAN that also share a VPN (a direct link named
/// `tailscale0` on 10.1.0.0/24, whose addresses sort before the LAN's):
/// they find each other over mDNS and the transfer runs over the LAN.
#[test]
fn a_vpn_beside_the_lan_is_not_used_to_find_or_fetch() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut party) = Party::new(2) else {
        return;
    };
    party.lab.add_direct_link(0, 1, "tailscale0", 1).unwrap();
    seed(&party, &[0], 16, &catalog_version());
    party.serve_default_adapters(0);
    party.serve_default_adapters(1);
    party.wait_for_sources(1, &["h0".to_owned()]);
    let lan = party.lab.hosts[0].ip.to_string();
    let status = party.status(1).unwrap();
    let addrs: Vec<&str> = status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["addr"].as_str())
        .collect();
    assert_eq!(addrs, [format!("{lan}:4747")], "{status}");
    let report = party.get(1, "ut2004");
    same_game(&party.games(0), &party.games(1));
    for peer in report["peers"].as_array().unwrap() {
        if peer["bytes"].as_u64().unwrap_or(0) > 0 {
            assert!(
                peer["addr"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{lan}:")),
                "bytes came over {}",
                peer["addr"]
            );
        }
    }
}

#[test]
fn twenty_four_peers_find_each_other_within_three_seconds() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut party) = Party::new(24) else {
        return;
    };
    for host in 0..24 {
        party.serve(host, &[]);
    }
    // All 24 are up when each answers on its control socket.
    for host in 0..24 {
        eventually(Duration::from_secs(20), || party.status(host));
    }
    let up = Instant::now();
    let mut missing: Vec<usize> = (0..24).collect();
    while !missing.is_empty() {
        assert!(
            up.elapsed() < Duration::from_secs(3),
            "not everyone was seen in 3 s: {missing:?}"
        );
        missing.retain(|&host| party.peer_names(host).len() < 23);
    }
    eprintln!(
        "24 peers saw each other {:?} after the last one was up",
        up.elapsed()
    );

    party.kill(0);
    let killed = Instant::now();
    let mut still: Vec<usize> = (1..24).collect();
    while !still.is_empty() {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "h0 still listed by {still:?}"
        );
        still.retain(|&host| party.peer_names(host).iter().any(|n| n == "h0"));
    }
    eprintln!(
        "a stopped peer dropped off every list {:?} after it died",
        killed.elapsed()
    );
}

#[test]
fn four_seeders_at_100_mbit_fill_one_downloader() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut party) = Party::new(5) else {
        return;
    };
    seed(&party, &[0, 1, 2, 3], 80, &catalog_version());
    for host in 0..4 {
        party.lab.shape(host, 100).unwrap();
        party.serve(host, &[]);
    }
    party.lab.shape(4, 1000).unwrap();
    party.serve(4, &[]);
    let names: Vec<String> = (0..4).map(|h| format!("h{h}")).collect();
    party.wait_for_sources(4, &names);
    let report = party.get(4, "ut2004");
    same_game(&party.games(0), &party.games(4));
    for host in 0..4 {
        let share = share_of(&report, &party, host);
        assert!(
            share["bytes"].as_u64().unwrap() > 0,
            "h{host} did not contribute: {report}"
        );
    }
    let mbit = report["bytes"].as_f64().unwrap() * 8.0 / report["seconds"].as_f64().unwrap() / 1e6;
    eprintln!("4 x 100 Mbit -> 1 Gbit: {mbit:.0} Mbit/s goodput");
}

#[test]
fn a_slow_seeder_does_not_hold_the_end_back() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut party) = Party::new(5) else {
        return;
    };
    seed(&party, &[0, 1, 2, 3], 100, &catalog_version());
    for host in 0..3 {
        party.lab.shape(host, 100).unwrap();
        party.serve(host, &[]);
    }
    party.lab.shape(3, 10).unwrap();
    party.lab.shape(4, 1000).unwrap();
    party.serve(4, &[]);
    let fast: Vec<String> = (0..3).map(|h| format!("h{h}")).collect();
    party.wait_for_sources(4, &fast);
    let alone = party.get(4, "ut2004")["seconds"].as_f64().unwrap();
    let removed = party.run(4, &["remove", "ut2004"]);
    assert!(removed.status.success());
    // Now the slow one joins the party, and the same game is fetched again.
    party.serve(3, &[]);
    let all: Vec<String> = (0..4).map(|h| format!("h{h}")).collect();
    party.wait_for_sources(4, &all);
    let report = party.get(4, "ut2004");
    let with_slow = report["seconds"].as_f64().unwrap();
    eprintln!(
        "fast seeders alone {alone:.2}s, with a 10 Mbit one {with_slow:.2}s ({:+.1} %)",
        (with_slow / alone - 1.0) * 100.0
    );
    assert!(
        with_slow <= alone * 1.15,
        "the slow seeder held the end back: {alone:.2}s -> {with_slow:.2}s"
    );
    same_game(&party.games(0), &party.games(4));
}

#[test]
fn a_pulled_cable_mid_download_is_survived_and_the_peer_comes_back() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut party) = Party::new(4) else {
        return;
    };
    seed(&party, &[0, 1, 2], 100, &catalog_version());
    for host in 0..3 {
        party.lab.shape(host, 100).unwrap();
        party.serve(host, &[]);
    }
    party.lab.shape(3, 1000).unwrap();
    party.serve(3, &[]);
    let names: Vec<String> = (0..3).map(|h| format!("h{h}")).collect();
    party.wait_for_sources(3, &names);
    let downloader = party.start_get(3, "ut2004");
    // Pull h0's cable once the download is under way.
    party.wait_for_progress(3, 20);
    party.lab.set_link(0, false).unwrap();
    let out = downloader.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = common::last_json_line(&out.stdout);
    // h0 delivered nothing after the cut: its requests in flight were taken
    // over by the others (or it was dropped when its connection timed out).
    let cut = share_of(&report, &party, 0)["bytes"].as_u64().unwrap();
    let others = share_of(&report, &party, 1)["bytes"].as_u64().unwrap();
    assert!(
        cut * 2 < others,
        "h0 kept delivering after its cable was pulled: {report}"
    );
    // And the report says so: dropped, with a reason.
    let h0 = share_of(&report, &party, 0);
    assert_eq!(h0["dropped"], true, "{report}");
    assert!(
        h0["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{report}"
    );
    same_game(&party.games(1), &party.games(3));

    // The cable goes back in: h0 is found again and used for the next download.
    party.lab.set_link(0, true).unwrap();
    party.wait_for_sources(3, &names);
    assert!(party.run(3, &["remove", "ut2004"]).status.success());
    let again = party.get(3, "ut2004");
    assert!(
        share_of(&again, &party, 0)["bytes"].as_u64().unwrap() > 0,
        "{again}"
    );
}

#[test]
fn a_seeder_joining_mid_download_is_picked_up() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut party) = Party::new(4) else {
        return;
    };
    seed(&party, &[0, 1, 2], 120, &catalog_version());
    for host in 0..2 {
        party.lab.shape(host, 100).unwrap();
        party.serve(host, &[]);
    }
    party.lab.shape(2, 100).unwrap();
    party.lab.shape(3, 1000).unwrap();
    party.serve(3, &[]);
    let first: Vec<String> = (0..2).map(|h| format!("h{h}")).collect();
    party.wait_for_sources(3, &first);
    let downloader = party.start_get(3, "ut2004");
    party.wait_for_progress(3, 10);
    party.serve(2, &[]);
    let out = downloader.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = common::last_json_line(&out.stdout);
    assert!(
        share_of(&report, &party, 2)["bytes"].as_u64().unwrap() > 0,
        "the latecomer did not contribute: {report}"
    );
    same_game(&party.games(0), &party.games(3));
}

#[test]
fn a_peer_updating_a_game_others_download_from_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut party) = Party::new(6) else {
        return;
    };
    // h0 and h1 seed the catalog's version; h2 already has a newer one.
    seed(&party, &[0, 1], 80, &catalog_version());
    let newer_catalog = party.root.path().join("newer.ron");
    std::fs::write(
        &newer_catalog,
        lanspread_core::catalog::EMBEDDED_CATALOG_RON.replacen(
            &format!("version: \"{}\"", catalog_version()),
            "version: \"20991231\"",
            1,
        ),
    )
    .unwrap();
    let newer = GamesFolder::new();
    newer
        .add_payload("ut2004", &[("ut2004-new.pak", 6 * MIB)], 99)
        .write_version("ut2004", "20991231");
    let dir = party.games(2).join("ut2004");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["ut2004-new.pak", "version.ini"] {
        std::fs::copy(newer.game_dir("ut2004").join(name), dir.join(name)).unwrap();
    }
    // Slow seeders (20 Mbit): the swarm of three downloaders needs each
    // chunk from them once, so at 100 Mbit it could finish before the
    // update starts.
    for host in 0..2 {
        party.lab.shape(host, 20).unwrap();
        party.serve(host, &[]);
    }
    let catalog_arg = newer_catalog.to_string_lossy().into_owned();
    {
        let mut cmd = party.lab.command(2, BIN);
        cmd.arg("--data")
            .arg(party.data(2))
            .args(["--catalog", &catalog_arg])
            .args([
                "serve",
                "--listen",
                "0.0.0.0:4747",
                "--interface",
                "eth0",
                "--name",
                "h2",
                "--games",
            ])
            .arg(party.games(2))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        party.served[2] = Some(party.lab.spawn(cmd).unwrap());
    }
    let seeders: Vec<String> = (0..2).map(|h| format!("h{h}")).collect();
    for host in 3..6 {
        party.lab.shape(host, 1000).unwrap();
        party.serve(host, &[]);
    }
    for host in 3..6 {
        party.wait_for_sources(host, &seeders);
    }
    let downloads: Vec<_> = (3..6).map(|host| party.start_get(host, "ut2004")).collect();
    // Whichever seeder is uploading is handed the newer catalog and told
    // to update; the other one keeps the old version.
    let uploading = |host: usize| -> bool {
        party.status(host).is_some_and(|status| {
            status["games"].as_array().is_some_and(|games| {
                games
                    .iter()
                    .any(|g| g["id"] == "ut2004" && g["outbound"].as_u64() >= Some(1))
            })
        })
    };
    let updater = eventually(Duration::from_secs(20), || {
        (0..2).find(|host| uploading(*host))
    });
    let keeper = 1 - updater;
    let loaded = party.run(updater, &["catalog", "load", &catalog_arg]);
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    let stopped = Instant::now();
    // The cancellation itself is immediate (the catalog load answers after
    // it); polling through `ip netns exec` on a loaded machine is not, so
    // the bound here is loose. The one-second bound is asserted in-process.
    eventually(Duration::from_secs(5), || {
        (!uploading(updater)).then_some(())
    });
    eprintln!(
        "h{updater}'s uploads stopped {:?} after the new catalog",
        stopped.elapsed()
    );
    let update = party.run(updater, &["update", "ut2004"]);
    assert!(
        update.status.success(),
        "{}",
        String::from_utf8_lossy(&update.stderr)
    );
    assert_eq!(
        tree_hashes(&party.games(updater).join("ut2004")),
        tree_hashes(&newer.game_dir("ut2004"))
    );
    for (download, host) in downloads.into_iter().zip(3..6) {
        let out = download.join().unwrap();
        assert!(
            out.status.success(),
            "h{host}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        same_game(&party.games(keeper), &party.games(host));
    }
}

/// What a swarm of `downloaders` PCs fetching one game at once did.
struct SwarmRun {
    /// The slowest download, whole, as `get` reported it.
    slowest_secs: f64,
    /// What the seeder (h0) sent onto the LAN, in game sizes.
    seeder_share: f64,
    /// Verified bytes the downloaders took from each other.
    from_partials: u64,
    /// The longest any downloader (the leaver aside) went without 64 KiB
    /// reaching it, between its first bytes and its last, and which it was.
    longest_starved: (Duration, usize),
}

/// Watches what reaches each of `hosts` (the bridge side of its link)
/// until `done`, and returns, per host, the longest stretch without 64 KiB
/// arriving, between its first 64 KiB and the moment it had the game's size.
fn starvation(party: &Party, hosts: &[usize], game_bytes: u64, done: &AtomicBool) -> Vec<Duration> {
    const PROGRESS: u64 = 64 * 1024;
    let start = party.lab.delivered_all().unwrap();
    // Per host: (bytes at its last progress, when, whether it started).
    let mut last: Vec<(u64, Instant, bool)> = vec![(0, Instant::now(), false); hosts.len()];
    let mut finished = vec![false; hosts.len()];
    let mut longest = vec![Duration::ZERO; hosts.len()];
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        let now = party.lab.delivered_all().unwrap();
        for (i, &host) in hosts.iter().enumerate() {
            if finished[i] {
                continue;
            }
            let got = now[host].since(start[host]).bytes;
            let (bytes, at, started) = &mut last[i];
            if got >= *bytes + PROGRESS {
                if *started {
                    longest[i] = longest[i].max(at.elapsed());
                }
                (*bytes, *at, *started) = (got, Instant::now(), true);
            } else if *started {
                longest[i] = longest[i].max(at.elapsed());
            }
            finished[i] = got >= game_bytes;
        }
    }
    longest
}

/// Every host in `hosts` runs `get ut2004` at once; all must succeed with
/// the seeder's bytes, except `leaver`, whose PC is killed once its
/// download is 30 % in.
fn swarm(party: &Party, hosts: &[usize], game_bytes: u64, leaver: Option<usize>) -> SwarmRun {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let watcher = scope.spawn(|| starvation(party, hosts, game_bytes, &done));
        let mut run = swarm_watched(party, hosts, game_bytes, leaver);
        done.store(true, Ordering::Relaxed);
        let starved = watcher.join().unwrap();
        for (&host, &gap) in hosts.iter().zip(&starved) {
            if Some(host) != leaver && gap > run.longest_starved.0 {
                run.longest_starved = (gap, host);
            }
        }
        assert!(
            run.longest_starved.0 < STARVED,
            "h{} received nothing for {:?}",
            run.longest_starved.1,
            run.longest_starved.0
        );
        run
    })
}

fn swarm_watched(
    party: &Party,
    hosts: &[usize],
    game_bytes: u64,
    leaver: Option<usize>,
) -> SwarmRun {
    let before = party.lab.sent(0).unwrap();
    let gets: Vec<_> = hosts
        .iter()
        .map(|&h| party.start_get(h, "ut2004"))
        .collect();
    if let Some(host) = leaver {
        party.wait_for_progress(host, 30);
        let pid = party.lab.child_id(party.served[host].unwrap());
        let killed = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
    }
    let mut run = SwarmRun {
        slowest_secs: 0.0,
        seeder_share: 0.0,
        from_partials: 0,
        longest_starved: (Duration::ZERO, 0),
    };
    let seeder_ip = format!("{}:", party.lab.hosts[0].ip);
    for (get, &host) in gets.into_iter().zip(hosts) {
        let out = get.join().unwrap();
        if !out.status.success() {
            // The PC taken away mid-swarm.
            assert!(
                leaver == Some(host),
                "get in h{host}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        }
        let report = common::last_json_line(&out.stdout);
        run.slowest_secs = run.slowest_secs.max(report["seconds"].as_f64().unwrap());
        for peer in report["peers"].as_array().unwrap() {
            if !peer["addr"].as_str().unwrap().starts_with(&seeder_ip) {
                run.from_partials += peer["bytes"].as_u64().unwrap();
            }
        }
        same_game(&party.games(0), &party.games(host));
    }
    let sent = party.lab.sent(0).unwrap().since(before).bytes;
    run.seeder_share = sent as f64 / game_bytes as f64;
    run
}

#[test]
fn fifteen_pcs_fetch_one_game_at_once_from_one_seeder() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut party) = Party::new(16) else {
        return;
    };
    let mib = 64;
    seed(&party, &[0], mib, &catalog_version());
    for host in 0..16 {
        party.lab.shape(host, 50).unwrap();
        party.serve(host, &[]);
    }
    let seeder = vec!["h0".to_owned()];
    for host in 1..16 {
        party.wait_for_sources(host, &seeder);
    }
    // One download alone, on the same lab: the yardstick.
    let alone = party.get(1, "ut2004")["seconds"].as_f64().unwrap();
    assert!(party.run(1, &["remove", "ut2004"]).status.success());
    let hosts: Vec<usize> = (1..16).collect();
    let run = swarm(&party, &hosts, (mib * MIB) as u64, None);
    eprintln!(
        "15 at once: the last took {:.1} s, one alone {alone:.1} s ({:.2}x); the seeder sent {:.2}x the game; {} MiB came from partial peers; the longest any PC waited for 64 KiB: {:?} (h{})",
        run.slowest_secs,
        run.slowest_secs / alone,
        run.seeder_share,
        run.from_partials / MIB as u64,
        run.longest_starved.0,
        run.longest_starved.1
    );
    assert!(
        run.slowest_secs <= 2.0 * alone,
        "the last of 15 took {:.1} s, one alone {alone:.1} s",
        run.slowest_secs
    );
    assert!(
        run.seeder_share <= 2.0,
        "the seeder sent {:.2}x the game",
        run.seeder_share
    );
    assert!(run.from_partials > 0, "the downloaders shared nothing");
}

#[test]
fn a_party_that_typed_only_the_seeders_address_swarms_and_survives_a_leaver() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut party) = Party::new(16) else {
        return;
    };
    let mib = 64;
    seed(&party, &[0], mib, &catalog_version());
    let seeder_addr = format!("{}:4747", party.lab.hosts[0].ip);
    party.lab.shape(0, 50).unwrap();
    party.serve(0, &["--no-discovery"]);
    for host in 1..16 {
        party.lab.shape(host, 50).unwrap();
        party.serve(host, &["--no-discovery", "--peer", &seeder_addr]);
    }
    // Everyone finds everyone through the seeder: it follows who connects
    // to it and tells each of the others.
    eventually(Duration::from_secs(30), || {
        (1..16)
            .all(|host| party.peer_names(host).len() >= 15)
            .then_some(())
    });
    assert!(
        party.peer_names(0).len() >= 15,
        "the seeder lists who connected to it"
    );
    let hosts: Vec<usize> = (1..16).collect();
    // One PC leaves mid-swarm, with what it had verified.
    let run = swarm(&party, &hosts, (mib * MIB) as u64, Some(15));
    eprintln!(
        "typed address only: the last took {:.1} s; the seeder sent {:.2}x the game; {} MiB came from partial peers; the longest any PC waited for 64 KiB: {:?} (h{})",
        run.slowest_secs,
        run.seeder_share,
        run.from_partials / MIB as u64,
        run.longest_starved.0,
        run.longest_starved.1
    );
    assert!(run.from_partials > 0, "the downloaders shared nothing");
}

/// One honest PC and one PC running three instances with a tampered copy
/// (same sizes, flipped bytes), all typed in: the three instances are one
/// voice, so the download refuses a 1 vs 1 conflict and installs nothing.
/// A second honest PC then outvotes them.
#[test]
fn three_instances_on_one_pc_are_one_voice() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut party) = Party::new(4) else {
        return;
    };
    let version = catalog_version();
    seed(&party, &[0, 1], 8, &version);
    tamper_with(&party.games(1).join("ut2004/ut2004.pak"));
    party.serve(0, &["--no-discovery"]);
    let mut typed = vec![format!("{}:4747", party.lab.hosts[0].ip)];
    for port in [4747, 4748, 4749] {
        let data = party.root.path().join(format!("h1/data{port}"));
        let mut cmd = party.lab.command(1, BIN);
        cmd.arg("--data")
            .arg(&data)
            .args([
                "serve",
                "--no-discovery",
                "--listen",
                &format!("0.0.0.0:{port}"),
            ])
            .args(["--name", &format!("h1-{port}"), "--games"])
            .arg(party.games(1))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        party.lab.spawn(cmd).unwrap();
        typed.push(format!("{}:{port}", party.lab.hosts[1].ip));
    }
    let mut args = vec!["--no-discovery"];
    for addr in &typed {
        args.extend(["--peer", addr.as_str()]);
    }
    party.serve(2, &args);
    party.wait_for_sources(
        2,
        &["h0", "h1-4747", "h1-4748", "h1-4749"].map(str::to_owned),
    );
    let out = party.run(2, &["get", "ut2004", "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a 1 vs 1 conflict was installed");
    assert!(err.contains("disagree"), "{err}");
    assert!(!party.games(2).join("ut2004").exists(), "nothing installed");
    // A second honest PC: 2 voices against 1.
    seed(&party, &[3], 8, &version);
    // It types h2's address; h2 follows a PC that connects to it.
    let h2 = format!("{}:4747", party.lab.hosts[2].ip);
    party.serve(3, &["--no-discovery", "--peer", &h2]);
    party.wait_for_sources(2, &["h3".to_owned()]);
    let report = party.get(2, "ut2004");
    same_game(&party.games(0), &party.games(2));
    for port in [4747, 4748, 4749] {
        let addr = format!("{}:{port}", party.lab.hosts[1].ip);
        let liar = report["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["addr"] == addr.as_str())
            .unwrap_or_else(|| panic!("{addr} is not in {report}"));
        assert_eq!(liar["bytes"], 0);
        assert_eq!(liar["dropped"], true);
    }
}
