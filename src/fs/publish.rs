//! Publishing: flush, fsync and release commit a writer's value whole.
//!
//! The rule: after close() returns 0 the chunk holds exactly what was written through that
//! handle; if anything failed, close() says so and the chunk holds what it held before; nothing
//! half-written reaches the store or another reader. So each handle opened for writing builds
//! its own new value (read-modify-write of the committed value on its first write, unless it was
//! opened with O_TRUNC), and flush/fsync/release publish it whole as one SetChunk. A handle whose
//! write, fetch or commit failed is poisoned: it fails from then on and commits nothing.

use std::sync::Arc;
use std::time::SystemTime;

use super::error::{FsError, FsResult};
use super::handle::{process_of, Handle, HandleState, View};
use super::name::{self, Name};
use super::node::Node;
use super::node::Residence;
use super::value::Value;
use super::ChunkFs;

/// A value at least this big that its handle gives up (a close) is not kept on the node once
/// committed: the store takes it (and may free it as soon as it holds its copy), and the next
/// open reads it from the store. Smaller ones stay for the next readers, whose opens then need
/// no store read.
const GIVE_UP_AT: u64 = 4 << 20;

impl ChunkFs {
    /// Publishes the handle's new value if it has one not committed yet: one SetChunk, ordered
    /// with renames and unlinks. A failure poisons the handle (what close() says is final).
    /// `share`: the handle gives its value up (a close), so it becomes the node's committed
    /// value, shared with the readers that open next, instead of being kept for more writes.
    pub(super) fn publish(&self, h: &Handle, hs: &mut HandleState, share: bool) -> FsResult<()> {
        hs.check()?;
        let Some(new) = hs.new_value().filter(|new| new.dirty) else {
            return Ok(());
        };
        let len = new.value.len() as u64;
        let label = self.label(h.ino);
        // A big value the handle gives up goes to the store without coming back (see
        // `publish_reserved`).
        let give_up = share && len >= GIVE_UP_AT;
        // The store's copies of the value while it writes it: that memory is reserved first
        // (and before the namespace lock, so that a rename never waits behind the budget).
        // (A scratch file's value stays in the daemon: one copy, as its rename onto a chunk
        // name makes.)
        let scratch = self.is_scratch(h.ino);
        let cost = if scratch {
            len
        } else {
            self.store.write_cost(len, give_up)
        };
        if let Err(e) = self.budget.reserve_wait(cost, h.age, &label) {
            hs.poison(&e);
            return Err(e);
        }
        // The handle's own share of the budget, for a value it gave up: the store freed the
        // bytes, but holds copies of its own until they are written out (see `write_out`).
        let mut taken = 0;
        let result = self.publish_reserved(h, hs, share, give_up, &mut taken);
        let held = cost + taken;
        if result.is_ok() && !scratch && self.store.holds_after_write(len) {
            self.write_outs.start(&self.store, &self.budget, held);
        } else {
            self.budget.release(held);
        }
        if let Err(e) = &result {
            hs.poison(e);
        }
        result
    }

