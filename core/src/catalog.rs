//! The game catalog: the authority on which games exist and which version of
//! each is the right one.
//!
//! The catalog is embedded into the executable from `assets/catalog.ron`. An
//! organiser can hand out a newer catalog file that replaces it (`--catalog
//! FILE`, or the catalog file in settings). A catalog that does not parse or
//! does not validate is reported with its file, line and what is wrong, and
//! the caller keeps the embedded catalog (see [`GameCatalog::load_or_embedded`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::version::GameVersion;

/// The catalog bundled into every lanspread executable.
pub const EMBEDDED_CATALOG_RON: &str = include_str!("../../assets/catalog.ron");

/// Where the embedded catalog came from, for messages.
pub const EMBEDDED_CATALOG_NAME: &str = "<embedded assets/catalog.ron>";

/// Largest catalog file read from disk.
pub const MAX_CATALOG_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// A game's identifier: lowercase ASCII letters, digits, `-` and `_`, 1 to 64
/// characters. It is also the name of the game's folder, so it must be a safe
/// single path component on every platform.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct GameId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "game id {0:?} must be 1 to 64 characters of a-z, 0-9, '-' or '_', and not a name Windows reserves for a device (con, nul, aux, com1, lpt1, …)"
)]
pub struct BadGameId(pub String);

impl GameId {
    pub fn parse(raw: &str) -> Result<Self, BadGameId> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            // The id is a folder name: `con` or `com1` cannot be one on Windows.
            && crate::paths::validate_relative_path(raw).is_ok();
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(BadGameId(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GameId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for GameId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        GameId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// One game as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    pub id: GameId,
    pub title: String,
    /// The right version: the only one served and fetched.
    pub version: GameVersion,
    pub description: String,
    pub genre: String,
    pub max_players: u32,
    /// Approximate payload size, for the library view before a manifest exists.
    pub approx_size_mib: u64,
    /// A cover image under `assets/covers/`, if the catalog names one.
    #[serde(default)]
    pub cover: Option<String>,
    /// The organiser's pin: the digest (64 hex digits) of the manifest of
    /// the right copy (`lanspread catalog pin`). When set, a download takes
    /// that manifest only, whatever the peers vote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// How to start the game once installed, per platform where it
    /// differs (see [`crate::launch`]); without it the window offers
    /// "Open folder".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub launch: Vec<crate::launch::LaunchEntry>,
}

impl CatalogEntry {
    /// The pinned manifest digest, if the catalog pins one.
    pub fn pinned_manifest(&self) -> Option<crate::manifest::Blake3Hash> {
        self.manifest
            .as_deref()
            .and_then(crate::manifest::Blake3Hash::from_hex)
    }
}

/// The file format of `catalog.ron`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    /// The organiser's name for this edition of the catalog, e.g. `2026-11`.
    edition: String,
    games: Vec<CatalogEntry>,
}

/// The loaded, validated catalog.
#[derive(Debug, Clone)]
pub struct GameCatalog {
    edition: String,
    source: String,
    fingerprint: blake3::Hash,
    games: BTreeMap<GameId, CatalogEntry>,
}

/// Why a catalog could not be used. Every variant names the file; parse and
/// validation errors name the line too.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalog {file}: {message}")]
    Read { file: String, message: String },
    #[error("catalog {file}, line {line}, column {column}: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("catalog {file}, line {line}: {message}")]
    Invalid {
        file: String,
        line: usize,
        message: String,
    },
}

impl GameCatalog {
    /// The catalog bundled into the executable.
    pub fn embedded() -> Result<Self, CatalogError> {
        Self::parse(EMBEDDED_CATALOG_RON, EMBEDDED_CATALOG_NAME)
    }

