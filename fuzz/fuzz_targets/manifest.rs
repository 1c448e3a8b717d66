//! A peer's manifest: decoding and validation never panic; a valid one
//! plans its chunks and pieces consistently (every chunk in one piece, in
//! order, within the piece bounds) and every path stays a payload path.
#![no_main]

use lanspread_core::Manifest;
use lanspread_core::download::{MAX_PIECE_BYTES, MAX_PIECE_CHUNKS, PiecePlan};
use lanspread_core::layout::is_payload_entry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = postcard::from_bytes::<Manifest>(data) else {
        return;
    };
    if manifest.validate().is_err() {
        return;
    }
    let _ = manifest.digest();
    let plan = PiecePlan::new(&manifest);
    assert_eq!(plan.chunks.len(), manifest.total_chunks());
    let mut next = 0;
    for (index, piece) in plan.pieces.iter().enumerate() {
        assert_eq!(piece.chunks.start, next);
        assert!(!piece.chunks.is_empty() && piece.chunks.len() <= MAX_PIECE_CHUNKS);
        assert!(piece.len <= MAX_PIECE_BYTES);
        let ranges: u64 = plan.ranges(index).iter().map(|r| r.len).sum();
        assert_eq!(ranges, piece.len);
        next = piece.chunks.end;
    }
    assert_eq!(next, plan.chunks.len());
    for file in &manifest.files {
        assert!(is_payload_entry(file.path.first_component()));
    }
});
