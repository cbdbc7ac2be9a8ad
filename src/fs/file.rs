//! Open files: open, read, write, truncate, flush (commit), fsync, release.
//!
//! Writes go to the node's buffer (read-modify-write: the value is fetched on the first write
//! unless the file was opened with O_TRUNC); flush commits it as one SetChunk so that close()
//! returns a failed commit; release commits what is still dirty as a fallback.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::SystemTime;

use super::error::{FsError, FsResult};
use super::name::{self, Name};
use super::node::{Node, NodeState};
use super::Attr;
use super::{ChunkFs, Handle, SetTime, ROOT_INO};

impl ChunkFs {
    /// Registers an open handle on a node already acquired.
    pub(super) fn add_handle(&self, ino: u64, node: Arc<Node>, flags: i32) -> u64 {
        let fh = self.new_fh();
        let acc = flags & libc::O_ACCMODE;
        let handle = Handle {
            ino,
            node,
            write: acc == libc::O_WRONLY || acc == libc::O_RDWR,
            append: flags & libc::O_APPEND != 0,
        };
        self.tables().handles.insert(fh, Arc::new(handle));
        fh
    }

    /// Opens an inode that has a node or a chunk (`flags` are open(2) flags).
    pub(super) fn open_ino(&self, ino: u64, name: &OsStr, flags: i32) -> FsResult<u64> {
        let acc = flags & libc::O_ACCMODE;
        let write = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        if write {
            self.check_writable("open")?;
        }
        let scratch = name::classify(name) == Name::Scratch;
        let (node, created) = self.acquire_node(ino, || Node::unloaded(ino, self.budget.clone()));
        if scratch && created {
            // The scratch file went away between lookup and open.
            self.release_node(ino);
            return Err(FsError::not_found(name.to_string_lossy()));
        }
        if write && flags & libc::O_TRUNC != 0 {
            let mut st = node.state.lock().unwrap();
            if let Err(e) = st.install(Vec::new(), &name.to_string_lossy()) {
                drop(st);
                self.release_node(ino);
                return Err(e);
            }
            st.touch_written();
        }
        if !write {
            if let Name::Chunk(key) = name::classify(name) {
                self.load_prefetched(&node, &key);
            }
        }
        Ok(self.add_handle(ino, node, flags))
    }

    /// Opening a chunk for reading: when read-ahead has its value (or fetches it now with the
    /// rest of a window, because the opens are walking the listing), it goes into the node, so
    /// that the reads need no store call. The node stays locked meanwhile, so that no write
    /// through it can slip in between.
    fn load_prefetched(&self, node: &Node, key: &[u8]) {
        let mut st = node.state.lock().unwrap();
        if st.content.is_some() {
            return;
        }
        if let Some(value) = self.readahead.open(&*self.store, key) {
            // Without room in the budget the reads fetch it as usual.
            let _ = st.try_install(value);
        }
    }

    /// open.
    pub fn open(&self, ino: u64, flags: i32) -> FsResult<u64> {
        if ino == ROOT_INO {
            return Err(FsError::new(libc::EISDIR, "open: the root is a directory"));
        }
        let name = self
            .name_of(ino)
            .ok_or_else(|| FsError::not_found(format!("inode {ino}")))?;
        self.open_ino(ino, &name, flags)
    }

    /// Loads the value of `ino` into the node if it is not loaded yet (a file that no longer
    /// exists in the store loads as empty).
    fn ensure_loaded(&self, st: &mut NodeState, ino: u64) -> FsResult<()> {
        if st.content.is_some() {
            return Ok(());
        }
        let Some(key) = self.key_of(ino) else {
            return st.install(Vec::new(), &format!("inode {ino}"));
        };
        let value = self.fetch_value(&key)?;
        st.install(value, &hex::encode(&key))
    }

    /// The whole value of `key` from the store (empty when the chunk no longer exists).
    fn fetch_value(&self, key: &[u8]) -> FsResult<Vec<u8>> {
        Ok(self
            .store
            .get_chunk(key)
            .map_err(|e| FsError::store("read", hex::encode(key), e))?
            .unwrap_or_default())
    }

