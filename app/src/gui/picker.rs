//! The folder picker, behind a small trait so tests never open a dialog
//! (under Xvfb, rfd may fall back to zenity and hang).

use std::path::PathBuf;

/// Asks the user for a folder or a file.
pub trait FolderPicker {
    fn pick_folder(&mut self, title: &str) -> Option<PathBuf>;
    fn pick_file(&mut self, title: &str) -> Option<PathBuf>;
}

/// The system's native dialogs, through rfd.
#[derive(Debug, Default)]
pub struct NativePicker;

impl FolderPicker for NativePicker {
    fn pick_folder(&mut self, title: &str) -> Option<PathBuf> {
        rfd::FileDialog::new().set_title(title).pick_folder()
    }

    fn pick_file(&mut self, title: &str) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title(title)
            .add_filter("lanspread catalog", &["ron"])
            .pick_file()
    }
}

/// A picker that answers with paths given in advance, in order: what the
/// tests and the screenshot run use instead of a dialog.
#[derive(Debug, Default)]
pub struct PresetPicker {
    pub answers: Vec<PathBuf>,
}

impl FolderPicker for PresetPicker {
    fn pick_folder(&mut self, _title: &str) -> Option<PathBuf> {
        (!self.answers.is_empty()).then(|| self.answers.remove(0))
    }

    fn pick_file(&mut self, title: &str) -> Option<PathBuf> {
        self.pick_folder(title)
    }
}
