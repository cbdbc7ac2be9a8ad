//! How the adapter answers: attributes in the kernel's terms, the flags of an open, errors
//! logged once, panics caught.

use std::ffi::OsStr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{Errno, FileAttr, FileType, FopenFlags, INodeNo, Request, TimeOrNow};

use super::{FuseAdapter, MAX_WRITE};
use crate::fs::{Attr, ChunkFs, FileKind, FsError, Io, SetTime};

/// Writers, and readers that cannot share the inode's page cache, are direct I/O: reads and
/// writes reach the core, which serves each handle its own view (a writer's new value, a
/// reader's committed version); the kernel's shared page cache would otherwise show one
/// handle's uncommitted writes to every other reader of the inode. mmap still works
/// (FUSE_DIRECT_IO_ALLOW_MMAP) through the page cache, which the core invalidates after each
/// commit. Creates are writers.
pub(super) const FILE_OPEN_FLAGS: FopenFlags = FopenFlags::FOPEN_DIRECT_IO;

/// The flags of an open: direct I/O, or through the page cache (the core decides: see
/// `fs/cache.rs`), keeping the kernel's pages when they are of the version opened, and without
/// FLUSH on close (a reader has nothing to publish).
pub(super) fn open_flags(io: Io) -> FopenFlags {
    match io {
        Io::Direct => FILE_OPEN_FLAGS,
        Io::Cached { keep: true } => FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH,
        Io::Cached { keep: false } => FopenFlags::FOPEN_NOFLUSH,
    }
}

/// Runs a core call; a panic in it is logged and answered with EIO. Every lock in the core is
/// parking_lot's (no poisoning), so the next request finds it usable.
pub(super) fn catch_panics<T>(
    op: &str,
    f: impl FnOnce() -> Result<T, FsError>,
) -> Result<T, FsError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let why = crate::fs::commit::panic_message(&*panic);
        log::error!("{op}: panic in the filesystem core: {why}; answered with EIO");
        Err(FsError::new(libc::EIO, format!("{op}: internal error")).logged())
    })
}

/// The TTL of names and attributes on a store nothing else changes (see `ttl_of`): a repeated
/// `cat *` of 10,000 chunks, slower than the 1 s attribute TTL, sent a LOOKUP or GETATTR per
/// file to revalidate what had not changed.
const EXCLUSIVE_TTL: Duration = Duration::from_secs(60);

impl FuseAdapter {
    /// Adapts `core`.
    pub fn new(core: Arc<ChunkFs>) -> Self {
        let ttl = core.config().attr_ttl;
        FuseAdapter { core, ttl }
    }

    /// How long the kernel may cache `a`: not at all while the file has writers open; long on a
    /// store nothing else changes (LevelDB: every change goes through this daemon, which drops
    /// the kernel's attributes of a file at each commit, before close() returns, and the
    /// kernel updates them itself at its truncates, utimes, renames and unlinks); one attribute
    /// TTL where other clients change chunks (Ceph: close-to-open, `stat` as NFS does).
    pub(super) fn ttl_of(&self, a: &Attr) -> Duration {
        if a.volatile {
            Duration::ZERO
        } else if self.core.config().whole_value_reads {
            EXCLUSIVE_TTL
        } else {
            self.ttl
        }
    }

    /// How long the kernel may keep the entry of a name it looked up, apart from its attributes
    /// (`ttl_of`, zero while writers are open): long on a store nothing else changes (LevelDB,
    /// which this daemon holds locked: its names change only by this mount's creates, unlinks
    /// and renames, which the kernel makes itself and applies to its entries; an open of a name
    /// the daemon moved to a new inode is answered ESTALE, on which the kernel looks the name up
    /// again whatever the TTL); as the attributes where other clients change names (Ceph: a name
    /// another mount removed must not stay, or a create of it here would open the removed chunk).
    pub(super) fn entry_ttl_of(&self, a: &Attr) -> Duration {
        if self.core.config().whole_value_reads {
            EXCLUSIVE_TTL
        } else {
            self.ttl_of(a)
        }
    }

    /// The answer to a lookup of a missing name: a negative entry (inode 0) that the kernel
    /// caches for the TTL (`cp` and `rsync` otherwise look a new name up three times before
    /// creating it); not on a store that other clients share, where a name another mount
    /// creates must be found by the next open here (close-to-open).
    pub(super) fn negative_entry(&self) -> (Duration, FileAttr) {
        let none = self.attr(&Attr {
            ino: 0,
            kind: FileKind::File,
            size: 0,
            mtime: SystemTime::UNIX_EPOCH,
            perm: 0,
            nlink: 0,
            uid: 0,
            gid: 0,
            volatile: false,
        });
        let ttl = if self.core.config().whole_value_reads {
            self.ttl
        } else {
            Duration::ZERO
        };
        (ttl, none)
    }