    /// read: up to `size` bytes at `offset` (fewer at the end of the file).
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let h = self.handle(fh)?;
        {
            let mut st = h.node.state.lock().unwrap();
            if st.content.is_none() && self.cfg.whole_value_reads {
                // No partial read in this backend: fetch the value once for every reader of
                // the node; without room in the budget, serve this read from a one-off fetch.
                if let Some(key) = self.key_of(h.ino) {
                    if let Err(value) = st.try_install(self.fetch_value(&key)?) {
                        return Ok(slice(&value, offset, size));
                    }
                }
            }
            if let Some(content) = &st.content {
                return Ok(slice(content, offset, size));
            }
        }
        let Some(key) = self.key_of(h.ino) else {
            return Ok(Vec::new());
        };
        let end = offset.saturating_add(size as u64);
        Ok(self
            .store
            .get_chunk_with_range(&key, offset, end)
            .map_err(|e| FsError::store("read", hex::encode(&key), e))?
            .unwrap_or_default())
    }

    /// write: `data` at `offset` (at the end for O_APPEND); returns the bytes written.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let h = self.handle(fh)?;
        if !h.write {
            return Err(FsError::new(
                libc::EBADF,
                "write: file not open for writing",
            ));
        }
        self.check_writable("write")?;
        let mut st = h.node.state.lock().unwrap();
        self.ensure_loaded(&mut st, h.ino)?;
        let len = st.content.as_ref().map_or(0, Vec::len) as u64;
        let offset = if h.append { len } else { offset };
        let end = offset + data.len() as u64;
        if end > self.cfg.max_chunk_size {
            let label = self.label(h.ino);
            log::warn!(
                "write {label}: {end} bytes would exceed the maximum chunk size of {} (EFBIG)",
                self.cfg.max_chunk_size
            );
            return Err(FsError::new(libc::EFBIG, "write: file too large").logged());
        }
        if end > len {
            st.resize(end as usize, &self.label(h.ino))?;
        }
        let content = st.content.as_mut().expect("loaded above");
        content[offset as usize..end as usize].copy_from_slice(data);
        st.touch_written();
        Ok(data.len() as u32)
    }

    fn label(&self, ino: u64) -> String {
        self.name_of(ino).map_or_else(
            || format!("inode {ino}"),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    /// setattr: size (truncate) and mtime; mode, owner and atime are accepted and ignored
    /// (every file is 0644 and owned by the mounting user).
    pub fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        size: Option<u64>,
        mtime: Option<SetTime>,
    ) -> FsResult<Attr> {
        if ino == ROOT_INO {
            return Ok(self.root_attr());
        }
        if size.is_some() || mtime.is_some() {
            self.check_writable("setattr")?;
        }
        let name = self
            .name_of(ino)
            .ok_or_else(|| FsError::not_found(format!("inode {ino}")))?;
        if let Some(size) = size {
            self.truncate(ino, &name, fh, size)?;
        }
        if let Some(t) = mtime {
            self.set_mtime(ino, &name, t.resolve())?;
        }
        self.attr_of(ino, &name)
    }

    fn truncate(&self, ino: u64, name: &OsStr, fh: Option<u64>, size: u64) -> FsResult<()> {
        if size > self.cfg.max_chunk_size {
            log::warn!(
                "truncate {name:?} to {size}: exceeds the maximum chunk size of {} (EFBIG)",
                self.cfg.max_chunk_size
            );
            return Err(FsError::new(libc::EFBIG, "truncate: file too large").logged());
        }
        let via_handle = fh.and_then(|fh| self.handle(fh).ok());
        let (node, temporary) = match via_handle {
            Some(h) => (h.node.clone(), false),
            None => {
                if name::classify(name) != Name::Scratch {
                    // truncate(2) on a path: the file must exist.
                    self.attr_of(ino, name)?;
                }
                let (node, _) = self.acquire_node(ino, || Node::unloaded(ino, self.budget.clone()));
                (node, true)
            }
        };
        let result = (|| {
            let mut st = node.state.lock().unwrap();
            let label = name.to_string_lossy();
            if size == 0 {
                st.install(Vec::new(), &label)?;
            } else {
                self.ensure_loaded(&mut st, ino)?;
                st.resize(size as usize, &label)?;
            }
            st.touch_written();
            Ok(())
        })();
        // truncate(2) without an open file takes effect at once.
        let result = result.and_then(|()| {
            if temporary {
                self.commit_node(&node)
            } else {
                Ok(())
            }
        });
        if temporary {
            self.release_node(ino);
        }
        result
    }

    fn set_mtime(&self, ino: u64, name: &OsStr, t: SystemTime) -> FsResult<()> {
        if let Some(node) = self.node_of(ino) {
            let mut st = node.state.lock().unwrap();
            if st.dirty || name::classify(name) == Name::Scratch {
                // Kept with the node: stored after the commit (cp -p, touch on a new file) or
                // with the scratch file's rename (rsync).
                st.mtime = Some(t);
                st.mtime_explicit = true;
                return Ok(());
            }
        }
        let Name::Chunk(key) = name::classify(name) else {
            return Err(FsError::not_found(name.to_string_lossy()));
        };
        self.store
            .set_mtime(&key, t)
            .map_err(|e| FsError::store("set mtime", name.to_string_lossy(), e))?;
        self.attrs.set_mtime(&key, t);
        Ok(())
    }

    /// Commits the node's writes if it has any (a no-op for scratch files and unlinked files).
    pub(super) fn commit_node(&self, node: &Node) -> FsResult<()> {
        let mut st = node.state.lock().unwrap();
        self.commit_locked(node.ino, &mut st)
    }

    /// Commits with the node's state already locked.
    pub(super) fn commit_locked(&self, ino: u64, st: &mut NodeState) -> FsResult<()> {
        if !st.dirty {
            return Ok(());
        }
        let Some(name) = self.name_of(ino) else {
            log::debug!("inode {ino}: discarding writes to a file unlinked while open");
            st.dirty = false;
            st.new_chunk = false;
            return Ok(());
        };
        let Name::Chunk(key) = name::classify(&name) else {
            st.dirty = false;
            st.new_chunk = false;
            return Ok(());
        };
        let value = st.content.take().unwrap_or_default();
        let len = value.len() as u64;
        let (value, result) = self.committer.commit(key.clone(), value);
        // Even a failed commit may have reached the store: forget any prefetched value.
        self.readahead.invalidate(&key);
        st.content = Some(value);
        let label = name.to_string_lossy();
        result.map_err(|e| FsError::store("commit", &label, e))?;
        st.dirty = false;
        // In the store now: listed from its listing, no longer from the daemon.
        st.new_chunk = false;
        self.attrs.set_size(&key, len);
        let explicit = st.mtime_explicit.then_some(st.mtime).flatten();
        st.mtime = None;
        st.mtime_explicit = false;
        match explicit {
            Some(t) => {
                self.store
                    .set_mtime(&key, t)
                    .map_err(|e| FsError::store("set mtime", &label, e))?;
                self.attrs.set_mtime(&key, t);
            }
            None => self.attrs.forget_mtime(&key),
        }
        Ok(())
    }

    /// flush (every close()): commits, so that close() reports a failed commit.
    pub fn flush(&self, fh: u64) -> FsResult<()> {
        let h = self.handle(fh)?;
        self.commit_node(&h.node)
    }

    /// fsync: commit, then make it durable.
    pub fn fsync(&self, fh: u64) -> FsResult<()> {
        self.flush(fh)?;
        self.store
            .sync()
            .map_err(|e| FsError::store("sync", self.store.backend(), e))
    }

    /// release (the last close of an open file): commits whatever is still dirty.
    pub fn release(&self, fh: u64) -> FsResult<()> {
        let Some(h) = self.tables().handles.remove(&fh) else {
            return Err(FsError::new(
                libc::EBADF,
                format!("release: no handle {fh}"),
            ));
        };
        let result = self.commit_node(&h.node);
        if let Err(e) = &result {
            log::error!("release: {e}; the writes to this file are lost");
        }
        let ino = h.ino;
        drop(h);
        self.release_node(ino);
        result.map_err(FsError::logged)
    }
}

/// The bytes `[offset, offset + size)` of `data`, clamped to its end.
fn slice(data: &[u8], offset: u64, size: u32) -> Vec<u8> {
    let start = (offset as usize).min(data.len());
    let end = start.saturating_add(size as usize).min(data.len());
    data[start..end].to_vec()
}
