//! A manifest built to exhaust a downloader: 2,000 paths of 2,000
//! components each (about 8 MB of paths, well inside one manifest frame).
//! Decoding and validating it must take under a second and 100 MB, where
//! the first validation built every folder prefix of every path (tens of
//! GB). Memory is measured with a counting allocator in this test binary.

#![allow(unsafe_code)] // the counting allocator below
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lanspread_core::manifest::{FileEntry, Manifest};
use lanspread_core::paths::validate_relative_path;
use lanspread_core::{GameId, GameVersion};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only
// byte counts are kept beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on as it is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn two_thousand_paths_of_two_thousand_components_are_checked_in_bounds() {
    // Every path in its own top folder: no two share a folder prefix.
    let deep = vec!["d"; 1998].join("/");
    let files: Vec<FileEntry> = (0..2000)
        .map(|i| FileEntry {
            path: validate_relative_path(&format!("f{i:04}/{deep}/x")).unwrap(),
            len_bytes: 0,
            chunks: Vec::new(),
        })
        .collect();
    let manifest = Manifest {
        game: GameId::parse("ut2004").unwrap(),
        version: GameVersion::parse("1").unwrap(),
        files,
    };
    let bytes = postcard::to_allocvec(&manifest).unwrap();
    drop(manifest);
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let started = Instant::now();
    let decoded: Manifest = postcard::from_bytes(&bytes).unwrap();
    let checked = decoded.validate();
    let took = started.elapsed();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    eprintln!(
        "{} bytes of manifest: decoded and validated in {took:?}, {} MB at most",
        bytes.len(),
        peak / 1_000_000
    );
    checked.unwrap();
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(peak < 100_000_000, "{peak} bytes");
}
