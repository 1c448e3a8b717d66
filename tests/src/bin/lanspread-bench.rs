//! `just bench`: download goodput from 1 and from 4 seeders on loopback, a
//! game of 50,000 small files, the downloader's peak memory, hashing speed
//! and the time from `serve` start until the game is offered, beside
//! `b3sum` when present.
//!
//! Runs the release `lanspread` binary as real processes (discovery off,
//! loopback only). A benchmark, not a test: it prints figures, compared side
//! by side in one run, medians of several runs; it asserts nothing.
//!
//! Environment: `LANSPREAD_BENCH_GIB` (game size, default 2),
//! `LANSPREAD_BENCH_RUNS` (runs per case, default 3), `LANSPREAD_BIN`
//! (default: `lanspread` beside this executable),
//! `LANSPREAD_BENCH_RSS_GIB` (game sizes whose download's peak memory is
//! compared, default "1,4");
//! `LANSPREAD_BENCH_RSS_PARTS=1` also prints what each download's peak
//! memory is made of (heap, mapped files), `LANSPREAD_BENCH_RSS_TIMELINE=1`
//! the heap every 20 ms on stderr.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver: fail loudly

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lanspread_core::manifest::{build_manifest, payload_files};
use lanspread_core::{GameCatalog, GameId, GameVersion, Store};
use rand::{RngCore, SeedableRng};

fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn lanspread_bin() -> PathBuf {
    if let Ok(path) = std::env::var("LANSPREAD_BIN") {
        return PathBuf::from(path);
    }
    let me = std::env::current_exe().unwrap();
    me.with_file_name(format!("lanspread{}", std::env::consts::EXE_SUFFIX))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted[sorted.len() / 2]
}

/// Writes the game: `parts` files of random content, `total` bytes in all.
fn make_game(dir: &Path, total: u64, parts: u64) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut block = vec![0u8; 8 << 20];
    let mut files = Vec::new();
    for index in 0..parts {
        let path = dir.join(format!("data{index}.pak"));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut left = total / parts;
        while left > 0 {
            rng.fill_bytes(&mut block);
            let n = left.min(block.len() as u64) as usize;
            file.write_all(&block[..n]).unwrap();
            left -= n as u64;
        }
        // On the disk before anything times it: hashing a file whose pages
        // the kernel is still writing back is slower than a game's.
        file.into_inner().unwrap().sync_all().unwrap();
        files.push(path);
    }
    // A games folder's files were written long ago (hashed through memory
    // maps); the hashing bench also times freshly written ones (read).
    set_written(&files, Duration::from_secs(3600));
    files
}

/// Sets the files' modification time to `ago` before now.
fn set_written(files: &[PathBuf], ago: Duration) {
    let at = std::time::SystemTime::now() - ago;
    for path in files {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(at).unwrap();
    }
}

struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(bin: &Path, data: &Path, games: &Path) -> (Served, String) {
    let mut child = Command::new(bin)
        .arg("--data")
        .arg(data)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-discovery",
            "--games",
        ])
        .arg(games)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().trim_start_matches("listening on ").to_owned();
    (Served(child), addr)
}

/// Starts `count` seeders on `root/{prefix}0` (the game's folder) and hard
/// links of its files in `root/{prefix}1…`; waits until each offers the
/// game. Also returns how long the first took from its start (it hashes).
fn start_seeders(
    bin: &Path,
    root: &Path,
    prefix: &str,
    count: usize,
) -> (Vec<(Served, String)>, f64) {
    let first = root.join(format!("{prefix}0/ut2004"));
    let mut seeders = Vec::new();
    let mut first_offered = 0.0;
    for index in 0..count {
        let games = root.join(format!("{prefix}{index}"));
        if index > 0 {
            std::fs::create_dir_all(games.join("ut2004")).unwrap();
            for entry in std::fs::read_dir(&first).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap();
                std::fs::hard_link(&path, games.join("ut2004").join(name)).unwrap();
            }
        }
        let data = root.join(format!("{prefix}{index}-data"));
        let started = Instant::now();
        let (served, addr) = serve(bin, &data, &games);
        wait_announced(bin, &data);
        if index == 0 {
            first_offered = started.elapsed().as_secs_f64();
        }
        seeders.push((served, addr));
    }
    (seeders, first_offered)
}

