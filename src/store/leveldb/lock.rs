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
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.pid)).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
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
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = holder_pid(&locks, meta.dev(), meta.ino())?;
    // A process we cannot look at (another pid namespace) is taken as alive: not waited for.
    let state = match pid {
        0 => HolderState::Alive,
        pid => process_state(pid),
    };
    Some(Holder { pid, state })
}

/// The pid holding a POSIX lock on the file (`dev`, `ino`) in the text of /proc/locks. Lines
/// look like `1: POSIX  ADVISORY  WRITE 1234 fe:00:10012040 0 EOF` (device numbers in hex);
/// waiters (`1: -> POSIX ...`) are skipped. A line of the same inode on another device is taken
/// when none matches exactly (stacked filesystems report devices differently).
fn holder_pid(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let (major, minor) = (libc::major(dev) as u64, libc::minor(dev) as u64);
    let mut same_ino = None;
    for line in locks.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 || fields[1] == "->" || fields[1] != "POSIX" {
            continue;
        }
        // A holder outside our pid namespace shows as 0 (or -1): kept as pid 0, "unknown".
        let Ok(pid) = fields[4].parse::<i64>() else {
            continue;
        };
        let pid = u32::try_from(pid).unwrap_or(0);
        let mut id = fields[5].split(':');
        let (Some(ma), Some(mi), Some(i)) = (id.next(), id.next(), id.next()) else {
            continue;
        };
        if i.parse::<u64>() != Ok(ino) {
            continue;
        }
        let on_dev =
            u64::from_str_radix(ma, 16) == Ok(major) && u64::from_str_radix(mi, 16) == Ok(minor);
        if on_dev {
            return Some(pid);
        }
        same_ino.get_or_insert(pid);
    }
    same_ino
}

/// PF_EXITING in /proc/PID/stat's flags: the thread is in do_exit.
const PF_EXITING: u64 = 0x4;
/// SIGKILL's bit in the pending-signal masks of /proc/PID/status.
const SIGKILL_BIT: u64 = 1 << (libc::SIGKILL - 1);

/// Whether `pid` is dying: every thread of it is a zombie, exiting or killed (or none is left to
/// look at). Anything else is alive.
fn process_state(pid: u32) -> HolderState {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return HolderState::Dying;
    };
    let alive = tasks.flatten().any(|task| {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        thread_alive(&stat, &status)
    });
    if alive {
        HolderState::Alive
    } else {
        HolderState::Dying
    }
}

/// Whether a thread, by the text of its /proc stat and status files, is alive: readable, not
/// a zombie, not exiting, no SIGKILL pending (for it or for its process).
fn thread_alive(stat: &str, status: &str) -> bool {
    // "tid (comm) state ppid pgrp session tty_nr tpgid flags ...": comm may hold spaces and
    // parentheses, so fields are counted after the last ')'.
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let (Some(state), Some(flags)) = (fields.first(), fields.get(6)) else {
        return false;
    };
    if matches!(*state, "Z" | "X" | "x") {
        return false;
    }
    if flags.parse::<u64>().is_ok_and(|f| f & PF_EXITING != 0) {
        return false;
    }
    let killed = status.lines().any(|line| {
        let Some((name, value)) = line.split_once(':') else {
            return false;
        };
        matches!(name, "SigPnd" | "ShdPnd")
            && u64::from_str_radix(value.trim(), 16).is_ok_and(|mask| mask & SIGKILL_BIT != 0)
    });
    !killed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_found_by_device_and_inode() {
        let dev = libc::makedev(0xfe, 0);
        let locks = "1: POSIX  ADVISORY  WRITE 11 fe:00:77 0 EOF\n\
                     2: -> POSIX  ADVISORY  WRITE 12 fe:00:99 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 13 fe:00:99 0 EOF\n\
                     4: POSIX  ADVISORY  WRITE 14 08:01:99 0 EOF\n\
                     5: POSIX  ADVISORY  WRITE 15 fe:00:99 0 EOF\n";
        assert_eq!(holder_pid(locks, dev, 99), Some(15));
        assert_eq!(holder_pid(locks, dev, 77), Some(11));
        // Same inode, other device only: taken.
        assert_eq!(holder_pid(locks, libc::makedev(7, 7), 99), Some(14));
        assert_eq!(holder_pid(locks, dev, 5), None);
        let elsewhere = "1: POSIX  ADVISORY  WRITE -1 fe:00:5 0 EOF\n";
        assert_eq!(holder_pid(elsewhere, dev, 5), Some(0));
    }

    #[test]
    fn threads_are_alive_unless_exiting_zombie_or_killed() {
        let status = "Name:\tx\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n";
        let killed = "Name:\tx\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000100\n";
        let stat = |state: &str, flags: u64| format!("42 (a (b) c) {state} 1 42 42 0 -1 {flags} 0");
        assert!(thread_alive(&stat("S", 0x400040), status));
        assert!(thread_alive(&stat("D", 0x400040), status));
        assert!(!thread_alive(&stat("Z", 0x400040), status));
        assert!(!thread_alive(&stat("D", 0x400044), status));
        assert!(!thread_alive(&stat("S", 0x400040), killed));
        assert!(!thread_alive("", ""));
    }

    #[test]
    fn this_process_is_alive_and_a_reaped_one_is_not() {
        assert_eq!(process_state(std::process::id()), HolderState::Alive);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(process_state(pid), HolderState::Dying);
    }

    #[test]
    fn a_held_lock_names_its_process() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("LOCK");
        let file = std::fs::File::create(&path).unwrap();
        // SAFETY: a zeroed flock asking for a write lock of the whole file, on our own fd.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as _;
        fl.l_whence = libc::SEEK_SET as _;
        assert_eq!(
            unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) },
            0
        );
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
