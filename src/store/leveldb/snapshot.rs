//! A point-in-time, read-only view of the LevelDB store (`cloudstore-fs snapshot`): one LevelDB
//! snapshot of the data database and one of the index, taken together.
//!
//! Both are taken while every key's stripe lock is held: every change writes its data and then
//! its index entry under that lock, so no change is half in the pair (new data with an old size,
//! or the reverse). A LevelDB snapshot is a sequence number: reads at it see every write before
//! it and none after. It costs nothing to take; while it is held, compaction keeps every
//! version that it can see, so the space of values overwritten or deleted since is not given
//! back until the view is closed (measured in `tests/metrics_snapshot.rs`, see SEMANTICS.md).
//!
//! Side records (scratch files, the directory's mtime) are files outside LevelDB and are not
//! part of the view: a snapshot holds chunks only.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use super::db::{Db, Snapshot};
use super::index::Entry;
use super::listing::{read_batch, read_range, Listing, ReadValue};
use super::{ldb_err, BACKEND};
use crate::store::{read_only_view, ChunkList, Cloudstore, RawChunk, Result, StoreError};

/// The two snapshots, held until the view is closed.
struct Held {
    data: Arc<Snapshot>,
    data_db: Arc<Db>,
    meta: Arc<Snapshot>,
    meta_db: Arc<Db>,
    /// The index was exact when the snapshot was taken: sizes and listings come from it.
    index_ok: bool,
}

/// The read-only view; see the module comment.
pub struct LevelDbSnapshot {
    held: RwLock<Option<Arc<Held>>>,
    dir: PathBuf,
}

impl LevelDbSnapshot {
    /// Takes a snapshot of both databases of `dbs` at once.
    pub(super) fn take(dbs: &super::Dbs, dir: &Path) -> LevelDbSnapshot {
        // Every stripe: no change is between its data write and its index write.
        let _stripes: Vec<_> = dbs
            .stripes
            .iter()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        let held = Held {
            data: Arc::new(dbs.data.snapshot()),
            data_db: dbs.data.clone(),
            meta: Arc::new(dbs.meta.snapshot()),
            meta_db: dbs.meta.clone(),
            index_ok: dbs.index_ok(),
        };
        log::info!("{BACKEND}: took a snapshot of {}", dir.display());
        LevelDbSnapshot {
            held: RwLock::new(Some(Arc::new(held))),
            dir: dir.to_path_buf(),
        }
    }

    fn held(&self) -> Result<Arc<Held>> {
        self.held
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(StoreError::Closed { backend: BACKEND })
    }
}

impl ReadValue for Held {
    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.data_db
            .get_at(&self.data, key)
            .map_err(|e| ldb_err("get (snapshot)", key, e))
    }
}

impl Held {
    fn entry(&self, key: &[u8]) -> Result<Option<Entry>> {
        if !self.index_ok {
            return Ok(None);
        }
        Ok(self
            .meta_db
            .get_at(&self.meta, key)
            .map_err(|e| ldb_err("get index entry (snapshot)", key, e))?
            .map(|b| Entry::decode(&b)))
    }
}

impl Cloudstore for LevelDbSnapshot {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn get_chunk(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.held()?.read(key)
    }

    fn get_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()> {
        read_batch(&*self.held()?, chunks);
        Ok(())
    }

    fn get_chunk_with_range(&self, key: &[u8], start: u64, end: u64) -> Result<Option<Vec<u8>>> {
        read_range(&*self.held()?, key, start, end)
    }

    fn set_chunk(&self, key: &[u8], _value: &[u8]) -> Result<()> {
        Err(read_only_view(BACKEND, "put", key))
    }

    fn set_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()> {
        let key = chunks.first().map(|c| c.key.clone()).unwrap_or_default();
        Err(read_only_view(BACKEND, "write batch", &key))
    }

    /// Lets go of both snapshots: LevelDB may drop the old versions at its next compactions.
    fn close(&self) -> Result<()> {
        let held = self.held.write().unwrap_or_else(|p| p.into_inner()).take();
        if held.is_some() {
            log::info!("{BACKEND}: released a snapshot of {}", self.dir.display());
        }
        Ok(())
    }