/// The downloader's peak memory for games of several sizes
/// (`LANSPREAD_BENCH_RSS_GIB`, default "1,4") from four seeders: it should
/// not grow with the game.
fn memory_by_game_size(bin: &Path, root: &Path, version: &GameVersion, runs: usize) {
    let sizes: Vec<f64> = std::env::var("LANSPREAD_BENCH_RSS_GIB")
        .unwrap_or_else(|_| "1,4".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut peaks = Vec::new();
    for gib in sizes {
        let prefix = format!("rss-{gib}-seed");
        let game = root.join(format!("{prefix}0/ut2004"));
        make_game(&game, (gib * (1u64 << 30) as f64) as u64, 4);
        std::fs::write(game.join("version.ini"), version.to_ini()).unwrap();
        let (seeders, _) = start_seeders(bin, root, &prefix, 4);
        let addrs: Vec<String> = seeders.iter().map(|(_, a)| a.clone()).collect();
        let scratch = root.join("downloader");
        let mut rss = Vec::new();
        for _ in 0..runs {
            rss.push(download(bin, "ut2004", &addrs, &scratch).1);
        }
        let peak = median(&rss);
        println!(
            "memory    4 seeders, a {gib} GiB game: downloader peak RSS {peak:6.1} MiB (runs: {})",
            rss.iter()
                .map(|r| format!("{r:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        peaks.push((gib, peak));
        drop(seeders);
        for index in 0..4 {
            let _ = std::fs::remove_dir_all(root.join(format!("{prefix}{index}")));
        }
        let _ = std::fs::remove_dir_all(&scratch);
    }
    if let (Some(first), Some(last)) = (peaks.first(), peaks.last())
        && peaks.len() > 1
    {
        println!(
            "memory    peak RSS {} GiB / {} GiB game = {:.2}",
            last.0,
            first.0,
            last.1 / first.1
        );
    }
}

/// Empties the page cache (Linux, as root): the next read of a file comes
/// from the disk, as on a first launch after a reboot. False when it
/// cannot be done here.
fn drop_page_cache() -> bool {
    if !cfg!(target_os = "linux") {
        return false;
    }
    Command::new("sync").status().is_ok_and(|s| s.success())
        && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// A first launch on files that are not in memory: `serve` until the game
/// of small files is offered, from an empty page cache, beside `b3sum`
/// reading and hashing the same files from an empty page cache. Only where
/// the cache can be emptied (Linux, root).
fn cold_start(bin: &Path, root: &Path, games: &Path, files: &[PathBuf]) {
    if !drop_page_cache() {
        println!("start     from an empty page cache: skipped (needs root on Linux)");
        return;
    }
    let data = root.join("small-cold-data");
    let started = Instant::now();
    let served = serve(bin, &data, games);
    wait_announced(bin, &data);
    let ours = started.elapsed().as_secs_f64();
    drop(served);
    match drop_page_cache()
        .then(|| b3sum_seconds(files, None))
        .flatten()
    {
        Some(b3sum) => println!(
            "start     from an empty page cache: offered after {ours:.2} s; b3sum on the same files from an empty cache: {b3sum:.2} s (b3sum / lanspread = {:.2})",
            b3sum / ours
        ),
        None => println!("start     from an empty page cache: offered after {ours:.2} s"),
    }
}

/// How long `b3sum` takes over `files` (in batches, so no command line
/// outgrows the system's limit), on `threads` or on all; None when it is
/// not installed.
fn b3sum_seconds(files: &[PathBuf], threads: Option<&str>) -> Option<f64> {
    let started = Instant::now();
    for batch in files.chunks(5_000) {
        let mut command = Command::new("b3sum");
        if let Some(threads) = threads {
            command.args(["--num-threads", threads]);
        }
        let status = command.args(batch).stdout(Stdio::null()).status().ok()?;
        if !status.success() {
            return None;
        }
    }
    Some(started.elapsed().as_secs_f64())
}

/// Waits until the seeder on `data` announces its game (hashing is done).
fn wait_announced(bin: &Path, data: &Path) {
    let started = Instant::now();
    loop {
        let out = Command::new(bin)
            .arg("--data")
            .arg(data)
            .args(["status", "--json"])
            .output()
            .unwrap();
        if out.status.success() {
            let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if status["games"]
                .as_array()
                .is_some_and(|g| g.iter().any(|g| g["shared"] == true))
            {
                return;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "seeder never announced"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Peak resident memory of a running process, in KiB (Linux).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

/// A `/proc/PID/status` field in KiB (`RssAnon:`, `RssFile:`, …).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// One download of `game`: goodput in MiB/s and the downloader's peak RSS
/// in MiB.
fn download(bin: &Path, game: &str, seeders: &[String], scratch: &Path) -> (f64, f64) {
    let (speed, peak, _) = download_report(bin, game, seeders, scratch);
    (speed, peak)
}

/// [`download`], with the download's JSON report.
fn download_report(
    bin: &Path,
    game: &str,
    seeders: &[String],
    scratch: &Path,
) -> (f64, f64, serde_json::Value) {
    let games = scratch.join("games");
    let data = scratch.join("data");
    let _ = std::fs::remove_dir_all(&games);
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&games).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("--data")
        .arg(&data)
        .args(["get", game, "--no-discovery", "--json", "--games"])
        .arg(&games)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for seeder in seeders {
        cmd.arg("--peer").arg(seeder);
    }
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let (mut peak, mut anon, mut file) = (0, 0, 0);
    let output = loop {
        if let Some(rss) = peak_rss_kib(pid) {
            peak = peak.max(rss);
        }
        // What the peak is made of: the heap, or mapped files (the store).
        let now_anon = status_kib(pid, "RssAnon:").unwrap_or(0);
        if std::env::var_os("LANSPREAD_BENCH_RSS_TIMELINE").is_some() {
            eprint!("{} ", now_anon / 1024);
        }
        anon = now_anon.max(anon);
        file = status_kib(pid, "RssFile:").unwrap_or(0).max(file);
        if child.try_wait().unwrap().is_some() {
            break child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(output.status.success(), "get failed");
    let text = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let bytes = report["bytes"].as_f64().unwrap();
    let seconds = report["seconds"].as_f64().unwrap();
    if std::env::var_os("LANSPREAD_BENCH_RSS_PARTS").is_some() {
        println!(
            "          peak RssAnon {:.1} MiB, RssFile {:.1} MiB",
            anon as f64 / 1024.0,
            file as f64 / 1024.0
        );
    }
    (
        bytes / seconds / (1 << 20) as f64,
        peak as f64 / 1024.0,
        report,
    )
}

fn main() {
    let gib = env_number("LANSPREAD_BENCH_GIB", 2.0);
    let runs = env_number("LANSPREAD_BENCH_RUNS", 3.0) as usize;
    let bin = lanspread_bin();
    assert!(
        bin.exists(),
        "{} not found: build it with --release first",
        bin.display()
    );
    let root = tempfile::tempdir().unwrap();
    let total = (gib * (1u64 << 30) as f64) as u64;
    let catalog = GameCatalog::embedded().unwrap();
    let version = catalog.get_str("ut2004").unwrap().version.clone();

    println!(
        "lanspread bench: a {gib} GiB game (4 files of random bytes), {runs} runs per case, loopback"
    );
    let seed_games = root.path().join("seed0");
    let files = make_game(&seed_games.join("ut2004"), total, 4);
    std::fs::write(seed_games.join("ut2004/version.ini"), version.to_ini()).unwrap();

    // Hashing: our manifest builder (fresh store each run) on files just
    // written (read) and written an hour ago (mapped), and b3sum on one
    // and on all threads, one after the other in each run: the machine's
    // speed drifts, so each ratio is taken within a run, then the median.
    let build_speed = |game: &Path| {
        let data = tempfile::tempdir().unwrap();
        let store = Store::open(data.path()).unwrap();
        let started = Instant::now();
        let build = build_manifest(
            game,
            &GameId::parse("ut2004").unwrap(),
            &GameVersion::parse(version.as_str()).unwrap(),
            &store,
        )
        .unwrap();
        build.hashed_bytes as f64 / started.elapsed().as_secs_f64() / (1 << 20) as f64
    };
    let b3sum_speed = |threads: Option<&str>, files: &[PathBuf]| {
        b3sum_seconds(files, threads).map(|seconds| total as f64 / seconds / (1 << 20) as f64)
    };
    let (mut fresh, mut ours, mut one, mut all) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        set_written(&files, Duration::ZERO);
        fresh.push(build_speed(&seed_games.join("ut2004")));
        set_written(&files, Duration::from_secs(3600));
        ours.push(build_speed(&seed_games.join("ut2004")));
        if let (Some(a), Some(b)) = (b3sum_speed(Some("1"), &files), b3sum_speed(None, &files)) {
            one.push(a);
            all.push(b);
        }
    }
    let ratios = |ours: &[f64], b3sum: &[f64]| {
        let ratios: Vec<f64> = ours.iter().zip(b3sum).map(|(a, b)| a / b).collect();
        median(&ratios)
    };
    println!(
        "hashing   lanspread manifest (content-defined chunks, all cores), files just written (read): {:8.0} MiB/s",
        median(&fresh)
    );
    println!(
        "hashing   lanspread manifest (content-defined chunks, all cores), files written an hour ago (mapped): {:8.0} MiB/s",
        median(&ours)
    );
    let mut b3sum_all_threads = None;
    if all.is_empty() {
        println!("hashing   b3sum: not installed (cargo install b3sum)");
    } else {
        for (label, b3sum) in [("1 thread", &one), ("all threads", &all)] {
            println!(
                "hashing   b3sum ({label}): {:8.0} MiB/s   (lanspread / b3sum = {:.2}; just written {:.2}; runs {})",
                median(b3sum),
                ratios(&ours, b3sum),
                ratios(&fresh, b3sum),
                ours.iter()
                    .zip(b3sum.iter())
                    .map(|(a, b)| format!("{:.2}", a / b))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        b3sum_all_threads = Some(total as f64 / median(&all) / (1 << 20) as f64);
    }
    // One file of the game's size: a file's windows are hashed one after
    // the other, its chunks in parallel.
    {
        let one = root.path().join("one");
        let one_file = make_game(&one, total, 1);
        let (mut ours, mut all) = (vec![], vec![]);
        for _ in 0..runs {
            ours.push(build_speed(&one));
            if let Some(b3sum) = b3sum_speed(None, &one_file) {
                all.push(b3sum);
            }
        }
        let ours_median = median(&ours);
        if all.is_empty() {
            println!("hashing   one file of {gib} GiB (mapped): {ours_median:8.0} MiB/s");
        } else {
            println!(
                "hashing   one file of {gib} GiB (mapped): {ours_median:8.0} MiB/s; b3sum (all threads) {:.0} MiB/s (lanspread / b3sum = {:.2})",
                median(&all),
                ratios(&ours, &all)
            );
        }
        std::fs::remove_dir_all(&one).unwrap();
    }

    // 50,000 files of 4 KiB (200 MiB), on a seeder of their own.
    let small_files = 50_000;
    let small_version = catalog.get_str("q3a").unwrap().version.clone();
    let small_games = root.path().join("small");
    {
        let dir = small_games.join("q3a");
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut block = vec![0u8; 4096];
        for index in 0..small_files {
            let sub = dir.join(format!("data/{:03}", index % 500));
            std::fs::create_dir_all(&sub).unwrap();
            rng.fill_bytes(&mut block);
            std::fs::write(sub.join(format!("{index:05}.dat")), &block).unwrap();
        }
        std::fs::write(dir.join("version.ini"), small_version.to_ini()).unwrap();
    }

    // Four seeders sharing hard links of the same files.
    let (seeders, offered) = start_seeders(&bin, root.path(), "seed", 4);
    // The first seeder's start: every file hashed (the page cache is warm).
    match b3sum_all_threads {
        Some(b3sum) => println!(
            "start     serve until the {gib} GiB game is offered: {offered:.2} s; b3sum (all threads) on its files: {b3sum:.2} s (b3sum / lanspread = {:.2})",
            b3sum / offered
        ),
        None => println!("start     serve until offered: {offered:.2} s"),
    }
    let addrs: Vec<String> = seeders.iter().map(|(_, a)| a.clone()).collect();
    let scratch = root.path().join("downloader");
    let mut results = Vec::new();
    for count in [1usize, 4] {
        let mut goodput = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..runs {
            let (speed, peak) = download(&bin, "ut2004", &addrs[..count], &scratch);
            goodput.push(speed);
            rss.push(peak);
        }
        let (speed, peak) = (median(&goodput), median(&rss));
        println!(
            "download  {count} seeder{}: {speed:8.0} MiB/s goodput, downloader peak RSS {peak:6.1} MiB (runs: {})",
            if count == 1 { " " } else { "s" },
            goodput
                .iter()
                .map(|g| format!("{g:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        results.push(speed);
    }
    println!(
        "download  4 seeders / 1 seeder = {:.2}",
        results[1] / results[0]
    );
    drop(seeders);
    memory_by_game_size(&bin, root.path(), &version, runs);
    // The downloads above may have pushed these files out of the page cache
    // (16 GiB do): read them once, so this start is the warm one.
    let small_paths: Vec<PathBuf> = payload_files(&small_games.join("q3a"))
        .unwrap()
        .into_iter()
        .map(|(_, path)| path)
        .collect();
    for path in &small_paths {
        std::fs::read(path).unwrap();
    }
    let small_data = root.path().join("small-data");
    let started = Instant::now();
    let (_small_seeder, small_addr) = serve(&bin, &small_data, &small_games);
    wait_announced(&bin, &small_data);
    println!(
        "start     serve until {small_files} files of 4 KiB are offered: {:.2} s (page cache warm)",
        started.elapsed().as_secs_f64()
    );
    cold_start(&bin, root.path(), &small_games, &small_paths);
    let (mut goodput, mut before, mut after) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let (speed, _, report) =
            download_report(&bin, "q3a", std::slice::from_ref(&small_addr), &scratch);
        goodput.push(speed);
        let number = |key: &str| report[key].as_f64().unwrap_or(0.0);
        before.push(number("start_seconds"));
        after.push(number("seconds") - number("start_seconds") - number("fetch_seconds"));
    }
    let small = median(&goodput);
    println!(
        "download  {small_files} files of 4 KiB, 1 seeder: {small:8.0} MiB/s goodput (small / big files = {:.2})",
        small / results[0]
    );
    println!(
        "          before the first chunk (manifest of {small_files} files, validation, vote, staging): {:.2} s; after the last (sync, swap): {:.2} s",
        median(&before),
        median(&after)
    );
}
