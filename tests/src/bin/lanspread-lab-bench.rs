//! `just lab-bench` (root): download goodput over shaped links in the LAN
//! lab, as a percentage of the link limit and of QUIC's own ceiling on it.
//!
//! QUIC's ceiling is the link rate times the largest share of wire bytes
//! that can be stream payload at the path MTU: a full 1-RTT packet carries
//! one STREAM frame, and everything else in it is overhead (see
//! [`ceiling_share`]). "% of ceiling" says how full the link was kept; "% of
//! link" adds what the headers cost. The measured share (stream bytes over
//! the bytes the downloader's shaper passed, every segment's headers
//! counted, retransmissions and acknowledgements included), the shapers'
//! queue drops and the downloader's UDP receive-buffer drops show where the
//! rest went. Goodput is over the fetch phase (first
//! chunk request to last chunk verified); "whole" is the whole download as
//! the user waits for it (manifests, staging, sync, swap). Medians of
//! `LANSPREAD_BENCH_RUNS` (default 3) runs; nothing is asserted.
//!
//! The party cases: one seeder and 15 (then 31) downloaders on 50 Mbit
//! links press Download at once; T1 is one download alone on the same lab,
//! Tmax the last of the party; the seeder's upload (its shaper's bytes) in
//! game sizes, and what the downloaders took from each other.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver: fail loudly

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use lanspread_core::GameCatalog;
use lanspread_tests::GamesFolder;
use lanspread_tests::lab::Lab;

