//! The daemon's files: the runtime directory, the log file and the pid files.
//!
//! They live in a directory only the user can write to, so that no other user can plant a
//! symlink where the daemon (often root) is about to write: `/run/cloudstore-fs` for root,
//! `$XDG_RUNTIME_DIR/cloudstore-fs` or `~/.local/state/cloudstore-fs` otherwise. The directory
//! is checked (a real directory, ours, not writable by group or others) and every file is opened
//! with O_NOFOLLOW, mode 0600, also a log path given in `$CLOUDSTORE_FS_LOG`.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::MountError;
use super::mountinfo::{absolute, find_mount};

/// The environment variable naming the daemon's log file.
pub const LOG_ENV: &str = "CLOUDSTORE_FS_LOG";

use crate::sys::process::euid;

/// The directory for this user's daemon files (created 0700 when missing, and checked).
pub(crate) fn runtime_dir() -> Result<PathBuf, MountError> {
    let dir = if euid() == 0 {
        PathBuf::from("/run/cloudstore-fs")
    } else if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        PathBuf::from(run).join("cloudstore-fs")
    } else if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        PathBuf::from(home).join(".local/state/cloudstore-fs")
    } else {
        return Err(MountError::Files(
            "no directory for the daemon's files: set XDG_RUNTIME_DIR or HOME".into(),
        ));
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| MountError::Files(format!("cannot create {}: {e}", dir.display())))?;
    check_private_dir(&dir)?;
    Ok(dir)
}

