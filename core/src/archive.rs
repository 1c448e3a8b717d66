//! Unpacking a payload into a folder: zip, 7z, tar (plain, gzip, zstd) with
//! pure-Rust crates; any other file is copied as it is.
//!
//! Every entry path goes through the one path validation function before
//! anything is written, so an entry such as `../../evil` is an error and
//! nothing lands outside the target. Links inside archives are refused: a
//! link is the other classic way out of the target folder.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::paths::{PathError, RelPath, validate_relative_path};

/// What kind of file a payload file is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    Zip,
    SevenZip,
    Tar,
    TarGz,
    TarZst,
    /// Copied into place as it is.
    Plain,
}

impl PayloadKind {
    pub fn of(name: &str) -> Self {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".zip") {
            Self::Zip
        } else if lower.ends_with(".7z") {
            Self::SevenZip
        } else if lower.ends_with(".tar") {
            Self::Tar
        } else if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
            Self::TarGz
        } else if lower.ends_with(".tar.zst") || lower.ends_with(".tzst") {
            Self::TarZst
        } else {
            Self::Plain
        }
    }
}

/// Why unpacking failed. Nothing is written outside the target either way.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("{archive}: entry {entry:?} is not a safe path: {reason}")]
    UnsafeEntry {
        archive: String,
        entry: String,
        reason: PathError,
    },
    #[error("{archive}: entry {entry:?} is a link; archives with links are not installed")]
    Link { archive: String, entry: String },
    #[error("{archive}: {message}")]
    Corrupt { archive: String, message: String },
    #[error("{archive} unpacks to more than {limit} bytes ({why}); nothing was installed")]
    TooLarge {
        archive: String,
        limit: u64,
        why: &'static str,
    },
    #[error("{archive}: more than {MAX_ENTRIES} entries in all; nothing was installed")]
    TooManyEntries { archive: String },
    #[error(
        "installing needs {need} bytes but {dir} has {available} free (keeping {SPACE_MARGIN_BYTES} spare); nothing was installed"
    )]
    NoSpace {
        dir: String,
        need: u64,
        available: u64,
    },
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Validates an archive entry name. Archivers on Windows sometimes write
/// `\` separators; they are read as `/` before the one validation function
/// decides (so `..\..\evil` is refused like `../../evil`).
/// `Ok(None)` for the archive's own root (`./`), which needs no entry.
fn entry_path(archive: &Path, raw: &str) -> Result<Option<RelPath>, UnpackError> {
    let normalised = raw.replace('\\', "/");
    let trimmed = normalised.trim_end_matches('/');
    let trimmed = trimmed.strip_prefix("./").unwrap_or(trimmed);
    if trimmed == "." {
        return Ok(None);
    }
    validate_relative_path(trimmed)
        .map(Some)
        .map_err(|reason| UnpackError::UnsafeEntry {
            archive: archive.display().to_string(),
            entry: raw.to_owned(),
            reason,
        })
}

/// Most bytes an archive may unpack to per byte of its own size: game
/// archives compress a few times; a zip bomb a thousand.
pub const MAX_UNPACK_RATIO: u64 = 250;
/// Most entries all archives of one install may hold.
pub const MAX_ENTRIES: u64 = 1_000_000;
/// Space an install leaves free on the disk.
pub const SPACE_MARGIN_BYTES: u64 = 64 << 20;

/// What an install may still write: bytes on the disk, bytes for the
/// archive being unpacked (by its compression ratio), entries.
#[derive(Debug)]
pub struct Budget {
    bytes: u64,
    entries: u64,
    archive: u64,
    name: String,
}

impl Budget {
    /// All that `target`'s disk has free, less the margin.
    pub fn for_target(target: &Path) -> Self {
        let free = fs4::available_space(target).unwrap_or(u64::MAX);
        Self {
            bytes: free.saturating_sub(SPACE_MARGIN_BYTES),
            entries: MAX_ENTRIES,
            archive: u64::MAX,
            name: String::new(),
        }
    }

    /// Starts on the archive at `source` of `len` bytes.
    fn begin_archive(&mut self, source: &Path, len: u64) {
        self.archive = len.max(1 << 20).saturating_mul(MAX_UNPACK_RATIO);
        self.name = source.display().to_string();
    }

