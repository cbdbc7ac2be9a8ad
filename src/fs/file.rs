//! Open files: open, read, write, truncate, flush (commit), fsync, release.
//!
//! The rule: after close() returns 0 the chunk holds exactly what was written through that
//! handle; if anything failed, close() says so and the chunk holds what it held before; nothing
//! half-written reaches the store or another reader. So each handle opened for writing builds
//! its own new value (read-modify-write of the committed value on its first write, unless it was
//! opened with O_TRUNC), and flush/fsync/release publish it whole as one SetChunk. A handle whose
//! write, fetch or commit failed is poisoned: it fails from then on and commits nothing.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::SystemTime;

use super::cache::{Conflict, Io, Stamp};
use super::error::{FsError, FsResult};
use super::handle::{Handle, HandleState, View};
use super::name::{self, Name};
use super::node::{Node, RangedView};
use super::value::{ReadData, Value};
use super::Attr;
use super::{ChunkFs, SetTime, ROOT_INO};
use crate::store::{StoreError, Version};

impl ChunkFs {
    /// Registers an open handle on a node already acquired (`buf`: the new value an O_TRUNC or
    /// create starts with, dirty so that closing it stores it; `read`: for a read-only open of
    /// a stored chunk, the version it reads and its size). A handle that cannot share the
    /// inode with the readers open through the page cache is refused (the caller moves the
    /// name to a new inode) and the node's reference is given back.
    pub(super) fn add_handle(
        &self,
        ino: u64,
        node: Arc<Node>,
        flags: i32,
        pid: u32,
        buf: Option<Value>,
        read: Option<(Stamp, u64)>,
    ) -> Result<(u64, Io), Conflict> {
        let fh = self.new_fh();
        let acc = flags & libc::O_ACCMODE;
        let write = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        let registered = {
            let mut st = node.state.lock();
            let writers = st.writers;
            let io = st.readers.open(writers, write, read);
            if write && io.is_ok() {
                st.writers += 1;
            }
            io
        };
        let io = match registered {
            Ok(io) => io,
            Err(c) => {
                drop(node);
                self.release_node(ino);
                return Err(c);
            }
        };
        let io = match io {
            Io::Cached { .. } => Io::Cached {
                keep: self.pages_current(ino, read.and_then(|(s, _)| s.store)),
            },
            Io::Direct => {
                self.pages_unknown(ino);
                Io::Direct
            }
        };
        let handle = Handle {
            ino,
            pid,
            age: buf
                .as_ref()
                .map_or_else(|| self.budget.ticket(), |b| b.age()),
            node,
            write,
            io,
            append: flags & libc::O_APPEND != 0,
            st: Default::default(),
        };
        {
            let mut hs = handle.st.lock();
            hs.dirty = buf.is_some();
            // A file created by an O_APPEND open: its bytes are appended to whatever another
            // appender committed first. O_TRUNC replaces the value.
            if handle.append && buf.is_some() && flags & libc::O_TRUNC == 0 {
                hs.append_base = Some(0);
            }
            hs.buf = buf;
            if hs.dirty {
                hs.mtime = None;
            }
        }
        self.tables().handles.insert(fh, Arc::new(handle));
        Ok((fh, io))
    }

    /// Opens an inode that has a node or a chunk (`flags` are open(2) flags).
    pub(super) fn open_ino(
        &self,
        ino: u64,
        name: &OsStr,
        flags: i32,
        pid: u32,
    ) -> FsResult<(u64, Io)> {
        self.open_ino_once(ino, name, flags, pid, true)
    }

    /// `open_ino`; with `retry`, an open that conflicts with cached readers waits briefly for
    /// their pending releases and tries once more before it moves the name.
    fn open_ino_once(
        &self,
        ino: u64,
        name: &OsStr,
        flags: i32,
        pid: u32,
        retry: bool,
    ) -> FsResult<(u64, Io)> {
        let acc = flags & libc::O_ACCMODE;
        let write = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        if write {
            self.check_writable(format_args!("open of {} for writing", self.label(ino)))?;
        }
        let class = name::classify(name);
        let (node, created) = self.acquire_node(ino, || Node::stored(ino));
        if class == Name::Scratch && created {
            // The scratch file went away between lookup and open.
            self.release_node(ino);
            return Err(FsError::not_found(name.to_string_lossy()));
        }
        let truncate = write && flags & libc::O_TRUNC != 0;
        let open_read = !write && self.ranged();
        if let (Name::Chunk(key), false) = (&class, truncate) {
            // A value over the maximum (written by another program, or before the maximum was
            // lowered) is refused before anything of it is read: reading it whole could take
            // any amount of memory. An O_TRUNC open reads nothing and may replace it.
            if let Err(e) = self.check_stored_size(&node, key, name) {
                self.release_node(ino);
                return Err(e);
            }
        }
        let buf = truncate.then(|| Value::empty(&self.budget));
        let mut view = View::Unset;
        let mut seen = None;
        if let (Name::Chunk(key), false) = (&class, write) {
            if open_read {
                match self.open_view(&node, key) {
                    Ok((v, s)) => (view, seen) = (v, s),
                    Err(e) => {
                        self.release_node(ino);
                        return Err(e);
                    }
                }
            } else {
                self.load_prefetched(&node, key);
            }
        }
        // The version read, its size and the registration are one step under the gate: no
        // commit lands between them.
        let held = node.clone();
        let gate = held.gate.read();
        let read = match (&class, write) {
            (Name::Chunk(key), false) if self.cfg.cached_reads => {
                self.read_stamp(&node, key, name, seen)
            }
            _ => None,
        };
        let added = self.add_handle(ino, node, flags, pid, buf, read);
        drop(gate);
        let (fh, io) = match added {
            Ok(added) => added,
            Err(Conflict) => {
                if let View::Ranged { version, .. } = view {
                    held.state.lock().remove_ranged(version);
                }
                if retry && self.cached_readers_left(&held) {
                    return self.open_ino_once(ino, name, flags, pid, false);
                }
                drop(held);
                return Err(self.supersede(ino, name, "open"));
            }
        };
        if !matches!(view, View::Unset) {
            if let Ok(h) = self.handle(fh) {
                h.st.lock().view = view;
            }
        }
        Ok((fh, io))
    }

