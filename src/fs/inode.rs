//! The inode table: which inode number stands for which name, and how many lookups the kernel
//! holds on each number. A number is never reused; a rename carries the number to the new name,
//! as the kernel expects, and an unlinked name loses it (the number lives on while the kernel
//! still holds lookups on it). Once the kernel forgot every lookup and the core holds nothing
//! else on a number, the caller drops it ([`InodeTable::drop_if_unused`]): a later lookup of the
//! same name gets a new number, so memory follows what the kernel caches, not every name ever seen.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};

/// The inode number of the directory (the FUSE root).
pub const ROOT_INO: u64 = 1;

#[derive(Debug)]
struct Entry {
    /// The name the number stands for now; None once unlinked or replaced.
    name: Option<OsString>,
    /// Lookups the kernel holds (entries handed to it minus those it forgot).
    lookups: u64,
}

/// Name <-> inode number, both ways, with the kernel's lookup counts.
#[derive(Debug)]
pub struct InodeTable {
    by_name: HashMap<OsString, u64>,
    by_ino: HashMap<u64, Entry>,
    next: u64,
}

impl Default for InodeTable {
    fn default() -> Self {
        InodeTable {
            by_name: HashMap::new(),
            by_ino: HashMap::new(),
            next: ROOT_INO + 1,
        }
    }
}