    fn entry(&mut self) -> Result<(), UnpackError> {
        self.entries = self
            .entries
            .checked_sub(1)
            .ok_or_else(|| UnpackError::TooManyEntries {
                archive: self.name.clone(),
            })?;
        Ok(())
    }

    fn take(&mut self, written: u64) {
        self.bytes = self.bytes.saturating_sub(written);
        self.archive = self.archive.saturating_sub(written);
    }

    fn too_large(&self) -> UnpackError {
        if self.archive <= self.bytes {
            UnpackError::TooLarge {
                archive: self.name.clone(),
                limit: self.archive,
                why: "over 250 times its own size: a zip bomb?",
            }
        } else {
            UnpackError::TooLarge {
                archive: self.name.clone(),
                limit: self.bytes,
                why: "more than the disk has free",
            }
        }
    }
}

fn write_entry(
    target: &Path,
    rel: &RelPath,
    reader: &mut dyn Read,
    executable: bool,
    budget: &mut Budget,
) -> Result<u64, UnpackError> {
    budget.entry()?;
    let path = rel.join_to(target);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let mut file = File::create(&path).map_err(io_err(&path))?;
    let allowed = budget.bytes.min(budget.archive);
    let written = std::io::copy(&mut reader.take(allowed.saturating_add(1)), &mut file)
        .map_err(io_err(&path))?;
    if written > allowed {
        return Err(budget.too_large());
    }
    budget.take(written);
    drop(file);
    if executable {
        // A native game's binaries must stay runnable (tar and zip made on
        // Unix carry the bit).
        crate::platform::make_executable(&path).map_err(io_err(&path))?;
    }
    Ok(written)
}

/// Whether a file starts like a native program: an ELF or Mach-O binary,
/// or a script with `#!`. Plain payload files fetched from a peer carry no
/// execute bit (the manifest does not: Windows and Linux seeders, and a
/// Linux PC reading an NTFS or FAT disk that shows every file executable,
/// must agree on one manifest), so installing decides from the content,
/// the same on every PC.
fn looks_executable(path: &Path) -> bool {
    let mut head = [0u8; 4];
    let Ok(mut file) = File::open(path) else {
        return false;
    };
    let Ok(()) = file.read_exact(&mut head) else {
        return false;
    };
    head == *b"\x7fELF"
        || head.starts_with(b"#!")
        || matches!(
            u32::from_be_bytes(head),
            0xfeed_face | 0xfeed_facf | 0xcefa_edfe | 0xcffa_edfe | 0xcafe_babe
        )
}

fn make_dir(target: &Path, rel: &RelPath, budget: &mut Budget) -> Result<(), UnpackError> {
    budget.entry()?;
    let path = rel.join_to(target);
    std::fs::create_dir_all(&path).map_err(io_err(&path))
}

/// Unpacks (or copies) one payload file into `target`. `name` is the file's
/// path relative to the payload root, used to place plain files.
pub fn unpack_into(source: &Path, name: &RelPath, target: &Path) -> Result<u64, UnpackError> {
    unpack_within(source, name, target, &mut Budget::for_target(target))
}

