//! Names: lookup, create, unlink, rename. Chunk names map to keys; every other name is a
//! scratch file, kept in the daemon (and saved beside the keyspace at unmount: `side`).

use std::ffi::OsStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use super::error::{FsError, FsResult};
use super::handle::OpenMode;
use super::name::{self, Name};
use super::node::{Node, Residence};
use super::value::Value;
use super::{Attr, ChunkFs, MAX_RACED};

/// rename(2) flags the core understands.
pub const RENAME_NOREPLACE: u32 = libc::RENAME_NOREPLACE;
/// Swapping two names: not supported (EINVAL).
pub const RENAME_EXCHANGE: u32 = libc::RENAME_EXCHANGE;

fn refuse_name(op: &str, name: &OsStr, reason: &str) -> FsError {
    let e = FsError::new(
        libc::EINVAL,
        format!("{op} {name:?}: invalid name (EINVAL): {reason}"),
    );
    log::warn!("{}", e.message);
    e.logged()
}

impl ChunkFs {
    /// lookup: the attributes of `name`, giving it an inode number and counting one kernel
    /// lookup on it (released by `forget`). The count is taken under the same lock as the
    /// number, so a forget racing with this reply cannot drop the number handed out.
    pub fn lookup(&self, parent: u64, name: &OsStr, pid: u32) -> FsResult<Attr> {
        self.check_parent(parent)?;
        match name::classify(name) {
            Name::Invalid(reason) => {
                // Info, not debug: a program looking for a name the mount cannot hold is the
                // first sign of a misuse; the kernel caches the answer for the TTL.
                log::info!("lookup {name:?}: not a chunk name, so no such file (ENOENT): {reason}");
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
                let writer = self.writer_of(ino, pid);
                let attr = self.attr_with(ino, name, writer.as_deref())?;
                let mut t = self.tables();
                if t.inodes.ino_of(name) != Some(ino) || !t.nodes.contains_key(&ino) {
                    return Err(FsError::not_found(name.to_string_lossy()));
                }
                t.inodes.add_lookup(ino);
                Ok(attr)
            }
            Name::Chunk(key) => {
                // A rename of this name during the lookup (from a revalidation, which the
                // kernel sends without the directory lock) could make it answer for a name that
                // is gone: asked again after the rename, it answers for what is there now.
                for _ in 0..MAX_RACED {
                    let before = self.ns_changes.load(Ordering::SeqCst);
                    let known = self.tables().inodes.ino_of(name);
                    let attr = self.chunk_lookup_attr(known, &key, name, pid);
                    let mut t = self.tables();
                    let moved = t.inodes.ino_of(name) != known;
                    match attr {
                        Err(e) if e.errno == libc::ENOENT => {
                            drop(t);
                            if !self.raced_a_rename(before) {
                                return Err(e);
                            }
                        }
                        Err(e) => return Err(e),
                        Ok(mut attr) => {
                            let renamed = self.ns.is_locked_exclusive()
                                || self.ns_changes.load(Ordering::SeqCst) != before;
                            if !(moved && renamed) {
                                // The number the name has now (a new one if the old was
                                // forgotten meanwhile).
                                attr.ino = t.inodes.lookup(name);
                                return Ok(attr);
                            }
                            drop(t);
                            self.raced_a_rename(before);
                        }
                    }
                }
                let known = self.tables().inodes.ino_of(name);
                let mut attr = self.chunk_lookup_attr(known, &key, name, pid)?;
                attr.ino = self.tables().inodes.lookup(name);
                Ok(attr)
            }
        }
    }

