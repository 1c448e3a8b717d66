//! The few things the core's file handling does differently on Windows.

/// Whether an OS error code is Windows saying a file or folder is held by
/// another program for now: 5 (access denied: a file in the folder is
/// open, or being scanned), 32 (sharing violation), 33 (lock violation),
/// 145 (directory not empty: a scanner still holds a file in it).
#[cfg(windows)]
pub fn is_in_use_code(code: Option<i32>) -> bool {
    matches!(code, Some(5 | 32 | 33 | 145))
}

/// Unix: `EBUSY` comes through as `ErrorKind::ResourceBusy`; no other
/// code means "in use for a moment".
#[cfg(not(windows))]
pub fn is_in_use_code(_code: Option<i32>) -> bool {
    false
}

/// Unix: adds the execute bits where the read bits are (a game's binary
/// from an archive that marked it executable).
#[cfg(unix)]
pub fn make_executable(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    let with_exec = mode | ((mode & 0o444) >> 2);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(with_exec))
}

/// Windows runs files by their extension; there is no bit to keep.
#[cfg(not(unix))]
pub fn make_executable(_path: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}

/// Unix: whether a file has an execute bit.
#[cfg(unix)]
pub fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
pub fn is_executable(_path: &std::path::Path) -> bool {
    false
}
