//! An organiser's catalog file: parsing never panics, and a catalog that
//! parses can be looked up by every id it lists.
#![no_main]

use lanspread_core::GameCatalog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(catalog) = GameCatalog::parse(text, "fuzz.ron") {
        for entry in catalog.entries() {
            assert!(catalog.get_str(entry.id.as_str()).is_some());
        }
    }
});
