//! Games at real sizes, as real processes: many small files under a low
//! open-file limit, on every side.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

mod common;

use std::time::Duration;

use common::{eventually, lanspread, last_json_line, serve_limited, status, with_open_file_limit};
use lanspread_core::GameCatalog;
use lanspread_tests::{GamesFolder, tree_hashes};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// 20,000 files, most under 16 KiB, two of 64 MiB: two seeders and the
/// downloader each run under `ulimit -n 256`. One handle per file (as
/// before pieces and the bounded handle set) fails at once with "Too many
/// open files"; one request per small file makes it 20,000 round trips.
#[cfg(unix)]
#[test]
fn twenty_thousand_files_download_under_a_low_open_file_limit() {
    const FILES: usize = 20_000;
    const OPEN_FILES: u32 = 256;
    let catalog = GameCatalog::embedded().unwrap();
    let seed = GamesFolder::new();
    let names: Vec<(String, usize)> = (0..FILES)
        .map(|i| {
            let len = if i % 10_000 == 5_000 {
                64 * MIB
            } else if i % 1_000 == 7 {
                0 // empty files: created before the fetch, not by a write
            } else {
                1 + (i * 7919) % (16 * KIB)
            };
            (format!("Data/{:03}/file-{i:05}.dat", i % 200), len)
        })
        .collect();
    let files: Vec<(&str, usize)> = names.iter().map(|(n, l)| (n.as_str(), *l)).collect();
    seed.add_payload("ut2004", &files, 12)
        .write_catalog_version("ut2004", &catalog);
    let total: usize = files.iter().map(|f| f.1).sum();

    let (data_a, data_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = serve_limited(data_a.path(), seed.path(), "A", &[], &[], Some(OPEN_FILES));
    let b = serve_limited(data_b.path(), seed.path(), "B", &[], &[], Some(OPEN_FILES));
    for data in [data_a.path(), data_b.path()] {
        eventually(Duration::from_secs(120), || {
            status(data).filter(|s| s["games"].as_array().is_some_and(|g| !g.is_empty()))
        });
    }

    let target = GamesFolder::new();
    let data = tempfile::tempdir().unwrap();
    let mut get = lanspread(data.path());
    get.args(["get", "ut2004", "--no-discovery", "--json"])
        .args(["--peer", &a.addr.to_string(), "--peer", &b.addr.to_string()])
        .arg("--games")
        .arg(target.path());
    let started = std::time::Instant::now();
    let out = with_open_file_limit(&get, OPEN_FILES).output().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = last_json_line(&out.stdout);
    let pieces = report["total_pieces"].as_u64().unwrap();
    eprintln!(
        "{FILES} files, {} MiB: {pieces} pieces, {seconds:.1} s; {report}",
        total / MIB
    );
    // Small files travel together: a request per 512 KiB at most on
    // average, not one per file.
    assert!(pieces <= (total / (512 * KIB)) as u64, "{pieces} pieces");
    assert_eq!(report["bytes"].as_u64().unwrap(), total as u64);
    let shares = report["peers"].as_array().unwrap();
    assert_eq!(shares.len(), 2, "{report}");
    let expected = tree_hashes(&seed.game_dir("ut2004"));
    assert_eq!(expected.len(), FILES + 1);
    assert_eq!(tree_hashes(&target.game_dir("ut2004")), expected);
}
