//! The one path validation function, and resolving a validated path under a
//! root without leaving it.
//!
//! Every path that names a file inside a game's payload goes through
//! [`validate_relative_path`]: paths in manifests (ours and peers'), archive
//! entries, chunk requests. A path that passes is a [`RelPath`]: forward-slash
//! separated, relative, with no `.`/`..` component, no drive or root prefix, no
//! NUL or backslash, and no component that Windows would read as a device
//! (`CON`, `NUL`, `COM1`, …) or silently alter (a trailing dot or space).
//! The stricter-than-Unix rules exist because most party PCs run Windows, and
//! a path that means one file on Linux can mean another there.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Longest relative path accepted, in bytes (Windows' extended paths allow
/// about 32k; this keeps a hostile manifest from making us hold huge strings).
pub const MAX_PATH_LEN_BYTES: usize = 4096;
/// Longest single component accepted, in bytes (most filesystems cap at 255).
pub const MAX_COMPONENT_LEN_BYTES: usize = 255;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path is longer than {MAX_PATH_LEN_BYTES} bytes")]
    TooLong,
    #[error("path {0:?} contains a NUL byte")]
    Nul(String),
    #[error("path {0:?} is absolute")]
    Absolute(String),
    #[error("path {0:?} has a drive or device prefix")]
    DrivePrefix(String),
    #[error("path {0:?} contains a backslash; paths use '/'")]
    Backslash(String),
    #[error("path {0:?} has an empty component")]
    EmptyComponent(String),
    #[error("path {0:?} has a '.' or '..' component")]
    DotComponent(String),
    #[error("path {path:?} has a component that Windows cannot hold: {component:?}")]
    NotPortable { path: String, component: String },
    #[error("path {0:?} leaves its folder through a symbolic link")]
    SymlinkEscape(String),
    #[error("could not inspect {path:?}: {message}")]
    Io { path: String, message: String },
}

/// A validated relative path inside a game folder, `/`-separated.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RelPath(String);

impl RelPath {
    /// The path as sent on the wire and stored in manifests.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components, in order.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The first component (a top-level file or folder of the payload).
    pub fn first_component(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }

    /// `root` joined with this path, using the platform's separators. The
    /// result is lexically inside `root`; use [`resolve_within`] when
    /// symbolic links on disk must be checked too.
    pub fn join_to(&self, root: &Path) -> PathBuf {
        let mut out = root.to_path_buf();
        for component in self.components() {
            out.push(component);
        }
        out
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RelPath {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        validate_relative_path(&raw).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<&str> for RelPath {
    type Error = PathError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        validate_relative_path(value)
    }
}

/// Device names that Windows reserves in every folder, with or without an
/// extension (`nul.txt` is the NUL device too).
const WINDOWS_DEVICE_NAMES: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "COM0", "COM1", "COM2", "COM3", "COM4",
    "COM5", "COM6", "COM7", "COM8", "COM9", "LPT0", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6",
    "LPT7", "LPT8", "LPT9",
];

/// Characters Windows refuses in a file name.
const WINDOWS_FORBIDDEN_CHARS: &[char] = &['<', '>', ':', '"', '|', '?', '*'];

/// The one path validation function: accepts a relative, `/`-separated path
/// that stays inside its folder on every platform lanspread runs on.
pub fn validate_relative_path(raw: &str) -> Result<RelPath, PathError> {
    // One spelling of every name: macOS writes "é" as "e" + a combining
    // accent (NFD), Windows and Linux as one character (NFC). Paths are
    // kept in NFC, so a Mac and a PC build one manifest, one digest, and
    // two spellings of one name are one path (a collision, not two files).
    if unicode_normalization::is_nfc_quick(raw.chars()) != unicode_normalization::IsNormalized::Yes
    {
        let nfc: String = unicode_normalization::UnicodeNormalization::nfc(raw).collect();
        if nfc != raw {
            return validate_nfc_path(&nfc);
        }
    }
    validate_nfc_path(raw)
}

fn validate_nfc_path(raw: &str) -> Result<RelPath, PathError> {
    let owned = || raw.to_owned();
    if raw.is_empty() {
        return Err(PathError::Empty);
    }
    if raw.len() > MAX_PATH_LEN_BYTES {
        return Err(PathError::TooLong);
    }
    if raw.contains('\0') {
        return Err(PathError::Nul(owned()));
    }
    if raw.starts_with('/') {
        return Err(PathError::Absolute(owned()));
    }
    if raw.contains('\\') {
        // Also catches `\\?\` device paths and `\\server\share`.
        return Err(PathError::Backslash(owned()));
    }
    let bytes = raw.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err(PathError::DrivePrefix(owned()));
    }
    for component in raw.split('/') {
        if component.is_empty() {
            return Err(PathError::EmptyComponent(owned()));
        }
        if component == "." || component == ".." {
            return Err(PathError::DotComponent(owned()));
        }
        if !is_portable_component(component) {
            return Err(PathError::NotPortable {
                path: owned(),
                component: component.to_owned(),
            });
        }
    }
    Ok(RelPath(raw.to_owned()))
}