    /// The version a read-only open of a stored chunk reads and its size, for a cached open;
    /// `None` when it must read through the daemon (the value lives in the daemon, its size is
    /// unknown, or on a ranged store this mount changed it since `seen` was read). The caller
    /// holds the node's gate.
    fn read_stamp(
        &self,
        node: &Node,
        key: &[u8],
        name: &OsStr,
        seen: Option<(Stamp, u64)>,
    ) -> Option<(Stamp, u64)> {
        let (version, loaded) = {
            let st = node.state.lock();
            if st.is_local(false) {
                return None;
            }
            (st.version, st.value.as_ref().map(|v| v.len() as u64))
        };
        if self.ranged() {
            return seen.filter(|(s, _)| s.node == version);
        }
        let size = match loaded {
            Some(size) => size,
            None => self.chunk_size(key, name).ok()??,
        };
        Some((
            Stamp {
                node: version,
                store: None,
            },
            size,
        ))
    }

    /// Whether open files read ranges straight from the store, each of one version of the
    /// chunk (a store with versioned ranged reads, which other clients may change: nothing
    /// read from it is trusted past the open that read it).
    pub(super) fn ranged(&self) -> bool {
        !self.cfg.whole_value_reads
    }

    /// What an open file reads, decided by one versioned read of its first bytes: a value that
    /// fits the first read is held by the handle (its reads need no store call); a longer one
    /// is read by range, every read asserting the version seen here. A chunk that is gone
    /// (removed or renamed by another client since the kernel looked it up) is ENOENT, never
    /// an empty file. The node's committed value, if this mount holds one, is not trusted: a
    /// new open sees the newest committed version (close-to-open).
    fn open_view(&self, node: &Node, key: &[u8]) -> FsResult<(View, Option<(Stamp, u64)>)> {
        let label = hex::encode(key);
        let _gate = node.gate.read();
        let version = {
            let st = node.state.lock();
            if st.is_local(false) {
                return Ok((View::Unset, None));
            }
            st.version
        };
        let first = self
            .store
            .read_version(key, 0, self.cfg.open_read.max(1), None)
            .map_err(|e| FsError::store("open", &label, e))?;
        let Some(first) = first else {
            // Removed or renamed by another client since the kernel looked it up.
            self.attrs.forget(key);
            self.invalidate_kernel_attrs(node.ino);
            return Err(FsError::not_found(&label));
        };
        self.check_within_maximum("open", key, first.size)?;
        if self.attrs.last_size(key) != Some(Some(first.size)) {
            // Another client changed it: the kernel's attributes (its idea of the size, by
            // which it clamps reads) are dropped along with the daemon's.
            self.attrs.forget(key);
            self.invalidate_kernel_attrs(node.ino);
        }
        self.attrs.set_size(key, first.size);
        let seen = Some((
            Stamp {
                node: version,
                store: Some(first.version),
            },
            first.size,
        ));
        if first.bytes.len() as u64 == first.size {
            let len = first.bytes.capacity() as u64;
            if self.budget.try_reserve(len) {
                let value = Value::adopt(first.bytes, len, &self.budget, &label)?;
                return Ok((View::Pinned(Arc::new(value)), seen));
            }
        }
        let version = node.state.lock().add_ranged();
        Ok((
            View::Ranged {
                version,
                store: first.version,
            },
            seen,
        ))
    }

    /// EFBIG when the committed value of `key` (by its stored size, nothing read) is larger
    /// than the maximum chunk size.
    fn check_stored_size(&self, node: &Node, key: &[u8], name: &OsStr) -> FsResult<()> {
        {
            let st = node.state.lock();
            if st.value.is_some() || st.is_local(false) {
                // Held in the daemon already, so within the maximum.
                return Ok(());
            }
        }
        match self.chunk_size(key, name)? {
            Some(size) => self.check_within_maximum("open", key, size),
            None => Ok(()),
        }
    }

