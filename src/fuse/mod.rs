//! The fuser adapter: each callback calls the core (`crate::fs::ChunkFs`) and replies, or logs
//! the failure once and replies with its errno. No filesystem logic lives here.

use std::ffi::OsStr;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation,
    INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::fs::{Attr, ChunkFs, FileKind, FsError, Io, SetTime};

mod logging;
pub use logging::DaemonLogger;

/// The largest write the kernel may send (it clamps to 1 MiB anyway: fs.fuse.max_pages_limit).
pub const MAX_WRITE: u32 = 1 << 20;

/// Writers, and readers that cannot share the inode's page cache, are direct I/O: reads and
/// writes reach the core, which serves each handle its own view (a writer's new value, a
/// reader's committed version); the kernel's shared page cache would otherwise show one
/// handle's uncommitted writes to every other reader of the inode. mmap still works
/// (FUSE_DIRECT_IO_ALLOW_MMAP) through the page cache, which the core invalidates after each
/// commit. Creates are writers.
const FILE_OPEN_FLAGS: FopenFlags = FopenFlags::FOPEN_DIRECT_IO;

/// The flags of an open: direct I/O, or through the page cache (the core decides: see
/// `fs/cache.rs`), keeping the kernel's pages when they are of the version opened, and without
/// FLUSH on close (a reader has nothing to publish).
fn open_flags(io: Io) -> FopenFlags {
    match io {
        Io::Direct => FILE_OPEN_FLAGS,
        Io::Cached { keep: true } => FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH,
        Io::Cached { keep: false } => FopenFlags::FOPEN_NOFLUSH,
    }
}

/// Runs a core call; a panic in it is logged and answered with EIO. Every lock in the core is
/// parking_lot's (no poisoning), so the next request finds it usable.
fn guard<T>(op: &str, f: impl FnOnce() -> Result<T, FsError>) -> Result<T, FsError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let why = crate::fs::commit::panic_message(&*panic);
        log::error!("{op}: panic in the filesystem core: {why}; answered with EIO");
        Err(FsError::new(libc::EIO, format!("{op}: internal error")).logged())
    })
}

/// Hands the core a way to drop the kernel's cache of an inode after a change (its pages, used
/// by mmap, and its attributes). The notifications go out from a thread of their own: one sent
/// from a request handler could wait on a page that a pending read of ours holds locked.
pub fn wire_invalidation(core: &ChunkFs, notifier: fuser::Notifier) {
    // Attributes alone (offset -1: no page is touched) are dropped at once, from the request
    // handler: an open that found a newer version than the kernel's attributes must not be
    // followed by a stat of the old size.
    let attrs = notifier.clone();
    core.set_attr_invalidator(Box::new(move |ino| {
        let _ = attrs.inval_inode(INodeNo(ino), -1, 0);
    }));
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let spawned = std::thread::Builder::new()
        .name("inval".into())
        .spawn(move || {
            for ino in rx {
                match notifier.inval_inode(INodeNo(ino), 0, 0) {
                    Ok(()) => {}
                    // The kernel does not know the inode (never looked up, or forgotten).
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => {
                        log::debug!("invalidating inode {ino}: {e}; no more invalidations");
                        return;
                    }
                }
            }
        });
    match spawned {
        Ok(_) => core.set_invalidator(Box::new(move |ino| {
            let _ = tx.send(ino);
        })),
        Err(e) => log::warn!("no kernel cache invalidation (cannot start its thread: {e})"),
    }
}

/// A [`ChunkFs`] as a fuser filesystem.
pub struct FuseAdapter {
    core: Arc<ChunkFs>,
    ttl: Duration,
}

impl FuseAdapter {
    /// Adapts `core`.
    pub fn new(core: Arc<ChunkFs>) -> Self {
        let ttl = core.config().attr_ttl;
        FuseAdapter { core, ttl }
    }

    /// How long the kernel may cache `a`: not at all while the file has writers open.
    fn ttl_of(&self, a: &Attr) -> Duration {
        if a.volatile {
            Duration::ZERO
        } else {
            self.ttl
        }
    }