    /// The attributes a lookup of chunk `name` answers, `known` being its number before.
    fn chunk_lookup_attr(
        &self,
        known: Option<u64>,
        key: &[u8],
        name: &OsStr,
        pid: u32,
    ) -> FsResult<Attr> {
        if let Some((ino, node)) = known.and_then(|ino| Some((ino, self.node_of(ino)?))) {
            let writer = self.writer_of(ino, pid);
            return self.node_attr(ino, &node, Some(name), writer.as_deref());
        }
        let (size, mtime) = self
            .chunk_attrs(key, name)?
            .ok_or_else(|| FsError::not_found(name.to_string_lossy()))?;
        Ok(self.file_attr(0, size, mtime))
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
    pub fn create(&self, parent: u64, name: &OsStr, flags: i32, pid: u32) -> FsResult<(Attr, u64)> {
        self.check_parent(parent)?;
        self.check_writable(format_args!("create {name:?}"))?;
        if let Name::Invalid(reason) = name::classify(name) {
            return Err(refuse_name("create", name, &reason));
        }
        let exists = self.exists(name)?;
        let mode = OpenMode::of(flags);
        if exists && mode.exclusive {
            return Err(FsError::new(
                libc::EEXIST,
                format!("create {name:?}: exists"),
            ));
        }
        // The reply hands the kernel an entry: one lookup, undone if this fails.
        let ino = self.tables().inodes.lookup(name);
        let result = self.create_ino(ino, name, mode, exists, pid);
        if result.is_err() {
            self.forget(ino, 1);
        } else if !exists {
            self.note_scratch("create", name);
            self.names_changed();
        }
        result
    }

    fn create_ino(
        &self,
        ino: u64,
        name: &OsStr,
        mode: OpenMode,
        exists: bool,
        pid: u32,
    ) -> FsResult<(Attr, u64)> {
        // A new file is what everyone sees of it until its first write (empty, both to its
        // writer and to others), so the kernel may cache these attributes: the writer's own
        // permission check and fstat then cost no GETATTR. A write makes the kernel drop them
        // itself (size and mtime: `fuse_write_update_attr`), a truncate or utimes through the
        // handle answers with uncached ones, and the commit drops them (`publish`).
        let mut fresh = false;
        let fh = if exists {
            self.open_ino(ino, name, mode, pid)?.0
        } else {
            let chunk = matches!(name::classify(name), Name::Chunk(_));
            let (node, created) = self.acquire_node(ino, || Node::created(ino, chunk));
            if !created && mode.exclusive {
                self.release_node(ino);
                return Err(FsError::new(
                    libc::EEXIST,
                    format!("create {name:?}: exists"),
                ));
            }
            if let Name::Chunk(key) = name::classify(name) {
                self.attrs.forget(&key);
            }
            fresh = created;
            // Dirty and empty, so that closing it stores a 0-byte chunk (`touch`).
            match self.add_handle(ino, node, mode, pid, Some(Value::empty(&self.budget)), None) {
                Ok((fh, _)) => fh,
                Err(_) => return Err(self.supersede(ino, name, "create", true)),
            }
        };
        let attr = if fresh {
            // What others see (the node's creation time, not a writer's "now").
            self.attr_of(ino, name).map(|a| Attr {
                volatile: false,
                ..a
            })
        } else {
            let writer = self.handle(fh).ok();
            self.attr_with(ino, name, writer.as_deref())
        };
        match attr {
            Ok(attr) => Ok((attr, fh)),
            Err(e) => {
                let _ = self.release(fh);
                Err(e)
            }
        }
    }

    /// Before a node loses its name (unlink, or replaced by a rename): its open handles keep
    /// reading its bytes, so the committed value is loaded for them (within the memory budget:
    /// EBUSY, with a log line, when it does not fit). The caller holds the node's gate; once
    /// the store change succeeded it marks the node detached.
    pub(super) fn keep_for_nameless_handles(&self, node: &Node, name: &OsStr) -> FsResult<()> {
        let open = self.tables().nodes.get(&node.ino).map_or(0, |e| e.open);
        let needed = {
            let st = node.state.lock();
            open > 0 && st.value.is_none() && !st.is_local(false)
        };
        let Name::Chunk(key) = name::classify(name) else {
            return Ok(());
        };
        if !needed {
            return Ok(());
        }
        let value = self.fetch(&key, self.budget.ticket()).map_err(|e| {
            log::warn!(
                "{name:?} is open and its value cannot be kept for its readers ({e}): not \
                 removed (EBUSY)"
            );
            FsError::new(libc::EBUSY, format!("{name:?}: busy")).logged()
        })?;
        let (value, version) = value.unwrap_or_else(|| (Value::empty(&self.budget), None));
        let mut st = node.state.lock();
        st.value = Some(Arc::new(value));
        st.value_version = version;
        Ok(())
    }

    /// The node lost its name: it lives on, in the daemon only, for its open handles.
    pub(super) fn mark_detached(node: &Node) {
        let mut st = node.state.lock();
        st.residence = Residence::Detached;
    }

    /// unlink: deletes the chunk (or drops the scratch file). Handles that still have it open
    /// keep reading its bytes.
    pub fn unlink(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.check_parent(parent)?;
        self.check_writable(format_args!("unlink {name:?}"))?;
        let class = name::classify(name);
        if let Name::Invalid(_) = class {
            return Err(FsError::not_found(name.to_string_lossy()));
        }
        let _ns = self.ns.write();
        self.ns_changes.fetch_add(1, Ordering::SeqCst);
        let ino = self.tables().inodes.ino_of(name);
        let node = ino.and_then(|ino| self.node_of(ino));
        let _gate = node.as_ref().map(|n| n.gate.write());
        if let Some(node) = &node {
            self.keep_for_nameless_handles(node, name)?;
        }
        let deleted = match &class {
            Name::Chunk(key) => {
                self.attrs.forget(key);
                let deleted = self.store.delete(key);
                // Again after the change: a stat that read the old state meanwhile is dropped.
                self.attrs.forget(key);
                self.readahead.invalidate(key);
                deleted.map_err(|e| FsError::store("unlink", name.to_string_lossy(), e))?
            }
            _ => false,
        };
        if let Some(node) = &node {
            Self::mark_detached(node);
        }
        let mut t = self.tables();
        let removed = t.inodes.remove(name);
        if let Some(ino) = removed {
            if t.nodes.get(&ino).is_some_and(|e| e.open == 0) {
                t.nodes.remove(&ino);
            }
            t.drop_if_unused(ino);
        }
        drop(t);
        if let Some(ino) = removed {
            self.invalidate_kernel(ino);
        }
        if !deleted && node.is_none() {
            return Err(FsError::not_found(name.to_string_lossy()));
        }
        drop(_gate);
        drop(_ns);
        self.names_changed();
        Ok(())
    }

    /// rename: chunk -> chunk moves the value (atomic where the backend is); scratch -> chunk
    /// commits the scratch file's content as that chunk (with its mtime); scratch -> scratch
    /// renames in the daemon; chunk -> scratch takes the chunk out of the store into a scratch
    /// file (`cp --backup`, emacs' `name~`), within the memory budget. An existing target is
    /// replaced; handles open on it keep reading its old bytes. Handles open on the source
    /// follow it.
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
        self.check_writable(format_args!("rename {from:?} -> {to:?}"))?;
        if flags & RENAME_EXCHANGE != 0 {
            return Err(FsError::new(
                libc::EINVAL,
                format!(
                    "rename {from:?} <-> {to:?}: RENAME_EXCHANGE is not supported (EINVAL): a \
                     chunk store has no atomic swap"
                ),
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
        let _ns = self.ns.write();
        self.ns_changes.fetch_add(1, Ordering::SeqCst);
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
        drop(_ns);
        if result.is_ok() {
            self.names_changed();
        }
        result
    }

    fn rename_ino(&self, ino: u64, from: &OsStr, src: Name, to: &OsStr, dst: Name) -> FsResult<()> {
        let label = from.to_string_lossy();
        let src_node = self.node_of(ino);
        let dst_ino = self.tables().inodes.ino_of(to);
        let dst_node = dst_ino.and_then(|i| self.node_of(i));
        let _src_gate = src_node.as_ref().map(|n| n.gate.write());
        let _dst_gate = dst_node.as_ref().map(|n| n.gate.write());
        if let Some(node) = &dst_node {
            self.keep_for_nameless_handles(node, to)?;
        }
        match (src, dst) {
            (Name::Chunk(k_from), Name::Chunk(k_to)) => {
                let new_chunk = src_node
                    .as_ref()
                    .is_some_and(|n| n.state.lock().residence == Residence::New);
                if let (Some(node), false, true) = (&src_node, new_chunk, self.ranged()) {
                    // Ranged readers follow the file, but a move makes a new object in the
                    // store (a new version): they keep reading the one they began with.
                    self.keep_for_ranged_readers(node, &k_from, self.budget.ticket());
                }
                self.attrs.forget(&k_from);
                self.attrs.forget(&k_to);
                let moved = if new_chunk {
                    // Not in the store yet: the name moves, and what `to` held goes.
                    self.store.delete(&k_to).map(|_| true)
                } else {
                    self.store.rename(&k_from, &k_to)
                };
                // Again after the change: a stat that read the old state meanwhile is dropped.
                self.attrs.forget(&k_from);
                self.attrs.forget(&k_to);
                self.readahead.invalidate(&k_from);
                self.readahead.invalidate(&k_to);
                let moved = moved.map_err(|e| FsError::store("rename", &label, e))?;
                if !moved {
                    return Err(FsError::not_found(label));
                }
                if let (Some(node), false, true) = (&src_node, new_chunk, self.ranged()) {
                    node.state.lock().advance(None);
                }
            }
            (Name::Scratch, Name::Chunk(k_to)) => {
                let node = src_node
                    .as_ref()
                    .ok_or_else(|| FsError::not_found(from.to_string_lossy()))?;
                let (value, mtime) = {
                    let st = node.state.lock();
                    (st.value.clone(), st.mtime.unwrap_or_else(SystemTime::now))
                };
                let bytes = value.as_deref().map_or(&[][..], |v| &v[..]);
                let len = bytes.len() as u64;
                let result = self.store.set_chunk(&k_to, bytes);
                // A commit like any other for `cloudstore-fs stats`.
                self.committer.record(result.is_ok());
                self.readahead.invalidate(&k_to);
                self.attrs.forget(&k_to);
                result.map_err(|e| FsError::store("rename (commit)", to.to_string_lossy(), e))?;
                self.store
                    .set_mtime(&k_to, mtime)
                    .map_err(|e| FsError::store("rename (set mtime)", to.to_string_lossy(), e))?;
                self.attrs.set_size(&k_to, len);
                self.attrs.set_mtime(&k_to, mtime);
                let mut st = node.state.lock();
                st.mtime = None;
                st.mtime_explicit = false;
                if self.ranged() {
                    // The value is in the store now, as a new object: ranged readers still on
                    // the scratch file's bytes (a chunk renamed to a scratch name while open,
                    // and back) keep them, and later readers read the store.
                    st.advance(None);
                }
            }
            (Name::Chunk(k_from), Name::Scratch) => {
                self.note_scratch("rename to", to);
                // The chunk leaves the store: its value and mtime become the scratch file's,
                // held in the daemon (within the budget) as long as the name.
                let value = match &src_node {
                    Some(n) if n.state.lock().residence == Residence::New => None,
                    _ => self.fetch(&k_from, self.budget.ticket())?,
                };
                let (value, version) = value.unwrap_or_else(|| (Value::empty(&self.budget), None));
                let mtime = self.chunk_mtime(&k_from, from)?;
                self.attrs.forget(&k_from);
                let deleted = self.store.delete(&k_from);
                self.attrs.forget(&k_from);
                self.readahead.invalidate(&k_from);
                deleted.map_err(|e| FsError::store("rename (remove)", &label, e))?;
                let node = match &src_node {
                    Some(n) => n.clone(),
                    None => {
                        let (n, _) = self.acquire_node(ino, || Node::stored(ino));
                        // Held by its name from now on (see `move_name`).
                        self.tables().nodes.get_mut(&ino).expect("acquired").open -= 1;
                        n
                    }
                };
                let mut st = node.state.lock();
                st.value = Some(Arc::new(value));
                st.value_version = version;
                st.residence = Residence::Stored;
                st.mtime = Some(mtime);
                st.mtime_explicit = true;
            }
            (Name::Scratch, Name::Scratch) => {}
            _ => unreachable!("invalid names were refused above"),
        }
        if let Some(node) = &dst_node {
            Self::mark_detached(node);
        }
        self.move_name(from, to);
        self.invalidate_kernel(ino);
        if let Some(i) = dst_ino {
            self.invalidate_kernel(i);
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
