//! Who reads one inode, and how: the rules by which a read-only open shares the kernel's page
//! cache of an inode (see `cache.rs` for why), as a small state machine kept on the node.

use crate::store::Version;

/// Which version of a chunk a reader reads: the node's version (changes made through this
/// mount) and the store's version where the store has them (changes made by anyone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub node: u64,
    pub store: Option<Version>,
}

/// How an open file moves its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// Direct I/O: every read and write reaches the daemon (writers, and readers that cannot
    /// share the inode's page cache).
    Direct,
    /// Through the page cache; `keep`: the kernel's pages are of this version already.
    Cached { keep: bool },
}

/// The readers open on one inode.
#[derive(Debug, Default)]
pub struct Readers {
    /// Through the page cache, all of `stamp`, whose size is `size`.
    pub cached: usize,
    pub stamp: Option<Stamp>,
    pub size: u64,
    /// Through the daemon.
    pub direct: usize,
}

/// Why an open cannot share the inode with the cached readers open on it.
#[derive(Debug, PartialEq, Eq)]
pub struct Conflict;

impl Readers {
    /// Registers an open: `write` for a writer, else the version a reader reads (`None`: it
    /// reads through the daemon, as a scratch file's or a new chunk's readers do) and its
    /// size. `writers` counts the writers open. A conflict leaves nothing registered.
    pub fn open(
        &mut self,
        writers: usize,
        write: bool,
        read: Option<(Stamp, u64)>,
    ) -> Result<Io, Conflict> {
        let cached_other = |stamp: &Stamp| self.cached > 0 && self.stamp != Some(*stamp);
        match (write, read) {
            (true, _) if self.cached > 0 => Err(Conflict),
            (true, _) => Ok(Io::Direct),
            (false, Some((stamp, _))) if cached_other(&stamp) => Err(Conflict),
            (false, Some((stamp, size))) if writers == 0 && self.direct == 0 => {
                self.cached += 1;
                self.stamp = Some(stamp);
                self.size = size;
                Ok(Io::Cached { keep: false })
            }
            (false, _) if self.cached > 0 => Err(Conflict),
            (false, _) => {
                self.direct += 1;
                Ok(Io::Direct)
            }
        }
    }

    /// A reader opened as `io` was released.
    pub fn close(&mut self, io: Io) {
        match io {
            Io::Direct => self.direct = self.direct.saturating_sub(1),
            Io::Cached { .. } => {
                self.cached = self.cached.saturating_sub(1);
                if self.cached == 0 {
                    self.stamp = None;
                }
            }
        }
    }

    /// The size the kernel must be told while cached readers are open (it is theirs).
    pub fn pinned_size(&self) -> Option<u64> {
        (self.cached > 0).then_some(self.size)
    }
}
