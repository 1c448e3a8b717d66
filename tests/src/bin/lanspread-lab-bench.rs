//! `just lab-bench` (root): download goodput over shaped links in the LAN
//! lab, as a percentage of the link limit and of QUIC's own ceiling on it.
//!
//! QUIC's ceiling is the link rate times the share of wire bytes that are
//! stream payload. That share is measured: the bytes `get` reports fetched,
//! over the bytes that arrived on the downloader's interface (Ethernet
//! framing, IP, UDP, QUIC headers, AEAD tags, acknowledgements and any
//! retransmission included). So "% of ceiling" says how full the link was
//! kept; "% of link" adds what the headers cost. Medians of
//! `LANSPREAD_BENCH_RUNS` (default 3) runs; nothing is asserted.

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

/// The downloader's received wire bytes on `eth0`.
fn rx_bytes(lab: &Lab, host: usize) -> u64 {
    let out = lab
        .command(host, "cat")
        .arg("/sys/class/net/eth0/statistics/rx_bytes")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn run(lab: &Lab, host: usize, data: &Path, args: &[&str]) -> std::process::Output {
    lab.command(host, bin().to_str().unwrap())
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

struct Case {
    name: &'static str,
    seeders_mbit: Vec<u32>,
    downloader_mbit: u32,
}

struct Outcome {
    goodput_mbit: f64,
    link_percent: f64,
    ceiling_percent: f64,
    stream_share: f64,
}

fn run_case(case: &Case, runs: usize) -> Outcome {
    let seeders = case.seeders_mbit.len();
    let mut lab = Lab::new(seeders + 1).expect("the lab needs root");
    let root = tempfile::tempdir().unwrap();
    let limit: f64 =
        f64::from(case.seeders_mbit.iter().sum::<u32>()).min(f64::from(case.downloader_mbit));
    // About six seconds of transfer at the limit, at least 64 MiB.
    let mib = ((limit / 8.0 * 6.0) as usize).clamp(64, 2048);
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
        let mut serve = lab.command(host, bin().to_str().unwrap());
        serve
            .arg("--data")
            .arg(root.path().join(format!("s{host}-data")))
            .args([
                "serve",
                "--listen",
                "0.0.0.0:4747",
                "--no-discovery",
                "--games",
            ])
            .arg(&games)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        lab.spawn(serve).unwrap();
        addrs.push(format!("{}:4747", lab.hosts[host].ip));
    }
    let downloader = seeders;
    lab.shape(downloader, case.downloader_mbit).unwrap();
    let data = root.path().join("d-data");
    let games = root.path().join("d");
    std::fs::create_dir_all(&games).unwrap();
    let mut serve = lab.command(downloader, bin().to_str().unwrap());
    serve
        .arg("--data")
        .arg(&data)
        .args([
            "serve",
            "--listen",
            "0.0.0.0:4747",
            "--no-discovery",
            "--games",
        ])
        .arg(&games)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
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
    let (mut goodput, mut share) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let before = rx_bytes(&lab, downloader);
        let out = run(&lab, downloader, &data, &["get", "ut2004", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let wire = rx_bytes(&lab, downloader) - before;
        let text = String::from_utf8_lossy(&out.stdout);
        let report: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        let bytes = report["bytes"].as_f64().unwrap();
        goodput.push(bytes * 8.0 / report["seconds"].as_f64().unwrap() / 1e6);
        share.push(bytes / wire as f64);
        assert!(
            run(&lab, downloader, &data, &["remove", "ut2004"])
                .status
                .success()
        );
    }
    let goodput = median(&mut goodput);
    let stream_share = median(&mut share);
    Outcome {
        goodput_mbit: goodput,
        link_percent: goodput / limit * 100.0,
        ceiling_percent: goodput / (limit * stream_share) * 100.0,
        stream_share,
    }
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
    println!(
        "{:<24} {:>10} {:>8} {:>10} {:>13}",
        "case", "Mbit/s", "% link", "% ceiling", "stream/wire"
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
            "{:<24} {:>10.0} {:>7.1}% {:>9.1}% {:>13.3}",
            case.name,
            outcome.goodput_mbit,
            outcome.link_percent,
            outcome.ceiling_percent,
            outcome.stream_share
        );
        results.push(outcome);
    }
    if only.is_none() {
        println!(
            "slow-seeder case vs the fast seeders' sum (600 Mbit at the same stream share): {:.1} %",
            results[2].goodput_mbit / (600.0 * results[2].stream_share) * 100.0
        );
    }
}
