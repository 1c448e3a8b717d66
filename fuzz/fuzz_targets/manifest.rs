//! A peer's manifest: decoding and validation never panic; a valid one
//! plans its chunks consistently and every path stays a payload path.
#![no_main]

use lanspread_core::Manifest;
use lanspread_core::download::ChunkPlan;
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
    let plan = ChunkPlan::new(&manifest);
    let chunks: usize = manifest.files.iter().map(|f| f.chunks.len()).sum();
    assert_eq!(plan.len(), chunks);
    for file in &manifest.files {
        assert!(is_payload_entry(file.path.first_component()));
    }
});
