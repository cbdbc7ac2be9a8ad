//! Attributes: what getattr, lookup and readdirplus answer for an inode (sizes and mtimes from
//! the store or the attribute cache, a writer's own value, the size cached readers hold).

use std::ffi::OsStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use super::attr::{Attr, FileKind};
use super::error::{FsError, FsResult};
use super::handle::process_of;
use super::handle::Handle;
use super::inode::ROOT_INO;
use super::name;
use super::name::Name;
use super::node::Node;
use super::{ChunkFs, MAX_RACED};

impl ChunkFs {
    pub(super) fn root_attr(&self) -> Attr {
        Attr {
            ino: ROOT_INO,
            kind: FileKind::Directory,
            size: 4096,
            mtime: self.dir_mtime(),
            perm: 0o755,
            nlink: 2,
            uid: self.cfg.uid,
            gid: self.cfg.gid,
            volatile: false,
        }
    }

    pub(super) fn file_attr(&self, ino: u64, size: u64, mtime: SystemTime) -> Attr {
        Attr {
            ino,
            kind: FileKind::File,
            size,
            mtime,
            perm: self.cfg.file_mode as u16,
            nlink: 1,
            uid: self.cfg.uid,
            gid: self.cfg.gid,
            volatile: false,
        }
    }

    /// The size of a chunk from the cache or the store; None when it does not exist.
    pub(super) fn chunk_size(&self, key: &[u8], name: &OsStr) -> FsResult<Option<u64>> {
        if let Some(size) = self.attrs.size(key) {
            return Ok(size);
        }
        let since = self.attrs.generation();
        let size = self
            .store
            .stat(key)
            .map_err(|e| FsError::store("stat", name.to_string_lossy(), e))?;
        // On a store other clients share, a missing name is not remembered: another mount
        // may create it, and the next open here must find it (close-to-open).
        if size.is_some() || !self.ranged() {
            self.attrs.learn_size(key, size, since);
        }
        Ok(size)
    }

    /// The mtime of a chunk from the cache or the store (the epoch when the store has none).
    pub(super) fn chunk_mtime(&self, key: &[u8], name: &OsStr) -> FsResult<SystemTime> {
        if let Some(t) = self.attrs.mtime(key) {
            return Ok(t);
        }
        let since = self.attrs.generation();
        let t = self
            .store
            .mtime(key)
            .map_err(|e| FsError::store("mtime", name.to_string_lossy(), e))?
            .unwrap_or(SystemTime::UNIX_EPOCH);
        self.attrs.learn_mtime(key, t, since);
        Ok(t)
    }

    /// The size and mtime of a chunk, from the cache or with one store call for both;
    /// `None` when it does not exist.
    pub(super) fn chunk_attrs(
        &self,
        key: &[u8],
        name: &OsStr,
    ) -> FsResult<Option<(u64, SystemTime)>> {
        if let (Some(size), Some(mtime)) = (self.attrs.size(key), self.attrs.mtime(key)) {
            return Ok(size.map(|size| (size, mtime)));
        }
        if self.attrs.size(key).is_some() {
            let Some(size) = self.chunk_size(key, name)? else {
                return Ok(None);
            };
            return Ok(Some((size, self.chunk_mtime(key, name)?)));
        }
        let since = self.attrs.generation();
        let found = self
            .store
            .stat_with_mtime(key)
            .map_err(|e| FsError::store("stat", name.to_string_lossy(), e))?;
        let Some((size, mtime)) = found else {
            if !self.ranged() {
                self.attrs.learn_size(key, None, since);
            }
            return Ok(None);
        };
        self.attrs.learn_size(key, Some(size), since);
        let mtime = mtime.unwrap_or(SystemTime::UNIX_EPOCH);
        self.attrs.learn_mtime(key, mtime, since);
        Ok(Some((size, mtime)))
    }

    /// The attributes of an inode that has a node (an open chunk or a scratch file, or a file
    /// that lost its name while open: `name` None): those of its committed value, or, asked
    /// through a handle that has written, of that handle's value.
    pub(super) fn node_attr(
        &self,
        ino: u64,
        node: &Node,
        name: Option<&OsStr>,
        writer: Option<&Handle>,
    ) -> FsResult<Attr> {
        if let Some(h) = writer {
            let hs = h.st.lock();
            if let Some(new) = hs.new_value() {
                let mtime = new.mtime.unwrap_or_else(SystemTime::now);
                let mut attr = self.file_attr(ino, new.value.len() as u64, mtime);
                attr.volatile = true;
                return Ok(attr);
            }
        }
        // A chunk's key and name; a scratch file and a nameless one live only in the daemon.
        let chunk = name.and_then(|name| match name::classify(name) {
            Name::Chunk(key) => Some((key, name)),
            _ => None,
        });
        let (size, mtime, volatile) = {
            let st = node.state.lock();
            let local = st.is_local(chunk.is_none());
            // On a ranged store a stored chunk's value held here may be another client's past.
            let held = st.value.as_ref().filter(|_| local || !self.ranged());
            let size = match held.map(|v| v.len() as u64) {
                Some(size) => Some(size),
                None if local => Some(0),
                None => None,
            };
            let mtime = if local || st.mtime_explicit {
                st.mtime
            } else {
                None
            };
            // While readers read it through the page cache, the kernel's size is theirs.
            let size = st.readers.pinned_size().or(size);
            (size, mtime, st.writers > 0)
        };
        let size = match (size, &chunk) {
            (Some(size), _) => size,
            (None, Some((key, name))) => self
                .chunk_size(key, name)?
                .ok_or_else(|| FsError::not_found(name.to_string_lossy()))?,
            (None, None) => 0,
        };
        let mtime = match (mtime, &chunk) {
            (Some(t), _) => t,
            (None, Some((key, name))) => self.chunk_mtime(key, name)?,
            (None, None) => self.started,
        };
        let mut attr = self.file_attr(ino, size, mtime);
        attr.volatile = volatile;
        Ok(attr)
    }