impl InodeTable {
    /// The number of `name`, assigning a new one the first time it is seen (no lookup counted:
    /// the caller drops it with `drop_if_unused` when nothing ends up holding it).
    pub fn get_or_assign(&mut self, name: &OsStr) -> u64 {
        if let Some(&ino) = self.by_name.get(name) {
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.by_name.insert(name.to_owned(), ino);
        self.by_ino.insert(
            ino,
            Entry {
                name: Some(name.to_owned()),
                lookups: 0,
            },
        );
        ino
    }

    /// Like `get_or_assign`, counting one lookup (an entry handed to the kernel).
    pub fn lookup(&mut self, name: &OsStr) -> u64 {
        let ino = self.get_or_assign(name);
        self.by_ino.get_mut(&ino).expect("just assigned").lookups += 1;
        ino
    }

    /// The number of `name`, or a fresh number that is not recorded (plain readdir: the kernel
    /// takes no lookup on it, so nothing would ever release it).
    pub fn ino_or_fresh(&mut self, name: &OsStr) -> u64 {
        self.ino_of(name).unwrap_or_else(|| {
            let ino = self.next;
            self.next += 1;
            ino
        })
    }

    /// Counts one more lookup on `ino`; false when the number is not in the table.
    pub fn add_lookup(&mut self, ino: u64) -> bool {
        match self.by_ino.get_mut(&ino) {
            Some(e) => {
                e.lookups += 1;
                true
            }
            None => false,
        }
    }

    /// The kernel forgot `n` lookups of `ino`: returns how many it still holds.
    pub fn forget(&mut self, ino: u64, n: u64) -> u64 {
        match self.by_ino.get_mut(&ino) {
            Some(e) => {
                if n > e.lookups {
                    log::debug!("forget {n} of inode {ino} that has {} lookups", e.lookups);
                }
                e.lookups = e.lookups.saturating_sub(n);
                e.lookups
            }
            None => 0,
        }
    }

    /// The lookups the kernel holds on `ino`.
    pub fn lookups(&self, ino: u64) -> u64 {
        self.by_ino.get(&ino).map_or(0, |e| e.lookups)
    }

    /// Drops `ino` (both ways) when the kernel holds no lookup on it and `in_use` is false (the
    /// caller's own references: a node, an open file). The root is never in the table.
    pub fn drop_if_unused(&mut self, ino: u64, in_use: bool) -> bool {
        if in_use || ino == ROOT_INO {
            return false;
        }
        match self.by_ino.get(&ino) {
            Some(e) if e.lookups == 0 => {}
            _ => return false,
        }
        let entry = self.by_ino.remove(&ino).expect("checked above");
        if let Some(name) = entry.name {
            if self.by_name.get(&name) == Some(&ino) {
                self.by_name.remove(&name);
            }
        }
        true
    }

    /// The number of `name`, if it has one.
    pub fn ino_of(&self, name: &OsStr) -> Option<u64> {
        self.by_name.get(name).copied()
    }

    /// The name that `ino` stands for now; `None` once unlinked or replaced (or dropped).
    pub fn name_of(&self, ino: u64) -> Option<&OsStr> {
        self.by_ino.get(&ino)?.name.as_deref()
    }

    /// Forgets `name` (unlink): returns the number it had. The number stays (nameless) while the
    /// kernel holds lookups on it.
    pub fn remove(&mut self, name: &OsStr) -> Option<u64> {
        let ino = self.by_name.remove(name)?;
        if let Some(e) = self.by_ino.get_mut(&ino) {
            e.name = None;
            if e.lookups == 0 {
                self.by_ino.remove(&ino);
            }
        }
        Some(ino)
    }

    /// Moves `from`'s number to `to`. Returns (the moved number, the number `to` had before),
    /// so the caller can retire the replaced file.
    pub fn rename(&mut self, from: &OsStr, to: &OsStr) -> (Option<u64>, Option<u64>) {
        if from == to {
            return (self.ino_of(from), None);
        }
        let replaced = self.remove(to);
        let moved = self.by_name.remove(from);
        if let Some(ino) = moved {
            self.by_name.insert(to.to_owned(), ino);
            if let Some(e) = self.by_ino.get_mut(&ino) {
                e.name = Some(to.to_owned());
            }
        }
        (moved, replaced)
    }

    /// How many numbers are live (named, or still held by the kernel).
    pub fn len(&self) -> usize {
        self.by_ino.len()
    }

    /// True when no number is live.
    pub fn is_empty(&self) -> bool {
        self.by_ino.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable_and_follow_renames() {
        let mut t = InodeTable::default();
        let a = t.get_or_assign(OsStr::new("aa"));
        let b = t.get_or_assign(OsStr::new("bb"));
        assert_ne!(a, b);
        assert!(a > ROOT_INO && b > ROOT_INO);
        assert_eq!(t.get_or_assign(OsStr::new("aa")), a);
        assert_eq!(
            t.rename(OsStr::new("aa"), OsStr::new("bb")),
            (Some(a), Some(b))
        );
        assert_eq!(t.name_of(a), Some(OsStr::new("bb")));
        assert_eq!(t.name_of(b), None);
        assert_eq!(t.ino_of(OsStr::new("aa")), None);
        assert_eq!(t.remove(OsStr::new("bb")), Some(a));
        let c = t.get_or_assign(OsStr::new("aa"));
        assert!(c != a && c != b, "numbers are never reused");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn lookups_are_counted_and_unused_numbers_dropped() {
        let mut t = InodeTable::default();
        let a = t.lookup(OsStr::new("aa"));
        assert_eq!(t.lookup(OsStr::new("aa")), a);
        assert_eq!(t.lookups(a), 2);
        assert_eq!(t.forget(a, 1), 1);
        assert!(!t.drop_if_unused(a, false));
        assert_eq!(t.forget(a, 1), 0);
        assert!(!t.drop_if_unused(a, true), "in use");
        assert!(t.drop_if_unused(a, false));
        assert!(t.is_empty());
        assert_eq!(t.ino_of(OsStr::new("aa")), None);
        let b = t.lookup(OsStr::new("aa"));
        assert!(b > a, "numbers are never reused");
        // Unlinked while the kernel holds it: nameless until forgotten.
        assert_eq!(t.remove(OsStr::new("aa")), Some(b));
        assert_eq!(t.len(), 1);
        assert_eq!(t.name_of(b), None);
        t.forget(b, 1);
        assert!(t.drop_if_unused(b, false));
        // A fresh readdir number is never recorded.
        let f = t.ino_or_fresh(OsStr::new("bb"));
        assert!(f > b && t.is_empty());
        assert!(!t.drop_if_unused(ROOT_INO, false));
    }
}