    /// Reads and validates a catalog file.
    pub fn from_file(path: &Path) -> Result<Self, CatalogError> {
        let file = path.display().to_string();
        let read_err = |message: String| CatalogError::Read {
            file: file.clone(),
            message,
        };
        let len = std::fs::metadata(path)
            .map_err(|e| read_err(e.to_string()))?
            .len();
        if len > MAX_CATALOG_FILE_BYTES {
            return Err(read_err(format!(
                "{len} bytes is more than the {MAX_CATALOG_FILE_BYTES} a catalog may have"
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| read_err(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|e| read_err(format!("not UTF-8: {e}")))?;
        Self::parse(&text, &file)
    }

    /// The organiser's catalog when one is given and it is good; otherwise the
    /// embedded one. The error, if any, is returned beside it so the caller
    /// can tell the user that the embedded catalog is in use and why.
    pub fn load_or_embedded(path: Option<&Path>) -> (Self, Option<CatalogError>) {
        let embedded = || match Self::embedded() {
            Ok(catalog) => catalog,
            // The embedded catalog is validated by a test; should a broken one
            // ever ship, run with an empty catalog rather than not at all.
            Err(err) => {
                tracing::error!("the embedded catalog is broken: {err}");
                Self::empty()
            }
        };
        match path {
            None => (embedded(), None),
            Some(path) => match Self::from_file(path) {
                Ok(catalog) => (catalog, None),
                Err(err) => (embedded(), Some(err)),
            },
        }
    }

    /// A catalog without games.
    pub fn empty() -> Self {
        Self {
            edition: String::new(),
            source: EMBEDDED_CATALOG_NAME.to_owned(),
            fingerprint: blake3::hash(b""),
            games: BTreeMap::new(),
        }
    }

    /// Parses and validates catalog text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, CatalogError> {
        // `os: "windows"` as well as `os: Some("windows")`: organisers write
        // these files by hand.
        let options = ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
        let parsed: CatalogFile = options.from_str(text).map_err(|err| CatalogError::Parse {
            file: file.to_owned(),
            line: err.span.start.line,
            column: err.span.start.col,
            message: err.code.to_string(),
        })?;
        let mut games = BTreeMap::new();
        for (index, entry) in parsed.games.into_iter().enumerate() {
            let invalid = |message: String| CatalogError::Invalid {
                file: file.to_owned(),
                line: line_of_entry(text, index),
                message,
            };
            if entry.title.trim().is_empty() {
                return Err(invalid(format!("game {} has an empty title", entry.id)));
            }
            if entry.max_players == 0 {
                return Err(invalid(format!("game {} has max_players 0", entry.id)));
            }
            if let Some(cover) = &entry.cover {
                crate::paths::validate_relative_path(cover)
                    .map_err(|e| invalid(format!("game {}: cover: {e}", entry.id)))?;
            }
            if let Some(pin) = &entry.manifest
                && crate::manifest::Blake3Hash::from_hex(pin).is_none()
            {
                return Err(invalid(format!(
                    "game {}: manifest must be 64 hex digits (from `lanspread catalog pin`)",
                    entry.id
                )));
            }
            crate::launch::validate_entries(&entry.launch)
                .map_err(|e| invalid(format!("game {}: {e}", entry.id)))?;
            if games.contains_key(&entry.id) {
                return Err(invalid(format!("game id {} appears twice", entry.id)));
            }
            games.insert(entry.id.clone(), entry);
        }
        Ok(Self {
            edition: parsed.edition,
            source: file.to_owned(),
            fingerprint: blake3::hash(text.as_bytes()),
            games,
        })
    }

    /// This catalog as a catalog file, with `pins` (game, manifest digest)
    /// set: what `lanspread catalog pin` writes.
    pub fn to_ron_with_pins(
        &self,
        pins: &BTreeMap<GameId, crate::manifest::Blake3Hash>,
    ) -> Result<String, ron::Error> {
        let file = CatalogFile {
            edition: self.edition.clone(),
            games: self
                .games
                .values()
                .map(|entry| {
                    let mut entry = entry.clone();
                    if let Some(pin) = pins.get(&entry.id) {
                        entry.manifest = Some(pin.to_hex());
                    }
                    entry
                })
                .collect(),
        };
        let pretty = ron::ser::PrettyConfig::new().depth_limit(3);
        ron::ser::to_string_pretty(&file, pretty)
    }

    pub fn get(&self, id: &GameId) -> Option<&CatalogEntry> {
        self.games.get(id)
    }

    /// Looks a game up by the id as typed by a user or sent by a peer.
    pub fn get_str(&self, id: &str) -> Option<&CatalogEntry> {
        GameId::parse(id).ok().and_then(|id| self.games.get(&id))
    }

    /// The catalog's version of a game, if the game is in the catalog.
    pub fn expected_version(&self, id: &GameId) -> Option<&GameVersion> {
        self.games.get(id).map(|entry| &entry.version)
    }

    /// Every game, ordered by id.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = &CatalogEntry> {
        self.games.values()
    }

    pub fn len(&self) -> usize {
        self.games.len()
    }

    pub fn is_empty(&self) -> bool {
        self.games.is_empty()
    }

    pub fn edition(&self) -> &str {
        &self.edition
    }

    /// Where this catalog was loaded from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// BLAKE3 of the catalog text: two peers with the same fingerprint agree
    /// on every game and version.
    pub fn fingerprint(&self) -> blake3::Hash {
        self.fingerprint
    }
}

/// The 1-based line where the `index`-th game entry starts, found by counting
/// `id:` fields; good enough to point an organiser at the right entry.
fn line_of_entry(text: &str, index: usize) -> usize {
    let mut seen = 0;
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim_start().trim_start_matches('(').trim_start();
        if trimmed.starts_with("id:") {
            if seen == index {
                return number + 1;
            }
            seen += 1;
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_catalog_round_trips_and_a_bad_pin_is_named() {
        let catalog = GameCatalog::embedded().unwrap();
        let ut = GameId::parse("ut2004").unwrap();
        let pin = crate::manifest::Blake3Hash::of(b"the right copy");
        let pins = BTreeMap::from([(ut.clone(), pin)]);
        let text = catalog.to_ron_with_pins(&pins).unwrap();
        let pinned = GameCatalog::parse(&text, "pinned.ron").unwrap();
        assert_eq!(pinned.len(), catalog.len());
        assert_eq!(pinned.get(&ut).unwrap().pinned_manifest(), Some(pin));
        assert_eq!(pinned.get_str("aoe2").unwrap().pinned_manifest(), None);
        assert_eq!(pinned.expected_version(&ut), catalog.expected_version(&ut));
        let broken = text.replacen(&pin.to_hex(), "not-hex", 1);
        let err = GameCatalog::parse(&broken, "pinned.ron").unwrap_err();
        assert!(err.to_string().contains("64 hex digits"), "{err}");
    }

    #[test]
    fn launch_entries_load_and_a_path_out_of_local_is_named() {
        // ut99's launch line, whatever the embedded catalog says, replaced.
        let embedded_line = EMBEDDED_CATALOG_RON
            .lines()
            .skip_while(|l| !l.contains("id: \"ut99\""))
            .find(|l| l.trim_start().starts_with("launch:"))
            .unwrap();
        let with = |launch: &str| {
            EMBEDDED_CATALOG_RON.replacen(embedded_line, &format!("launch: {launch},"), 1)
        };
        let text = with(
            r#"[(os: "windows", exe: "System/UT2004.exe", args: ["-log"]), (exe: "System/ut2004-bin")]"#,
        );
        let catalog = GameCatalog::parse(&text, "party.ron").unwrap();
        let entry = catalog.get_str("ut99").unwrap();
        assert_eq!(entry.launch.len(), 2);
        assert_eq!(entry.launch[0].exe, "System/UT2004.exe");
        // It survives `catalog pin`'s rewrite.
        let again = catalog.to_ron_with_pins(&BTreeMap::new()).unwrap();
        let reloaded = GameCatalog::parse(&again, "pinned.ron").unwrap();
        assert_eq!(reloaded.get_str("ut99").unwrap().launch, entry.launch);
        for bad in [
            r#"[(exe: "../../evil.exe")]"#,
            r#"[(exe: "C:/Windows/system32/cmd.exe")]"#,
            r#"[(os: "amiga", exe: "a")]"#,
        ] {
            let err = GameCatalog::parse(&with(bad), "party.ron").unwrap_err();
            assert!(
                matches!(err, CatalogError::Invalid { .. }) && err.to_string().contains("ut99"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn embedded_catalog_is_valid_and_large_enough() {
        let catalog = GameCatalog::embedded().unwrap();
        assert!(catalog.len() >= 40, "only {} games", catalog.len());
        for id in ["ut2004", "aoe2", "cs16"] {
            assert!(catalog.get_str(id).is_some(), "{id} missing");
        }
        for entry in catalog.entries() {
            assert!(
                !entry.description.trim().is_empty(),
                "{} lacks a description",
                entry.id
            );
            assert!(entry.approx_size_mib > 0, "{} has no size", entry.id);
        }
    }

    #[test]
    fn game_ids_are_single_safe_components() {
        assert!(GameId::parse("ut2004").is_ok());
        assert!(GameId::parse("cs_16-x").is_ok());
        for bad in [
            "",
            "UT",
            "a/b",
            "..",
            "a b",
            &"x".repeat(65),
            "con",
            "nul",
            "aux",
            "com1",
            "lpt9",
        ] {
            assert!(GameId::parse(bad).is_err(), "{bad}");
        }
        assert!(GameId::parse("console").is_ok() && GameId::parse("com10").is_ok());
        // A catalog naming one is refused when it loads, with the line.
        let text = EMBEDDED_CATALOG_RON.replacen("id: \"ut2004\"", "id: \"con\"", 1);
        let err = GameCatalog::parse(&text, "party.ron")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("party.ron, line") && err.contains("Windows reserves"),
            "{err}"
        );
    }

    const ONE: &str = r#"(
    edition: "t",
    games: [
        (
            id: "a",
            title: "A",
            version: "1",
            description: "d",
            genre: "g",
            max_players: 2,
            approx_size_mib: 1,
        ),
        (
            id: "a",
            title: "A again",
            version: "1",
            description: "d",
            genre: "g",
            max_players: 2,
            approx_size_mib: 1,
        ),
    ],
)"#;

    #[test]
    fn duplicate_id_names_file_and_line() {
        let err = GameCatalog::parse(ONE, "party.ron").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("party.ron"), "{text}");
        assert!(text.contains("line 14"), "{text}");
        assert!(text.contains("appears twice"), "{text}");
    }

    #[test]
    fn syntax_error_names_file_line_and_problem() {
        let broken = ONE.replace(
            "max_players: 2,\n            approx_size_mib: 1,\n        ),\n        (",
            "max_players: two,\n            approx_size_mib: 1,\n        ),\n        (",
        );
        let err = GameCatalog::parse(&broken, "party.ron").unwrap_err();
        match err {
            CatalogError::Parse { file, line, .. } => {
                assert_eq!(file, "party.ron");
                assert_eq!(line, 10);
            }
            other => panic!("expected a parse error, got {other}"),
        }
        let bad_version = ONE.replacen("version: \"1\"", "version: \"1 0\"", 1);
        let err = GameCatalog::parse(&bad_version, "party.ron").unwrap_err();
        assert!(err.to_string().contains("line 7"), "{err}");
    }

    #[test]
    fn broken_override_keeps_the_embedded_catalog_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("newer.ron");
        std::fs::write(&path, "(edition: \"x\", games: [ (id: \"a\" ] )").unwrap();
        let (catalog, err) = GameCatalog::load_or_embedded(Some(&path));
        assert_eq!(catalog.source(), EMBEDDED_CATALOG_NAME);
        let err = err.unwrap().to_string();
        assert!(err.contains("newer.ron") && err.contains("line 1"), "{err}");

        let good = ONE.replacen("id: \"a\"", "id: \"b\"", 1);
        std::fs::write(&path, good).unwrap();
        let (catalog, err) = GameCatalog::load_or_embedded(Some(&path));
        assert!(err.is_none());
        assert_eq!(catalog.len(), 2);
        assert_ne!(
            catalog.fingerprint(),
            GameCatalog::embedded().unwrap().fingerprint()
        );
    }
}
