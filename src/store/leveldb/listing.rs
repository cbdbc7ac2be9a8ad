//! Listings: one iterator over a snapshot, resumable from a cursor.

use std::sync::Arc;

use super::db::Iter;
use super::index::Entry;

use super::dbs::Dbs;
use super::ldb_err;
use crate::store::{ChunkInfo, Result};

/// A listing: one iterator over a snapshot (of the index, or of the data when the index is not
/// trusted), owned, so it can live in a directory handle; `list(Some(cursor))` resumes.
pub(super) struct Listing {
    pub(super) it: Iter,
    pub(super) from_index: bool,
    pub(super) skip: Option<Vec<u8>>,
    pub(super) dbs: Arc<Dbs>,
    pub(super) done: bool,
}

impl Iterator for Listing {
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
                None => match self.dbs.read(&key) {
                    Ok(Some(v)) => v.len() as u64,
                    Ok(None) => continue,
                    Err(e) => return Some(Err(e)),
                },
            };
            return Some(Ok(ChunkInfo { key, size }));
        }
        None
    }
}
