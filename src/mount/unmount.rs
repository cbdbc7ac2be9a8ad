//! `cloudstore-fs unmount`: unmounts a cloudstore-fs mount and waits until its daemon has
//! committed its last writes, closed the store and exited. A busy mount is refused (or, with
//! `lazy`, detached: it is served until its last open file is closed).

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::error::MountError;
use super::files;
use super::mountinfo::{absolute, find_mount, Ours};
use super::teardown::{daemon_running, umount2};
use crate::sys::mounts::Unmount;
use crate::sys::process;

/// How long `unmount` waits for the daemon by default.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(120);

/// How to unmount.
#[derive(Debug, Clone)]
pub struct UnmountOptions {
    /// Detach a busy mount instead of failing (the daemon stops when the last file is closed).
    pub lazy: bool,
    /// How long to wait for the daemon to exit after the unmount.
    pub timeout: Duration,
}

impl Default for UnmountOptions {
    fn default() -> Self {
        UnmountOptions {
            lazy: false,
            timeout: EXIT_TIMEOUT,
        }
    }
}

/// Unmounts with the default options: a busy mount is an error; success only once the daemon
/// has exited (so its store, and LevelDB's lock, are free).
pub fn unmount(mountpoint: &Path) -> Result<(), MountError> {
    unmount_with(mountpoint, &UnmountOptions::default())
}

/// Unmounts the cloudstore-fs mount at `mountpoint`; see [`UnmountOptions`].
pub fn unmount_with(mountpoint: &Path, opts: &UnmountOptions) -> Result<(), MountError> {
    let shown = mountpoint.display();
    let path = absolute(mountpoint)?;
    let Some(m) = find_mount(&path) else {
        return Err(MountError::NotOurs(
            match std::fs::symlink_metadata(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => format!("{shown} does not exist"),
                _ => format!("{shown} is not a mount point"),
            },
        ));
    };
    if !m.is_ours() {
        return Err(MountError::NotOurs(format!(
            "{shown} is a {} mount ({}), not a cloudstore-fs one: not unmounting it",
            m.fstype, m.source
        )));
    }
    let pid = files::read_pid(&m.dev, &path);
    let snapshot = super::snapshot::SnapshotMount::find(&m.dev, &path);
    match umount2(&path, Unmount::Normal) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) && opts.lazy => {
            umount2(&path, Unmount::Detach)
                .map_err(|e| MountError::Unmount(format!("{shown}: lazy unmount: {e}")))?;
            eprintln!(
                "cloudstore-fs: {shown} is busy: detached lazily; the daemon keeps serving the \
                 files still open and stops when the last one is closed"
            );
            return Ok(());
        }
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            return Err(MountError::Busy(mountpoint.to_path_buf()))
        }
        Err(e) => {
            return Err(MountError::Unmount(match e.raw_os_error() {
                Some(libc::EPERM) => format!("unmounting {shown} needs root"),
                _ => format!("unmount {shown}: {e}"),
            }))
        }
    }
    if let Some(snapshot) = snapshot {
        // Served by the daemon of the live mount, which goes on.
        return snapshot.wait_released(opts.timeout);
    }
    if let Some(dead) = pid.filter(|&p| !daemon_running(p)) {
        // A dead daemon (killed: its stale mount was just cleared) left its pid file behind.
        files::remove_pid_file(&m.dev, dead, &path);
    }
    let Some(pid) = pid else {
        eprintln!(
            "cloudstore-fs: unmounted {shown}; its daemon left no pid file, so this could not \
             wait for it to finish its last commits"
        );
        return Ok(());
    };
    if wait_for_exit(pid, opts.timeout) {
        return Ok(());
    }
    Err(MountError::Unmount(format!(
        "unmounted {shown}, but its daemon (pid {pid}) has not exited after {}s: it still holds \
         the store (its last commits?); see its log",
        opts.timeout.as_secs()
    )))
}

/// The pid of the daemon serving the mount at `mountpoint`, from its pid file.
pub fn daemon_pid(mountpoint: &Path) -> Option<u32> {
    let path = absolute(mountpoint).ok()?;
    let m = find_mount(&path)?;
    files::read_pid(&m.dev, &path)
}

/// Waits until process `pid` is gone (or a zombie); false on timeout.
pub fn wait_for_exit(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while process::running(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}
