//! Names: lookup, create, unlink, rename. Chunk names map to keys; scratch names ('.'-prefixed)
//! live only in the daemon; any other name is refused with EINVAL (ENOENT on lookup).

use std::ffi::OsStr;
use std::time::SystemTime;

use super::error::{FsError, FsResult};
use super::name::{self, Name};
use super::node::Node;
use super::{Attr, ChunkFs};

/// rename(2) flags the core understands.
pub const RENAME_NOREPLACE: u32 = libc::RENAME_NOREPLACE;
/// Swapping two names: not supported (EINVAL).
pub const RENAME_EXCHANGE: u32 = libc::RENAME_EXCHANGE;

fn refuse_name(op: &str, name: &OsStr, reason: &str) -> FsError {
    log::warn!("{op} {name:?}: invalid name (EINVAL): {reason}");
    FsError::new(libc::EINVAL, format!("{op}: invalid name")).logged()
}

impl ChunkFs {
    /// lookup: the attributes of `name`, giving it an inode number and counting one kernel
    /// lookup on it (released by `forget`). The count is taken under the same lock as the
    /// number, so a forget racing with this reply cannot drop the number handed out.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<Attr> {
        self.check_parent(parent)?;
        match name::classify(name) {
            Name::Invalid(reason) => {
                log::debug!("lookup {name:?}: not a chunk name ({reason})");
                Err(FsError::not_found(name.to_string_lossy()))
            }
            Name::Scratch => {
                let ino = {
                    let t = self.tables();
                    t.inodes
                        .ino_of(name)
                        .filter(|ino| t.nodes.contains_key(ino))
                };
                let ino = ino.ok_or_else(|| FsError::not_found(name.to_string_lossy()))?;
                let attr = self.attr_of(ino, name)?;
                let mut t = self.tables();
                if t.inodes.ino_of(name) != Some(ino) || !t.nodes.contains_key(&ino) {
                    return Err(FsError::not_found(name.to_string_lossy()));
                }
                t.inodes.add_lookup(ino);
                Ok(attr)
            }
            Name::Chunk(key) => {
                let known = self.tables().inodes.ino_of(name);
                let node = known.and_then(|ino| Some((ino, self.node_of(ino)?)));
                let mut attr = if let Some((ino, node)) = node {
                    self.node_attr(ino, &node, name)?
                } else {
                    let size = self
                        .chunk_size(&key, name)?
                        .ok_or_else(|| FsError::not_found(name.to_string_lossy()))?;
                    let mtime = self.chunk_mtime(&key, name)?;
                    self.file_attr(0, size, mtime)
                };
                // The number the name has now (a new one if the old was forgotten meanwhile).
                attr.ino = self.tables().inodes.lookup(name);
                Ok(attr)
            }
        }
    }

    /// Whether `name` exists (in the store or in the daemon).
    pub(super) fn exists(&self, name: &OsStr) -> FsResult<bool> {
        let ino = self.tables().inodes.ino_of(name);
        if ino.is_some_and(|ino| self.node_of(ino).is_some()) {
            return Ok(true);
        }
        match name::classify(name) {
            Name::Chunk(key) => Ok(self.chunk_size(&key, name)?.is_some()),
            _ => Ok(false),
        }
    }

    /// create: makes `name` (a new empty file, dirty so that close stores a 0-byte chunk) and
    /// opens it; an existing file is opened instead (EEXIST with O_EXCL).
    pub fn create(&self, parent: u64, name: &OsStr, flags: i32) -> FsResult<(Attr, u64)> {
        self.check_parent(parent)?;
        self.check_writable("create")?;
        if let Name::Invalid(reason) = name::classify(name) {
            return Err(refuse_name("create", name, &reason));
        }
        let exists = self.exists(name)?;
        if exists && flags & libc::O_EXCL != 0 {
            return Err(FsError::new(
                libc::EEXIST,
                format!("create {name:?}: exists"),
            ));
        }
        // The reply hands the kernel an entry: one lookup, undone if this fails.
        let ino = self.tables().inodes.lookup(name);
        let result = self.create_ino(ino, name, flags, exists);
        if result.is_err() {
            self.forget(ino, 1);
        }
        result
    }

    fn create_ino(
        &self,
        ino: u64,
        name: &OsStr,
        flags: i32,
        exists: bool,
    ) -> FsResult<(Attr, u64)> {
        let fh = if exists {
            self.open_ino(ino, name, flags)?
        } else {
            let chunk = matches!(name::classify(name), Name::Chunk(_));
            let (node, created) =
                self.acquire_node(ino, || Node::created(ino, self.budget.clone(), chunk));
            if !created && flags & libc::O_EXCL != 0 {
                self.release_node(ino);
                return Err(FsError::new(
                    libc::EEXIST,
                    format!("create {name:?}: exists"),
                ));
            }
            if let Name::Chunk(key) = name::classify(name) {
                self.attrs.forget(&key);
            }
            self.add_handle(ino, node, flags)
        };
        match self.attr_of(ino, name) {
            Ok(attr) => Ok((attr, fh)),
            Err(e) => {
                let _ = self.release(fh);
                Err(e)
            }
        }
    }

    /// unlink: deletes the chunk (or drops the scratch file).
    pub fn unlink(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.check_parent(parent)?;
        self.check_writable("unlink")?;
        let _ns = self.namespace_lock.lock().unwrap();
        let ino = self.tables().inodes.ino_of(name);
        let node = ino.and_then(|ino| self.node_of(ino));
        // Hold the node so that a commit in flight cannot bring the chunk back after the delete.
        let mut st = node.as_ref().map(|n| n.state.lock().unwrap());
        let deleted = match name::classify(name) {
            Name::Invalid(_) => return Err(FsError::not_found(name.to_string_lossy())),
            Name::Scratch => false,
            Name::Chunk(key) => {
                self.attrs.forget(&key);
                let deleted = self.store.delete(&key);
                self.readahead.invalidate(&key);
                deleted.map_err(|e| FsError::store("unlink", name.to_string_lossy(), e))?
            }
        };
        if let Some(st) = st.as_deref_mut() {
            // Gone from the listing (its writes are discarded, see `commit_locked`).
            st.new_chunk = false;
        }
        let mut t = self.tables();
        let ino = t.inodes.remove(name);
        if let Some(ino) = ino {
            if t.nodes.get(&ino).is_some_and(|e| e.open == 0) {
                t.nodes.remove(&ino);
            }
            t.drop_if_unused(ino);
        }
        if !deleted && node.is_none() {
            return Err(FsError::not_found(name.to_string_lossy()));
        }
        Ok(())
    }

    /// rename: chunk -> chunk moves the value (atomic where the backend is); scratch -> chunk
    /// commits the scratch file as that chunk (with its mtime); chunk -> scratch takes the value
    /// out of the store; scratch -> scratch renames in the daemon. An existing target is replaced.
    pub fn rename(
        &self,
        parent: u64,
        from: &OsStr,
        newparent: u64,
        to: &OsStr,
        flags: u32,
    ) -> FsResult<()> {
        self.check_parent(parent)?;
        self.check_parent(newparent)?;
        self.check_writable("rename")?;
        if flags & RENAME_EXCHANGE != 0 {
            return Err(FsError::new(
                libc::EINVAL,
                "rename: RENAME_EXCHANGE is not supported",
            ));
        }
        let src = name::classify(from);
        if let Name::Invalid(_) = src {
            return Err(FsError::not_found(from.to_string_lossy()));
        }
        let dst = name::classify(to);
        if let Name::Invalid(reason) = &dst {
            return Err(refuse_name("rename to", to, reason));
        }
        let _ns = self.namespace_lock.lock().unwrap();
        if !self.exists(from)? {
            return Err(FsError::not_found(from.to_string_lossy()));
        }
        if from == to {
            return Ok(());
        }
        if flags & RENAME_NOREPLACE != 0 && self.exists(to)? {
            return Err(FsError::new(
                libc::EEXIST,
                format!("rename to {to:?}: exists"),
            ));
        }
        let ino = self.tables().inodes.get_or_assign(from);
        let result = self.rename_ino(ino, from, src, to, dst);
        // `from` may have had no number before (one the kernel never looked up).
        self.tables().drop_if_unused(ino);
        result
    }

    fn rename_ino(&self, ino: u64, from: &OsStr, src: Name, to: &OsStr, dst: Name) -> FsResult<()> {
        let label = from.to_string_lossy();
        match (src, dst) {
            (Name::Chunk(k_from), Name::Chunk(k_to)) => {
                let node = self.node_of(ino);
                let mut st = node.as_ref().map(|n| n.state.lock().unwrap());
                if let Some(st) = st.as_deref_mut() {
                    self.commit_locked(ino, st)?;
                }
                self.attrs.forget(&k_from);
                self.attrs.forget(&k_to);
                let moved = self.store.rename(&k_from, &k_to);
                self.readahead.invalidate(&k_from);
                self.readahead.invalidate(&k_to);
                let moved = moved.map_err(|e| FsError::store("rename", &label, e))?;
                if !moved {
                    return Err(FsError::not_found(label));
                }
                self.move_name(from, to);
            }
            (Name::Scratch, Name::Chunk(k_to)) => {
                let node = self
                    .node_of(ino)
                    .ok_or_else(|| FsError::not_found(from.to_string_lossy()))?;
                let mut st = node.state.lock().unwrap();
                let value = st.content.take().unwrap_or_default();
                let len = value.len() as u64;
                let mtime = st.mtime.unwrap_or_else(SystemTime::now);
                let (value, result) = self.committer.commit(k_to.clone(), value);
                self.readahead.invalidate(&k_to);
                st.content = Some(value);
                self.attrs.forget(&k_to);
                result.map_err(|e| FsError::store("rename (commit)", to.to_string_lossy(), e))?;
                self.store
                    .set_mtime(&k_to, mtime)
                    .map_err(|e| FsError::store("rename (set mtime)", to.to_string_lossy(), e))?;
                self.attrs.set_size(&k_to, len);
                self.attrs.set_mtime(&k_to, mtime);
                st.dirty = false;
                st.mtime = None;
                st.mtime_explicit = false;
                drop(st);
                self.move_name(from, to);
            }
            (Name::Chunk(k_from), Name::Scratch) => {
                let (node, _) = self.acquire_node(ino, || Node::unloaded(ino, self.budget.clone()));
                let result = (|| {
                    let mut st = node.state.lock().unwrap();
                    self.commit_locked(ino, &mut st)?;
                    if st.content.is_none() {
                        let value = self
                            .store
                            .get_chunk(&k_from)
                            .map_err(|e| FsError::store("rename", &label, e))?
                            .ok_or_else(|| FsError::not_found(&label))?;
                        st.install(value, &label)?;
                    }
                    st.mtime = Some(self.chunk_mtime(&k_from, from)?);
                    self.attrs.forget(&k_from);
                    let deleted = self.store.delete(&k_from);
                    self.readahead.invalidate(&k_from);
                    deleted.map_err(|e| FsError::store("rename", &label, e))?;
                    self.move_name(from, to);
                    Ok(())
                })();
                self.release_node(ino);
                result?;
            }
            (Name::Scratch, Name::Scratch) => self.move_name(from, to),
            _ => unreachable!("invalid names were refused above"),
        }
        Ok(())
    }

    /// Moves `from`'s inode number to `to` and retires the node `to` had.
    fn move_name(&self, from: &OsStr, to: &OsStr) {
        let mut t = self.tables();
        let (moved, replaced) = t.inodes.rename(from, to);
        if let Some(old) = replaced {
            if t.nodes.get(&old).is_some_and(|e| e.open == 0) {
                t.nodes.remove(&old);
            }
            t.drop_if_unused(old);
        }
        // A chunk's node lives only while open; a scratch file's as long as its name.
        if let Some(ino) = moved {
            if name::classify(to) != Name::Scratch && t.nodes.get(&ino).is_some_and(|e| e.open == 0)
            {
                t.nodes.remove(&ino);
            }
            t.drop_if_unused(ino);
        }
    }
}
