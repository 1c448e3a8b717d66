//! `version.ini` as found on disk (written by anyone): parsing never panics.
#![no_main]

use lanspread_core::version::parse_version_ini;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(version) = parse_version_ini(data) {
        assert!(!version.as_str().is_empty());
    }
});
