//! Opening files: the handle, what a reader reads (a version held or read by range), and
//! whether it reads through the page cache (`cache.rs`).

use std::ffi::OsStr;
use std::sync::Arc;

use parking_lot::Mutex;

use super::error::{FsError, FsResult};
use super::handle::{Handle, HandleState, NewValue, OpenMode, View};
use super::name::{self, Name};
use super::node::Node;
use super::readers::{Conflict, Io, Stamp};
use super::value::Value;
use super::{ChunkFs, ROOT_INO};

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
        mode: OpenMode,
        pid: u32,
        buf: Option<Value>,
        read: Option<(Stamp, u64)>,
    ) -> Result<(u64, Io), Conflict> {
        let fh = self.new_fh();
        let write = mode.write;
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
            Io::Cached { .. } => {
                let keep = self.pages_current(ino, read.and_then(|(s, _)| s.store));
                self.requests.count_cached_open(keep);
                Io::Cached { keep }
            }
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
            append: mode.append,
            st: Mutex::new(HandleState::opened(buf.map(|value| NewValue {
                // A file created by an O_APPEND open: its bytes are appended to whatever
                // another appender committed first. O_TRUNC replaces the value.
                append_base: (mode.append && !mode.truncate).then_some(0),
                ..NewValue::replacing(value)
            }))),
        };
        self.tables().handles.insert(fh, Arc::new(handle));
        Ok((fh, io))
    }

    /// Opens an inode that has a node or a chunk (`flags` are open(2) flags).
    pub(super) fn open_ino(
        &self,
        ino: u64,
        name: &OsStr,
        mode: OpenMode,
        pid: u32,
    ) -> FsResult<(u64, Io)> {
        self.open_ino_once(ino, name, mode, pid, true)
    }

    /// `open_ino`; with `retry`, an open that conflicts with cached readers waits briefly for
    /// their pending releases and tries once more before it moves the name.
    pub(super) fn open_ino_once(
        &self,
        ino: u64,
        name: &OsStr,
        mode: OpenMode,
        pid: u32,
        retry: bool,
    ) -> FsResult<(u64, Io)> {
        let write = mode.write;
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
        let truncate = mode.truncate;
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
        // An open registers with the namespace lock held, after checking that the name still
        // leads here: the name may have moved off this inode since the kernel looked it up
        // (another open moved it off cached readers, or a rename or an unlink took it). A writer
        // registered there would write to a file no name reaches, whose close drops its bytes;
        // a reader, to a node that holds no value for it (its cached readers read the kernel's
        // pages), would read nothing. ESTALE sends the kernel to the name's inode now.
        // (`supersede`, renames and unlinks move names under the lock held exclusively.)
        let ns = self.ns.read();
        if self.tables().inodes.ino_of(name) != Some(ino) {
            drop(ns);
            if let View::Ranged { version, .. } = view {
                node.state.lock().remove_ranged(version);
            }
            drop(node);
            self.release_node(ino);
            return Err(FsError::new(
                libc::ESTALE,
                format!("open of {name:?}: inode {ino} lost the name"),
            ));
        }
        let held = node.clone();
        let gate = held.gate.read();
        let read = match (&class, write) {
            (Name::Chunk(key), false) if self.cfg.cached_reads && !self.writers_due.due(name) => {
                self.read_stamp(&node, key, name, seen)
            }
            _ => None,
        };
        let added = self.add_handle(ino, node, mode, pid, buf, read);
        drop(gate);
        drop(ns);
        let (fh, io) = match added {
            Ok(added) => added,
            Err(Conflict) => {
                if let View::Ranged { version, .. } = view {
                    held.state.lock().remove_ranged(version);
                }
                if retry && self.cached_readers_left(&held) {
                    return self.open_ino_once(ino, name, mode, pid, false);
                }
                drop(held);
                return Err(self.supersede(ino, name, "open", write));
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
    pub(super) fn read_stamp(
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
    pub(super) fn open_view(
        &self,
        node: &Node,
        key: &[u8],
    ) -> FsResult<(View, Option<(Stamp, u64)>)> {
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
    pub(super) fn check_stored_size(&self, node: &Node, key: &[u8], name: &OsStr) -> FsResult<()> {
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
    pub(super) fn check_within_maximum(&self, op: &str, key: &[u8], size: u64) -> FsResult<()> {
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
    pub(super) fn load_prefetched(&self, node: &Node, key: &[u8]) {
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
        self.open_ino(ino, &name, OpenMode::of(flags), pid)
    }
}