fn unpack_within(
    source: &Path,
    name: &RelPath,
    target: &Path,
    budget: &mut Budget,
) -> Result<u64, UnpackError> {
    budget.begin_archive(source, std::fs::metadata(source).map_or(0, |m| m.len()));
    let corrupt = |message: String| UnpackError::Corrupt {
        archive: source.display().to_string(),
        message,
    };
    match PayloadKind::of(name.as_str()) {
        PayloadKind::Plain => {
            let mut file = File::open(source).map_err(io_err(source))?;
            budget.archive = u64::MAX;
            // The bit, where the file has it here; else its first bytes (a
            // download does not carry the bit: see `looks_executable`).
            let executable = crate::platform::is_executable(source) || looks_executable(source);
            write_entry(target, name, &mut file, executable, budget)
        }
        PayloadKind::Zip => {
            let file = File::open(source).map_err(io_err(source))?;
            let mut archive =
                zip::ZipArchive::new(BufReader::new(file)).map_err(|e| corrupt(e.to_string()))?;
            let mut written = 0;
            for index in 0..archive.len() {
                let mut entry = archive
                    .by_index(index)
                    .map_err(|e| corrupt(e.to_string()))?;
                // The zip crate's own decoding: UTF-8 when the entry says
                // so, else the IBM PC code page (CP437) that Windows tools
                // write; a lossy UTF-8 reading could make two names one.
                let raw = entry
                    .name()
                    .map_err(|e| corrupt(e.to_string()))?
                    .into_owned();
                let Some(rel) = entry_path(source, &raw)? else {
                    continue;
                };
                if entry.is_symlink() {
                    return Err(UnpackError::Link {
                        archive: source.display().to_string(),
                        entry: raw,
                    });
                }
                if entry.is_dir() {
                    make_dir(target, &rel, budget)?;
                } else {
                    let executable = entry.unix_mode().is_some_and(|mode| mode & 0o111 != 0);
                    written += write_entry(target, &rel, &mut entry, executable, budget)?;
                }
            }
            Ok(written)
        }
        PayloadKind::SevenZip => {
            let file = File::open(source).map_err(io_err(source))?;
            let mut archive = sevenz_rust2::ArchiveReader::new(
                BufReader::new(file),
                sevenz_rust2::Password::empty(),
            )
            .map_err(|e| corrupt(e.to_string()))?;
            let mut written = 0;
            let mut failure = None;
            archive
                .for_each_entries(|entry, reader| {
                    let result = entry_path(source, entry.name()).and_then(|rel| match rel {
                        None => Ok(0),
                        Some(rel) if entry.is_directory() => {
                            make_dir(target, &rel, budget).map(|()| 0)
                        }
                        Some(rel) => {
                            // 7-Zip keeps a Unix mode in the high bits of the
                            // attributes when bit 15 says so.
                            let attributes = entry.windows_attributes;
                            let executable = entry.has_windows_attributes
                                && attributes & 0x8000 != 0
                                && (attributes >> 16) & 0o111 != 0;
                            write_entry(target, &rel, reader, executable, budget)
                        }
                    });
                    match result {
                        Ok(bytes) => {
                            written += bytes;
                            Ok(true)
                        }
                        Err(err) => {
                            failure = Some(err);
                            Ok(false)
                        }
                    }
                })
                .map_err(|e| corrupt(e.to_string()))?;
            match failure {
                Some(err) => Err(err),
                None => Ok(written),
            }
        }
        PayloadKind::Tar => {
            // A plain tar does not compress: its size bounds its content.
            unpack_tar(
                source,
                File::open(source).map_err(io_err(source))?,
                target,
                budget,
            )
        }
        PayloadKind::TarGz => {
            let file = File::open(source).map_err(io_err(source))?;
            unpack_tar(
                source,
                flate2::read::GzDecoder::new(BufReader::new(file)),
                target,
                budget,
            )
        }
        PayloadKind::TarZst => {
            let file = File::open(source).map_err(io_err(source))?;
            let decoder = ruzstd::decoding::StreamingDecoder::new(BufReader::new(file))
                .map_err(|e| corrupt(e.to_string()))?;
            unpack_tar(source, decoder, target, budget)
        }
    }
}

fn unpack_tar(
    source: &Path,
    reader: impl Read,
    target: &Path,
    budget: &mut Budget,
) -> Result<u64, UnpackError> {
    let corrupt = |message: String| UnpackError::Corrupt {
        archive: source.display().to_string(),
        message,
    };
    let mut archive = tar::Archive::new(reader);
    let mut written = 0;
    for entry in archive.entries().map_err(|e| corrupt(e.to_string()))? {
        let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
        {
            continue;
        }
        let Some(rel) = entry_path(source, &raw)? else {
            continue;
        };
        if kind.is_dir() {
            make_dir(target, &rel, budget)?;
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            let executable = entry.header().mode().is_ok_and(|mode| mode & 0o111 != 0);
            written += write_entry(target, &rel, &mut entry, executable, budget)?;
        } else if kind.is_symlink() || kind.is_hard_link() {
            return Err(UnpackError::Link {
                archive: source.display().to_string(),
                entry: raw,
            });
        }
        // Devices, FIFOs and other special entries are not game files.
    }
    Ok(written)
}

