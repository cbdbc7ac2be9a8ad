//! The fuser adapter: each callback calls the core (`crate::fs::ChunkFs`) and replies, or logs
//! the failure once and replies with its errno. No filesystem logic lives here.

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileHandle, FileType, FopenFlags, Generation, INodeNo,
    InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::fs::{ChunkFs, FileKind};

mod answers;
mod invalidate;
mod logging;

use answers::{
    catch_panics, no_xattrs, open_flags, owner_of_open, process_of, time, FILE_OPEN_FLAGS,
};
pub use invalidate::wire_invalidation;
pub use logging::DaemonLogger;

/// The largest write the kernel may send (it clamps to 1 MiB anyway: fs.fuse.max_pages_limit).
pub const MAX_WRITE: u32 = 1 << 20;

/// A [`ChunkFs`] as a fuser filesystem.
pub struct FuseAdapter {
    core: Arc<ChunkFs>,
    ttl: Duration,
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
        if let Err(e) = self.run("unmount", || self.core.shutdown()) {
            log::error!("unmount: {e}");
        }
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.run("lookup", || self.core.lookup(parent.0, name, req.pid())) {
            Ok(a) => reply.entry_with_ttls(
                &self.ttl_of(&a),
                &self.entry_ttl_of(&a),
                &self.attr(&a),
                Generation(0),
            ),
            Err(e) if e.errno == libc::ENOENT => {
                let (ttl, none) = self.negative_entry();
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
        let _ = self.run("forget", || {
            self.core.forget(ino.0, nlookup);
            Ok(())
        });
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.run("getattr", || {
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
        match self.run("setattr", || {
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
        match self.run("unlink", || self.core.unlink(parent.0, name)) {
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
        match self.run("rename", || {
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
        match catch_panics("fallocate", || {
            self.core.fallocate(fh.0, offset, length, mode)
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("fallocate", e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.run("open", || {
            self.core
                .open_io(ino.0, flags.0, owner_of_open(req, flags.0))
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
        match self.run("read", || self.core.read_data(fh.0, offset, size)) {
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
        match self.run("write", || self.core.write(fh.0, offset, data)) {
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
        match self.run("flush", || self.core.flush(fh.0, req.pid())) {
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
        match self.run("release", || self.core.release(fh.0)) {
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
        match self.run("fsync", || self.core.fsync(fh.0)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("fsync", e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.run("opendir", || self.core.opendir(ino.0)) {
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
        match self.run("readdir", || {
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
        let mut add = |e: crate::fs::DirEntry| {
            let a = e.attr.expect("readdirplus entries carry attributes");
            // Not cached while writers are open, as for lookup and getattr: the kernel would
            // answer a writer's fstat with the committed size the listing carries.
            reply.add(
                INodeNo(e.ino),
                e.offset,
                &e.name,
                &self.ttl_of(&a),
                &self.attr(&a),
                Generation(0),
            )
        };
        match self.run("readdir", || {
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
        let _ = self.run("releasedir", || {
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
        match self.run("fsyncdir", || self.core.fsyncdir()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail("fsyncdir", e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.run("statfs", || self.core.statfs()) {
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
        match self.run("create", || {
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
