//! LevelDB's lock: who holds it, and whether that holder is still alive.
//!
//! LevelDB takes a POSIX record lock (fcntl F_SETLK) on `DIR/LOCK` for as long as a database is
//! open. The kernel lists those locks in `/proc/locks` with the owning process, so the holder is
//! found there by the lock file's device and inode, even while the process is half gone (its
//! main thread a zombie, its fd table no longer readable in /proc).
//!
//! A killed daemon keeps the lock until its last thread has exited and its files are closed,
//! which can take a moment after `kill -9` (threads finishing a system call, a big write of
//! LevelDB's log). A holder is *dying* when every one of its threads is a zombie, is exiting
//! (PF_EXITING) or has SIGKILL pending; an open then waits for it, bounded (see
//! [`LOCK_WAIT`]). A holder that is alive is reported at once, with its pid and command line.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crate::sys::{locks::posix_lock_holder, process};

/// How long an open waits for a dying holder to let go of the lock (a daemon just killed: the
/// kernel closes its files once its last thread has exited).
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The process that holds LevelDB's lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub state: HolderState,
}

/// Whether the holder will let go by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolderState {
    /// Running: it holds the store for as long as it runs.
    Alive,
    /// Exiting (killed): the lock goes with its last thread.
    Dying,
}

impl Holder {
    /// "process PID (`COMMAND LINE`)", for messages.
    pub fn describe(&self) -> String {
        if self.pid == 0 {
            return "a process outside this pid namespace".into();
        }
        let args = process::command_line(self.pid);
        if args.is_empty() {
            format!("process {}", self.pid)
        } else {
            format!("process {} (`{}`)", self.pid, args.join(" "))
        }
    }
}

/// The holder of the POSIX lock on `lock`, from /proc/locks; `None` when no process holds it
/// (it was just released) or the lock file cannot be looked at.
pub fn find_holder(lock: &Path) -> Option<Holder> {
    let meta = std::fs::metadata(lock).ok()?;
    let pid = posix_lock_holder(meta.dev(), meta.ino())?;
    // A process we cannot look at (another pid namespace) is taken as alive: not waited for.
    let state = match pid {
        0 => HolderState::Alive,
        pid if process::dying(pid) => HolderState::Dying,
        _ => HolderState::Alive,
    };
    Some(Holder { pid, state })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_names_its_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("LOCK");
        let file = std::fs::File::create(&path).unwrap();
        // A POSIX write lock on the whole file, as LevelDB takes it.
        let fl = libc::flock {
            l_type: libc::F_WRLCK as _,
            l_whence: libc::SEEK_SET as _,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETLK(&fl)).unwrap();
        let holder = find_holder(&path).expect("holder");
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.state, HolderState::Alive);
        assert!(holder
            .describe()
            .starts_with(&format!("process {} (`", holder.pid)));
        drop(file);
        assert_eq!(find_holder(&path), None);
    }
}
