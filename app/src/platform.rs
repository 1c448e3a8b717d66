//! The few things that differ between Windows, macOS and Linux for the app.

use std::path::Path;

/// Opens a folder in the system's file manager.
pub fn open_folder(path: &Path) -> std::io::Result<()> {
    #[cfg(windows)]
    let program = "explorer";
    #[cfg(target_os = "macos")]
    let program = "open";
    #[cfg(not(any(windows, target_os = "macos")))]
    let program = "xdg-open";
    std::process::Command::new(program)
        .arg(path)
        .spawn()
        .map(|_| ())
}

/// Windows: the release build is a GUI program (no console window opens
/// with it), so a subcommand started from a console attaches to that
/// console to print there. Started from Explorer there is no parent
/// console and this does nothing. Elsewhere there is nothing to do.
#[cfg(windows)]
#[allow(unsafe_code)]
pub fn attach_parent_console() {
    use windows_sys::Win32::System::Console::{ATTACH_PARENT_PROCESS, AttachConsole};
    // SAFETY: AttachConsole takes a process id (here the documented
    // "parent" constant) and only changes this process's console; a
    // failure (no parent console, or one already attached) is harmless.
    unsafe {
        AttachConsole(ATTACH_PARENT_PROCESS);
    }
}

#[cfg(not(windows))]
pub fn attach_parent_console() {}

/// Resolves when the user or the system asks lanspread to stop: Ctrl-C,
/// and on Unix SIGTERM too (systemd, `docker stop`, `kill`), handled the
/// same way. The handlers are in place after the first poll.
pub async fn stop_requested() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            pressed = tokio::signal::ctrl_c() => pressed,
            _ = terminate.recv() => Ok(()),
        }
    }
    // Windows: Ctrl-C and Ctrl-Break in the console.
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
