//! A payload archive from a game folder: unpacking never panics and never
//! writes outside its target folder. The first byte picks the format.
#![no_main]

use lanspread_core::archive::unpack_into;
use lanspread_core::validate_relative_path;
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 6] = ["a.zip", "a.7z", "a.tar", "a.tar.gz", "a.tar.zst", "a.bin"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let name = NAMES[usize::from(pick) % NAMES.len()];
    let dir = tempfile::tempdir().expect("a temporary folder");
    let source = dir.path().join(name);
    std::fs::write(&source, bytes).expect("the archive is written");
    let target = dir.path().join("target");
    std::fs::create_dir(&target).expect("the target exists");
    let rel = validate_relative_path(name).expect("a valid name");
    let _ = unpack_into(&source, &rel, &target);
    // Nothing beside the archive and the target.
    let mut entries: Vec<String> = std::fs::read_dir(dir.path())
        .expect("readable")
        .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    let mut expected = vec![name.to_owned(), "target".to_owned()];
    expected.sort();
    assert_eq!(entries, expected);
});