    fn attr(&self, a: &Attr) -> FileAttr {
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
fn blksize(size: u64) -> u32 {
    size.clamp(4096, MAX_WRITE as u64).next_power_of_two() as u32
}

impl FuseAdapter {
    /// Runs a request's work in the core (see [`guard`]), counting the request for `stats`.
    fn guard<T>(
        &self,
        op: &'static str,
        f: impl FnOnce() -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        self.core.count_request(op);
        guard(op, f)
    }

    /// Counts a failure for `cloudstore-fs stats`, logs it once, and gives its errno.
    fn fail(&self, op: &str, e: FsError) -> Errno {
        self.core.record_error(op, &e);
        fail(op, e)
    }
}

/// The process that sent a request: FUSE gives the id of the calling thread, but a descriptor
/// belongs to the whole process (see [`crate::fs::process_of`]). Only open, create and flush pay
/// for the lookup; stat maps a thread lazily, when the file has writers.
fn process_of(req: &Request) -> u32 {
    crate::fs::process_of(req.pid())
}

/// Logs a failure once (expected answers such as ENOENT only at debug) and gives its errno.
fn fail(op: &str, e: FsError) -> Errno {
    if e.is_quiet() {
        log::debug!("{op}: {e}");
    } else {
        log::warn!("{op}: {e}");
    }
    Errno::from_i32(e.errno)
}

/// Logs an extended-attribute call (the kernel sends each kind once per mount).
fn no_xattrs(op: &str, ino: INodeNo, name: Option<&OsStr>) {
    let attr = name.map_or_else(String::new, |n| format!(" {n:?}"));
    log::info!(
        "{op}{attr} on inode {}: extended attributes are not supported (ENOSYS; programs see \
         EOPNOTSUPP, and the kernel asks no more on this mount)",
        ino.0
    );
}

fn time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => SetTime::At(t),
    }
}

