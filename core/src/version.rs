//! Game versions and the `version.ini` sentinel.
//!
//! `version.ini` is written by hand at parties as often as by lanspread, on
//! Windows as often as not, so reading it is tolerant: a UTF-8 or UTF-16 byte
//! order mark, CRLF or CR line ends, blank lines, `;`/`#` comments, INI section
//! headers, and either a bare version line or a `version=` key (any case,
//! optional quotes). Anything else is a typed [`VersionIniError`], never a panic.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The file whose presence marks a payload complete, and names its version.
pub const VERSION_INI: &str = "version.ini";

/// Longest version string accepted.
pub const MAX_VERSION_LEN: usize = 64;

/// Largest `version.ini` read; a bigger file is not a version sentinel.
pub const MAX_VERSION_INI_BYTES: usize = 16 * 1024;

/// A game version as the party writes it, e.g. `20240315` or `1.0.7b`.
/// ASCII letters, digits and `.`, `_`, `+`, `-`; 1 to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct GameVersion(String);

/// Why a version string is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("version is empty")]
    Empty,
    #[error("version is longer than {MAX_VERSION_LEN} characters")]
    TooLong,
    #[error("version {0:?} may only hold letters, digits and . _ + -")]
    BadCharacter(String),
}

impl GameVersion {
    pub fn parse(raw: &str) -> Result<Self, VersionError> {
        if raw.is_empty() {
            return Err(VersionError::Empty);
        }
        if raw.len() > MAX_VERSION_LEN {
            return Err(VersionError::TooLong);
        }
        if !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
        {
            return Err(VersionError::BadCharacter(raw.to_owned()));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this version comes after `other` in the party's usual
    /// writing: runs of digits compare as numbers (`20240301` after
    /// `20240101`, `1.0.10` after `1.0.9`), everything else as text. Used
    /// only to word a difference ("update available" or "differs from the
    /// catalog"); the catalog's version is the right one either way.
    pub fn is_newer_than(&self, other: &GameVersion) -> bool {
        natural_cmp(&self.0, &other.0) == std::cmp::Ordering::Greater
    }

    /// The text lanspread writes into `version.ini`.
    pub fn to_ini(&self) -> String {
        format!("[lanspread]\nversion={}\n", self.0)
    }
}

/// Compares runs of ASCII digits by value and everything else byte by byte.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let run = |s: &[u8], from: usize| {
                let end = s[from..]
                    .iter()
                    .position(|c| !c.is_ascii_digit())
                    .map_or(s.len(), |n| from + n);
                // Leading zeros do not change a number's value.
                let start = s[from..end]
                    .iter()
                    .position(|&c| c != b'0')
                    .map_or(end, |n| from + n);
                (start, end)
            };
            let ((sa, ea), (sb, eb)) = (run(a, i), run(b, j));
            let by_value = (ea - sa)
                .cmp(&(eb - sb))
                .then_with(|| a[sa..ea].cmp(&b[sb..eb]));
            if by_value != Ordering::Equal {
                return by_value;
            }
            (i, j) = (ea, eb);
        } else {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            (i, j) = (i + 1, j + 1);
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}