fn bin() -> PathBuf {
    std::env::var("LANSPREAD_BIN").map_or_else(
        |_| std::env::current_exe().unwrap().with_file_name("lanspread"),
        PathBuf::from,
    )
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Datagrams `host`'s kernel dropped because a UDP socket's receive buffer
/// was full (`Udp: RcvbufErrors` in `/proc/net/snmp`).
fn udp_rcvbuf_errors(lab: &Lab, host: usize) -> u64 {
    let out = lab
        .command(host, "cat")
        .arg("/proc/net/snmp")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
    let column = names
        .split_whitespace()
        .position(|n| n == "RcvbufErrors")
        .unwrap();
    values
        .split_whitespace()
        .nth(column)
        .unwrap()
        .parse()
        .unwrap()
}

/// `host`'s interface MTU (IP packet bytes).
fn mtu(lab: &Lab, host: usize) -> u32 {
    let out = lab
        .command(host, "cat")
        .arg("/sys/class/net/eth0/mtu")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The largest share of link bytes that can be stream payload, over IPv4 and
/// Ethernet at `mtu`, in a full packet as quinn builds it: Ethernet header
/// 14, IPv4 20, UDP 8; QUIC short header 1 + 8-byte connection id + 2-byte
/// packet number (the window holds thousands of packets); STREAM frame type
/// 1 + stream id 2 + offset 4 (the last frame in a packet carries no
/// length); AEAD tag 16.
fn ceiling_share(mtu: u32) -> f64 {
    let udp_payload = f64::from(mtu - 20 - 8);
    let quic_overhead = 1.0 + 8.0 + 2.0 + (1.0 + 2.0 + 4.0) + 16.0;
    (udp_payload - quic_overhead) / (f64::from(mtu) + 14.0)
}

fn run(lab: &Lab, host: usize, data: &Path, args: &[&str]) -> std::process::Output {
    lab.command(host, bin().to_str().unwrap())
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

/// `lanspread serve` in `host` on port 4747, discovery off, sharing `games`;
/// stdout discarded, stderr left to the caller.
fn serve_command(lab: &Lab, host: usize, data: &Path, games: &Path) -> std::process::Command {
    let mut serve = lab.command(host, bin().to_str().unwrap());
    serve
        .arg("--data")
        .arg(data)
        .args([
            "serve",
            "--listen",
            "0.0.0.0:4747",
            "--no-discovery",
            "--games",
        ])
        .arg(games)
        .stdout(Stdio::null());
    serve
}

struct Case {
    name: &'static str,
    seeders_mbit: Vec<u32>,
    downloader_mbit: u32,
}

struct Outcome {
    /// Whole download, as the user waits for it.
    total_mbit: f64,
    /// The fetch phase alone (what the link carries).
    goodput_mbit: f64,
    link_percent: f64,
    ceiling_percent: f64,
    /// Stream bytes over the bytes the downloader's shaper passed.
    stream_share: f64,
    /// The best share at the path MTU.
    ceiling_share: f64,
    /// Mean bytes per packet through the downloader's shaper.
    mean_packet: f64,
    /// Packets the shapers on the way dropped, per run.
    dropped: f64,
    /// Datagrams the downloader's kernel dropped for a full socket buffer.
    rcvbuf_dropped: f64,
    /// A `get` process of its own (no running peer on its data folder):
    /// the whole process, exec to exit, in Mbit/s; seconds from exec to the
    /// first chunk request and from the swap to the exit.
    process_mbit: f64,
    process_start_secs: f64,
    process_end_secs: f64,
    /// The same bytes by plain HTTP, exec to exit, in Mbit/s: nginx on each
    /// seeder and curl (one seeder) or aria2c over every seeder as mirrors;
    /// `None` when those are not installed.
    anchor_mbit: Option<f64>,
    /// The same with the file synced to disk before the clock stops, as a
    /// download by lanspread is before it ends.
    anchor_synced_mbit: Option<f64>,
    anchor_name: &'static str,
}

fn run_case(case: &Case, runs: usize) -> Outcome {
    let seeders = case.seeders_mbit.len();
    let mut lab = Lab::new(seeders + 1).expect("the lab needs root");
    let root = tempfile::tempdir().unwrap();
    let limit: f64 =
        f64::from(case.seeders_mbit.iter().sum::<u32>()).min(f64::from(case.downloader_mbit));
    // A game of LAN-party size: about 20 s of transfer at the limit, within
    // 64 MiB..4 GiB (`LANSPREAD_BENCH_SECONDS` changes the 20).
    let seconds: f64 = std::env::var("LANSPREAD_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20.0);
    let mib = ((limit / 8.0 * seconds) as usize).clamp(64, 4096);
    let catalog = GameCatalog::embedded().unwrap();
    let game = GamesFolder::new();
    game.add_payload("ut2004", &[("ut2004.pak", mib << 20)], 5)
        .write_catalog_version("ut2004", &catalog);
    let mut addrs = Vec::new();
    for (host, mbit) in case.seeders_mbit.iter().enumerate() {
        let games = root.path().join(format!("s{host}"));
        std::fs::create_dir_all(games.join("ut2004")).unwrap();
        for name in ["ut2004.pak", "version.ini"] {
            std::fs::hard_link(
                game.game_dir("ut2004").join(name),
                games.join("ut2004").join(name),
            )
            .unwrap();
        }
        lab.shape(host, *mbit).unwrap();
        let mut serve = serve_command(
            &lab,
            host,
            &root.path().join(format!("s{host}-data")),
            &games,
        );
        serve.stderr(Stdio::null());
        lab.spawn(serve).unwrap();
        addrs.push(format!("{}:4747", lab.hosts[host].ip));
    }
    let downloader = seeders;
    lab.shape(downloader, case.downloader_mbit).unwrap();
    let data = root.path().join("d-data");
    let games = root.path().join("d");
    std::fs::create_dir_all(&games).unwrap();
    let mut serve = serve_command(&lab, downloader, &data, &games);
    // `LANSPREAD_BENCH_LOG=DIR` keeps the downloader's log, one file per case.
    match std::env::var_os("LANSPREAD_BENCH_LOG") {
        Some(dir) => {
            let file = Path::new(&dir).join(format!("{}.log", case.name.replace(' ', "_")));
            serve
                .stderr(std::fs::File::create(file).unwrap())
                .env("RUST_LOG", "info,lanspread_net::download=debug");
        }
        None => {
            serve.stderr(Stdio::null());
        }
    }
    for addr in &addrs {
        serve.arg("--peer").arg(addr);
    }
    lab.spawn(serve).unwrap();
    // Wait until every seeder is followed and announces the game.
    let started = Instant::now();
    loop {
        let out = run(&lab, downloader, &data, &["status", "--json"]);
        if out.status.success() {
            let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let ready = status["peers"]
                .as_array()
                .is_some_and(|p| p.iter().filter(|p| p["games"] == 1).count() == seeders);
            if ready {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "seeders never ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (mut total, mut goodput, mut share) = (Vec::new(), Vec::new(), Vec::new());
    let (mut mean_packet, mut dropped, mut rcvbuf) = (Vec::new(), Vec::new(), Vec::new());
    let dropped_everywhere = |lab: &Lab| -> u64 {
        (0..=seeders)
            .map(|h| lab.delivered(h).unwrap().dropped)
            .sum()
    };
    for _ in 0..runs {
        let before = lab.delivered(downloader).unwrap();
        let dropped_before = dropped_everywhere(&lab);
        let rcvbuf_before = udp_rcvbuf_errors(&lab, downloader);
        let out = run(&lab, downloader, &data, &["get", "ut2004", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let wire = lab.delivered(downloader).unwrap().since(before);
        dropped.push((dropped_everywhere(&lab) - dropped_before) as f64);
        rcvbuf.push((udp_rcvbuf_errors(&lab, downloader) - rcvbuf_before) as f64);
        mean_packet.push(wire.bytes as f64 / wire.packets as f64);
        let text = String::from_utf8_lossy(&out.stdout);
        let report: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        let bytes = report["bytes"].as_f64().unwrap();
        total.push(bytes * 8.0 / report["seconds"].as_f64().unwrap() / 1e6);
        goodput.push(bytes * 8.0 / report["fetch_seconds"].as_f64().unwrap() / 1e6);
        share.push(bytes / wire.bytes as f64);
        assert!(
            run(&lab, downloader, &data, &["remove", "ut2004"])
                .status
                .success()
        );
    }
    // The same download by a `get` process of its own, as a script runs
    // it: exec to exit.
    let (mut process, mut start, mut end) = (Vec::new(), Vec::new(), Vec::new());
    let unix = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    for run_index in 0..runs {
        let own = root.path().join(format!("alone-{run_index}"));
        std::fs::create_dir_all(own.join("games")).unwrap();
        let mut get = lab.command(downloader, bin().to_str().unwrap());
        get.arg("--data")
            .arg(own.join("data"))
            .args(["get", "ut2004", "--no-discovery", "--json", "--games"])
            .arg(own.join("games"));
        for addr in &addrs {
            get.arg("--peer").arg(addr);
        }
        let exec = unix();
        let out = get.output().unwrap();
        let exit = unix();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let report: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        let began = report["started_at_unix_ms"].as_f64().unwrap() / 1000.0;
        let seconds = report["seconds"].as_f64().unwrap();
        process.push(report["bytes"].as_f64().unwrap() * 8.0 / (exit - exec) / 1e6);
        start.push(began - exec + report["start_seconds"].as_f64().unwrap());
        end.push(exit - (began + seconds));
        let _ = std::fs::remove_dir_all(&own);
    }
    let (anchor_name, anchor_mbit, anchor_synced_mbit) =
        match anchor(&mut lab, &addrs, root.path(), mib, runs) {
            (name, Some((plain, synced))) => (name, Some(plain), Some(synced)),
            (name, None) => (name, None, None),
        };
    let goodput = median(&mut goodput);
    let ceiling_share = ceiling_share(mtu(&lab, downloader));
    Outcome {
        anchor_mbit,
        anchor_synced_mbit,
        anchor_name,
        total_mbit: median(&mut total),
        goodput_mbit: goodput,
        link_percent: goodput / limit * 100.0,
        ceiling_percent: goodput / (limit * ceiling_share) * 100.0,
        stream_share: median(&mut share),
        ceiling_share,
        mean_packet: median(&mut mean_packet),
        dropped: median(&mut dropped),
        rcvbuf_dropped: median(&mut rcvbuf),
        process_mbit: median(&mut process),
        process_start_secs: median(&mut start),
        process_end_secs: median(&mut end),
    }
}

/// Whether `program` runs here.
fn installed(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The anchor: the same game file (`s{host}/ut2004/ut2004.pak` under
/// `root`, `mib` MiB) served by nginx (plain HTTP, sendfile, no TLS) in
/// every seeder's namespace and fetched in the downloader's, by curl from
/// the one seeder or by aria2c from every seeder as mirrors, one
/// connection each. Exec to exit, medians of `runs`, in Mbit/s; and the
/// same with the file synced to disk (`sync FILE`) before the clock stops.
fn anchor(
    lab: &mut Lab,
    seeders: &[String],
    root: &Path,
    mib: usize,
    runs: usize,
) -> (&'static str, Option<(f64, f64)>) {
    let name = if seeders.len() == 1 {
        "nginx + curl"
    } else {
        "nginx + aria2c"
    };
    let client = if seeders.len() == 1 { "curl" } else { "aria2c" };
    if !installed("nginx") || !installed(client) {
        return (name, None);
    }
    let mut urls = Vec::new();
    for (host, addr) in seeders.iter().enumerate() {
        let ip = addr.trim_end_matches(":4747");
        let conf = root.join(format!("nginx-{host}.conf"));
        let text = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {dir}/nginx-{host}.pid;\n\
             error_log {dir}/nginx-{host}.err;\nevents {{ worker_connections 64; }}\n\
             http {{\n access_log off;\n sendfile on;\n tcp_nopush on;\n\
             client_body_temp_path {dir}/nginx-{host}-body;\n proxy_temp_path {dir}/nginx-{host}-proxy;\n\
             fastcgi_temp_path {dir}/nginx-{host}-fcgi;\n uwsgi_temp_path {dir}/nginx-{host}-uwsgi;\n\
             scgi_temp_path {dir}/nginx-{host}-scgi;\n\
             server {{ listen {ip}:8080; root {games}; }}\n}}\n",
            dir = root.display(),
            games = root.join(format!("s{host}/ut2004")).display(),
        );
        std::fs::write(&conf, text).unwrap();
        let mut nginx = lab.command(host, "nginx");
        nginx
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(root.join(format!("nginx-{host}.err")))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        lab.spawn(nginx).unwrap();
        urls.push(format!("http://{ip}:8080/ut2004.pak"));
    }
    let downloader = seeders.len();
    let out_dir = root.join("anchor");
    let (mut rates, mut synced) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let _ = std::fs::remove_dir_all(&out_dir);
        std::fs::create_dir_all(&out_dir).unwrap();
        let mut fetch = lab.command(downloader, client);
        if seeders.len() == 1 {
            fetch
                .args(["--silent", "--fail", "--retry", "20", "--retry-connrefused"])
                .args(["--retry-delay", "0", "-o"])
                .arg(out_dir.join("ut2004.pak"))
                .arg(&urls[0]);
        } else {
            fetch
                .args(["--quiet", "--dir"])
                .arg(&out_dir)
                .args(["--out", "ut2004.pak", "--file-allocation=none"])
                .arg(format!("--split={}", seeders.len()))
                .args(["--max-connection-per-server=1", "--min-split-size=1M"])
                .args(["--retry-wait=1", "--max-tries=20"])
                .args(&urls);
        }
        let started = Instant::now();
        let status = fetch.status().unwrap();
        let seconds = started.elapsed().as_secs_f64();
        let got = std::fs::metadata(out_dir.join("ut2004.pak")).map_or(0, |m| m.len());
        assert!(
            status.success() && got == (mib as u64) << 20,
            "{client} failed: {status}, {got} bytes"
        );
        rates.push(got as f64 * 8.0 / seconds / 1e6);
        let sync = std::process::Command::new("sync")
            .arg(out_dir.join("ut2004.pak"))
            .status()
            .unwrap();
        assert!(sync.success());
        synced.push(got as f64 * 8.0 / started.elapsed().as_secs_f64() / 1e6);
    }
    let _ = std::fs::remove_dir_all(&out_dir);
    (name, Some((median(&mut rates), median(&mut synced))))
}

/// What the party case measured, medians over the runs.
struct PartyOutcome {
    /// One download alone on the same lab, whole, seconds.
    alone_secs: f64,
    /// The last of the party's downloads, whole, seconds.
    last_secs: f64,
    /// What the seeder sent onto the LAN during the party, in game sizes.
    seeder_share: f64,
    /// Bytes the downloaders took from each other, MiB.
    from_partials_mib: f64,
}

/// The party case: one seeder and `downloaders` PCs, every link 50 Mbit, a
/// 100 MiB game; only the seeder's address is typed (discovery off), so
/// the downloaders find each other by peer exchange. T1 is one download
/// alone; then all press Download at once.
fn run_party(downloaders: usize, runs: usize) -> PartyOutcome {
    let mut lab = Lab::new(downloaders + 1).expect("the lab needs root");
    let root = tempfile::tempdir().unwrap();
    let mib = 100;
    let game_bytes = (mib << 20) as f64;
    let catalog = GameCatalog::embedded().unwrap();
    let seeder_games = root.path().join("s0");
    let game = GamesFolder::new();
    game.add_payload("ut2004", &[("ut2004.pak", mib << 20)], 9)
        .write_catalog_version("ut2004", &catalog);
    std::fs::create_dir_all(seeder_games.join("ut2004")).unwrap();
    for name in ["ut2004.pak", "version.ini"] {
        std::fs::hard_link(
            game.game_dir("ut2004").join(name),
            seeder_games.join("ut2004").join(name),
        )
        .unwrap();
    }
    for host in 0..=downloaders {
        lab.shape(host, 50).unwrap();
    }
    let mut seeder = serve_command(&lab, 0, &root.path().join("s0-data"), &seeder_games);
    // `LANSPREAD_BENCH_LOG=DIR` keeps the seeder's log (every chunk it sent).
    match std::env::var_os("LANSPREAD_BENCH_LOG") {
        Some(dir) => {
            let file = Path::new(&dir).join(format!("party_{downloaders}_seeder.log"));
            seeder
                .stderr(std::fs::File::create(file).unwrap())
                .env("RUST_LOG", "info,lanspread_net::serve=debug");
        }
        None => {
            seeder.stderr(Stdio::null());
        }
    }
    lab.spawn(seeder).unwrap();
    let seeder_addr = format!("{}:4747", lab.hosts[0].ip);
    let data = |host: usize| root.path().join(format!("d{host}-data"));
    for host in 1..=downloaders {
        let games = root.path().join(format!("d{host}"));
        std::fs::create_dir_all(&games).unwrap();
        let mut serve = serve_command(&lab, host, &data(host), &games);
        serve.stderr(Stdio::null()).args(["--peer", &seeder_addr]);
        lab.spawn(serve).unwrap();
    }
    // Everyone follows everyone (through the seeder) and sees the game.
    let started = Instant::now();
    for host in 1..=downloaders {
        loop {
            let out = run(&lab, host, &data(host), &["status", "--json"]);
            if out.status.success() {
                let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                let peers = status["peers"].as_array().cloned().unwrap_or_default();
                if peers.len() >= downloaders && peers.iter().any(|p| p["games"] == 1) {
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the party never found itself"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let get = |lab: &Lab, host: usize| -> serde_json::Value {
        let out = run(lab, host, &data(host), &["get", "ut2004", "--json"]);
        assert!(
            out.status.success(),
            "h{host}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.lines().last().unwrap()).unwrap()
    };
    let remove = |lab: &Lab, host: usize| {
        assert!(
            run(lab, host, &data(host), &["remove", "ut2004"])
                .status
                .success()
        );
    };
    let (mut alone, mut last, mut share, mut partial) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        alone.push(get(&lab, 1)["seconds"].as_f64().unwrap());
        remove(&lab, 1);
        let before = lab.sent(0).unwrap();
        let reports: Vec<serde_json::Value> = std::thread::scope(|scope| {
            let handles: Vec<_> = (1..=downloaders)
                .map(|host| {
                    let lab = &lab;
                    let get = &get;
                    scope.spawn(move || get(lab, host))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        share.push(lab.sent(0).unwrap().since(before).bytes as f64 / game_bytes);
        last.push(
            reports
                .iter()
                .map(|r| r["seconds"].as_f64().unwrap())
                .fold(0.0, f64::max),
        );
        let from_partials: u64 = reports
            .iter()
            .flat_map(|r| r["peers"].as_array().cloned().unwrap_or_default())
            .filter(|p| p["addr"].as_str() != Some(seeder_addr.as_str()))
            .map(|p| p["bytes"].as_u64().unwrap_or(0))
            .sum();
        partial.push(from_partials as f64 / f64::from(1u32 << 20));
        for host in 1..=downloaders {
            remove(&lab, host);
        }
    }
    PartyOutcome {
        alone_secs: median(&mut alone),
        last_secs: median(&mut last),
        seeder_share: median(&mut share),
        from_partials_mib: median(&mut partial),
    }
}

/// What the update case measured, medians over the runs.
struct UpdateOutcome {
    full_secs: f64,
    full_mib: f64,
    update_secs: f64,
    update_mib: f64,
    reused_mib: f64,
}

/// The update case (6): version 1 of a 252 MiB game on the downloader,
/// version 2 (a realistic patch) on one seeder, both on 100 Mbit links,
/// the organiser's catalog at version 2; `get` as an update beside `get`
/// of the whole version 2 into an empty folder.
fn run_update(runs: usize) -> UpdateOutcome {
    let mut lab = Lab::new(2).expect("the lab needs root");
    let root = tempfile::tempdir().unwrap();
    let catalog = root.path().join("party.ron");
    std::fs::write(&catalog, lanspread_tests::catalog_text_with_ut_version("2")).unwrap();
    let catalog = catalog.to_str().unwrap().to_owned();
    let new = GamesFolder::new();
    new.add_patch_version_2();
    let old = GamesFolder::new();
    old.add_patch_version_1();
    lab.shape(0, 100).unwrap();
    lab.shape(1, 100).unwrap();
    let mut seeder = serve_command(&lab, 0, &root.path().join("s-data"), new.path());
    seeder.arg("--catalog").arg(&catalog).stderr(Stdio::null());
    lab.spawn(seeder).unwrap();
    let data = root.path().join("d-data");
    let games = root.path().join("d");
    std::fs::create_dir_all(&games).unwrap();
    let mut serve = serve_command(&lab, 1, &data, &games);
    serve
        .arg("--catalog")
        .arg(&catalog)
        .arg("--peer")
        .arg(format!("{}:4747", lab.hosts[0].ip))
        .stderr(Stdio::null());
    lab.spawn(serve).unwrap();
    let started = Instant::now();
    loop {
        let out = run(&lab, 1, &data, &["status", "--json"]);
        if out.status.success() {
            let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if status["peers"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["games"] == 1))
            {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "seeder never ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Version 1 in place: hard links of the same files (only read until
    // the swap moves the folder away).
    let place_version_1 = || {
        let from = old.game_dir("ut2004");
        for entry in walk(&from) {
            let rel = entry.strip_prefix(&from).unwrap();
            let to = games.join("ut2004").join(rel);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::hard_link(&entry, &to).unwrap();
        }
    };
    let get = || -> serde_json::Value {
        let out = run(
            &lab,
            1,
            &data,
            &["get", "ut2004", "--json", "--catalog", &catalog],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.lines().last().unwrap()).unwrap()
    };
    let mib = |v: &serde_json::Value, key: &str| v[key].as_f64().unwrap() / f64::from(1 << 20);
    let (mut full_secs, mut full_mib) = (Vec::new(), Vec::new());
    let (mut update_secs, mut update_mib, mut reused_mib) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let _ = std::fs::remove_dir_all(games.join("ut2004"));
        let full = get();
        full_secs.push(full["seconds"].as_f64().unwrap());
        full_mib.push(mib(&full, "bytes"));
        std::fs::remove_dir_all(games.join("ut2004")).unwrap();
        place_version_1();
        let update = get();
        update_secs.push(update["seconds"].as_f64().unwrap());
        update_mib.push(mib(&update, "bytes"));
        reused_mib.push(mib(&update, "reused_bytes"));
    }
    UpdateOutcome {
        full_secs: median(&mut full_secs),
        full_mib: median(&mut full_mib),
        update_secs: median(&mut update_secs),
        update_mib: median(&mut update_mib),
        reused_mib: median(&mut reused_mib),
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn main() {
    let runs = std::env::var("LANSPREAD_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let cases = [
        Case {
            name: "1 seeder, 1 Gbit",
            seeders_mbit: vec![1000],
            downloader_mbit: 1000,
        },
        Case {
            name: "4 seeders x 200 Mbit",
            seeders_mbit: vec![200; 4],
            downloader_mbit: 1000,
        },
        Case {
            name: "3 x 200 + 1 x 20 Mbit",
            seeders_mbit: vec![200, 200, 200, 20],
            downloader_mbit: 1000,
        },
        Case {
            name: "1 seeder, 10 Gbit",
            seeders_mbit: vec![10_000],
            downloader_mbit: 10_000,
        },
    ];
    println!("lanspread lab bench: medians of {runs} runs, real processes in network namespaces");
    let mut anchors = Vec::new();
    println!(
        "{:<24} {:>8} {:>7} {:>9} {:>12} {:>8} {:>7} {:>7} {:>7} {:>7} {:>8} {:>7} {:>7}",
        "case",
        "Mbit/s",
        "% link",
        "% ceiling",
        "stream/wire",
        "ceiling",
        "packet",
        "q-drops",
        "rcvbuf",
        "whole",
        "process",
        "start s",
        "end s"
    );
    // `LANSPREAD_LAB_CASES=0,1` runs only those cases (for tuning).
    let only: Option<Vec<usize>> = std::env::var("LANSPREAD_LAB_CASES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect());
    let mut results = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        if only.as_ref().is_some_and(|only| !only.contains(&index)) {
            continue;
        }
        let outcome = run_case(case, runs);
        println!(
            "{:<24} {:>8.0} {:>6.1}% {:>8.1}% {:>12.4} {:>8.4} {:>7.0} {:>7.0} {:>7.0} {:>7.0} {:>8.0} {:>7.2} {:>7.2}",
            case.name,
            outcome.goodput_mbit,
            outcome.link_percent,
            outcome.ceiling_percent,
            outcome.stream_share,
            outcome.ceiling_share,
            outcome.mean_packet,
            outcome.dropped,
            outcome.rcvbuf_dropped,
            outcome.total_mbit,
            outcome.process_mbit,
            outcome.process_start_secs,
            outcome.process_end_secs
        );
        anchors.push(match (outcome.anchor_mbit, outcome.anchor_synced_mbit) {
            (Some(anchor), Some(synced)) => format!(
                "{:<24} whole process {:.0} Mbit/s vs {} {:.0} Mbit/s (exec to exit): {:.2}x; with its file synced to disk {:.0} Mbit/s: {:.2}x",
                case.name,
                outcome.process_mbit,
                outcome.anchor_name,
                anchor,
                outcome.process_mbit / anchor,
                synced,
                outcome.process_mbit / synced
            ),
            _ => format!(
                "{:<24} {}: not installed (apt-get install nginx curl aria2)",
                case.name, outcome.anchor_name
            ),
        });
        results.push(outcome);
    }
    if !anchors.is_empty() {
        println!();
        println!("the same bytes by plain HTTP (no TLS), side by side in the same lab:");
        for line in &anchors {
            println!("{line}");
        }
    }
    if only.is_none() {
        println!(
            "slow-seeder case vs the fast seeders' sum (600 Mbit at QUIC's ceiling): {:.1} %",
            results[2].goodput_mbit / (600.0 * results[2].ceiling_share) * 100.0
        );
    }
    // The party: cases 4 (15 downloaders) and 5 (31).
    println!();
    println!(
        "{:<32} {:>7} {:>7} {:>9} {:>13} {:>14}",
        "party (1 seeder, 50 Mbit links)",
        "T1 s",
        "Tmax s",
        "Tmax/T1",
        "seeder sent",
        "from partials"
    );
    for (index, downloaders) in [(4, 15), (5, 31)] {
        if only.as_ref().is_some_and(|only| !only.contains(&index)) {
            continue;
        }
        let party = run_party(downloaders, runs);
        println!(
            "{:<32} {:>7.1} {:>7.1} {:>9.2} {:>12.2}x {:>10.0} MiB",
            format!("{downloaders} downloaders, 100 MiB"),
            party.alone_secs,
            party.last_secs,
            party.last_secs / party.alone_secs,
            party.seeder_share,
            party.from_partials_mib
        );
    }
    // The update: case 6.
    if only.as_ref().is_none_or(|only| only.contains(&6)) {
        let update = run_update(runs);
        println!();
        println!(
            "update, 252 MiB game, 100 Mbit: full download {:.1} s ({:.0} MiB); update {:.1} s ({:.1} MiB fetched, {:.0} MiB reused): {:.1} % of the bytes, {:.2}x faster",
            update.full_secs,
            update.full_mib,
            update.update_secs,
            update.update_mib,
            update.reused_mib,
            update.update_mib / update.full_mib * 100.0,
            update.full_secs / update.update_secs
        );
    }
}