impl fuser::Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // readdirplus always (ls -l in one pass); O_TRUNC in open (no read of a value that is
        // about to be replaced); lookups and creates in parallel.
        for cap in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_ATOMIC_O_TRUNC,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP,
        ] {
            if let Err(missing) = config.add_capabilities(cap) {
                log::info!("kernel lacks FUSE capability {missing:?}");
            }
        }
        if let Err(nearest) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(nearest);
        }
        if let Err(nearest) = config.set_max_readahead(MAX_WRITE) {
            let _ = config.set_max_readahead(nearest);
        }
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn destroy(&mut self) {
        if let Err(e) = self.guard("unmount", || self.core.shutdown()) {
            log::error!("unmount: {e}");
        }
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.guard("lookup", || self.core.lookup(parent.0, name, req.pid())) {
            Ok(a) => reply.entry(&self.ttl_of(&a), &self.attr(&a), Generation(0)),
            // A negative entry (inode 0) that the kernel caches for the TTL: `cp` and `rsync`
            // otherwise look a new name up three times before creating it.
            Err(e) if e.errno == libc::ENOENT => {
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
                // Not on a store that other clients share: a name another mount creates must
                // be found by the next open here (close-to-open).
                let ttl = if self.core.config().whole_value_reads {
                    self.ttl
                } else {
                    Duration::ZERO
                };
                reply.entry(&ttl, &none, Generation(0));
            }
            Err(e) => reply.error(self.fail("lookup", e)),
        }
    }

    // Every entry reply (lookup, create, readdirplus) counts a lookup in the core; these give
    // them back so that inode numbers the kernel no longer holds can be dropped. batch_forget
    // keeps fuser's default, which calls this for each node (fuser 0.18 does not export
    // `ForgetOne`, so it cannot be overridden).
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let _ = self.guard("forget", || {
            self.core.forget(ino.0, nlookup);
            Ok(())
        });
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.guard("getattr", || {
            self.core.getattr(ino.0, fh.map(|f| f.0), req.pid())
        }) {
            Ok(a) => reply.attr(&self.ttl_of(&a), &self.attr(&a)),
            Err(e) => reply.error(self.fail("getattr", e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.guard("setattr", || {
            self.core.check_mode_owner(ino.0, mode, uid, gid)?;
            self.core
                .setattr(ino.0, fh.map(|f| f.0), size, mtime.map(time))
        }) {
            Ok(a) => reply.attr(&self.ttl_of(&a), &self.attr(&a)),
            Err(e) => reply.error(self.fail("setattr", e)),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(self.fail("mknod", self.core.refuse("mknod", name)));
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(self.fail("mkdir", self.core.refuse("mkdir", name)));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.guard("unlink", || self.core.unlink(parent.0, name)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("unlink", e)),
        }
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply.error(self.fail("rmdir", self.core.refuse("rmdir", name)));
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(self.fail("symlink", self.core.refuse("symlink", link_name)));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self.guard("rename", || {
            self.core
                .rename(parent.0, name, newparent.0, newname, flags.bits())
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("rename", e)),
        }
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(self.fail("link", self.core.refuse("link", newname)));
    }

    /// No ioctl is supported: ENOTTY, as a local filesystem answers one it does not know
    /// (Python's isatty on every open, borg's FS_IOC_GETFLAGS). Not worth a log line.
    fn ioctl(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        log::debug!("ioctl {cmd:#x} on inode {}: ENOTTY", ino.0);
        reply.error(Errno::from_i32(libc::ENOTTY));
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        match guard("fallocate", || {
            self.core.fallocate(fh.0, offset, length, mode)
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("fallocate", e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.guard("open", || {
            self.core.open_io(ino.0, flags.0, process_of(req))
        }) {
            Ok((fh, io)) => reply.opened(FileHandle(fh), open_flags(io)),
            Err(e) => reply.error(self.fail("open", e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.guard("read", || self.core.read_data(fh.0, offset, size)) {
            Ok(data) => {
                self.core.count_bytes(true, data.len() as u64);
                reply.data(&data)
            }
            Err(e) => reply.error(self.fail("read", e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.guard("write", || self.core.write(fh.0, offset, data)) {
            Ok(n) => {
                self.core.count_bytes(false, n.into());
                reply.written(n)
            }
            Err(e) => reply.error(self.fail("write", e)),
        }
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        match self.guard("flush", || self.core.flush(fh.0, process_of(req))) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("flush", e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        match self.guard("release", || self.core.release(fh.0)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("release", e)),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.guard("fsync", || self.core.fsync(fh.0)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("fsync", e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.guard("opendir", || self.core.opendir(ino.0)) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(self.fail("opendir", e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut add = |e: crate::fs::DirEntry| {
            let kind = match e.kind {
                FileKind::Directory => FileType::Directory,
                FileKind::File => FileType::RegularFile,
            };
            reply.add(INodeNo(e.ino), e.offset, kind, &e.name)
        };
        match self.guard("readdir", || {
            self.core.readdir(fh.0, offset, false, &mut add)
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("readdir", e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let ttl = self.ttl;
        let mut add = |e: crate::fs::DirEntry| {
            let attr = self.attr(&e.attr.expect("readdirplus entries carry attributes"));
            reply.add(
                INodeNo(e.ino),
                e.offset,
                &e.name,
                &ttl,
                &attr,
                Generation(0),
            )
        };
        match self.guard("readdir", || {
            self.core.readdir(fh.0, offset, true, &mut add)
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("readdirplus", e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let _ = self.guard("releasedir", || {
            self.core.releasedir(fh.0);
            Ok(())
        });
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.guard("fsyncdir", || self.core.fsyncdir()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("fsyncdir", e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.guard("statfs", || self.core.statfs()) {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.bsize,
            ),
            Err(e) => reply.error(self.fail("statfs", e)),
        }
    }

    // Extended attributes: ENOSYS, which the kernel remembers for the whole mount (so each
    // kind reaches us, and is logged, once) and turns into EOPNOTSUPP for the program.
    // Answering each call instead costs a round trip per file in `ls -l` (ACL probes) and per
    // write (security.capability).
    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, _size: u32, reply: ReplyXattr) {
        no_xattrs("getxattr", ino, Some(name));
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, _size: u32, reply: ReplyXattr) {
        no_xattrs("listxattr", ino, None);
        reply.error(Errno::ENOSYS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        no_xattrs("setxattr", ino, Some(name));
        reply.error(Errno::ENOSYS);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        no_xattrs("removexattr", ino, Some(name));
        reply.error(Errno::ENOSYS);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Permissions are checked by the kernel (default_permissions).
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.guard("create", || {
            self.core.create(parent.0, name, flags, process_of(req))
        }) {
            Ok((a, fh)) => reply.created(
                &self.ttl_of(&a),
                &self.attr(&a),
                Generation(0),
                FileHandle(fh),
                FILE_OPEN_FLAGS,
            ),
            Err(e) => reply.error(self.fail("create", e)),
        }
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
        let e = guard("read", || -> Result<(), FsError> { panic!("boom") }).unwrap_err();
        assert_eq!(e.errno, libc::EIO);
        assert!(e.logged);
        assert_eq!(guard("read", || Ok(7)).unwrap(), 7);
    }
}
