//! The folder picker, behind a small trait so tests never open a dialog
//! (under Xvfb, rfd may fall back to zenity and hang). Asking never blocks
//! the frame: the native dialog runs while the window keeps drawing, and
//! its answer is picked up by a later frame.

use std::path::PathBuf;

/// What a dialog is choosing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickFor {
    /// The games folder, in Settings.
    GamesDir,
    /// The games folder on first launch (saved at once).
    FirstGamesDir,
    /// An organiser's catalog file.
    CatalogFile,
}

/// Asks the user for a folder or a file.
pub trait FolderPicker {
    /// Opens a dialog for `what` without waiting for it; ignored while
    /// another one is open.
    fn ask(&mut self, what: PickFor);
    /// The user's answer, once there is one (`None` inside: cancelled).
    fn poll(&mut self) -> Option<(PickFor, Option<PathBuf>)>;
    /// A dialog is open.
    fn is_open(&self) -> bool;
}

/// The system's native dialogs, through rfd: the dialog is made on the
/// window's thread (macOS wants that) and awaited on a worker thread.
#[derive(Debug, Default)]
pub struct NativePicker {
    open: Option<(PickFor, std::sync::mpsc::Receiver<Option<PathBuf>>)>,
}

impl FolderPicker for NativePicker {
    fn ask(&mut self, what: PickFor) {
        if self.open.is_some() {
            return;
        }
        let dialog = rfd::AsyncFileDialog::new();
        let answer = match what {
            PickFor::GamesDir | PickFor::FirstGamesDir => {
                let pick = dialog.set_title("Choose the games folder").pick_folder();
                Box::pin(pick) as std::pin::Pin<Box<dyn Future<Output = _> + Send>>
            }
            PickFor::CatalogFile => Box::pin(
                dialog
                    .set_title("Choose an organiser's catalog")
                    .add_filter("lanspread catalog", &["ron"])
                    .pick_file(),
            ),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("lanspread-picker".into())
            .spawn(move || {
                let picked = pollster::block_on(answer).map(|h| h.path().to_path_buf());
                let _ = tx.send(picked);
            });
        match spawned {
            Ok(_) => self.open = Some((what, rx)),
            Err(err) => tracing::error!("cannot open the dialog: {err}"),
        }
    }

    fn poll(&mut self) -> Option<(PickFor, Option<PathBuf>)> {
        let (what, rx) = self.open.as_ref()?;
        let answer = match rx.try_recv() {
            Ok(answer) => answer,
            Err(std::sync::mpsc::TryRecvError::Empty) => return None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => None,
        };
        let what = *what;
        self.open = None;
        Some((what, answer))
    }

    fn is_open(&self) -> bool {
        self.open.is_some()
    }
}

/// A picker that answers with paths given in advance, in order: what the
/// tests and the screenshot run use instead of a dialog.
#[derive(Debug, Default)]
pub struct PresetPicker {
    pub answers: Vec<PathBuf>,
    asked: Option<PickFor>,
}

impl PresetPicker {
    #[cfg(test)]
    pub fn answering(answers: Vec<PathBuf>) -> Self {
        Self {
            answers,
            asked: None,
        }
    }
}

impl FolderPicker for PresetPicker {
    fn ask(&mut self, what: PickFor) {
        self.asked.get_or_insert(what);
    }

    fn poll(&mut self) -> Option<(PickFor, Option<PathBuf>)> {
        let what = self.asked.take()?;
        Some((
            what,
            (!self.answers.is_empty()).then(|| self.answers.remove(0)),
        ))
    }

    fn is_open(&self) -> bool {
        self.asked.is_some()
    }
}
