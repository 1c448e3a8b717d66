//! A bounded set of open files: one download's staging files, opened when
//! a chunk is written or served and closed again when others are needed.
//!
//! A game of 50,000 files must not hold 50,000 handles (Linux allows 1,024
//! per process by default, and every handle is one more thing that keeps
//! Windows from renaming a folder). [`OpenFiles`] keeps at most
//! [`MAX_OPEN_FILES`] handles, dropping the one used longest ago; a handle
//! handed out stays valid while its user holds it. It also remembers which
//! files were written since the last [`OpenFiles::sync_written`], so a
//! journal flush syncs those and not every file of the game.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Most handles one set keeps open.
pub const MAX_OPEN_FILES: usize = 64;
/// Threads syncing written files at once.
const SYNC_THREADS: usize = 16;

/// The files of one folder, by index, opened on demand.
#[derive(Debug)]
pub struct OpenFiles {
    /// Each file's path on disk, by index.
    paths: Vec<PathBuf>,
    /// Opened for writing too (staging), or only read (an old payload).
    write: bool,
    /// The mutex guards the open handles and the written set; held for a
    /// map lookup or an insert (opening a file happens outside it).
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// file index -> (handle, last use)
    open: HashMap<usize, (Arc<File>, u64)>,
    uses: u64,
    written: BTreeSet<usize>,
}

impl OpenFiles {
    /// Files opened to be read and written.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        Self {
            paths,
            write: true,
            state: Mutex::default(),
        }
    }

    /// Files only read (a writing handle is never opened).
    pub fn read_only(paths: Vec<PathBuf>) -> Self {
        Self {
            paths,
            write: false,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The handle of file `index`, opened if it is not.
    pub fn get(&self, index: usize) -> std::io::Result<Arc<File>> {
        {
            let mut state = self.state();
            state.uses += 1;
            let now = state.uses;
            if let Some((file, used)) = state.open.get_mut(&index) {
                *used = now;
                return Ok(file.clone());
            }
        }
        let path = self.paths.get(index).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such staging file")
        })?;
        // A staging file is created by its first write (its folder exists).
        let file = Arc::new(
            File::options()
                .read(true)
                .write(self.write)
                .create(self.write)
                .truncate(false)
                .open(path)?,
        );
        let mut state = self.state();
        if state.open.len() >= MAX_OPEN_FILES
            && let Some(oldest) = state
                .open
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(index, _)| *index)
        {
            state.open.remove(&oldest);
        }
        let now = state.uses;
        let entry = state.open.entry(index).or_insert((file, now));
        Ok(entry.0.clone())
    }

    /// Writes `bytes` at `offset` of file `index`.
    pub fn write_at(&self, index: usize, bytes: &[u8], offset: u64) -> std::io::Result<()> {
        let file = self.get(index)?;
        crate::platform::write_all_at(&file, bytes, offset)?;
        self.state().written.insert(index);
        Ok(())
    }

    /// Reads `buffer.len()` bytes at `offset` of file `index`.
    pub fn read_at(&self, index: usize, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
        let file = self.get(index)?;
        crate::platform::read_exact_at(&file, buffer, offset)
    }

    /// Syncs the files written since the last call to the disk, several
    /// at once (the filesystem commits concurrent syncs together: a game
    /// of many small files is not one disk flush per file in a row). A
    /// file whose handle was closed meanwhile is opened again: a sync
    /// flushes the file, whichever handle wrote it.
    pub fn sync_written(&self) -> std::io::Result<()> {
        let written: Vec<usize> = std::mem::take(&mut self.state().written)
            .into_iter()
            .collect();
        let per_thread = written.len().div_ceil(SYNC_THREADS).max(1);
        let failed: Vec<(usize, std::io::Error)> = std::thread::scope(|scope| {
            let workers: Vec<_> = written
                .chunks(per_thread)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .filter_map(|index| {
                                self.sync_one(*index).err().map(|err| (*index, err))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|worker| worker.join().unwrap_or_default())
                .collect()
        });
        let mut errors = failed.into_iter();
        match errors.next() {
            None => Ok(()),
            Some((first, err)) => {
                // Not synced: they stay for the next flush.
                let mut state = self.state();
                state.written.insert(first);
                state.written.extend(errors.map(|(index, _)| index));
                Err(err)
            }
        }
    }

    fn sync_one(&self, index: usize) -> std::io::Result<()> {
        self.get(index)?.sync_data()
    }

    /// Closes every handle this set holds (before the folder is moved).
    pub fn close_all(&self) {
        self.state().open.clear();
    }

    /// How many handles are open now.
    pub fn open_count(&self) -> usize {
        self.state().open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_the_bound_open_and_writes_are_synced_once() {
        let tmp = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..MAX_OPEN_FILES * 3)
            .map(|i| {
                let path = tmp.path().join(format!("{i}.bin"));
                std::fs::write(&path, [0u8; 4]).unwrap();
                path
            })
            .collect();
        let files = OpenFiles::new(paths.clone());
        for (i, _) in paths.iter().enumerate() {
            files.write_at(i, &[i as u8, 1], 1).unwrap();
            assert!(files.open_count() <= MAX_OPEN_FILES);
        }
        // A handle given out stays usable after it was closed in the set.
        let held = files.get(0).unwrap();
        for i in 1..=MAX_OPEN_FILES {
            files.get(i).unwrap();
        }
        let mut back = [0u8; 2];
        crate::platform::read_exact_at(&held, &mut back, 1).unwrap();
        assert_eq!(back, [0, 1]);
        files.sync_written().unwrap();
        assert!(files.state().written.is_empty());
        for (i, path) in paths.iter().enumerate() {
            assert_eq!(std::fs::read(path).unwrap(), [0, i as u8, 1, 0]);
        }
        files.close_all();
        assert_eq!(files.open_count(), 0);
        assert!(files.get(paths.len()).is_err());
    }
}