fn is_portable_component(component: &str) -> bool {
    if component.len() > MAX_COMPONENT_LEN_BYTES {
        return false;
    }
    if component.ends_with('.') || component.ends_with(' ') {
        return false;
    }
    // Byte by byte for ASCII (the common case, and a hostile manifest's
    // millions of components); char by char only past it.
    let forbidden = |c: char| c.is_control() || WINDOWS_FORBIDDEN_CHARS.contains(&c);
    let bad = if component.is_ascii() {
        component.bytes().any(|b| forbidden(char::from(b)))
    } else {
        component.chars().any(forbidden)
    };
    if bad {
        return false;
    }
    let stem = component.split('.').next().unwrap_or(component);
    let stem = stem.trim_end_matches(' ');
    // Device names are 3 to 7 bytes long.
    !((3..=7).contains(&stem.len())
        && WINDOWS_DEVICE_NAMES
            .iter()
            .any(|device| device.eq_ignore_ascii_case(stem)))
}

/// Turns a path found on disk under `root` into a [`RelPath`], validating it
/// with the one function above.
pub fn rel_path_from_disk(root: &Path, path: &Path) -> Result<RelPath, PathError> {
    let display = || path.display().to_string();
    let relative = path.strip_prefix(root).map_err(|_| PathError::Io {
        path: display(),
        message: format!("not inside {}", root.display()),
    })?;
    let mut parts = Vec::new();
    for component in relative.components() {
        match component {
            std::path::Component::Normal(part) => match part.to_str() {
                Some(text) => parts.push(text),
                None => {
                    return Err(PathError::NotPortable {
                        path: display(),
                        component: part.to_string_lossy().into_owned(),
                    });
                }
            },
            _ => return Err(PathError::DotComponent(display())),
        }
    }
    validate_relative_path(&parts.join("/"))
}

/// Resolves `rel` under `root` on disk, refusing any symbolic link on the way
/// whose target leaves `root`. Parts of the path that do not exist yet are
/// fine (the caller may be about to create them).
pub fn resolve_within(root: &Path, rel: &RelPath) -> Result<PathBuf, PathError> {
    let io_err = |path: &Path, err: std::io::Error| PathError::Io {
        path: path.display().to_string(),
        message: err.to_string(),
    };
    let canonical_root = root.canonicalize().map_err(|e| io_err(root, e))?;
    let mut current = canonical_root.clone();
    for component in rel.components() {
        current.push(component);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = current.canonicalize().map_err(|e| io_err(&current, e))?;
                if !target.starts_with(&canonical_root) {
                    return Err(PathError::SymlinkEscape(rel.to_string()));
                }
                current = target;
            }
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_err(&current, err)),
        }
    }
    Ok(current)
}

/// [`resolve_within`], also finding a file whose name is spelled in
/// another Unicode form on disk (NFD names copied from a Mac onto a Linux
/// disk, which does not normalise): when the path does not exist as
/// spelled, each folder on the way is searched for the entry whose NFC
/// spelling matches.
pub fn resolve_within_any_spelling(root: &Path, rel: &RelPath) -> Result<PathBuf, PathError> {
    let resolved = resolve_within(root, rel)?;
    if rel.as_str().is_ascii() || std::fs::symlink_metadata(&resolved).is_ok() {
        return Ok(resolved);
    }
    let mut on_disk = PathBuf::new();
    for component in rel.components() {
        let folder = root.join(&on_disk);
        let found = std::fs::read_dir(&folder).ok().and_then(|entries| {
            entries.filter_map(Result::ok).find_map(|entry| {
                let name = entry.file_name();
                let name = name.to_str()?;
                let nfc: String = unicode_normalization::UnicodeNormalization::nfc(name).collect();
                (nfc == component).then(|| name.to_owned())
            })
        });
        match found {
            Some(name) => on_disk.push(name),
            None => return Ok(resolved),
        }
    }
    let spelled = validate_nfc_path_on_disk(&on_disk);
    match spelled {
        Some(rel_on_disk) => resolve_within(root, &rel_on_disk),
        None => Ok(resolved),
    }
}

