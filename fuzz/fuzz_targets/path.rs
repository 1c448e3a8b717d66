//! The one path function: whatever it accepts stays inside its folder.
#![no_main]

use std::path::{Component, Path};

use lanspread_core::validate_relative_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rel) = validate_relative_path(raw) else {
        return;
    };
    // Kept as given, but for its Unicode spelling (NFC): validating the
    // result again gives the same path.
    let again = validate_relative_path(rel.as_str()).expect("an accepted path stays accepted");
    assert_eq!(again.as_str(), rel.as_str());
    if raw.is_ascii() {
        assert_eq!(rel.as_str(), raw);
    }
    let root = Path::new("/games/ut2004");
    let joined = rel.join_to(root);
    assert!(joined.starts_with(root), "{joined:?}");
    for component in joined.strip_prefix(root).expect("under the root").components() {
        assert!(matches!(component, Component::Normal(_)), "{raw:?}");
    }
});
