//! One data folder belongs to one running lanspread process at a time.
//!
//! `lanspread.lock` in the data folder is locked (an OS file lock, released
//! by the OS when the process dies, even on `kill -9`). Beside it,
//! `running.json` says which process holds it, so a second one can name it.
//! The two are separate files because Windows refuses reads of a locked file.

use std::fs::{File, TryLockError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const LOCK_FILE: &str = "lanspread.lock";
const RUNNING_FILE: &str = "running.json";

/// Why the data folder could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the data folder {dir} is in use by another lanspread ({holder}); stop it, or pass another --data DIR"
    )]
    InUse { dir: String, holder: String },
    #[error("cannot use the data folder {dir}: {source}")]
    Io { dir: String, source: std::io::Error },
}

/// Who holds a data folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunningPeer {
    pub pid: u32,
    pub addr: SocketAddr,
    pub name: String,
}

/// The held lock; released on drop.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    dir: PathBuf,
}

impl DataDirLock {
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            dir: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(Self {
                _file: file,
                dir: dir.to_path_buf(),
            }),
            Err(TryLockError::WouldBlock) => Err(LockError::InUse {
                dir: dir.display().to_string(),
                holder: describe_holder(dir),
            }),
            Err(TryLockError::Error(err)) => Err(io(err)),
        }
    }

    /// Records who runs here, for a second process's error message.
    pub fn record_running(&self, addr: SocketAddr, name: &str) {
        let running = RunningPeer {
            pid: std::process::id(),
            addr,
            name: name.to_owned(),
        };
        if let Ok(text) = serde_json::to_vec_pretty(&running)
            && let Err(err) = std::fs::write(self.dir.join(RUNNING_FILE), text)
        {
            tracing::warn!("cannot write {RUNNING_FILE}: {err}");
        }
    }
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join(RUNNING_FILE));
    }
}

/// Who holds the data folder, in words, from what it recorded.
pub fn describe_holder(dir: &Path) -> String {
    std::fs::read(dir.join(RUNNING_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<RunningPeer>(&bytes).ok())
        .map_or_else(
            || "a process that is still starting".to_owned(),
            |r| format!("process {}, \"{}\", listening on {}", r.pid, r.name, r.addr),
        )
}

/// Whether some process holds the data folder right now.
pub fn is_locked(dir: &Path) -> bool {
    let Ok(file) = File::options().write(true).open(dir.join(LOCK_FILE)) else {
        return false;
    };
    matches!(file.try_lock(), Err(TryLockError::WouldBlock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_named() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        first.record_running("127.0.0.1:4000".parse().unwrap(), "Host PC");
        assert!(is_locked(dir.path()));
        let err = DataDirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("Host PC") && err.contains("127.0.0.1:4000"),
            "{err}"
        );
        drop(first);
        assert!(!is_locked(dir.path()));
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