/// Unpacks every payload file of `payload_dir` (listed in `files`) into
/// `target`, which must exist and be empty. What the archives say they
/// hold is checked against the free space first; while unpacking, the
/// bytes written are bounded by the free space, by each archive's size
/// times [`MAX_UNPACK_RATIO`], and the entries by [`MAX_ENTRIES`] (an
/// archive may lie about its sizes).
pub fn unpack_payload(
    payload_dir: &Path,
    files: &[RelPath],
    target: &Path,
) -> Result<u64, UnpackError> {
    let mut budget = Budget::for_target(target);
    for rel in files {
        check_declared_ratio(&rel.join_to(payload_dir), rel)?;
    }
    let declared: u64 = files
        .iter()
        .map(|rel| declared_size(&rel.join_to(payload_dir), rel))
        .fold(0u64, u64::saturating_add);
    if declared > budget.bytes {
        return Err(UnpackError::NoSpace {
            dir: target.display().to_string(),
            need: declared,
            available: budget.bytes.saturating_add(SPACE_MARGIN_BYTES),
        });
    }
    let mut total = 0;
    for rel in files {
        let source: PathBuf = rel.join_to(payload_dir);
        total += unpack_within(&source, rel, target, &mut budget)?;
    }
    Ok(total)
}

/// Refuses, before anything is written, an archive whose index says it
/// unpacks to more than its size allows.
fn check_declared_ratio(source: &Path, name: &RelPath) -> Result<(), UnpackError> {
    if PayloadKind::of(name.as_str()) == PayloadKind::Plain {
        return Ok(());
    }
    let len = std::fs::metadata(source).map_or(0, |m| m.len());
    let limit = len.max(1 << 20).saturating_mul(MAX_UNPACK_RATIO);
    if declared_size(source, name) > limit {
        return Err(UnpackError::TooLarge {
            archive: source.display().to_string(),
            limit,
            why: "over 250 times its own size: a zip bomb?",
        });
    }
    Ok(())
}

