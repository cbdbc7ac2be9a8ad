//! Reading: a handle's view of the committed value, fetched whole or read by range, one version
//! per handle.

use std::sync::Arc;

use super::error::{FsError, FsResult};
use super::handle::{Handle, View};
use super::node::{Node, RangedView};
use super::value::{ReadData, Value};
use super::ChunkFs;
use crate::store::{SharedBytes, StoreError, Version};

/// A value fetched whole: bytes of the daemon's own, or left in the store's buffer.
enum Fetched {
    Own(Vec<u8>),
    Shared(SharedBytes),
}

impl ChunkFs {
    /// The whole value of `key` from the store, reserved in the budget before it is fetched
    /// (with room for the store's own transient copy), with its store version where the store
    /// has versions. `None`: the chunk does not exist.
    ///
    /// On a ranged store the first read gives the size with the first bytes: a value that fits
    /// it costs that one round trip (no stat first).
    pub(super) fn fetch(&self, key: &[u8], age: u64) -> FsResult<Option<(Value, Option<Version>)>> {
        let label = hex::encode(key);
        let size = if self.ranged() {
            let first = self
                .store
                .read_version(key, 0, self.cfg.open_read.max(1), None)
                .map_err(|e| FsError::store("read", &label, e))?;
            let Some(first) = first else {
                return Ok(None);
            };
            self.check_within_maximum("read", key, first.size)?;
            if first.bytes.len() as u64 == first.size {
                let len = first.bytes.capacity() as u64;
                self.budget.reserve_wait(len, age, &label)?;
                let value = Value::adopt(first.bytes, len, &self.budget, &label)?;
                return Ok(Some((value, Some(first.version))));
            }
            // Longer: read whole below, of one version, once the budget has room for it.
            Some(first.size)
        } else {
            self.store
                .stat(key)
                .map_err(|e| FsError::store("stat", &label, e))?
        };
        let Some(size) = size else {
            return Ok(None);
        };
        self.check_within_maximum("read", key, size)?;
        let reserved = size.saturating_mul(2);
        if let Err(e) = self.budget.reserve_wait(reserved, age, &label) {
            log::warn!("memory held: {}", self.census());
            return Err(e);
        }
        // LevelDB: the value stays in the buffer its C API returned (no copy into a Vec).
        let fetched = if self.ranged() {
            self.store
                .read_version(key, 0, 0, None)
                .map(|r| r.map(|r| (Fetched::Own(r.bytes), Some(r.version))))
        } else {
            self.store
                .get_chunk_bytes(key)
                .map(|v| v.map(|v| (Fetched::Shared(v), None)))
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
                let value = match bytes {
                    Fetched::Own(b) => Value::adopt(b, reserved, &self.budget, &label),
                    Fetched::Shared(b) => Value::adopt_shared(b, reserved, &self.budget, &label),
                };
                value.map(|v| Some((v, version)))
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
    pub(super) fn committed(&self, node: &Node, ino: u64, age: u64) -> FsResult<Arc<Value>> {
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
        if let Some(new) = hs.new_value() {
            return Ok(ReadData::Owned(new.value.slice(offset, size)));
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
    pub(super) fn read_ranged(
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
            // A read of no bytes asks the store nothing: its range end 0 means "to the end".
            Some(key) if !local && size > 0 => key,
            _ => return Ok(ReadData::Owned(Vec::new())),
        };
        let end = offset.saturating_add(size as u64);
        match self.store.read_version(&key, offset, end, Some(store)) {
            Ok(Some(r)) => Ok(ReadData::Owned(r.bytes)),
            Ok(None) | Err(StoreError::Changed { .. }) => Err(changed()),
            Err(e) => Err(FsError::store("read", hex::encode(&key), e)),
        }
    }
}
