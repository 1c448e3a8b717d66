//! The store: one heed (LMDB) environment in the data folder.
//!
//! Tables:
//! - `settings`: one RON document (self-describing, so new fields with
//!   defaults never break an old data folder);
//! - `manifest_cache`: file path -> size, mtime and BLAKE3 hashes, so an
//!   unchanged file is never hashed twice;
//! - `meta`: this install's peer id and similar one-off values.
//!
//! Later issues add download journals and operation intents as further tables
//! in the same environment. LMDB transactions make every write crash-safe;
//! read transactions are kept short.

use std::path::{Path, PathBuf};

use heed::types::{Bytes, Str};
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions, WithoutTls};
use serde::{Deserialize, Serialize};

use crate::manifest::CachedFileHashes;

/// Name of the LMDB folder inside the data folder.
const STORE_DIR: &str = "store";
/// LMDB reserves address space up to this size; the file grows as needed.
const MAP_SIZE_BYTES: usize = 1 << 30;
const MAX_TABLES: u32 = 16;

/// The marker file that makes an install portable: when a file named
/// `portable` sits beside the executable, data lives beside it too.
pub const PORTABLE_MARKER: &str = "portable";
/// Every name the marker may have: Explorer hides extensions, so a
/// "portable" made there is often `portable.txt`.
pub const PORTABLE_MARKERS: [&str; 2] = [PORTABLE_MARKER, "portable.txt"];
/// The data folder of a portable install, beside the executable.
pub const PORTABLE_DATA_DIR: &str = "lanspread-data";

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data folder {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("the store in {path} could not be opened: {source}")]
    Open { path: String, source: heed::Error },
    #[error("store: {0}")]
    Db(#[from] heed::Error),
    #[error("store: a {table} record is damaged: {message}")]
    Corrupt {
        table: &'static str,
        message: String,
    },
}

/// The user's settings, saved in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The games folder the user picked.
    pub games_dir: Option<PathBuf>,
    /// The name other PCs see; the computer's name when empty.
    pub display_name: String,
    /// mDNS discovery on the LAN.
    pub discovery_enabled: bool,
    /// Network interfaces discovery may use; empty means all of them
    /// (but virtual and VPN adapters unless `discovery_virtual_adapters`).
    pub discovery_interfaces: Vec<String>,
    /// Also use virtual and VPN adapters (Hyper-V, WSL, VirtualBox,
    /// Tailscale, ZeroTier, …) to find and reach peers.
    pub discovery_virtual_adapters: bool,
    /// Peers typed in by address, `HOST:PORT`.
    pub manual_peers: Vec<String>,
    /// An organiser's catalog that replaces the embedded one.
    pub catalog_file: Option<PathBuf>,
    /// All uploads together, in Mbit/s; `None`: no limit.
    pub upload_limit_mbit: Option<u32>,
    /// What sharing does while a game started from lanspread runs.
    pub while_playing: crate::sharing::WhilePlaying,
}

impl Settings {
    /// The sharing part of the settings.
    pub fn sharing_policy(&self) -> crate::sharing::SharingPolicy {
        crate::sharing::SharingPolicy {
            upload_limit_bytes_per_sec: self
                .upload_limit_mbit
                .map(|mbit| u64::from(mbit) * crate::sharing::BYTES_PER_MBIT),
            while_playing: self.while_playing,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            games_dir: None,
            display_name: String::new(),
            discovery_enabled: true,
            discovery_interfaces: Vec::new(),
            discovery_virtual_adapters: false,
            manual_peers: Vec::new(),
            catalog_file: None,
            upload_limit_mbit: None,
            while_playing: crate::sharing::WhilePlaying::KeepSharing,
        }
    }
}

/// Where the data folder is: `--data DIR` when given; beside the executable
/// when a `portable` marker file is there; otherwise the platform's data
/// folder (`%APPDATA%\lanspread\data` on Windows, `~/.local/share/lanspread`
/// on Linux).
pub fn resolve_data_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(dir) = explicit {
        return dir.to_path_buf();
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        && PORTABLE_MARKERS
            .iter()
            .any(|marker| exe_dir.join(marker).is_file())
    {
        return exe_dir.join(PORTABLE_DATA_DIR);
    }
    match directories::ProjectDirs::from("", "", "lanspread") {
        Some(dirs) => dirs.data_dir().to_path_buf(),
        None => PathBuf::from(PORTABLE_DATA_DIR),
    }
}

