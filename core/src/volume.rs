//! What the drive under a games folder can hold: FAT (USB sticks, old
//! drives) cannot hold a file of 4 GiB or more.

use std::path::Path;

/// Largest file a FAT32 (or FAT16) volume can hold: 4 GiB minus one byte.
pub const FAT_MAX_FILE_BYTES: u64 = (4 << 30) - 1;

/// The largest file the filesystem of `dir` can hold, when it is one with
/// a limit (FAT: USB sticks and old drives); `None`: no limit known.
pub fn max_file_bytes(dir: &Path) -> Option<u64> {
    let name = crate::platform::filesystem_name(dir)?;
    is_fat(&name).then_some(FAT_MAX_FILE_BYTES)
}

/// Whether a filesystem name (Linux's `vfat`/`msdos`, Windows' `FAT32`,
/// `FAT`) is FAT, not exFAT.
pub fn is_fat(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "vfat" | "msdos" | "fat" | "fat12" | "fat16" | "fat32"
    )
}

/// The filesystem type of the longest mount point above `dir` in a
/// `/proc/self/mounts` text (mount points escape spaces as `\040`).
pub fn fs_type_in_mounts(mounts: &str, dir: &Path) -> Option<String> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _device = fields.next()?;
            let point = fields.next()?.replace("\\040", " ");
            let kind = fields.next()?;
            dir.starts_with(&point)
                .then(|| (point.len(), kind.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, kind)| kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_above_a_folder_says_whether_it_is_fat() {
        let mounts = "/dev/sda1 / ext4 rw 0 0\n\
                      /dev/sdb1 /media/party\\040stick vfat rw 0 0\n\
                      /dev/sdc1 /media/big exfat rw 0 0\n";
        let kind = |dir: &str| fs_type_in_mounts(mounts, Path::new(dir));
        assert_eq!(kind("/media/party stick/games").as_deref(), Some("vfat"));
        assert_eq!(kind("/media/big/games").as_deref(), Some("exfat"));
        assert_eq!(kind("/home/me/games").as_deref(), Some("ext4"));
        assert!(is_fat("vfat") && is_fat("FAT32") && is_fat("msdos"));
        assert!(!is_fat("exfat") && !is_fat("exFAT") && !is_fat("NTFS"));
        // This machine's temporary folder is not FAT.
        assert_eq!(max_file_bytes(&std::env::temp_dir()), None);
    }
}
