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