type Table = Database<'static, Str, Bytes>;

/// The opened store. Cheap to clone; clones share the environment.
#[derive(Clone)]
pub struct Store {
    env: Env<WithoutTls>,
    settings: Table,
    manifest_cache: Table,
    meta: Table,
    journals: Table,
    intents: Table,
    data_dir: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

const SETTINGS_KEY: &str = "settings";

impl Store {
    /// Opens (creating if needed) the store inside `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let dir = data_dir.join(STORE_DIR);
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
        let open_err = |source| StoreError::Open {
            path: dir.display().to_string(),
            source,
        };
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(MAP_SIZE_BYTES).max_dbs(MAX_TABLES);
        // SAFETY: heed requires that the environment is not opened twice in
        // one process with different options, and that the files are not
        // changed behind LMDB's back. lanspread opens a data folder's store
        // once per process, always with these options, and nothing else
        // writes inside `store/`.
        #[allow(unsafe_code)]
        let env = unsafe { options.open(&dir) }.map_err(open_err)?;
        let wtxn = env.write_txn()?;
        let [settings, manifest_cache, meta, journals, intents] = env
            .create_databases_and_commit(wtxn, |opener, wtxn| -> Result<_, heed::Error> {
                let mut tables = Vec::new();
                for name in ["settings", "manifest_cache", "meta", "journals", "intents"] {
                    tables.push(opener.create_database::<Str, Bytes>(wtxn, Some(name))?);
                }
                let tables: [_; 5] = tables
                    .try_into()
                    .map_err(|_| heed::Error::Io(std::io::Error::other("table count")))?;
                Ok(CommitOrAbort::<_, ()>::Commit(tables))
            })?
            .unwrap_commit();
        Ok(Self {
            env,
            settings,
            manifest_cache,
            meta,
            journals,
            intents,
            data_dir: data_dir.to_path_buf(),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The saved settings, or the defaults when none were saved. A damaged
    /// record is an error, not silently replaced.
    pub fn settings(&self) -> Result<Settings, StoreError> {
        let rtxn = self.env.read_txn()?;
        match self.settings.get(&rtxn, SETTINGS_KEY)? {
            None => Ok(Settings::default()),
            Some(bytes) => {
                let text = std::str::from_utf8(bytes).map_err(|e| StoreError::Corrupt {
                    table: "settings",
                    message: e.to_string(),
                })?;
                ron::from_str(text).map_err(|e| StoreError::Corrupt {
                    table: "settings",
                    message: e.to_string(),
                })
            }
        }
    }

    pub fn save_settings(&self, settings: &Settings) -> Result<(), StoreError> {
        let text = ron::ser::to_string_pretty(settings, ron::ser::PrettyConfig::default())
            .map_err(|e| StoreError::Corrupt {
                table: "settings",
                message: e.to_string(),
            })?;
        let mut wtxn = self.env.write_txn()?;
        self.settings
            .put(&mut wtxn, SETTINGS_KEY, text.as_bytes())?;
        wtxn.commit()?;
        Ok(())
    }

    /// A one-off value of this install (the TLS identity, for example).
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let rtxn = self.env.read_txn()?;
        Ok(self.meta.get(&rtxn, key)?.map(<[u8]>::to_vec))
    }

    /// Stores several one-off values in one transaction.
    pub fn put_meta(&self, entries: &[(&str, &[u8])]) -> Result<(), StoreError> {
        let mut wtxn = self.env.write_txn()?;
        for (key, value) in entries {
            self.meta.put(&mut wtxn, key, value)?;
        }
        wtxn.commit()?;
        Ok(())
    }

    /// The cached hashes of the file at `path`, whatever its size and mtime;
    /// the caller decides whether they still match the file.
    pub fn cached_file_hashes(&self, path: &str) -> Result<Option<CachedFileHashes>, StoreError> {
        let rtxn = self.env.read_txn()?;
        match self.manifest_cache.get(&rtxn, path)? {
            None => Ok(None),
            // A record that no longer decodes (an older format) is a miss.
            Some(bytes) => Ok(postcard::from_bytes(bytes).ok()),
        }
    }

    /// Stores hashes of several files in one transaction.
    pub fn put_file_hashes<'a>(
        &self,
        entries: impl IntoIterator<Item = (&'a str, &'a CachedFileHashes)>,
    ) -> Result<(), StoreError> {
        let mut wtxn = self.env.write_txn()?;
        for (path, hashes) in entries {
            let bytes = postcard::to_allocvec(hashes).map_err(|e| StoreError::Corrupt {
                table: "manifest_cache",
                message: e.to_string(),
            })?;
            self.manifest_cache.put(&mut wtxn, path, &bytes)?;
        }
        wtxn.commit()?;
        Ok(())
    }