impl fmt::Display for GameVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for GameVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        GameVersion::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Why a `version.ini` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionIniError {
    #[error("version.ini is larger than {MAX_VERSION_INI_BYTES} bytes")]
    TooLarge,
    #[error("version.ini is not valid text (UTF-8 or UTF-16 with a byte order mark)")]
    NotText,
    #[error("version.ini names no version")]
    NoVersion,
    #[error("version.ini names more than one version: {0:?} and {1:?}")]
    Ambiguous(String, String),
    #[error("version.ini has a bad version: {0}")]
    BadVersion(#[from] VersionError),
}

/// Reads the bytes of a `version.ini`.
pub fn parse_version_ini(bytes: &[u8]) -> Result<GameVersion, VersionIniError> {
    if bytes.len() > MAX_VERSION_INI_BYTES {
        return Err(VersionIniError::TooLarge);
    }
    let text = decode_text(bytes)?;
    let mut keyed: Option<String> = None;
    let mut bare: Option<String> = None;
    for line in text.split(['\n', '\r']) {
        let line = line.trim();
        if line.is_empty()
            || line.starts_with(';')
            || line.starts_with('#')
            || line.starts_with('[')
        {
            continue;
        }
        match line.split_once('=') {
            Some((key, value)) => {
                if key.trim().eq_ignore_ascii_case("version") {
                    let value = unquote(value.trim()).to_owned();
                    if let Some(previous) = keyed.take()
                        && previous != value
                    {
                        return Err(VersionIniError::Ambiguous(previous, value));
                    }
                    keyed = Some(value);
                }
                // Other keys (e.g. `name=`) are the party's own notes.
            }
            None => {
                let value = unquote(line).to_owned();
                match &bare {
                    Some(previous) if previous != &value => {
                        return Err(VersionIniError::Ambiguous(previous.clone(), value));
                    }
                    _ => bare = Some(value),
                }
            }
        }
    }
    let found = keyed.or(bare).ok_or(VersionIniError::NoVersion)?;
    Ok(GameVersion::parse(&found)?)
}

fn unquote(value: &str) -> &str {
    let stripped = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')));
    stripped.unwrap_or(value).trim()
}

fn decode_text(bytes: &[u8]) -> Result<String, VersionIniError> {
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return String::from_utf8(rest.to_vec()).map_err(|_| VersionIniError::NotText);
    }
    let utf16 = |rest: &[u8], little_endian: bool| {
        if !rest.len().is_multiple_of(2) {
            return Err(VersionIniError::NotText);
        }
        let units = rest.chunks_exact(2).map(|pair| {
            if little_endian {
                u16::from_le_bytes([pair[0], pair[1]])
            } else {
                u16::from_be_bytes([pair[0], pair[1]])
            }
        });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|_| VersionIniError::NotText)
    };
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        return utf16(rest, true);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return utf16(rest, false);
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| VersionIniError::NotText)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn newer_compares_numbers_as_numbers() {
        let newer = |a: &str, b: &str| {
            GameVersion::parse(a)
                .unwrap()
                .is_newer_than(&GameVersion::parse(b).unwrap())
        };
        assert!(newer("20240301", "20240101"));
        assert!(!newer("20240101", "20240301"));
        assert!(newer("1.0.10", "1.0.9"));
        assert!(newer("10", "9"));
        assert!(newer("1.0.7b", "1.0.7a"));
        assert!(newer("1.0.7.1", "1.0.7"));
        assert!(!newer("1.0.7", "1.0.7"));
        assert!(!newer("007", "7"));
        assert!(!newer("7", "007"));
    }

    fn v(text: &str) -> Result<String, VersionIniError> {
        parse_version_ini(text.as_bytes()).map(|v| v.as_str().to_owned())
    }

    #[test]
    fn reads_the_forms_parties_write() {
        assert_eq!(v("20240315"), Ok("20240315".into()));
        assert_eq!(v("20240315\r\n"), Ok("20240315".into()));
        assert_eq!(v("\u{feff}20240315\r\n"), Ok("20240315".into()));
        assert_eq!(v("version=1.2.3"), Ok("1.2.3".into()));
        assert_eq!(
            v("[game]\r\nname=UT\r\nVersion = \"3369\"\r\n"),
            Ok("3369".into())
        );
        assert_eq!(
            v("; comment\n\n# another\nversion='1.0b'\n"),
            Ok("1.0b".into())
        );
        assert_eq!(v("20240315\rname=x\r"), Ok("20240315".into()));
        // The keyed form wins over a stray bare line.
        assert_eq!(v("notes\nversion=2\n"), Ok("2".into()));
        assert_eq!(
            GameVersion::parse("7").unwrap().to_ini(),
            "[lanspread]\nversion=7\n"
        );
        assert_eq!(
            v(&GameVersion::parse("7").unwrap().to_ini()),
            Ok("7".into())
        );
    }

    #[test]
    fn reads_utf16_from_notepad() {
        let mut bytes = vec![0xFF, 0xFE];
        for unit in "version=20231101\r\n".encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        assert_eq!(parse_version_ini(&bytes).unwrap().as_str(), "20231101");
        let mut bytes = vec![0xFE, 0xFF];
        for unit in "42".encode_utf16() {
            bytes.extend_from_slice(&unit.to_be_bytes());
        }
        assert_eq!(parse_version_ini(&bytes).unwrap().as_str(), "42");
    }

    #[test]
    fn reports_broken_files() {
        assert_eq!(v(""), Err(VersionIniError::NoVersion));
        assert_eq!(
            v("\r\n; only a comment\r\n"),
            Err(VersionIniError::NoVersion)
        );
        assert!(matches!(
            v("version="),
            Err(VersionIniError::BadVersion(VersionError::Empty))
        ));
        assert!(matches!(v("1 2"), Err(VersionIniError::BadVersion(_))));
        assert!(matches!(v("a\nb"), Err(VersionIniError::Ambiguous(_, _))));
        assert!(matches!(
            v("version=1\nversion=2"),
            Err(VersionIniError::Ambiguous(_, _))
        ));
        assert_eq!(
            parse_version_ini(&[0xff, 0x00, 0xc3]),
            Err(VersionIniError::NotText)
        );
        assert_eq!(
            parse_version_ini(&[0xFF, 0xFE, 0x31]),
            Err(VersionIniError::NotText)
        );
        assert_eq!(
            parse_version_ini(&vec![b'1'; MAX_VERSION_INI_BYTES + 1]),
            Err(VersionIniError::TooLarge)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Any bytes: an answer, never a panic; an accepted version is valid.
        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(version) = parse_version_ini(&bytes) {
                prop_assert!(GameVersion::parse(version.as_str()).is_ok());
            }
        }

        /// A valid version survives every way a party might write it down.
        #[test]
        fn round_trips_through_every_spelling(
            version in "[A-Za-z0-9._+-]{1,64}",
            bom in any::<bool>(),
            crlf in any::<bool>(),
            keyed in any::<bool>(),
            section in any::<bool>(),
            quoted in any::<bool>(),
        ) {
            let newline = if crlf { "\r\n" } else { "\n" };
            let value = if quoted { format!("\"{version}\"") } else { version.clone() };
            let mut text = String::new();
            if bom { text.push('\u{feff}'); }
            if section { text.push_str("[game]"); text.push_str(newline); }
            if keyed { text.push_str("version = "); }
            text.push_str(&value);
            text.push_str(newline);
            prop_assert_eq!(parse_version_ini(text.as_bytes()).map(|v| v.0), Ok(version));
        }
    }
}