    /// EFBIG, logged with the key and both sizes, when a stored value of `size` bytes is over
    /// the maximum chunk size: such a value is refused before any of it is read.
    fn check_within_maximum(&self, op: &str, key: &[u8], size: u64) -> FsResult<()> {
        let max = self.cfg.max_chunk_size;
        if size <= max {
            return Ok(());
        }
        let e = FsError::new(
            libc::EFBIG,
            format!(
                "{op} {}: the stored value has {size} bytes, more than the maximum chunk size \
                 of {max} (EFBIG); nothing of it was read",
                hex::encode(key)
            ),
        );
        log::warn!("{}", e.message);
        Err(e.logged())
    }

    /// Opening a chunk for reading: when read-ahead has its value (or fetches it now with the
    /// rest of a window, because the opens are walking the listing), it becomes the node's
    /// committed value, so that the reads need no store call.
    fn load_prefetched(&self, node: &Node, key: &[u8]) {
        let _gate = node.gate.read();
        if node.state.lock().value.is_some() {
            return;
        }
        let Some(bytes) = self.readahead.open(&*self.store, key) else {
            return;
        };
        // Without room in the budget the reads fetch it as usual.
        let len = bytes.capacity() as u64;
        if !self.budget.try_reserve(len) {
            return;
        }
        let label = hex::encode(key);
        if let Ok(value) = Value::adopt(bytes, len, &self.budget, &label) {
            let mut st = node.state.lock();
            if st.value.is_none() && !st.is_local(false) {
                st.value = Some(Arc::new(value));
            }
        }
    }

    /// open, by process `pid`: the handle.
    pub fn open(&self, ino: u64, flags: i32, pid: u32) -> FsResult<u64> {
        self.open_io(ino, flags, pid).map(|(fh, _)| fh)
    }

    /// open, by process `pid`: the handle, and how its bytes move (direct I/O or the page
    /// cache).
    pub fn open_io(&self, ino: u64, flags: i32, pid: u32) -> FsResult<(u64, Io)> {
        if ino == ROOT_INO {
            return Err(FsError::new(libc::EISDIR, "open: the root is a directory"));
        }
        // An inode that lost its name (a rename replaced it, or an unlink) since the kernel looked
        // it up: ESTALE makes the kernel look the path up again and open what is there now.
        let name = self
            .name_of(ino)
            .ok_or_else(|| FsError::new(libc::ESTALE, format!("open: inode {ino} has no name")))?;
        self.open_ino(ino, &name, flags, pid)
    }

    /// The whole value of `key` from the store, reserved in the budget before it is fetched
    /// (with room for the store's own transient copy), with its store version where the store
    /// has versions. `None`: the chunk does not exist.
    pub(super) fn fetch(&self, key: &[u8], age: u64) -> FsResult<Option<(Value, Option<Version>)>> {
        let label = hex::encode(key);
        let Some(size) = self
            .store
            .stat(key)
            .map_err(|e| FsError::store("stat", &label, e))?
        else {
            return Ok(None);
        };
        self.check_within_maximum("read", key, size)?;
        let reserved = size.saturating_mul(2);
        if let Err(e) = self.budget.reserve_wait(reserved, age, &label) {
            log::warn!("memory held: {}", self.census());
            return Err(e);
        }
        let fetched = if self.ranged() {
            self.store
                .read_version(key, 0, 0, None)
                .map(|r| r.map(|r| (r.bytes, Some(r.version))))
        } else {
            self.store.get_chunk(key).map(|v| v.map(|v| (v, None)))
        };
        let fetched = match fetched {
            Ok(v) => v,
            Err(e) => {
                self.budget.release(reserved);
                return Err(FsError::store("read", &label, e));
            }
        };
        match fetched {
            Some((bytes, version)) => {
                Value::adopt(bytes, reserved, &self.budget, &label).map(|v| Some((v, version)))
            }
            None => {
                self.budget.release(reserved);
                Ok(None)
            }
        }
    }

    /// The committed value of a node, loading it when needed. The caller holds the node's gate.
    ///
    /// On a store that others may change, a stored chunk's value is fetched anew each time
    /// and not kept on the node: another client may have committed since (close-to-open).
    fn committed(&self, node: &Node, ino: u64, age: u64) -> FsResult<Arc<Value>> {
        let mut st = node.state.lock();
        // None: the value lives in the daemon (a scratch file, a new chunk, a detached file).
        let key = self.key_of(ino).filter(|_| !st.is_local(false));
        match (&st.value, &key) {
            (Some(v), None) => return Ok(v.clone()),
            (Some(v), Some(_)) if !self.ranged() => return Ok(v.clone()),
            (None, None) => {
                let empty = Arc::new(Value::empty(&self.budget));
                st.value = Some(empty.clone());
                return Ok(empty);
            }
            _ => {}
        }
        let key = key.expect("matched above");
        if self.ranged() {
            drop(st);
            let fetched = self.fetch(&key, age)?;
            return Ok(Arc::new(
                fetched.map_or_else(|| Value::empty(&self.budget), |(v, _)| v),
            ));
        }
        // The node stays locked while the value is fetched, so that it is fetched once for all
        // the handles that want it.
        let value = Arc::new(
            self.fetch(&key, age)?
                .map_or_else(|| Value::empty(&self.budget), |(v, _)| v),
        );
        st.value = Some(value.clone());
        Ok(value)
    }

