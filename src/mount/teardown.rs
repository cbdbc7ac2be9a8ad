//! Taking a mount down at the system level: umount2(2), or `fusermount3 -u` for a user other
//! than root; a lazy detach of a busy mount; whether a daemon named in a pid file still runs.
//! Used by `unmount` and by the snapshot mounts.

use std::io;
use std::path::Path;

use crate::sys::mounts::Unmount;
use crate::sys::process;

/// Whether `pid` is a running cloudstore-fs process (a pid file may name a reused pid).
pub(super) fn daemon_running(pid: u32) -> bool {
    process::running(pid)
        && process::command_and_state(pid)
            .is_some_and(|(comm, _)| comm.starts_with("cloudstore-fs"))
}

/// Lazy unmount of a busy mount: it disappears from the namespace now and is served until the
/// last open file is closed.
pub(super) fn detach(mountpoint: &Path) {
    match umount2(mountpoint, Unmount::Detach) {
        Ok(()) => log::warn!(
            "{} is busy: detached lazily; open files are served until they are closed",
            mountpoint.display()
        ),
        Err(e) => log::error!("lazy unmount of {}: {e}", mountpoint.display()),
    }
}

/// umount2(2); for a user other than root, `fusermount3 -u` (`-z` to detach), which unmounts
/// what that user mounted.
pub(super) fn umount2(path: &Path, how: Unmount) -> io::Result<()> {
    if super::fusermount::needed() {
        return super::fusermount::unmount(path, how == Unmount::Detach);
    }
    crate::sys::mounts::umount(path, how)
}