    pub(super) fn attr(&self, a: &Attr) -> FileAttr {
        FileAttr {
            ino: INodeNo(a.ino),
            size: a.size,
            blocks: a.size.div_ceil(512),
            atime: a.mtime,
            mtime: a.mtime,
            ctime: a.mtime,
            crtime: a.mtime,
            kind: match a.kind {
                FileKind::Directory => FileType::Directory,
                FileKind::File => FileType::RegularFile,
            },
            perm: a.perm,
            nlink: a.nlink,
            uid: a.uid,
            gid: a.gid,
            rdev: 0,
            blksize: blksize(a.size),
            flags: 0,
        }
    }
}

/// st_blksize for a file of `size` bytes. cp, cat and friends size their buffers by it: with
/// direct I/O every buffer is one FUSE round trip, so a large file moves a megabyte at a time;
/// a small one gets a buffer that fits it, since the kernel pins every page of the buffer for
/// each direct read (a 4 KiB chunk read through a 1 MiB buffer faulted in 256 pages, twice).
pub(super) fn blksize(size: u64) -> u32 {
    size.clamp(4096, MAX_WRITE as u64).next_power_of_two() as u32
}

impl FuseAdapter {
    /// Runs a request's work in the core (see [`guard`]), counting the request for `stats`.
    pub(super) fn run<T>(
        &self,
        op: &'static str,
        f: impl FnOnce() -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        self.core.count_request(op);
        catch_panics(op, f)
    }

    /// Counts a failure for `cloudstore-fs stats`, logs it once, and gives its errno.
    pub(super) fn fail(&self, op: &str, e: FsError) -> Errno {
        self.core.record_error(op, &e);
        fail(op, e)
    }
}

/// The process that sent a request: FUSE gives the id of the calling thread, but a descriptor
/// belongs to the whole process (see [`crate::fs::process_of`]). Only an open for writing and a
/// create pay for the lookup (it reads /proc); flush and stat map a thread lazily, when it is not
/// the opener's or when the file has writers.
pub(super) fn process_of(req: &Request) -> u32 {
    crate::fs::process_of(req.pid())
}

/// Who owns an open with `flags`: for writing, the process (its close publishes, whichever of
/// its threads closes); read-only, the thread that opened it (a reader has nothing to publish:
/// another thread's close leaves its view to the release). Read-only opens are most opens
/// (`cat`, `tar c`), and mapping a thread to its process was 5-8% of the daemon's time in them.
pub(super) fn owner_of_open(req: &Request, flags: i32) -> u32 {
    if flags & libc::O_ACCMODE == libc::O_RDONLY {
        req.pid()
    } else {
        process_of(req)
    }
}

/// Logs a failure once (expected answers such as ENOENT only at debug) and gives its errno.
pub(super) fn fail(op: &str, e: FsError) -> Errno {
    if e.is_quiet() {
        log::debug!("{op}: {e}");
    } else {
        log::warn!("{op}: {e}");
    }
    Errno::from_i32(e.errno)
}

/// Logs an extended-attribute call (the kernel sends each kind once per mount).
pub(super) fn no_xattrs(op: &str, ino: INodeNo, name: Option<&OsStr>) {
    let attr = name.map_or_else(String::new, |n| format!(" {n:?}"));
    log::info!(
        "{op}{attr} on inode {}: extended attributes are not supported (ENOSYS; programs see \
         EOPNOTSUPP, and the kernel asks no more on this mount)",
        ino.0
    );
}

pub(super) fn time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => SetTime::At(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blksize_fits_small_files_and_caps_large_ones() {
        assert_eq!(blksize(0), 4096);
        assert_eq!(blksize(4096), 4096);
        assert_eq!(blksize(4097), 8192);
        assert_eq!(blksize(60_000), 65536);
        assert_eq!(blksize(1 << 20), 1 << 20);
        assert_eq!(blksize(64 << 20), MAX_WRITE);
    }

    #[test]
    fn a_panic_in_the_core_is_answered_with_eio() {
        let e = catch_panics("read", || -> Result<(), FsError> { panic!("boom") }).unwrap_err();
        assert_eq!(e.errno, libc::EIO);
        assert!(e.logged);
        assert_eq!(catch_panics("read", || Ok(7)).unwrap(), 7);
    }
}