    pub(super) fn publish_reserved(
        &self,
        h: &Handle,
        hs: &mut HandleState,
        share: bool,
        give_up: bool,
        taken: &mut u64,
    ) -> FsResult<()> {
        let _ns = self.ns.read();
        let _gate = h.node.gate.write();
        let Some(name) = self.name_of(h.ino) else {
            log::debug!(
                "inode {}: discarding writes to a file unlinked while open",
                h.ino
            );
            if let Some(new) = hs.new_value_mut() {
                new.dirty = false;
            }
            return Ok(());
        };
        let new = hs.new_value_mut().expect("a dirty handle has a new value");
        if let Some(base) = new.append_base {
            self.rebase_appends(h, new, base)?;
        }
        let Name::Chunk(key) = name::classify(&name) else {
            // A scratch file: its committed value is the handle's, in the daemon.
            let new = hs.take_new_value().expect("a dirty handle has a new value");
            let value = Arc::new(new.value);
            let mut st = h.node.state.lock();
            st.advance(Some(value.clone()));
            if !st.mtime_explicit || new.mtime.is_some() {
                st.mtime = Some(new.mtime.unwrap_or_else(SystemTime::now));
                st.mtime_explicit = new.mtime.is_some();
            }
            hs.view = View::Pinned(value);
            // The kernel may hold the attributes a create answered (see `create`).
            self.invalidate_kernel_attrs(h.ino);
            return Ok(());
        };
        self.keep_for_ranged_readers(&h.node, &key, h.age);
        // Stored after the commit; a failed commit poisons the handle, which then has no use
        // for it.
        let own_mtime = new.mtime.take();
        let len = new.value.len() as u64;
        // A big value the handle gives up goes to the store without coming back: it is not
        // kept on the node for the next readers (they read the store), and the store may free
        // it once it holds its own copy.
        let result = if give_up {
            self.committer
                .commit_owned(key.clone(), new.value.take_bytes())
        } else {
            let (bytes, result) = self.committer.commit(key.clone(), new.value.take_bytes());
            new.value.put_bytes(bytes);
            result
        };
        // Even a failed commit may have reached the store: nothing cached of it stays.
        self.readahead.invalidate(&key);
        self.attrs.forget(&key);
        let pending_mtime = {
            let mut st = h.node.state.lock();
            // A store others may change keeps no committed value on the node: the next open
            // reads the store (close-to-open).
            if result.is_ok() && share && !self.ranged() && !give_up {
                let new = hs.take_new_value().expect("a dirty handle has a new value");
                st.advance(Some(Arc::new(new.value)));
            } else {
                if give_up {
                    *taken = hs
                        .take_new_value()
                        .map_or(0, |new| new.value.into_reservation());
                }
                st.advance(None);
            }
            if result.is_ok() && st.residence == Residence::New {
                st.residence = Residence::Stored;
            }
            let pending = st.mtime_explicit.then_some(st.mtime).flatten();
            if result.is_ok() {
                st.mtime = None;
                st.mtime_explicit = false;
            }
            pending
        };
        // The attributes at once, before close() returns (a create's may be cached: see
        // `create`); the pages from the invalidation thread.
        self.invalidate_kernel_attrs(h.ino);
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
        if let Some(new) = hs.new_value_mut() {
            new.dirty = false;
            if h.append {
                // Later appends through this handle go after what it committed (a truncation
                // it made is committed now).
                new.append_base = Some(new.value.len());
            }
        }
        self.attrs.set_size(&key, len);
        match own_mtime.or(pending_mtime) {
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
    pub(super) fn keep_for_ranged_readers(&self, node: &Node, key: &[u8], age: u64) {
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

    /// flush (every close() of a descriptor, by thread `tid`): publishes, so that close()
    /// reports a failed commit. Only the opener (the process that opened the file for writing,
    /// the thread that opened it read-only) publishes this way: a child that inherited the
    /// descriptor flushes it when it exits or execs (close-on-exec), which would otherwise
    /// commit another thread's half-written file. Its writes, if any, are published by the
    /// opener's close or at release. The thread is mapped to its process (a read of /proc) only
    /// when it is not the opener itself.
    pub fn flush(&self, fh: u64, tid: u32) -> FsResult<()> {
        let h = self.handle(fh)?;
        let pid = if tid == h.pid { tid } else { process_of(tid) };
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
            let published = self.publish(&h, &mut hs, true);
            // A created file this close leaves uncommitted (a refused fallocate left nothing
            // to store, a poisoned handle) is gone at release: the kernel may hold the
            // attributes its create answered (only a write, even a failed one, drops them),
            // and must ask again once close() returns.
            if h.node.state.lock().residence == Residence::New {
                self.invalidate_kernel_attrs(h.ino);
            }
            published?;
        }
        self.forget_view(&h, &mut hs);
        Ok(())
    }

    /// After a close by the opener: the handle lets go of what it holds (its view, a clean
    /// buffer). A descriptor that is still open on it (a dup, an mmap: the kernel may keep
    /// such handles long after the close, as with fsx) reads the committed value of then, and
    /// no closed handle pins memory.
    pub(super) fn forget_view(&self, h: &Handle, hs: &mut HandleState) {
        if hs.is_dirty() {
            return;
        }
        hs.take_new_value();
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
            let result = if hs.is_dirty() {
                self.publish(&h, &mut hs, true)
            } else {
                Ok(())
            };
            if let View::Ranged { version, .. } = hs.view {
                h.node.state.lock().remove_ranged(version);
            }
            hs.view = View::Unset;
            hs.take_new_value();
            result
        };
        if let Err(e) = &result {
            log::error!("release: {e}; the writes to this file are lost");
        }
        let never_stored = {
            let mut st = h.node.state.lock();
            if h.write {
                st.writers = st.writers.saturating_sub(1);
            } else {
                st.readers.close(h.io);
            }
            h.write && st.residence == Residence::New
        };
        let ino = h.ino;
        drop(h);
        self.release_node(ino);
        if never_stored {
            // A created file that goes without a commit (a refused fallocate, a failed write)
            // is gone with its last handle: the kernel may hold the attributes its create
            // answered, and must ask again (then it finds the name gone).
            self.invalidate_kernel_attrs(ino);
        }
        result.map_err(FsError::logged)
    }
}