    fn stat(&self, key: &[u8]) -> Result<Option<u64>> {
        let held = self.held()?;
        if let Some(size) = held.entry(key)?.and_then(|e| e.size) {
            return Ok(Some(size));
        }
        Ok(held.read(key)?.map(|v| v.len() as u64))
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        Err(read_only_view(BACKEND, "delete", key))
    }

    fn list(&self, after: Option<&[u8]>) -> Result<ChunkList> {
        let held = self.held()?;
        let (db, snap) = if held.index_ok {
            (&held.meta_db, &held.meta)
        } else {
            (&held.data_db, &held.data)
        };
        let mut it = db.iter_shared(snap.clone(), false);
        match after {
            Some(k) => it.seek(k),
            None => it.seek_to_first(),
        }
        Ok(Box::new(Listing {
            it,
            from_index: held.index_ok,
            skip: after.map(<[u8]>::to_vec),
            src: held,
            done: false,
        }))
    }

    fn sync(&self) -> Result<()> {
        self.held().map(drop)
    }

    fn rename(&self, from: &[u8], _to: &[u8]) -> Result<bool> {
        Err(read_only_view(BACKEND, "rename", from))
    }

    fn mtime(&self, key: &[u8]) -> Result<Option<SystemTime>> {
        Ok(self.held()?.entry(key)?.and_then(|e| e.mtime()))
    }

    fn set_mtime(&self, key: &[u8], _mtime: SystemTime) -> Result<()> {
        Err(read_only_view(BACKEND, "set mtime", key))
    }
}

impl Drop for LevelDbSnapshot {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::store::leveldb::LevelDbStore;

    /// The promise this view rests on, probed on the real LevelDB: reads at a snapshot return
    /// the bytes of before an overwrite and a delete, and nothing written after it, also once
    /// the memtable has been written out and compacted.
    #[test]
    fn a_leveldb_snapshot_keeps_old_bytes_after_overwrite_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let store = LevelDbStore::open(&config).unwrap();
        store.set_chunk(b"\xaa", b"old a").unwrap();
        store.set_chunk(b"\xbb", b"old b").unwrap();
        assert!(store.capabilities().snapshots);
        let snap = store.snapshot().unwrap();
        store.set_chunk(b"\xaa", b"new a, longer").unwrap();
        assert!(store.delete(b"\xbb").unwrap());
        store.set_chunk(b"\xcc", b"created later").unwrap();
        // Past the memtable: many overwrites push the old versions into tables.
        let big = vec![7u8; 256 << 10];
        for _ in 0..40 {
            store.set_chunk(b"\xaa", &big).unwrap();
        }
        assert_eq!(snap.get_chunk(b"\xaa").unwrap().unwrap(), b"old a");
        assert_eq!(snap.get_chunk(b"\xbb").unwrap().unwrap(), b"old b");
        assert_eq!(snap.get_chunk(b"\xcc").unwrap(), None);
        assert_eq!(snap.stat(b"\xaa").unwrap(), Some(5));
        let listed: Vec<_> = snap.list(None).unwrap().map(|c| c.unwrap()).collect();
        let keys: Vec<_> = listed.iter().map(|c| c.key.clone()).collect();
        assert_eq!(keys, vec![b"\xaa".to_vec(), b"\xbb".to_vec()]);
        assert_eq!(listed[0].size, 5);
        let e = snap.set_chunk(b"\xaa", b"x").unwrap_err();
        assert_eq!(e.errno(), libc::EROFS, "{e}");
        assert_eq!(snap.delete(b"\xaa").unwrap_err().errno(), libc::EROFS);
        // The live store goes on.
        assert_eq!(store.get_chunk(b"\xaa").unwrap().unwrap(), big);
        assert_eq!(store.get_chunk(b"\xbb").unwrap(), None);
        snap.close().unwrap();
        assert!(matches!(
            snap.get_chunk(b"\xaa"),
            Err(StoreError::Closed { .. })
        ));
        drop(snap);
        store.close().unwrap();
    }
}