    /// A value of the `journals` or `intents` table, decoded.
    fn get_record<T: serde::de::DeserializeOwned>(
        &self,
        table: Table,
        name: &'static str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let rtxn = self.env.read_txn()?;
        match table.get(&rtxn, key)? {
            None => Ok(None),
            Some(bytes) => postcard::from_bytes(bytes)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    table: name,
                    message: e.to_string(),
                }),
        }
    }

    fn put_record<T: Serialize>(
        &self,
        table: Table,
        name: &'static str,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = postcard::to_allocvec(value).map_err(|e| StoreError::Corrupt {
            table: name,
            message: e.to_string(),
        })?;
        let mut wtxn = self.env.write_txn()?;
        table.put(&mut wtxn, key, &bytes)?;
        wtxn.commit()?;
        Ok(())
    }

    fn delete_record(&self, table: Table, key: &str) -> Result<(), StoreError> {
        let mut wtxn = self.env.write_txn()?;
        table.delete(&mut wtxn, key)?;
        wtxn.commit()?;
        Ok(())
    }

    /// The download journal of a game, if one was kept.
    pub fn journal<T: serde::de::DeserializeOwned>(
        &self,
        game: &str,
    ) -> Result<Option<T>, StoreError> {
        self.get_record(self.journals, "journals", game)
    }

    /// Replaces a game's download journal (one transaction: call it for a
    /// batch of verified chunks, not for each).
    pub fn put_journal<T: Serialize>(&self, game: &str, journal: &T) -> Result<(), StoreError> {
        self.put_record(self.journals, "journals", game, journal)
    }

    pub fn delete_journal(&self, game: &str) -> Result<(), StoreError> {
        self.delete_record(self.journals, game)
    }

    /// The intent recorded for a game's unfinished operation.
    pub fn intent<T: serde::de::DeserializeOwned>(
        &self,
        game: &str,
    ) -> Result<Option<T>, StoreError> {
        self.get_record(self.intents, "intents", game)
    }

    pub fn put_intent<T: Serialize>(&self, game: &str, intent: &T) -> Result<(), StoreError> {
        self.put_record(self.intents, "intents", game, intent)
    }

    pub fn clear_intent(&self, game: &str) -> Result<(), StoreError> {
        self.delete_record(self.intents, game)
    }

    /// Every game with a recorded intent.
    pub fn intent_games(&self) -> Result<Vec<String>, StoreError> {
        let rtxn = self.env.read_txn()?;
        let mut games = Vec::new();
        for entry in self.intents.iter(&rtxn)? {
            let (key, _) = entry?;
            games.push(key.to_owned());
        }
        Ok(games)
    }

    /// Number of files in the manifest cache.
    pub fn cached_file_count(&self) -> Result<u64, StoreError> {
        let rtxn = self.env.read_txn()?;
        Ok(self.manifest_cache.len(&rtxn)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.settings().unwrap(), Settings::default());
        let settings = Settings {
            games_dir: Some(dir.path().join("games")),
            display_name: "Fragmaster".into(),
            discovery_enabled: false,
            discovery_interfaces: vec!["eth0".into()],
            discovery_virtual_adapters: true,
            manual_peers: vec!["192.0.2.7:4747".into()],
            catalog_file: None,
            upload_limit_mbit: Some(40),
            while_playing: crate::sharing::WhilePlaying::LimitMbit(5),
        };
        store.save_settings(&settings).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.settings().unwrap(), settings);
    }

    #[test]
    fn settings_missing_fields_take_defaults() {
        let parsed: Settings = ron::from_str("(display_name: \"x\")").unwrap();
        assert!(parsed.discovery_enabled);
        assert_eq!(parsed.display_name, "x");
    }

    #[test]
    fn explicit_data_dir_wins() {
        let dir = Path::new("/somewhere/data");
        assert_eq!(resolve_data_dir(Some(dir)), dir);
        assert!(!resolve_data_dir(None).as_os_str().is_empty());
    }
}