/// The on-disk spelling as a relative path for [`resolve_within`]'s link
/// checks (not normalised: it must name the entries as they are).
fn validate_nfc_path_on_disk(path: &Path) -> Option<RelPath> {
    let text = path.to_str()?.replace(std::path::MAIN_SEPARATOR, "/");
    validate_nfc_path(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_name_spelled_the_mac_way_on_disk_is_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("Maps")).unwrap();
        std::fs::write(dir.path().join("Maps/Cafe\u{301}.ut2"), b"nfd").unwrap();
        let rel = validate_relative_path("Maps/Caf\u{e9}.ut2").unwrap();
        let found = resolve_within_any_spelling(dir.path(), &rel).unwrap();
        assert_eq!(std::fs::read(found).unwrap(), b"nfd");
    }

    #[test]
    fn a_mac_and_a_pc_spell_a_name_the_same() {
        let mac = validate_relative_path("Maps/Cafe\u{301}.ut2").unwrap();
        let pc = validate_relative_path("Maps/Caf\u{e9}.ut2").unwrap();
        assert_eq!(mac, pc);
        assert_eq!(mac.as_str(), "Maps/Caf\u{e9}.ut2");
    }

    #[test]
    fn accepts_ordinary_game_paths() {
        for ok in [
            "setup.exe",
            "Data/Maps/DM-Deck16][.ut2",
            "System/UT2004.ini",
            "data.zip",
            "a b/c d.txt",
            "..hidden-but-fine",
            "ÄÖÜ/ünïcödé.pak",
        ] {
            assert!(validate_relative_path(ok).is_ok(), "{ok} should pass");
        }
    }

    #[test]
    fn refuses_every_escape() {
        type Expect = fn(&PathError) -> bool;
        let cases: &[(&str, Expect)] = &[
            ("", |e| matches!(e, PathError::Empty)),
            ("../evil", |e| matches!(e, PathError::DotComponent(_))),
            ("a/../../evil", |e| matches!(e, PathError::DotComponent(_))),
            ("a/./b", |e| matches!(e, PathError::DotComponent(_))),
            ("/etc/passwd", |e| matches!(e, PathError::Absolute(_))),
            ("C:/Windows/win.ini", |e| {
                matches!(e, PathError::DrivePrefix(_))
            }),
            ("c:evil", |e| matches!(e, PathError::DrivePrefix(_))),
            ("a\\..\\b", |e| matches!(e, PathError::Backslash(_))),
            ("\\\\server\\share", |e| {
                matches!(e, PathError::Backslash(_))
            }),
            ("a//b", |e| matches!(e, PathError::EmptyComponent(_))),
            ("a/", |e| matches!(e, PathError::EmptyComponent(_))),
            ("a\0b", |e| matches!(e, PathError::Nul(_))),
            ("con", |e| matches!(e, PathError::NotPortable { .. })),
            ("maps/NUL.txt", |e| {
                matches!(e, PathError::NotPortable { .. })
            }),
            ("trailing.", |e| matches!(e, PathError::NotPortable { .. })),
            ("what?", |e| matches!(e, PathError::NotPortable { .. })),
        ];
        for (raw, expected) in cases {
            let err = validate_relative_path(raw).expect_err(raw);
            assert!(expected(&err), "{raw:?} gave {err:?}");
        }
        assert_eq!(
            validate_relative_path(&"a".repeat(MAX_PATH_LEN_BYTES + 1)),
            Err(PathError::TooLong)
        );
    }

    #[test]
    fn deserializing_validates() {
        let err = serde_json_like("\"../x\"");
        assert!(err.is_err());
        assert!(serde_json_like("\"ok/x\"").is_ok());
    }

    fn serde_json_like(ron_text: &str) -> Result<RelPath, ron::error::SpannedError> {
        ron::from_str(ron_text)
    }

    #[cfg(unix)]
    #[test]
    fn symlink_leaving_the_root_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
        std::fs::create_dir(root.path().join("inner")).unwrap();
        std::os::unix::fs::symlink(root.path().join("inner"), root.path().join("ok")).unwrap();
        let rel = validate_relative_path("link/file").unwrap();
        assert!(matches!(
            resolve_within(root.path(), &rel),
            Err(PathError::SymlinkEscape(_))
        ));
        let rel = validate_relative_path("ok/file").unwrap();
        let resolved = resolve_within(root.path(), &rel).unwrap();
        assert!(resolved.starts_with(root.path().canonicalize().unwrap()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever the input, an accepted path joined under a root stays
        /// lexically under it, and has no component that climbs or is a root.
        #[test]
        fn accepted_paths_stay_inside(raw in "(\\PC|/|\\\\|\\.|:|[a-zA-Z]){0,40}") {
            if let Ok(rel) = validate_relative_path(&raw) {
                let root = Path::new("/games/ut2004");
                let joined = rel.join_to(root);
                prop_assert!(joined.starts_with(root));
                for component in joined.strip_prefix(root).unwrap().components() {
                    prop_assert!(matches!(component, std::path::Component::Normal(_)));
                }
                prop_assert!(!raw.split('/').any(|c| c == ".." || c == "." || c.is_empty()));
                prop_assert!(!raw.contains('\\') && !raw.contains('\0'));
            }
        }

        /// Paths built only from ordinary names are always accepted, and
        /// the result round-trips.
        #[test]
        fn ordinary_paths_are_accepted(parts in prop::collection::vec("[a-zA-Z0-9_-]{1,12}(\\.[a-z]{1,4})?", 1..6)) {
            let raw = parts.join("/");
            let portable = parts.iter().all(|p| is_portable_component(p));
            let result = validate_relative_path(&raw);
            prop_assert_eq!(result.is_ok(), portable);
            if let Ok(rel) = result {
                prop_assert_eq!(rel.as_str(), raw.as_str());
            }
        }

        /// Any path with a `..` component somewhere is refused.
        #[test]
        fn dotdot_anywhere_is_refused(prefix in "[a-z/]{0,10}", suffix in "[a-z/]{0,10}") {
            let raw = format!("{prefix}/../{suffix}");
            prop_assert!(validate_relative_path(&raw).is_err());
        }
    }
}