    /// read: up to `size` bytes at `offset` (fewer at the end of the file).
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        self.read_data(fh, offset, size).map(|d| d.to_vec())
    }

    /// read, without copying bytes the daemon holds as a shared value (the reply is made
    /// straight from them).
    pub fn read_data(&self, fh: u64, offset: u64, size: u32) -> FsResult<ReadData> {
        let h = self.handle(fh)?;
        let mut hs = h.st.lock();
        if let Some(buf) = &hs.buf {
            return Ok(ReadData::Owned(buf.slice(offset, size)));
        }
        match &hs.view {
            View::Pinned(v) => return Ok(ReadData::held(v, offset, size)),
            View::Ranged { version, store } => {
                let (version, store) = (*version, *store);
                return self.read_ranged(&h, version, store, offset, size);
            }
            View::Unset => {}
        }
        let gate = h.node.gate.read();
        let local = {
            let st = h.node.state.lock();
            st.is_local(self.is_scratch(h.ino)) || (st.value.is_some() && !self.ranged())
        };
        if !self.ranged() || local {
            let value = self.committed(&h.node, h.ino, h.age)?;
            let out = ReadData::held(&value, offset, size);
            hs.view = View::Pinned(value);
            return Ok(out);
        }
        drop(gate);
        // A handle open for writing that reads before it writes: its view is decided now.
        let key = self.key_of(h.ino).ok_or_else(|| {
            FsError::new(libc::ESTALE, format!("read: inode {} has no name", h.ino))
        })?;
        hs.view = self.open_view(&h.node, &key)?.0;
        match &hs.view {
            View::Pinned(v) => Ok(ReadData::held(v, offset, size)),
            View::Ranged { version, store } => {
                let (version, store) = (*version, *store);
                self.read_ranged(&h, version, store, offset, size)
            }
            View::Unset => {
                let _gate = h.node.gate.read();
                let value = self.committed(&h.node, h.ino, h.age)?;
                let out = ReadData::held(&value, offset, size);
                hs.view = View::Pinned(value);
                Ok(out)
            }
        }
    }

    /// A read straight from the store, of the version the handle began reading (`version` of
    /// the node, `store` of the store's chunk): bytes of that version or an error, never of
    /// another.
    fn read_ranged(
        &self,
        h: &Handle,
        version: u64,
        store: Version,
        offset: u64,
        size: u32,
    ) -> FsResult<ReadData> {
        let _gate = h.node.gate.read();
        let (view, loaded, local) = {
            let st = h.node.state.lock();
            let local = st.is_local(self.is_scratch(h.ino));
            let loaded = st.value.clone().map(|v| (v, st.value_version));
            (st.ranged_view(version), loaded, local)
        };
        let changed = || {
            let e = StoreError::Changed {
                backend: self.store.backend(),
                key: self.label(h.ino),
            };
            log::warn!("{e}");
            if let Some(key) = self.key_of(h.ino) {
                self.attrs.forget(&key);
            }
            self.invalidate_kernel_attrs(h.ino);
            FsError::new(libc::ESTALE, e.to_string()).logged().failure()
        };
        match view {
            RangedView::Kept(v, kept) => {
                // Kept by this mount when it changed the chunk; another client may have
                // changed it before that.
                if kept.is_some_and(|k| k != store) {
                    return Err(changed());
                }
                return Ok(ReadData::held(&v, offset, size));
            }
            RangedView::Lost => {
                let label = self.label(h.ino);
                log::error!(
                    "read {label}: the chunk changed while this file was open and its old value \
                     could not be kept (EIO); reopen the file to read the new value"
                );
                return Err(FsError::new(libc::EIO, format!("read {label}: stale")).logged());
            }
            RangedView::Current => {}
        }
        if let Some((v, kept)) = loaded.filter(|_| local) {
            // Loaded when the file lost its name (unlink, rename onto it) while open.
            if kept.is_some_and(|k| k != store) {
                return Err(changed());
            }
            return Ok(ReadData::held(&v, offset, size));
        }
        let key = match self.key_of(h.ino) {
            Some(key) if !local => key,
            _ => return Ok(ReadData::Owned(Vec::new())),
        };
        let end = offset.saturating_add(size as u64);
        match self.store.read_version(&key, offset, end, Some(store)) {
            Ok(Some(r)) => Ok(ReadData::Owned(r.bytes)),
            Ok(None) | Err(StoreError::Changed { .. }) => Err(changed()),
            Err(e) => Err(FsError::store("read", hex::encode(&key), e)),
        }
    }

    /// The handle's new value, made on its first write: a copy of the committed value it read
    /// (or of the current one). A failure poisons the handle.
    fn buffer<'a>(&self, h: &Handle, hs: &'a mut HandleState) -> FsResult<&'a mut Value> {
        if hs.buf.is_none() {
            let base = match &hs.view {
                View::Pinned(v) => Ok(v.clone()),
                _ => {
                    let _gate = h.node.gate.read();
                    self.committed(&h.node, h.ino, h.age)
                }
            };
            let label = self.label(h.ino);
            let copy = base.and_then(|v| Value::copy_of(&v, &self.budget, h.age, &label));
            match copy {
                Ok(v) => {
                    if h.append {
                        hs.append_base = Some(v.len());
                    }
                    hs.buf = Some(v)
                }
                Err(e) => {
                    hs.poison(&e);
                    return Err(e);
                }
            }
        }
        Ok(hs.buf.as_mut().expect("made above"))
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
        let mut hs = h.st.lock();
        hs.check()?;
        let max = self.cfg.max_chunk_size;
        let label = self.label(h.ino);
        let result = (|| {
            let buf = self.buffer(&h, &mut hs)?;
            let len = buf.len() as u64;
            let offset = if h.append { len } else { offset };
            let end = offset.saturating_add(data.len() as u64);
            if end > max {
                log::warn!(
                    "write {label}: {end} bytes would exceed the maximum chunk size of {max} \
                     (EFBIG); nothing of this file is committed"
                );
                return Err(FsError::new(libc::EFBIG, "write: file too large").logged());
            }
            if end > len {
                buf.resize(end as usize, max, &label)?;
            }
            buf.write_at(offset as usize, data);
            Ok(())
        })();
        match result {
            Ok(()) => {
                hs.dirty = true;
                hs.mtime = None;
                Ok(data.len() as u32)
            }
            Err(e) => {
                if e.errno == libc::ENOMEM {
                    log::warn!("memory held: {}", self.census());
                }
                hs.poison(&e);
                Err(e)
            }
        }
    }

    /// What holds the memory budget now (for the log line of an ENOMEM).
    fn census(&self) -> String {
        let (handles, nodes): (Vec<Arc<Handle>>, Vec<Arc<Node>>) = {
            let t = self.tables();
            (
                t.handles.values().cloned().collect(),
                t.nodes.values().map(|e| e.node.clone()).collect(),
            )
        };
        let (mut bufs, mut views) = (0u64, 0u64);
        for h in &handles {
            if let Some(hs) = h.st.try_lock() {
                bufs += hs.buf.as_ref().map_or(0, |b| b.reserved());
                if let View::Pinned(v) = &hs.view {
                    views += v.reserved();
                }
            }
        }
        let values: u64 = nodes
            .iter()
            .filter_map(|n| n.state.try_lock())
            .map(|st| st.value.as_ref().map_or(0, |v| v.reserved()))
            .sum();
        format!(
            "{} open file(s): write buffers {bufs} bytes, pinned reads {views} bytes (shared \
             values count once per holder); {} node(s): committed values {values} bytes; \
             read-ahead {} bytes; {} of {} bytes reserved in all",
            handles.len(),
            nodes.len(),
            self.readahead.cached_bytes(),
            self.budget.used(),
            self.budget.limit()
        )
    }

    fn label(&self, ino: u64) -> String {
        self.name_of(ino).map_or_else(
            || format!("inode {ino}"),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    fn is_scratch(&self, ino: u64) -> bool {
        self.name_of(ino)
            .is_some_and(|n| name::classify(&n) == Name::Scratch)
    }

    /// chmod and chown: every file is 0644 and the directory 0755, all owned by the mounting
    /// user, and nothing else can be kept. On a mount other users reach (--allow-other), a
    /// change to what the file already has succeeds (cp -p and rsync -a do that) and anything
    /// else is EPERM with a log line, never a silent success. On an owner-only mount, and for
    /// scratch files, any is accepted without effect (see below).
    pub fn check_mode_owner(
        &self,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> FsResult<()> {
        if mode.is_none() && uid.is_none() && gid.is_none() {
            return Ok(());
        }
        self.check_writable("setattr")?;
        if !self.cfg.allow_other {
            // Nobody but the owner reaches the mount, so a mode or owner protects nothing:
            // refusing would only fail `rsync -a` and `cp -p` of files that are not 0644.
            log::debug!(
                "chmod/chown of {} on an owner-only mount: accepted, not kept",
                self.label(ino)
            );
            return Ok(());
        }
        if ino != ROOT_INO && self.is_scratch(ino) {
            // Scratch files are the temporary files of rsync and editors, which make them
            // owner-only (rsync: mode & 0700) and set the final mode before renaming them: a
            // refusal would fail every rsync. The mode is not kept (a chunk shows 0644).
            log::debug!(
                "chmod/chown of scratch file {}: accepted, not kept",
                self.label(ino)
            );
            return Ok(());
        }
        let (what, perm) = if ino == ROOT_INO {
            ("the mount's directory".to_string(), 0o755)
        } else {
            (self.label(ino), self.cfg.file_mode)
        };
        let refuse = |change: String| {
            log::warn!(
                "{change} of {what}: refused (EPERM): the mount keeps no modes or owners; every \
                 file is 0644 and the directory 0755, owned by uid {} gid {}",
                self.cfg.uid,
                self.cfg.gid
            );
            Err(FsError::new(libc::EPERM, format!("{change}: not supported")).logged())
        };
        if let Some(mode) = mode.filter(|m| m & 0o7777 != perm) {
            return refuse(format!("chmod to {:04o}", mode & 0o7777));
        }
        if let Some(uid) = uid.filter(|&u| u != self.cfg.uid) {
            return refuse(format!("chown to uid {uid}"));
        }
        if let Some(gid) = gid.filter(|&g| g != self.cfg.gid) {
            return refuse(format!("chgrp to gid {gid}"));
        }
        Ok(())
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
            if let Some(t) = mtime {
                // rsync -a, touch -d: the directory's mtime is kept beside the keyspace.
                self.check_writable("setattr")?;
                self.set_dir_mtime(t.resolve())?;
            }
            return Ok(self.root_attr());
        }
        if size.is_some() || mtime.is_some() {
            self.check_writable("setattr")?;
        }
        // None: the file lost its name while open (unlinked or replaced); a handle open for
        // writing still resizes it and sets its mtime, discarded at close with its writes.
        let name = self.name_of(ino);
        let writer = fh
            .and_then(|fh| self.handle(fh).ok())
            .filter(|h| h.write && h.ino == ino);
        if let Some(size) = size {
            match (&writer, &name) {
                (Some(h), _) => self.truncate_handle(h, size)?,
                (None, Some(name)) => self.truncate_path(ino, name, size)?,
                (None, None) => return Err(Self::nameless(ino)),
            }
        }
        if let Some(t) = mtime {
            self.set_mtime(ino, name.as_deref(), writer.as_deref(), t.resolve())?;
        }
        match &name {
            Some(name) => self.attr_with(ino, name, writer.as_deref()),
            None => self.nameless_attr(ino, writer.as_deref()),
        }
    }

    /// ftruncate: resizes the handle's new value.
    fn truncate_handle(&self, h: &Handle, size: u64) -> FsResult<()> {
        let mut hs = h.st.lock();
        hs.check()?;
        let label = self.label(h.ino);
        let max = self.cfg.max_chunk_size;
        let result = if size > max {
            log::warn!(
                "truncate {label} to {size}: exceeds the maximum chunk size of {max} (EFBIG); \
                 nothing of this file is committed"
            );
            Err(FsError::new(libc::EFBIG, "truncate: file too large").logged())
        } else if size == 0 {
            hs.append_base = None;
            hs.buf = Some(Value::empty(&self.budget));
            Ok(())
        } else {
            self.buffer(h, &mut hs)
                .and_then(|buf| buf.resize(size as usize, max, &label))
        };
        match result {
            Ok(()) => {
                // From now on the handle's value replaces the chunk's whole.
                hs.append_base = None;
                hs.dirty = true;
                hs.mtime = None;
                Ok(())
            }
            Err(e) => {
                hs.poison(&e);
                Err(e)
            }
        }
    }

    /// An appending handle's commit: its own bytes (after `base`) go after the committed value
    /// as it stands now, which another handle may have changed since this one began. The
    /// caller holds the node's gate exclusively, so no other commit of the chunk runs meanwhile.
    fn rebase_appends(&self, h: &Handle, hs: &mut HandleState, base: usize) -> FsResult<()> {
        let current = self.committed(&h.node, h.ino, h.age)?;
        let buf = hs.buf.as_ref().expect("a dirty handle has a new value");
        if current.len() == base && current[..] == buf[..base] {
            return Ok(());
        }
        let label = self.label(h.ino);
        let tail_len = buf.len() - base;
        let len = current.len() + tail_len;
        let max = self.cfg.max_chunk_size;
        if len as u64 > max {
            log::warn!(
                "append to {label}: {len} bytes with what was committed since this file was \
                 opened would exceed the maximum chunk size of {max} (EFBIG); nothing of this \
                 file is committed"
            );
            return Err(FsError::new(libc::EFBIG, "append: file too large").logged());
        }
        let mut value = Value::copy_of(&current, &self.budget, h.age, &label)?;
        value.resize(len, max, &label)?;
        value.write_at(current.len(), &buf[base..]);
        hs.buf = Some(value);
        Ok(())
    }

    /// fallocate: mode 0 makes the handle's value at least `offset + length` bytes, the new
    /// bytes zeros (like an ftruncate that grows it; it never shrinks). Other modes (keep size,
    /// punch or zero a range) are EOPNOTSUPP, and a file this handle created and has not
    /// written is then not created at all (no empty chunk is left behind).
    pub fn fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> FsResult<()> {
        let h = self.handle(fh)?;
        if !h.write {
            return Err(FsError::new(
                libc::EBADF,
                "fallocate: file not open for writing",
            ));
        }
        self.check_writable("fallocate")?;
        let label = self.label(h.ino);
        if mode != 0 {
            let mut hs = h.st.lock();
            let untouched = hs.dirty
                && hs.buf.as_ref().is_some_and(|b| b.is_empty())
                && h.node.state.lock().new_chunk;
            if untouched {
                hs.dirty = false;
            }
            log::warn!(
                "fallocate {label} mode {mode:#x}: only mode 0 (extend with zeros) is supported \
                 (EOPNOTSUPP){}",
                if untouched {
                    "; the file it created is not kept unless written"
                } else {
                    ""
                }
            );
            return Err(FsError::new(libc::EOPNOTSUPP, "fallocate: mode not supported").logged());
        }
        let end = offset.saturating_add(length);
        let size = self.getattr(h.ino, Some(fh), h.pid)?.size;
        if end > size {
            self.truncate_handle(&h, end)?;
        }
        Ok(())
    }

    /// truncate(2) on a path: takes effect at once, as if the file were opened, truncated and
    /// closed.
    fn truncate_path(&self, ino: u64, name: &OsStr, size: u64) -> FsResult<()> {
        if name::classify(name) != Name::Scratch && self.node_of(ino).is_none() {
            // The file must exist.
            self.attr_of(ino, name)?;
        }
        let flags = if size == 0 {
            libc::O_WRONLY | libc::O_TRUNC
        } else {
            libc::O_WRONLY
        };
        let (fh, _) = self.open_ino(ino, name, flags, 0)?;
        let h = self.handle(fh)?;
        let result = self
            .truncate_handle(&h, size)
            .and_then(|()| self.flush(fh, 0));
        drop(h);
        let released = self.release(fh);
        result.and(released)
    }

    fn set_mtime(
        &self,
        ino: u64,
        name: Option<&OsStr>,
        writer: Option<&Handle>,
        t: SystemTime,
    ) -> FsResult<()> {
        if let Some(h) = writer {
            let mut hs = h.st.lock();
            if hs.dirty {
                // futimens on a file being written: stored after its commit.
                hs.mtime = Some(t);
                return Ok(());
            }
        }
        let scratch = name.is_some_and(|name| name::classify(name) == Name::Scratch);
        let mut store_now = true;
        if let Some(node) = self.node_of(ino) {
            let mut st = node.state.lock();
            if st.writers > 0 || st.is_local(scratch) {
                // cp -p, rsync: the time is set while (or before) the file is written; it is
                // stored with the next commit, or with a scratch file's rename. A file that
                // lost its name keeps it in the daemon (it is local).
                st.mtime = Some(t);
                st.mtime_explicit = true;
                store_now = !st.is_local(scratch);
            }
        }
        if !store_now {
            return Ok(());
        }
        let Some(name) = name else {
            return Err(Self::nameless(ino));
        };
        let Name::Chunk(key) = name::classify(name) else {
            return Err(FsError::not_found(name.to_string_lossy()));
        };
        self.store
            .set_mtime(&key, t)
            .map_err(|e| FsError::store("set mtime", name.to_string_lossy(), e))?;
        self.attrs.set_mtime(&key, t);
        Ok(())
    }

    /// Publishes the handle's new value if it has one not committed yet: one SetChunk, ordered
    /// with renames and unlinks. A failure poisons the handle (what close() says is final).
    /// `share`: the handle gives its value up (a close), so it becomes the node's committed
    /// value, shared with the readers that open next, instead of being kept for more writes.
    pub(super) fn publish(&self, h: &Handle, hs: &mut HandleState, share: bool) -> FsResult<()> {
        hs.check()?;
        if !hs.dirty {
            return Ok(());
        }
        let label = self.label(h.ino);
        let len = hs.buf.as_ref().map_or(0, |b| b.len() as u64);
        // The store copies the value while it writes it: that memory is reserved first (and
        // before the namespace lock, so that a rename never waits behind the budget).
        if let Err(e) = self.budget.reserve_wait(len, h.age, &label) {
            hs.poison(&e);
            return Err(e);
        }
        let result = self.publish_reserved(h, hs, share);
        self.budget.release(len);
        if let Err(e) = &result {
            hs.poison(e);
        }
        result
    }

    fn publish_reserved(&self, h: &Handle, hs: &mut HandleState, share: bool) -> FsResult<()> {
        let _ns = self.ns.read();
        let _gate = h.node.gate.write();
        let Some(name) = self.name_of(h.ino) else {
            log::debug!(
                "inode {}: discarding writes to a file unlinked while open",
                h.ino
            );
            hs.dirty = false;
            return Ok(());
        };
        if let Some(base) = hs.append_base {
            self.rebase_appends(h, hs, base)?;
        }
        let Name::Chunk(key) = name::classify(&name) else {
            // A scratch file: its committed value is the buffer, in the daemon.
            let value = Arc::new(hs.buf.take().expect("a dirty handle has a new value"));
            let mut st = h.node.state.lock();
            st.advance(Some(value.clone()));
            if !st.mtime_explicit || hs.mtime.is_some() {
                st.mtime = Some(hs.mtime.unwrap_or_else(SystemTime::now));
                st.mtime_explicit = hs.mtime.is_some();
            }
            hs.view = View::Pinned(value);
            hs.dirty = false;
            return Ok(());
        };
        self.keep_for_readers(&h.node, &key, h.age);
        let buf = hs.buf.as_mut().expect("a dirty handle has a new value");
        let len = buf.len() as u64;
        let (bytes, result) = self.committer.commit(key.clone(), buf.take_bytes());
        buf.put_bytes(bytes);
        // Even a failed commit may have reached the store: nothing cached of it stays.
        self.readahead.invalidate(&key);
        self.attrs.forget(&key);
        let pending_mtime = {
            let mut st = h.node.state.lock();
            // A store others may change keeps no committed value on the node: the next open
            // reads the store (close-to-open).
            if result.is_ok() && share && !self.ranged() {
                let value = hs.buf.take().expect("a dirty handle has a new value");
                st.advance(Some(Arc::new(value)));
            } else {
                st.advance(None);
            }
            if result.is_ok() {
                st.new_chunk = false;
            }
            let pending = st.mtime_explicit.then_some(st.mtime).flatten();
            if result.is_ok() {
                st.mtime = None;
                st.mtime_explicit = false;
            }
            pending
        };
        self.invalidate_kernel(h.ino);
        result.map_err(|e| {
            let unknown = e.outcome_unknown();
            let e = FsError::store("commit", name.to_string_lossy(), e);
            if unknown {
                log::error!("{e}");
            } else {
                log::error!("{e}: the chunk keeps its previous value");
            }
            e.logged()
        })?;
        hs.dirty = false;
        if h.append {
            // Later appends through this handle go after what it committed (a truncation it
            // made is committed now).
            hs.append_base = hs.buf.as_ref().map(|b| b.len());
        }
        self.attrs.set_size(&key, len);
        match hs.mtime.take().or(pending_mtime) {
            Some(t) => {
                self.store
                    .set_mtime(&key, t)
                    .map_err(|e| FsError::store("set mtime", name.to_string_lossy(), e))?;
                self.attrs.set_mtime(&key, t);
            }
            None => self.attrs.forget_mtime(&key),
        }
        Ok(())
    }

    /// Before the committed value of `key` changes: loads it for the ranged readers still on it
    /// (they keep reading the version they began with). The caller holds the node's gate
    /// exclusively. Failing that, their reads fail with EIO (never a mix of versions).
    pub(super) fn keep_for_readers(&self, node: &Node, key: &[u8], age: u64) {
        {
            let st = node.state.lock();
            if !st.must_keep_current(!self.ranged() || st.is_local(false)) {
                return;
            }
        }
        match self.fetch(key, age) {
            Ok(v) => {
                let (v, version) = v.unwrap_or_else(|| (Value::empty(&self.budget), None));
                let mut st = node.state.lock();
                st.value = Some(Arc::new(v));
                st.value_version = version;
            }
            Err(e) => log::warn!("keeping {} for its open readers: {e}", hex::encode(key)),
        }
    }

    /// flush (every close() of a descriptor, by process `pid`): publishes, so that close()
    /// reports a failed commit. Only the process that opened the file publishes this way: a
    /// child that inherited the descriptor flushes it when it exits or execs (close-on-exec),
    /// which would otherwise commit another thread's half-written file. Its writes, if any, are
    /// published by the opener's close or at release.
    pub fn flush(&self, fh: u64, pid: u32) -> FsResult<()> {
        let h = self.handle(fh)?;
        if pid != h.pid {
            log::debug!(
                "flush of {} by pid {pid}, opened by pid {}: left to the opener or release",
                self.label(h.ino),
                h.pid
            );
            return Ok(());
        }
        let mut hs = h.st.lock();
        if h.write {
            self.publish(&h, &mut hs, true)?;
        }
        self.forget_view(&h, &mut hs);
        Ok(())
    }

    /// After a close by the opener: the handle lets go of what it holds (its view, a clean
    /// buffer). A descriptor that is still open on it (a dup, an mmap: the kernel may keep
    /// such handles long after the close, as with fsx) reads the committed value of then, and
    /// no closed handle pins memory.
    fn forget_view(&self, h: &Handle, hs: &mut HandleState) {
        if hs.dirty {
            return;
        }
        hs.buf = None;
        if let View::Ranged { version, .. } = std::mem::take(&mut hs.view) {
            h.node.state.lock().remove_ranged(version);
        }
    }

    /// fsync: publish (whoever asks), then make it durable.
    pub fn fsync(&self, fh: u64) -> FsResult<()> {
        let h = self.handle(fh)?;
        if h.write {
            let mut hs = h.st.lock();
            self.publish(&h, &mut hs, false)?;
        }
        self.store
            .sync()
            .map_err(|e| FsError::store("sync", self.store.backend(), e))
    }

    /// release (the last close of an open file): publishes what is still dirty (writes that
    /// came after the last flush, such as mmap write-back), then forgets the handle.
    pub fn release(&self, fh: u64) -> FsResult<()> {
        let Some(h) = self.tables().handles.remove(&fh) else {
            return Err(FsError::new(
                libc::EBADF,
                format!("release: no handle {fh}"),
            ));
        };
        let result = {
            let mut hs = h.st.lock();
            let dirty = hs.dirty && hs.poisoned.is_none();
            let result = if dirty {
                self.publish(&h, &mut hs, true)
            } else {
                Ok(())
            };
            if let View::Ranged { version, .. } = hs.view {
                h.node.state.lock().remove_ranged(version);
            }
            hs.view = View::Unset;
            hs.buf = None;
            result
        };
        if let Err(e) = &result {
            log::error!("release: {e}; the writes to this file are lost");
        }
        {
            let mut st = h.node.state.lock();
            if h.write {
                st.writers = st.writers.saturating_sub(1);
            } else {
                st.readers.close(h.io);
            }
        }
        let ino = h.ino;
        drop(h);
        self.release_node(ino);
        result.map_err(FsError::logged)
    }
}
