//! /proc/locks: who holds a POSIX record lock on a file.

use procfs::FromBufRead;
use procfs::{Lock, LockType};

/// The process holding a POSIX lock on the file (`dev`, `ino`), from /proc/locks: `Some(0)` for a
/// holder outside our pid namespace, `None` when nobody holds one (or /proc/locks is unreadable).
pub fn posix_lock_holder(dev: u64, ino: u64) -> Option<u32> {
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    holder_in(&text, dev, ino)
}

/// The holder in the text of /proc/locks. Lines look like
/// `1: POSIX  ADVISORY  WRITE 1234 fe:00:10012040 0 EOF`; waiters (`1: -> POSIX ...`) are left
/// out. A lock of the same inode on another device is taken when none matches exactly (stacked
/// filesystems report devices differently).
fn holder_in(text: &str, dev: u64, ino: u64) -> Option<u32> {
    let held: String = text
        .lines()
        .filter(|line| line.split_whitespace().nth(1) != Some("->"))
        .flat_map(|line| [line, "\n"])
        .collect();
    let locks = procfs::Locks::from_buf_read(held.as_bytes()).ok()?.0;
    let posix = |l: &&Lock| l.lock_type == LockType::Posix && l.inode == ino;
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let lock = locks
        .iter()
        .filter(posix)
        .find(|l| u64::from(l.devmaj) == major && u64::from(l.devmin) == minor)
        .or_else(|| locks.iter().find(posix))?;
    // A holder outside our pid namespace shows as 0 or -1: pid 0, "unknown".
    Some(lock.pid.and_then(|p| u32::try_from(p).ok()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_found_by_device_and_inode() {
        let dev = nix::sys::stat::makedev(0xfe, 0);
        let locks = "1: POSIX  ADVISORY  WRITE 11 fe:00:77 0 EOF\n\
                     2: -> POSIX  ADVISORY  WRITE 12 fe:00:99 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 13 fe:00:99 0 EOF\n\
                     4: POSIX  ADVISORY  WRITE 14 08:01:99 0 EOF\n\
                     5: POSIX  ADVISORY  WRITE 15 fe:00:99 0 EOF\n";
        assert_eq!(holder_in(locks, dev, 99), Some(15));
        assert_eq!(holder_in(locks, dev, 77), Some(11));
        // Same inode, other device only: taken.
        assert_eq!(
            holder_in(locks, nix::sys::stat::makedev(7, 7), 99),
            Some(14)
        );
        assert_eq!(holder_in(locks, dev, 5), None);
        let elsewhere = "1: POSIX  ADVISORY  WRITE -1 fe:00:5 0 EOF\n";
        assert_eq!(holder_in(elsewhere, dev, 5), Some(0));
    }
}
