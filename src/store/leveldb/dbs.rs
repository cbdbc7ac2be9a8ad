//! The open databases (data and index) and the per-key stripe locks that order the writers of
//! one key.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::db::{Db, WriteBatch};
use super::index::Entry;

use super::ldb_err;
use crate::store::Result;

/// Per-key lock stripes: writers of one key are ordered, different keys run in parallel.
pub(super) const STRIPES: usize = 64;

/// The open databases, shared by the store's calls and its listings.
pub(super) struct Dbs {
    pub(super) data: Arc<Db>,
    pub(super) meta: Arc<Db>,
    pub(super) stripes: Vec<Mutex<()>>,
    /// The index is exact: every data key has an entry with its size, and no other entries.
    pub(super) index_ok: AtomicBool,
    /// Values read from the data database (a hook for tests: stat must not read any).
    pub(super) value_reads: AtomicU64,
}

impl Dbs {
    pub(super) fn stripe(&self, key: &[u8]) -> usize {
        // FNV-1a: cheap, and spreads similar keys.
        let h = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        (h % STRIPES as u64) as usize
    }

    /// Locks the stripes of `keys`, in index order (no deadlock between overlapping callers).
    pub(super) fn lock<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) -> Vec<MutexGuard<'_, ()>> {
        let mut idx: Vec<usize> = keys.into_iter().map(|k| self.stripe(k)).collect();
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter()
            .map(|i| self.stripes[i].lock().unwrap_or_else(|p| p.into_inner()))
            .collect()
    }

    pub(super) fn index_ok(&self) -> bool {
        self.index_ok.load(Ordering::Acquire)
    }

    pub(super) fn entry(&self, key: &[u8]) -> Result<Option<Entry>> {
        Ok(self
            .meta
            .get(key)
            .map_err(|e| ldb_err("get index entry", key, e))?
            .map(|b| Entry::decode(&b)))
    }

    /// Writes index changes (after their data): a failure stops trusting the index.
    pub(super) fn write_index(&self, batch: &WriteBatch, key: &[u8]) -> Result<()> {
        self.meta.write(batch, false).map_err(|e| {
            self.index_ok.store(false, Ordering::Release);
            ldb_err("write index", key, e)
        })
    }

    pub(super) fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.read_value(key)?.map(|v| v.to_vec()))
    }
}

pub(super) fn sync_dbs(d: &Dbs) -> Result<()> {
    let empty = WriteBatch::default();
    d.data
        .write(&empty, true)
        .map_err(|e| ldb_err("sync", b"", e))?;
    d.meta
        .write(&empty, true)
        .map_err(|e| ldb_err("sync index", b"", e))
}

impl Dbs {
    /// As [`Dbs::read`], the value left in LevelDB's own buffer. Uncached: the block cache would
    /// hold a copy of every value read (up to cache_size of RSS); the table's pages stay in the
    /// kernel's page cache instead (issue 14).
    pub(super) fn read_value(&self, key: &[u8]) -> Result<Option<super::db::Value>> {
        self.value_reads.fetch_add(1, Ordering::Relaxed);
        self.data
            .get_uncached_value(key)
            .map_err(|e| ldb_err("get", key, e))
    }
}

impl super::listing::ReadValue for Dbs {
    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Dbs::read(self, key)
    }
}
