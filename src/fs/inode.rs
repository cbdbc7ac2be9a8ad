//! The inode table: which inode number stands for which name. A name keeps its number for the
//! life of the mount (numbers are never reused); a rename carries the number to the new name, as
//! the kernel expects, and an unlinked name loses it.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};

/// The inode number of the directory (the FUSE root).
pub const ROOT_INO: u64 = 1;

/// Name <-> inode number, both ways.
#[derive(Debug)]
pub struct InodeTable {
    by_name: HashMap<OsString, u64>,
    by_ino: HashMap<u64, OsString>,
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
    /// The number of `name`, assigning a new one the first time it is seen.
    pub fn get_or_assign(&mut self, name: &OsStr) -> u64 {
        if let Some(&ino) = self.by_name.get(name) {
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.by_name.insert(name.to_owned(), ino);
        self.by_ino.insert(ino, name.to_owned());
        ino
    }

    /// The number of `name`, if it has one.
    pub fn ino_of(&self, name: &OsStr) -> Option<u64> {
        self.by_name.get(name).copied()
    }

    /// The name that `ino` stands for now; `None` once unlinked or replaced.
    pub fn name_of(&self, ino: u64) -> Option<&OsStr> {
        self.by_ino.get(&ino).map(|n| n.as_os_str())
    }

    /// Forgets `name` (unlink): returns the number it had.
    pub fn remove(&mut self, name: &OsStr) -> Option<u64> {
        let ino = self.by_name.remove(name)?;
        self.by_ino.remove(&ino);
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
            self.by_ino.insert(ino, to.to_owned());
        }
        (moved, replaced)
    }

    /// How many names have numbers.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when no name has a number yet.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
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
}
