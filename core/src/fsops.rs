//! Renames and deletes that outlast a moment of "in use".
//!
//! Windows refuses to rename or delete a folder while any file in it is
//! open, and Defender or the search indexer opens every freshly written
//! `.exe` and `.dll` for a moment. Such refusals (Windows errors 5 "access
//! is denied", 32 "sharing violation", 33 "lock violation", 145 "directory
//! not empty" while a scanner holds a file) are retried with back-off for a
//! bounded time, as cargo and rustup do; after that the error says what
//! holds the folder. On Unix, `EBUSY` is the only such refusal.
//!
//! The fault-injection seam ([`inject_in_use`]) makes a rename or delete of
//! one path fail "in use" a given number of times, so the retry and the
//! rollback around it are tested on Linux.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long an "in use" refusal is retried.
pub const RETRY_FOR: Duration = Duration::from_secs(5);
/// The first wait; it doubles up to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(10);
const MAX_WAIT: Duration = Duration::from_millis(500);

/// Whether `err` is a transient "in use" refusal worth waiting out.
pub fn is_in_use(err: &std::io::Error) -> bool {
    if err.kind() == std::io::ErrorKind::ResourceBusy {
        return true;
    }
    crate::platform::is_in_use_code(err.raw_os_error())
}

/// Runs `step` until it succeeds, fails for another reason, or `RETRY_FOR`
/// passed while it kept answering "in use".
pub fn retrying<T>(
    path: &Path,
    mut step: impl FnMut() -> std::io::Result<T>,
) -> std::io::Result<T> {
    let started = Instant::now();
    let mut wait = FIRST_WAIT;
    loop {
        let outcome = match injected(path) {
            Some(err) => Err(err),
            None => step(),
        };
        match outcome {
            Err(err) if is_in_use(&err) && started.elapsed() + wait <= RETRY_FOR => {
                tracing::debug!("{} is in use ({err}); trying again", path.display());
                std::thread::sleep(wait);
                wait = (wait * 2).min(MAX_WAIT);
            }
            other => return other,
        }
    }
}

/// `std::fs::rename`, retried while the source is in use.
pub fn rename(from: &Path, to: &Path) -> std::io::Result<()> {
    retrying(from, || std::fs::rename(from, to))
}

/// `std::fs::remove_dir_all`, retried while something in it is in use.
pub fn remove_dir_all(path: &Path) -> std::io::Result<()> {
    retrying(path, || std::fs::remove_dir_all(path))
}

/// Faults to inject: (path, refusals left; `usize::MAX` refuses forever).
static FAULTS: Mutex<Vec<(PathBuf, usize)>> = Mutex::new(Vec::new());
/// Set once anything was injected: the common path takes no lock.
static ANY_FAULT: AtomicBool = AtomicBool::new(false);

/// Makes the next `times` renames or deletes of exactly `path` fail as "in
/// use" (`usize::MAX`: until [`clear_injected`]). For tests.
pub fn inject_in_use(path: &Path, times: usize) {
    let mut faults = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
    faults.retain(|(p, _)| p != path);
    faults.push((path.to_path_buf(), times));
    ANY_FAULT.store(true, Ordering::SeqCst);
}

/// Removes the faults injected for `path`.
pub fn clear_injected(path: &Path) {
    let mut faults = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
    faults.retain(|(p, _)| p != path);
}

fn injected(path: &Path) -> Option<std::io::Error> {
    if !ANY_FAULT.load(Ordering::Relaxed) {
        return None;
    }
    let mut faults = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
    let (_, left) = faults.iter_mut().find(|(p, left)| p == path && *left > 0)?;
    if *left != usize::MAX {
        *left -= 1;
    }
    Some(std::io::Error::new(
        std::io::ErrorKind::ResourceBusy,
        "in use by another program (injected)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rename_in_use_three_times_goes_through_and_one_in_use_forever_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        inject_in_use(&a, 3);
        rename(&a, &b).unwrap();
        assert!(b.is_dir() && !a.exists());

        inject_in_use(&b, usize::MAX);
        let started = Instant::now();
        let err = rename(&b, &a).unwrap_err();
        let waited = started.elapsed();
        clear_injected(&b);
        assert!(is_in_use(&err), "{err}");
        assert!(
            waited >= RETRY_FOR - MAX_WAIT && waited <= RETRY_FOR + MAX_WAIT,
            "{waited:?}"
        );
        assert!(b.is_dir());
        // Other errors are not retried.
        let started = Instant::now();
        assert!(rename(&dir.path().join("missing"), &a).is_err());
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}