    /// The handle through which thread `tid`'s process writes to `ino` (the most recent, if
    /// several): a process sees its own uncommitted writes in stat, everyone else the committed
    /// value. The thread is mapped to its process only when the file has writers.
    pub(super) fn writer_of(&self, ino: u64, tid: u32) -> Option<Arc<Handle>> {
        // Lock order: a node's state before the tables, never the other way round.
        let node = self.node_of(ino)?;
        if node.state.lock().writers == 0 {
            return None;
        }
        let pid = process_of(tid);
        self.tables()
            .handles
            .iter()
            .filter(|(_, h)| h.write && h.ino == ino && (h.pid == tid || h.pid == pid))
            .max_by_key(|(fh, _)| **fh)
            .map(|(_, h)| h.clone())
    }

    /// The attributes of `ino` under its current name.
    pub(super) fn attr_of(&self, ino: u64, name: &OsStr) -> FsResult<Attr> {
        self.attr_with(ino, name, None)
    }

    /// The attributes of `ino`, as `writer` (a handle open for writing) sees them if given.
    pub(super) fn attr_with(
        &self,
        ino: u64,
        name: &OsStr,
        writer: Option<&Handle>,
    ) -> FsResult<Attr> {
        if let Some(node) = self.node_of(ino) {
            return self.node_attr(ino, &node, Some(name), writer);
        }
        match name::classify(name) {
            Name::Chunk(key) => {
                let (size, mtime) = self
                    .chunk_attrs(&key, name)?
                    .ok_or_else(|| FsError::not_found(name.to_string_lossy()))?;
                Ok(self.file_attr(ino, size, mtime))
            }
            _ => Err(FsError::not_found(name.to_string_lossy())),
        }
    }

    /// getattr, asked by process `pid` (`fh`: a handle the kernel names, as for ftruncate): a
    /// process that writes the file sees its own value, everyone else the committed one.
    ///
    /// An inode that is no longer what its name stands for (unlinked or replaced by a rename
    /// since the kernel looked it up, or deleted behind the daemon's back) is answered ESTALE,
    /// not ENOENT: the kernel then looks the path up again, so an open or stat that raced a
    /// rename onto its name finds what the name holds now instead of failing (the name never
    /// stopped existing). An unlinked file still open has attributes: those of its handles.
    pub fn getattr(&self, ino: u64, fh: Option<u64>, pid: u32) -> FsResult<Attr> {
        if ino == ROOT_INO {
            return Ok(self.root_attr());
        }
        // The name is read before the store is asked: a rename in between moves the inode to
        // a name the store has and leaves the old one absent. Asked again after it, the inode
        // answers under its new name.
        for _ in 0..MAX_RACED {
            let before = self.ns_changes.load(Ordering::SeqCst);
            match self.getattr_once(ino, fh, pid) {
                Err(e) if e.errno == libc::ESTALE && self.raced_a_rename(before) => continue,
                result => return result,
            }
        }
        self.getattr_once(ino, fh, pid)
    }

    /// Whether a rename or unlink ran (or runs) since `ns_changes` was `before`; if so, waits
    /// until it is done. Nothing else may be held: the wait takes the namespace lock.
    pub(super) fn raced_a_rename(&self, before: u64) -> bool {
        let raced =
            self.ns.is_locked_exclusive() || self.ns_changes.load(Ordering::SeqCst) != before;
        if raced {
            drop(self.ns.read());
        }
        raced
    }

    pub(super) fn getattr_once(&self, ino: u64, fh: Option<u64>, pid: u32) -> FsResult<Attr> {
        let writer = || {
            fh.and_then(|fh| self.handle(fh).ok())
                .filter(|h| h.write && h.ino == ino)
                .or_else(|| self.writer_of(ino, pid))
        };
        let Some(name) = self.name_of(ino) else {
            return self.nameless_attr(ino, writer().as_deref());
        };
        self.attr_with(ino, &name, writer().as_deref())
            .map_err(|e| match e.errno {
                libc::ENOENT => FsError::new(
                    libc::ESTALE,
                    format!(
                        "inode {ino} ({name:?}): gone from the store since the kernel looked it up"
                    ),
                ),
                _ => e,
            })
    }

    /// The attributes of `ino`, which has no name: a file that lost it while open (unlinked or
    /// replaced) has them (its handles keep its bytes), with no link; otherwise ESTALE.
    pub(super) fn nameless_attr(&self, ino: u64, writer: Option<&Handle>) -> FsResult<Attr> {
        let node = self.node_of(ino).ok_or_else(|| Self::nameless(ino))?;
        let attr = self.node_attr(ino, &node, None, writer)?;
        Ok(Attr { nlink: 0, ..attr })
    }

    /// ESTALE for `ino`, which has no name and is not open: the kernel looks its path up again.
    pub(super) fn nameless(ino: u64) -> FsError {
        FsError::new(
            libc::ESTALE,
            format!("inode {ino}: no name (unlinked, replaced or forgotten since looked up)"),
        )
    }
}
