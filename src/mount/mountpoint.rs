//! Checks a mountpoint before mounting, and takes over the stale mount a killed daemon left.
//!
//! A cloudstore-fs daemon that died (kill -9, OOM) leaves its mount behind, answering every
//! access with ENOTCONN ("Transport endpoint is not connected"). When the dead mount is ours
//! (type fuse.cloudstore-fs) nothing can be lost by clearing it: no daemon serves it any more.
//! So `mount` clears it and says so; a dead mount of another program is left alone, with a
//! message.

use std::io;
use std::path::{Path, PathBuf};

use super::error::MountError;
use super::files;
use super::mountinfo::{absolute, find_mount, MountInfo, Ours};
use super::teardown::{daemon_running, umount2};
use crate::sys::mounts::Unmount;

/// How many stale mounts stacked at one point are cleared before giving up.
const MAX_STALE: usize = 8;

/// The mountpoint as an absolute path, or a clear reason why it cannot be mounted on. A stale
/// mount left by a dead cloudstore-fs daemon is cleared first; a non-empty directory is refused
/// unless `nonempty` (mounting would hide its files).
pub fn check_mountpoint(path: &Path, nonempty: bool) -> Result<PathBuf, MountError> {
    let shown = path.display();
    for cleared in 0.. {
        if cleared == MAX_STALE {
            return Err(MountError::Mountpoint(format!(
                "mountpoint {shown}: still stale after clearing {MAX_STALE} dead mounts there"
            )));
        }
        // The kernel answers stat from its attribute cache for a while after the daemon died,
        // so our own mounts are first judged by their daemon's pid.
        if let Some(m) = absolute(path).ok().as_deref().and_then(dead_daemon_mount) {
            take_over(path, &m)?;
            continue;
        }
        match std::fs::metadata(path) {
            // ECONNABORTED: the kernel is still aborting the dead daemon's requests.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)) => {
                take_over_stale(path)?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(MountError::Mountpoint(format!(
                    "mountpoint {shown} does not exist (create it with `mkdir -p {shown}`)"
                )))
            }
            Err(e) => return Err(MountError::Mountpoint(format!("mountpoint {shown}: {e}"))),
            Ok(m) if !m.is_dir() => {
                return Err(MountError::Mountpoint(format!(
                    "mountpoint {shown} is not a directory"
                )))
            }
            Ok(_) => break,
        }
    }
    let canonical = path
        .canonicalize()
        .map_err(|e| MountError::Mountpoint(format!("mountpoint {shown}: {e}")))?;
    let automount = find_mount(&canonical).is_some_and(|m| m.fstype == "autofs");
    if let Some(m) = find_mount(&canonical).filter(|_| !automount) {
        return Err(MountError::Mountpoint(format!(
            "{shown} is already a mount point ({} from {}); unmount it first \
             (`cloudstore-fs unmount {shown}`), or mount somewhere else",
            m.fstype, m.source
        )));
    }
    // systemd's automount point (fstab `x-systemd.automount`): the mount goes on top of it, and
    // listing it would wait for this very mount.
    if !nonempty && !automount {
        let mut entries = std::fs::read_dir(&canonical)
            .map_err(|e| MountError::Mountpoint(format!("mountpoint {shown}: {e}")))?;
        if let Some(entry) = entries.next() {
            let first = entry.map_or_else(|e| e.to_string(), |e| format!("{:?}", e.file_name()));
            return Err(MountError::Mountpoint(format!(
                "mountpoint {shown} is not empty (it holds {first}, ...): the mount would hide \
                 its files; use an empty directory, or pass --nonempty to mount over them"
            )));
        }
    }
    if !Path::new("/dev/fuse").exists() {
        return Err(MountError::Mount(
            "/dev/fuse is missing: load the fuse module (modprobe fuse)".into(),
        ));
    }
    Ok(canonical)
}

/// Clears the dead mount at `path` when it is ours; anything else is refused with a message.
fn take_over_stale(path: &Path) -> Result<(), MountError> {
    let shown = path.display();
    let abs = absolute(path)?;
    let Some(m) = find_mount(&abs) else {
        return Err(MountError::Mountpoint(format!(
            "mountpoint {shown}: transport endpoint is not connected, and no mount is listed \
             there in /proc/self/mountinfo"
        )));
    };
    if !m.is_ours() {
        return Err(MountError::Mountpoint(format!(
            "mountpoint {shown}: a dead mount of another program ({} from {}) answers \
             \"transport endpoint is not connected\"; clear it with `umount {shown}` first",
            m.fstype, m.source
        )));
    }
    // ENOTCONN on our own type: the daemon's connection is gone, so it serves nothing.
    take_over(path, &m)
}

/// Our mount at `abs` when the daemon its pid file names is gone (killed: no cleanup ran).
fn dead_daemon_mount(abs: &Path) -> Option<MountInfo> {
    let m = find_mount(abs).filter(MountInfo::is_ours)?;
    let pid = files::read_pid(&m.dev, abs)?;
    (!daemon_running(pid)).then_some(m)
}

/// Clears our dead mount `m` at `path`.
fn take_over(path: &Path, m: &MountInfo) -> Result<(), MountError> {
    let shown = path.display();
    let abs = absolute(path)?;
    // Read before the unmount frees the device number (and so the pid file's name).
    let dead = files::read_pid(&m.dev, &abs);
    let how = match umount2(&abs, Unmount::Normal) {
        Ok(()) => "unmounted",
        Err(e) => {
            log::info!("umount {shown}: {e}; detaching instead");
            umount2(&abs, Unmount::Detach).map_err(|e| {
                MountError::Mountpoint(format!(
                    "mountpoint {shown}: cannot clear the stale mount of a dead daemon: {e}"
                ))
            })?;
            "detached"
        }
    };
    if let Some(dead) = dead {
        files::remove_pid_file(&m.dev, dead, &abs);
    }
    let msg = format!(
        "{shown}: the cloudstore-fs daemon serving it had died, leaving a stale mount ({}: \
         transport endpoint is not connected); {how} it to mount again",
        m.source
    );
    // stderr, not the log: this runs in the `mount` command, before any daemon log is opened.
    eprintln!("cloudstore-fs: {msg}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_mountpoints_are_reported() {
        let e = check_mountpoint(Path::new("/nonexistent/cloudstore-fs-test"), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
        let e = check_mountpoint(Path::new("/"), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("already a mount point"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"").unwrap();
        let e = check_mountpoint(&dir.path().join("f"), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a directory"), "{e}");
        let e = check_mountpoint(dir.path(), false).unwrap_err().to_string();
        assert!(e.contains("not empty") && e.contains("\"f\""), "{e}");
    }
}
