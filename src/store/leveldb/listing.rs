//! Listings: one iterator over a snapshot, resumable from a cursor; and the reads the live
//! store and a snapshot view share.

use std::sync::Arc;

use super::db::Iter;
use super::index::Entry;

use super::ldb_err;
use crate::store::{clamp_range, ChunkInfo, RawChunk, Result};

/// Where values are read from: the live databases, or a snapshot of them.
pub(super) trait ReadValue: Send + Sync {
    /// The value of `key`, if there is one.
    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
}

/// GetChunkBatch over `src`: each chunk's value, or its own error.
pub(super) fn read_batch(src: &impl ReadValue, chunks: &mut [RawChunk]) {
    for chunk in chunks.iter_mut() {
        match src.read(&chunk.key) {
            Ok(v) => {
                chunk.ok = v.is_some();
                chunk.value = v.unwrap_or_default();
                chunk.error = None;
            }
            Err(e) => {
                chunk.ok = false;
                chunk.value.clear();
                chunk.error = Some(e);
            }
        }
    }
}

/// GetChunkWithRange over `src`: LevelDB has no partial read, so the whole value, then the
/// range of it.
pub(super) fn read_range(
    src: &impl ReadValue,
    key: &[u8],
    start: u64,
    end: u64,
) -> Result<Option<Vec<u8>>> {
    clamp_range(key, start, end, u64::MAX)?;
    let Some(mut value) = src.read(key)? else {
        return Ok(None);
    };
    let (s, e) = clamp_range(key, start, end, value.len() as u64)?;
    value.truncate(e);
    value.drain(..s);
    Ok(Some(value))
}

/// A listing: one iterator over a snapshot (of the index, or of the data when the index is not
/// trusted), owned, so it can live in a directory handle; `list(Some(cursor))` resumes. Values
/// without a size in the index are measured by reading them from `src`.
pub(super) struct Listing<R> {
    pub(super) it: Iter,
    pub(super) from_index: bool,
    pub(super) skip: Option<Vec<u8>>,
    pub(super) src: Arc<R>,
    pub(super) done: bool,
}

impl<R: ReadValue> Iterator for Listing<R> {
    type Item = Result<ChunkInfo>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            if !self.it.valid() {
                self.done = true;
                return self.it.status().err().map(|e| Err(ldb_err("list", b"", e)));
            }
            let key = self.it.key().to_vec();
            let size = if self.from_index {
                Entry::decode(self.it.value()).size
            } else {
                Some(self.it.value().len() as u64)
            };
            self.it.next();
            if self.skip.as_deref() == Some(&key[..]) {
                continue;
            }
            let size = match size {
                Some(s) => s,
                // An entry without a size (the index always has them after open): measure.
                None => match self.src.read(&key) {
                    Ok(Some(v)) => v.len() as u64,
                    Ok(None) => continue,
                    Err(e) => return Some(Err(e)),
                },
            };
            return Some(Ok(ChunkInfo {
                key,
                size,
                mtime: None,
            }));
        }
        None
    }
}