/// Refuses a directory that another user could plant files or symlinks in.
fn check_private_dir(dir: &Path) -> Result<(), MountError> {
    let shown = dir.display();
    let meta =
        std::fs::symlink_metadata(dir).map_err(|e| MountError::Files(format!("{shown}: {e}")))?;
    if !meta.file_type().is_dir() {
        return Err(MountError::Files(format!(
            "{shown} is not a directory (a symlink?): refusing to use it"
        )));
    }
    if meta.uid() != euid() {
        return Err(MountError::Files(format!(
            "{shown} belongs to uid {}, not to us (uid {}): refusing to use it",
            meta.uid(),
            euid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(MountError::Files(format!(
            "{shown} is writable by others (mode {:o}): refusing to use it (chmod 700 it)",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Opens `path` for writing, owner-only, without following a symlink at its last component.
fn open_private(path: &Path, append: bool) -> Result<File, MountError> {
    let shown = path.display();
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .append(append)
        .truncate(!append)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => {
                MountError::Files(format!("{shown} is a symlink: refusing to follow it"))
            }
            _ => MountError::Files(format!("{shown}: {e}")),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| MountError::Files(format!("{shown}: {e}")))?;
    if !meta.is_file() {
        return Err(MountError::Files(format!("{shown} is not a regular file")));
    }
    if meta.uid() != euid() {
        return Err(MountError::Files(format!(
            "{shown} belongs to uid {}, not to us: refusing to write to it",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        // A file of an older version or created by hand: make it owner-only.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| MountError::Files(format!("{shown}: chmod 600: {e}")))?;
    }
    Ok(file)
}

/// The default log file of a daemon mounted at `mountpoint`: `<runtime dir>/<path>.log`.
pub fn default_log_path(mountpoint: &Path) -> Result<PathBuf, MountError> {
    Ok(runtime_dir()?.join(format!("{}.log", flat_name(mountpoint))))
}

/// Longest escaped mountpoint kept whole in a log file name (NAME_MAX is 255).
const MAX_FLAT_NAME: usize = 200;

/// The mountpoint's path as one file name, one name per path: `/` becomes `_`, and every byte
/// other than ASCII letters, digits, `.` and `-` (`_` and `%` included) becomes `%XX`
/// ("/tmp/a b/m_n" -> "tmp_a%20b_m%5fn"), so /a/b_c and /a_b/c get different names. A name
/// longer than 200 bytes keeps its last 160 bytes after a hash of the whole path.
fn flat_name(mountpoint: &Path) -> String {
    use std::fmt::Write;
    use std::os::unix::ffi::OsStrExt;
    let bytes = mountpoint.as_os_str().as_bytes();
    let trimmed = bytes.strip_prefix(b"/").unwrap_or(bytes);
    let mut name = String::with_capacity(trimmed.len());
    for &b in trimmed {
        match b {
            b'/' => name.push('_'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' => name.push(b as char),
            _ => write!(name, "%{b:02x}").expect("writing to a String"),
        }
    }
    if name.is_empty() {
        return "_".into();
    }
    if name.len() > MAX_FLAT_NAME {
        // FNV-1a of the whole path: a long name stays one per mountpoint.
        let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        let tail = &name[name.len() - 160..];
        name = format!("{hash:016x}-{tail}");
    }
    name
}

/// Opens the daemon's log for appending: `$CLOUDSTORE_FS_LOG`, or the default path.
pub(super) fn open_log(mountpoint: &Path) -> Result<(File, PathBuf), MountError> {
    let path = match std::env::var_os(LOG_ENV).filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => default_log_path(mountpoint)?,
    };
    let file =
        open_private(&path, true).map_err(|e| MountError::Files(format!("daemon log: {e}")))?;
    Ok((file, path))
}

/// Where the daemon of the mount with device `dev` ("major:minor") writes its pid.
fn pid_file_path(dev: &str) -> Result<PathBuf, MountError> {
    Ok(runtime_dir()?.join(format!("{}.pid", dev.replace(':', "_"))))
}

/// Where the daemon of the mount with device `dev` answers `cloudstore-fs stats`.
pub(super) fn stats_socket_path(dev: &str) -> Result<PathBuf, MountError> {
    Ok(runtime_dir()?.join(format!("{}.sock", dev.replace(':', "_"))))
}

/// The pid file of the mount at `mountpoint`, if something is mounted there.
pub fn pid_file(mountpoint: &Path) -> Option<PathBuf> {
    let path = absolute(mountpoint).ok()?;
    pid_file_path(&find_mount(&path)?.dev).ok()
}

/// The pid in the pid file of the mount with device `dev` at `mountpoint`, if it is that mount's.
pub(super) fn read_pid(dev: &str, mountpoint: &Path) -> Option<u32> {
    let path = pid_file_path(dev).ok()?;
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let pid: u32 = lines.next()?.parse().ok()?;
    // A pid file left by a daemon that died belongs to an older mount with the same device.
    (lines.next()? == mountpoint.to_string_lossy()).then_some(pid)
}

/// Removes the pid file of a dead mount's device (its daemon was killed).
///
/// Only while it still names `pid` at `mountpoint`: once the dead mount is gone its device
/// number is free, and a new mount may have taken it and written its own pid file there (whose
/// loss would let `unmount` of that mount return before its daemon let go of the store).
pub(super) fn remove_pid_file(dev: &str, pid: u32, mountpoint: &Path) {
    if read_pid(dev, mountpoint) != Some(pid) {
        return;
    }
    if let Ok(path) = pid_file_path(dev) {
        let _ = std::fs::remove_file(path);
    }
}

/// The serving daemon's pid file (so that `unmount` can wait for the last commits); removed on
/// drop.
pub(super) struct PidFile(Option<PathBuf>);

impl PidFile {
    /// Writes this process's pid for the mount at `mountpoint`; a failure is logged (`unmount`
    /// then cannot wait for the daemon) but does not stop the mount.
    pub fn create(mountpoint: &Path) -> PidFile {
        let Some(m) = find_mount(mountpoint) else {
            log::warn!("pid file: {} not found in mountinfo", mountpoint.display());
            return PidFile(None);
        };
        let written = pid_file_path(&m.dev).and_then(|path| {
            let text = format!("{}\n{}\n", std::process::id(), mountpoint.display());
            let mut f = open_private(&path, false)?;
            f.write_all(text.as_bytes())
                .map_err(|e| MountError::Files(format!("{}: {e}", path.display())))?;
            Ok(path)
        });
        match written {
            Ok(path) => PidFile(Some(path)),
            Err(e) => {
                log::warn!("pid file: {e}; `cloudstore-fs unmount` cannot wait for this daemon");
                PidFile(None)
            }
        }
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let Some(path) = &self.0 else {
            return;
        };
        // Device numbers are reused: a newer mount with the same one may have written its own
        // pid file meanwhile, which `unmount` of that mount needs.
        let ours = std::fs::read_to_string(path)
            .is_ok_and(|text| text.lines().next() == Some(std::process::id().to_string().as_str()));
        if ours {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The last lines of a log file (why a daemon could not start), or nothing.
pub(super) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn a_dead_mounts_pid_file_is_removed_only_while_it_names_that_mount() {
        // A device number no real mount has: major 4095 is not handed out to FUSE here.
        let dev = format!("4095:{}", std::process::id());
        let path = pid_file_path(&dev).unwrap();
        let mnt = Path::new("/cloudstore-test/mnt");
        // A newer mount took the device number and wrote its own pid file.
        std::fs::write(&path, format!("222\n{}\n", mnt.display())).unwrap();
        remove_pid_file(&dev, 111, mnt);
        assert!(path.exists(), "another mount's pid file was removed");
        remove_pid_file(&dev, 222, Path::new("/elsewhere"));
        assert!(path.exists());
        remove_pid_file(&dev, 222, mnt);
        assert!(!path.exists());
    }

    #[test]
    fn log_names_are_flat_and_one_per_mountpoint() {
        assert_eq!(flat_name(Path::new("/tmp/a b/m_n")), "tmp_a%20b_m%5fn");
        assert_ne!(
            flat_name(Path::new("/a/b_c")),
            flat_name(Path::new("/a_b/c"))
        );
        assert_ne!(flat_name(Path::new("/a%5fb")), flat_name(Path::new("/a_b")));
        assert_eq!(flat_name(Path::new("/")), "_");
        let long = |c: &str| format!("/{}/{c}", "d".repeat(300));
        let (a, b) = (
            flat_name(Path::new(&long("x"))),
            flat_name(Path::new(&long("y"))),
        );
        assert!(a.len() <= MAX_FLAT_NAME && b.len() <= MAX_FLAT_NAME, "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn a_symlink_is_not_followed_and_files_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"untouched").unwrap();
        let link = dir.path().join("link");
        symlink(&target, &link).unwrap();
        let e = open_private(&link, true).unwrap_err().to_string();
        assert!(e.contains("symlink"), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"untouched");
        let file = dir.path().join("file");
        open_private(&file, true).unwrap();
        let mode = std::fs::metadata(&file).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn shared_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_private_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("writable by others"), "{e}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        check_private_dir(dir.path()).unwrap();
        let link = dir.path().join("link");
        symlink(dir.path(), &link).unwrap();
        assert!(check_private_dir(&link)
            .unwrap_err()
            .to_string()
            .contains("symlink"));
    }
}