/// What a payload file says it unpacks to: the sizes in a zip's or 7z's
/// index, a file's own size otherwise (a compressed tar says nothing up
/// front; the budget bounds it while unpacking).
fn declared_size(source: &Path, name: &RelPath) -> u64 {
    let own = std::fs::metadata(source).map_or(0, |m| m.len());
    match PayloadKind::of(name.as_str()) {
        PayloadKind::Zip => File::open(source)
            .ok()
            .and_then(|f| zip::ZipArchive::new(BufReader::new(f)).ok())
            .map_or(own, |mut archive| {
                (0..archive.len())
                    .filter_map(|i| archive.by_index_raw(i).ok().map(|e| e.size()))
                    .fold(0u64, u64::saturating_add)
            }),
        PayloadKind::SevenZip => File::open(source)
            .ok()
            .and_then(|f| {
                sevenz_rust2::Archive::read(
                    &mut BufReader::new(f),
                    &sevenz_rust2::Password::empty(),
                )
                .ok()
            })
            .map_or(own, |archive| {
                archive
                    .files
                    .iter()
                    .map(|e| e.size())
                    .fold(0u64, u64::saturating_add)
            }),
        _ => own,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn kinds_by_name() {
        assert_eq!(PayloadKind::of("Game.ZIP"), PayloadKind::Zip);
        assert_eq!(PayloadKind::of("g.7z"), PayloadKind::SevenZip);
        assert_eq!(PayloadKind::of("g.tar"), PayloadKind::Tar);
        assert_eq!(PayloadKind::of("g.tgz"), PayloadKind::TarGz);
        assert_eq!(PayloadKind::of("g.tar.gz"), PayloadKind::TarGz);
        assert_eq!(PayloadKind::of("g.tar.zst"), PayloadKind::TarZst);
        assert_eq!(PayloadKind::of("readme.txt"), PayloadKind::Plain);
    }

    fn tar_with(path: &str, data: &[u8]) -> Vec<u8> {
        // Build the header by hand so hostile names reach the bytes as is.
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        let name = header.as_old_mut().name.as_mut();
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        let mut out = Vec::new();
        {
            let mut builder = tar::Builder::new(&mut out);
            builder.append(&header, data).unwrap();
            builder.finish().unwrap();
        }
        out
    }

    fn rel(s: &str) -> RelPath {
        validate_relative_path(s).unwrap()
    }

    /// A zip as old Windows tools write it: stored entries whose names are
    /// in the OEM code page (CP437), without the UTF-8 flag.
    fn oem_zip(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
        fn crc32(data: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &byte in data {
                crc ^= u32::from(byte);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 {
                        (crc >> 1) ^ 0xEDB8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        let (mut out, mut central) = (Vec::new(), Vec::new());
        for (name, data) in entries {
            let offset = out.len() as u32;
            let (crc, len, name_len) = (crc32(data), data.len() as u32, name.len() as u16);
            out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            for field in [crc, len, len] {
                out.extend_from_slice(&field.to_le_bytes());
            }
            out.extend_from_slice(&name_len.to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(name);
            out.extend_from_slice(data);
            central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            central.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            for field in [crc, len, len] {
                central.extend_from_slice(&field.to_le_bytes());
            }
            central.extend_from_slice(&name_len.to_le_bytes());
            central.extend_from_slice(&[0; 12]);
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(name);
        }
        let (cd_offset, cd_len, count) =
            (out.len() as u32, central.len() as u32, entries.len() as u16);
        out.extend_from_slice(&central);
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&cd_len.to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    #[test]
    fn oem_code_page_names_are_decoded_and_do_not_collide() {
        let tmp = tempfile::tempdir().unwrap();
        // "Menü.txt" and "Menö.txt" in CP437: 0x81 is ü, 0x94 is ö. Read as
        // lossy UTF-8 both would be "Men\u{FFFD}.txt".
        let zip = oem_zip(&[(b"Men\x81.txt", b"u umlaut"), (b"Men\x94.txt", b"o umlaut")]);
        std::fs::write(tmp.path().join("oem.zip"), zip).unwrap();
        let target = tmp.path().join("out");
        std::fs::create_dir(&target).unwrap();
        unpack_into(&tmp.path().join("oem.zip"), &rel("oem.zip"), &target).unwrap();
        assert_eq!(std::fs::read(target.join("Menü.txt")).unwrap(), b"u umlaut");
        assert_eq!(std::fs::read(target.join("Menö.txt")).unwrap(), b"o umlaut");
    }

    #[cfg(unix)]
    #[test]
    fn executables_stay_executable() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // tar
        let mut tar_bytes = Vec::new();
        {
            let mut builder = tar::Builder::new(&mut tar_bytes);
            for (path, bits) in [("bin/game", 0o755), ("readme.txt", 0o644)] {
                let mut header = tar::Header::new_gnu();
                header.set_size(2);
                header.set_mode(bits);
                header.set_entry_type(tar::EntryType::Regular);
                builder.append_data(&mut header, path, &b"hi"[..]).unwrap();
            }
            builder.finish().unwrap();
        }
        std::fs::write(tmp.path().join("g.tar"), &tar_bytes).unwrap();
        // zip
        let mut zip_bytes = Vec::new();
        {
            let mut writer = zip::ZipWriter::new(std::io::Cursor::new(&mut zip_bytes));
            for (path, bits) in [("bin/game", 0o755), ("readme.txt", 0o644)] {
                let options = zip::write::SimpleFileOptions::default().unix_permissions(bits);
                writer.start_file(path, options).unwrap();
                writer.write_all(b"hi").unwrap();
            }
            writer.finish().unwrap();
        }
        std::fs::write(tmp.path().join("g.zip"), &zip_bytes).unwrap();
        for name in ["g.tar", "g.zip"] {
            let target = tmp.path().join(format!("out-{name}"));
            std::fs::create_dir(&target).unwrap();
            unpack_into(&tmp.path().join(name), &rel(name), &target).unwrap();
            assert_ne!(mode(&target.join("bin/game")) & 0o111, 0, "{name}");
            assert_eq!(mode(&target.join("readme.txt")) & 0o111, 0, "{name}");
        }
        // A plain executable file of the payload is copied executable.
        let plain = tmp.path().join("start.sh");
        std::fs::write(&plain, b"echo hi\n").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o755)).unwrap();
        let target = tmp.path().join("out-plain");
        std::fs::create_dir(&target).unwrap();
        unpack_into(&plain, &rel("start.sh"), &target).unwrap();
        assert_ne!(mode(&target.join("start.sh")) & 0o111, 0);
        // A downloaded one (no bit) that is a program by its first bytes
        // too; a data file not.
        for (name, bytes, runnable) in [
            ("game-bin", &b"\x7fELF\x02\x01\x01"[..], true),
            ("run.sh", b"#!/bin/sh\nexec ./game-bin\n", true),
            ("maps.pak", b"PAK data", false),
        ] {
            let fetched = tmp.path().join(name);
            std::fs::write(&fetched, bytes).unwrap();
            std::fs::set_permissions(&fetched, std::fs::Permissions::from_mode(0o644)).unwrap();
            unpack_into(&fetched, &rel(name), &target).unwrap();
            assert_eq!(mode(&target.join(name)) & 0o111 != 0, runnable, "{name}");
        }
    }

    #[test]
    fn every_format_unpacks() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("Maps")).unwrap();
        std::fs::write(src.join("Maps/deck.ut2"), b"deck").unwrap();
        std::fs::write(src.join("game.exe"), b"exe").unwrap();

        // zip
        let mut zip_bytes = Vec::new();
        {
            let mut writer = zip::ZipWriter::new(std::io::Cursor::new(&mut zip_bytes));
            let options = zip::write::SimpleFileOptions::default();
            writer.add_directory("Maps/", options).unwrap();
            writer.start_file("Maps/deck.ut2", options).unwrap();
            writer.write_all(b"deck").unwrap();
            writer.start_file("game.exe", options).unwrap();
            writer.write_all(b"exe").unwrap();
            writer.finish().unwrap();
        }
        std::fs::write(tmp.path().join("g.zip"), &zip_bytes).unwrap();
        // 7z
        sevenz_rust2::compress_to_path(&src, tmp.path().join("g.7z")).unwrap();
        // tar, tar.gz, tar.zst
        let mut tar_bytes = Vec::new();
        {
            let mut builder = tar::Builder::new(&mut tar_bytes);
            builder.append_dir_all(".", &src).unwrap();
            builder.finish().unwrap();
        }
        std::fs::write(tmp.path().join("g.tar"), &tar_bytes).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar_bytes).unwrap();
        std::fs::write(tmp.path().join("g.tar.gz"), gz.finish().unwrap()).unwrap();
        let zst = ruzstd::encoding::compress_to_vec(
            tar_bytes.as_slice(),
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        std::fs::write(tmp.path().join("g.tar.zst"), zst).unwrap();

        for name in ["g.zip", "g.7z", "g.tar", "g.tar.gz", "g.tar.zst"] {
            let target = tmp.path().join(format!("out-{name}"));
            std::fs::create_dir(&target).unwrap();
            unpack_into(&tmp.path().join(name), &rel(name), &target).unwrap();
            assert_eq!(
                std::fs::read(target.join("Maps/deck.ut2")).unwrap(),
                b"deck",
                "{name}"
            );
            assert_eq!(
                std::fs::read(target.join("game.exe")).unwrap(),
                b"exe",
                "{name}"
            );
        }
        // A plain file keeps its place in the payload.
        let target = tmp.path().join("out-plain");
        std::fs::create_dir(&target).unwrap();
        unpack_into(&src.join("Maps/deck.ut2"), &rel("Maps/deck.ut2"), &target).unwrap();
        assert_eq!(
            std::fs::read(target.join("Maps/deck.ut2")).unwrap(),
            b"deck"
        );
    }

    #[test]
    fn escaping_entries_are_refused_and_nothing_lands_outside() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("game/local-tmp");
        std::fs::create_dir_all(&target).unwrap();
        for hostile in ["../../evil", "/abs/evil", "ok/../../evil", "..\\..\\evil"] {
            let archive = tmp.path().join("evil.tar");
            std::fs::write(&archive, tar_with(hostile, b"pwned")).unwrap();
            let err = unpack_into(&archive, &rel("evil.tar"), &target).unwrap_err();
            assert!(
                matches!(err, UnpackError::UnsafeEntry { .. }),
                "{hostile}: {err}"
            );
        }
        let mut zip_bytes = Vec::new();
        {
            let mut writer = zip::ZipWriter::new(std::io::Cursor::new(&mut zip_bytes));
            writer
                .start_file("../../evil", zip::write::SimpleFileOptions::default())
                .unwrap();
            writer.write_all(b"pwned").unwrap();
            writer.finish().unwrap();
        }
        std::fs::write(tmp.path().join("evil.zip"), zip_bytes).unwrap();
        let err = unpack_into(&tmp.path().join("evil.zip"), &rel("evil.zip"), &target).unwrap_err();
        assert!(matches!(err, UnpackError::UnsafeEntry { .. }), "{err}");
        assert!(!tmp.path().join("evil").exists());
        assert!(!tmp.path().parent().unwrap().join("evil").exists());
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    }
}
