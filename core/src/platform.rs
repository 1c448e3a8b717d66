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

/// The name of the filesystem `dir` is on (`vfat`, `FAT32`, `exfat`,
/// `NTFS`, `ext4`, …) where the system says it; `None` when it cannot tell.
/// Linux: the longest mount point above `dir` in `/proc/self/mounts`.
#[cfg(target_os = "linux")]
pub fn filesystem_name(dir: &std::path::Path) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let dir = dir.canonicalize().ok()?;
    crate::volume::fs_type_in_mounts(&mounts, &dir)
}

/// Windows: the volume's file system name, as Explorer shows it (`FAT32`,
/// `exFAT`, `NTFS`).
#[cfg(windows)]
#[allow(unsafe_code)]
pub fn filesystem_name(dir: &std::path::Path) -> Option<String> {
    use std::os::windows::ffi::OsStrExt;
    use windows_sys::Win32::Storage::FileSystem::{GetVolumeInformationW, GetVolumePathNameW};
    let wide: Vec<u16> = dir.as_os_str().encode_wide().chain(Some(0)).collect();
    let mut root = [0u16; 1024];
    // SAFETY: `wide` is NUL-terminated; `root` is a writable buffer of the
    // length passed.
    let found = unsafe { GetVolumePathNameW(wide.as_ptr(), root.as_mut_ptr(), root.len() as u32) };
    if found == 0 {
        return None;
    }
    let mut name = [0u16; 64];
    // SAFETY: `root` was NUL-terminated by the call above; the buffers we
    // do not want are null with length 0; `name` is writable for its length.
    let read = unsafe {
        GetVolumeInformationW(
            root.as_ptr(),
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            name.as_mut_ptr(),
            name.len() as u32,
        )
    };
    if read == 0 {
        return None;
    }
    let len = name.iter().position(|&c| c == 0).unwrap_or(name.len());
    Some(String::from_utf16_lossy(&name[..len]))
}

/// Other systems (macOS): not looked up; a too-big file fails when written.
#[cfg(not(any(target_os = "linux", windows)))]
pub fn filesystem_name(_dir: &std::path::Path) -> Option<String> {
    None
}

/// Maps `len` bytes of `file` from `offset`, read-only, for hashing
/// without copying (as `b3sum` does).
///
/// Why this one `unsafe` is acceptable: the map is read only while one
/// window of a payload file is hashed, then dropped. What the map shows
/// must not change under a `&[u8]`: lanspread never writes a payload file
/// in place (downloads write staging files and swap by rename, and a scan
/// guard keeps update and remove away while a game is hashed), and only
/// files that have not changed for a while are mapped
/// (`manifest::MAP_WHEN_QUIET_FOR`). Another program truncating such a
/// file during those milliseconds would end this process (SIGBUS) on Unix;
/// on Windows the truncation is refused while the map is open.
#[allow(unsafe_code)]
pub fn map_read_only(
    file: &std::fs::File,
    offset: u64,
    len: usize,
) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: see above; the map is dropped before the file is.
    unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .map(file)
    }
}
