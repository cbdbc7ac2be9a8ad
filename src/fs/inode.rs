//! The inode table: which inode number stands for which name, and how many lookups the kernel
//! holds on each number.
//!
//! A name's number is derived from the name ([`stable_ino`], a 63-bit hash), so a chunk has the
//! same number whenever it is looked up: after the kernel forgot it (drop_caches, memory
//! pressure) and after a remount, as backup tools (restic, borg, tar --listed-incremental)
//! need. When that number is taken by another live name (a hash collision, or the same name
//! unlinked while the kernel still holds its old inode), the name gets a number from a counter
//! above 2^63 for as long as it stays in the table. A rename carries the number to the new
//! name, as the kernel expects (the new name gets its own number once the kernel forgot the
//! moved inode), and an unlinked name loses it (the number lives on while the kernel still
//! holds lookups on it). Once the kernel forgot every lookup and the core holds nothing else on
//! a number, the caller drops it ([`InodeTable::drop_if_unused`]), so memory follows what the
//! kernel caches, not every name ever seen.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};

use super::name::{self, Name};
use crate::store::Version;

/// The inode number of the directory (the FUSE root).
pub const ROOT_INO: u64 = 1;

#[derive(Debug)]
struct Entry {
    /// The name the number stands for now; None once unlinked or replaced.
    name: Option<OsString>,
    /// What that name is (a chunk's decoded key, or scratch), classified once, when the name
    /// entered the table.
    class: Option<Name>,
    /// Lookups the kernel holds (entries handed to it minus those it forgot).
    lookups: u64,
    /// The version whose bytes the kernel's page cache holds for this inode, when known
    /// (`Some(None)`: the committed value, on a store without versions).
    pages: Option<Option<Version>>,
}

/// Name <-> inode number, both ways, with the kernel's lookup counts.
#[derive(Debug)]
pub struct InodeTable {
    by_name: HashMap<OsString, u64>,
    by_ino: HashMap<u64, Entry>,
    next: u64,
}

/// Numbers given when a name's own number is taken start here (above every [`stable_ino`]).
const FALLBACK_START: u64 = 1 << 63;

/// The number a name has whenever it is free: FNV-1a over the name's bytes, mixed
/// (splitmix64's finalizer), in 2..2^63. Fixed forever: changing it changes every inode number.
pub fn stable_ino(name: &OsStr) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in name.as_bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    let ino = h & (FALLBACK_START - 1);
    if ino <= ROOT_INO {
        ino + 2
    } else {
        ino
    }
}

impl Default for InodeTable {
    fn default() -> Self {
        InodeTable {
            by_name: HashMap::new(),
            by_ino: HashMap::new(),
            next: FALLBACK_START,
        }
    }
}

impl InodeTable {
    /// The number `name` gets now: its own when free, else the next fallback number.
    fn number_for(&mut self, name: &OsStr) -> u64 {
        let own = stable_ino(name);
        if !self.by_ino.contains_key(&own) {
            return own;
        }
        log::debug!("inode {own} of {name:?} is taken: a number from the fallback range");
        let ino = self.next;
        self.next += 1;
        ino
    }

    /// The number of `name`, assigning one the first time it is seen (no lookup counted:
    /// the caller drops it with `drop_if_unused` when nothing ends up holding it).
    pub fn get_or_assign(&mut self, name: &OsStr) -> u64 {
        if let Some(&ino) = self.by_name.get(name) {
            return ino;
        }
        let ino = self.number_for(name);
        self.by_name.insert(name.to_owned(), ino);
        self.by_ino.insert(
            ino,
            Entry {
                name: Some(name.to_owned()),
                class: Some(name::classify(name)),
                lookups: 0,
                pages: None,
            },
        );
        ino
    }

    /// What the kernel's pages of `ino` hold, when known (see `Entry::pages`).
    pub fn pages(&self, ino: u64) -> Option<Option<Version>> {
        self.by_ino.get(&ino).and_then(|e| e.pages)
    }

    /// Records what the kernel's pages of `ino` hold (`None`: unknown).
    pub fn set_pages(&mut self, ino: u64, pages: Option<Option<Version>>) {
        if let Some(e) = self.by_ino.get_mut(&ino) {
            e.pages = pages;
        }
    }

    /// Like `get_or_assign`, counting one lookup (an entry handed to the kernel).
    pub fn lookup(&mut self, name: &OsStr) -> u64 {
        let ino = self.get_or_assign(name);
        self.by_ino.get_mut(&ino).expect("just assigned").lookups += 1;
        ino
    }

    /// The number of `name`, or the number it would get, not recorded (plain readdir: the
    /// kernel takes no lookup on it, so nothing would ever release it).
    pub fn ino_or_fresh(&mut self, name: &OsStr) -> u64 {
        self.ino_of(name).unwrap_or_else(|| self.number_for(name))
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

    /// What the name of `ino` is (a chunk's key, or scratch); `None` once it has no name.
    pub fn class_of(&self, ino: u64) -> Option<&Name> {
        self.by_ino.get(&ino)?.class.as_ref()
    }

    /// Forgets `name` (unlink): returns the number it had. The number stays (nameless) while the
    /// kernel holds lookups on it.
    pub fn remove(&mut self, name: &OsStr) -> Option<u64> {
        let ino = self.by_name.remove(name)?;
        if let Some(e) = self.by_ino.get_mut(&ino) {
            e.name = None;
            e.class = None;
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
                e.class = Some(name::classify(to));
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
        assert_eq!(c, a, "a name's own number again once it is free");
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
        assert_eq!(b, a, "the same number after the kernel forgot it");
        // Unlinked while the kernel holds it: nameless until forgotten.
        assert_eq!(t.remove(OsStr::new("aa")), Some(b));
        assert_eq!(t.len(), 1);
        assert_eq!(t.name_of(b), None);
        t.forget(b, 1);
        assert!(t.drop_if_unused(b, false));
        // A readdir number is the one a lookup gives, never recorded.
        let f = t.ino_or_fresh(OsStr::new("bb"));
        assert!(t.is_empty());
        assert_eq!(t.lookup(OsStr::new("bb")), f);
        assert!(!t.drop_if_unused(ROOT_INO, false));
    }

    #[test]
    fn a_taken_number_is_not_given_twice() {
        let mut t = InodeTable::default();
        let a = t.lookup(OsStr::new("aa"));
        assert_eq!(a, stable_ino(OsStr::new("aa")));
        // Unlinked while the kernel holds it: a new "aa" must not get the held number.
        t.remove(OsStr::new("aa"));
        let again = t.lookup(OsStr::new("aa"));
        assert_ne!(again, a);
        assert!(again >= FALLBACK_START);
        t.forget(a, 1);
        assert!(t.drop_if_unused(a, false));
        // Its own number comes back once both are gone.
        t.forget(again, 1);
        assert!(t.drop_if_unused(again, false));
        assert_eq!(t.lookup(OsStr::new("aa")), a);
    }

    #[test]
    fn numbers_are_fixed_and_spread() {
        // Fixed forever: a change renumbers every file of every mount (backup tools notice).
        assert_eq!(stable_ino(OsStr::new("00")), stable_ino(OsStr::new("00")));
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000u32 {
            let n = stable_ino(OsStr::new(&hex::encode(i.to_be_bytes())));
            assert!(n > ROOT_INO && n < FALLBACK_START);
            assert!(seen.insert(n), "collision at {i}");
        }
    }
}
