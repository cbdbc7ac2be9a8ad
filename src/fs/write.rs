//! Writing: a handle's own new value, built from the committed one at its first write.

use std::sync::Arc;

use super::error::{FsError, FsResult};
use super::handle::{Handle, HandleState, NewValue, View, Written};
use super::name::Name;
use super::node::Node;
use super::value::Value;
use super::ChunkFs;

impl ChunkFs {
    /// The handle's new value, made on its first write: a copy of the committed value it read
    /// (or of the current one). A failure poisons the handle. The caller checked that it is
    /// not poisoned.
    pub(super) fn buffer<'a>(
        &self,
        h: &Handle,
        hs: &'a mut HandleState,
    ) -> FsResult<&'a mut NewValue> {
        if hs.new_value().is_none() {
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
                Ok(value) => {
                    hs.written = Written::New(NewValue {
                        append_base: h.append.then_some(value.len()),
                        dirty: false,
                        ..NewValue::replacing(value)
                    })
                }
                Err(e) => {
                    hs.poison(&e);
                    return Err(e);
                }
            }
        }
        Ok(hs.new_value_mut().expect("made above"))
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
            let new = self.buffer(&h, &mut hs)?;
            let len = new.value.len() as u64;
            let offset = if h.append { len } else { offset };
            let end = offset.saturating_add(data.len() as u64);
            if end > max {
                log::warn!(
                    "write {label}: {end} bytes would exceed the maximum chunk size of {max} \
                     (EFBIG); nothing of this file is committed"
                );
                return Err(FsError::new(libc::EFBIG, "write: file too large").logged());
            }
            new.value.write(offset as usize, data, max, &label)?;
            new.changed();
            Ok(())
        })();
        match result {
            Ok(()) => Ok(data.len() as u32),
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
    pub(super) fn census(&self) -> String {
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
                bufs += hs.new_value().map_or(0, |n| n.value.reserved());
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

    pub(super) fn label(&self, ino: u64) -> String {
        self.name_of(ino).map_or_else(
            || format!("inode {ino}"),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    pub(super) fn is_scratch(&self, ino: u64) -> bool {
        self.tables().inodes.class_of(ino) == Some(&Name::Scratch)
    }
}
