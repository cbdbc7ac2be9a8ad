//! An in-process store: a sorted map behind a lock. For unit tests and trials; it never stands in
//! for LevelDB or Ceph in their suites.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use std::time::SystemTime;

use super::{
    check_chunk, clamp_range, Capabilities, ChunkInfo, ChunkList, Cloudstore, RawChunk, Result,
    StoreError, Version, VersionedRange,
};

const BACKEND: &str = "memory";

#[derive(Default)]
struct Entry {
    value: Vec<u8>,
    mtime: Option<SystemTime>,
    /// Unique in the store: every set (and rename onto the key) gives a new one.
    version: Version,
}

/// The in-memory backend.
pub struct MemoryStore {
    map: Arc<RwLock<BTreeMap<Vec<u8>, Entry>>>,
    versions: Arc<AtomicU64>,
    /// Records beside the keyspace (`Cloudstore::side_get`).
    side: Arc<RwLock<BTreeMap<String, Vec<u8>>>>,
    max_chunk_size: u64,
    closed: AtomicBool,
}

impl MemoryStore {
    /// An empty store that refuses values over `max_chunk_size` bytes.
    pub fn new(max_chunk_size: u64) -> Self {
        MemoryStore {
            map: Arc::default(),
            versions: Arc::new(AtomicU64::new(1)),
            side: Arc::default(),
            max_chunk_size,
            closed: AtomicBool::new(false),
        }
    }

    /// A new handle on the same data, as if the store were opened again after `close`.
    pub fn reopen(&self) -> MemoryStore {
        MemoryStore {
            map: Arc::clone(&self.map),
            versions: Arc::clone(&self.versions),
            side: Arc::clone(&self.side),
            max_chunk_size: self.max_chunk_size,
            closed: AtomicBool::new(false),
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed { backend: BACKEND });
        }
        Ok(())
    }

    fn check_value(&self, key: &[u8], value: &[u8]) -> Result<()> {
        check_chunk(BACKEND, key, value, self.max_chunk_size)
    }

    fn next_version(&self) -> Version {
        self.versions.fetch_add(1, Ordering::Relaxed)
    }
}

impl Cloudstore for MemoryStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            versioned_ranges: true,
            ..Capabilities::default()
        }
    }

    fn read_version(
        &self,
        key: &[u8],
        start: u64,
        end: u64,
        expect: Option<Version>,
    ) -> Result<Option<VersionedRange>> {
        self.check_open()?;
        clamp_range(key, start, end, u64::MAX)?;
        let map = self.map.read();
        let entry = match (map.get(key), expect) {
            (Some(e), Some(v)) if e.version != v => None,
            (found, _) => found,
        };
        let Some(entry) = entry else {
            return match expect {
                Some(_) => Err(StoreError::Changed {
                    backend: BACKEND,
                    key: hex::encode(key),
                }),
                None => Ok(None),
            };
        };
        let (s, e) = clamp_range(key, start, end, entry.value.len() as u64)?;
        Ok(Some(VersionedRange {
            bytes: entry.value[s..e].to_vec(),
            size: entry.value.len() as u64,
            version: entry.version,
        }))
    }

    fn get_chunk(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        Ok(self.map.read().get(key).map(|e| e.value.clone()))
    }

    fn get_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()> {
        self.check_open()?;
        let map = self.map.read();
        for chunk in chunks {
            let found = map.get(&chunk.key);
            chunk.ok = found.is_some();
            chunk.value = found.map(|e| e.value.clone()).unwrap_or_default();
            chunk.error = None;
        }
        Ok(())
    }

    fn get_chunk_with_range(&self, key: &[u8], start: u64, end: u64) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        let map = self.map.read();
        let Some(entry) = map.get(key) else {
            // The range is still checked so that a bad range is an error whether or not the key exists.
            clamp_range(key, start, end, 0)?;
            return Ok(None);
        };
        let (s, e) = clamp_range(key, start, end, entry.value.len() as u64)?;
        Ok(Some(entry.value[s..e].to_vec()))
    }

    fn set_chunk(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_open()?;
        self.check_value(key, value)?;
        let entry = Entry {
            value: value.to_vec(),
            mtime: Some(SystemTime::now()),
            version: self.next_version(),
        };
        self.map.write().insert(key.to_vec(), entry);
        Ok(())
    }

    fn set_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()> {
        self.check_open()?;
        let mut map = self.map.write();
        let now = SystemTime::now();
        for chunk in chunks {
            chunk.error = self.check_value(&chunk.key, &chunk.value).err();
            chunk.ok = chunk.error.is_none();
            if chunk.ok {
                let entry = Entry {
                    value: chunk.value.clone(),
                    mtime: Some(now),
                    version: self.next_version(),
                };
                map.insert(chunk.key.clone(), entry);
            }
        }
        Ok(())
    }

    fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        Ok(())
    }

    fn stat(&self, key: &[u8]) -> Result<Option<u64>> {
        self.check_open()?;
        Ok(self.map.read().get(key).map(|e| e.value.len() as u64))
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        self.check_open()?;
        Ok(self.map.write().remove(key).is_some())
    }

    fn list(&self, after: Option<&[u8]>) -> Result<ChunkList> {
        self.check_open()?;
        // A snapshot: simple, and the memory store is small by nature.
        let map = self.map.read();
        let lower = match after {
            Some(k) => Bound::Excluded(k.to_vec()),
            None => Bound::Unbounded,
        };
        let items: Vec<_> = map
            .range((lower, Bound::Unbounded))
            .map(|(k, e)| {
                Ok(ChunkInfo {
                    key: k.clone(),
                    size: e.value.len() as u64,
                    mtime: e.mtime,
                })
            })
            .collect();
        Ok(Box::new(items.into_iter()))
    }

    fn sync(&self) -> Result<()> {
        self.check_open()
    }

    fn rename(&self, from: &[u8], to: &[u8]) -> Result<bool> {
        self.check_open()?;
        let mut map = self.map.write();
        let Some(mut entry) = map.remove(from) else {
            return Ok(false);
        };
        entry.version = self.next_version();
        map.insert(to.to_vec(), entry);
        Ok(true)
    }

    fn mtime(&self, key: &[u8]) -> Result<Option<SystemTime>> {
        self.check_open()?;
        Ok(self.map.read().get(key).and_then(|e| e.mtime))
    }

    fn set_mtime(&self, key: &[u8], mtime: SystemTime) -> Result<()> {
        self.check_open()?;
        if let Some(e) = self.map.write().get_mut(key) {
            e.mtime = Some(mtime);
        }
        Ok(())
    }

    fn side_get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        Ok(self.side.read().get(name).cloned())
    }

    fn side_put(&self, name: &str, value: &[u8]) -> Result<()> {
        self.check_open()?;
        let mut side = self.side.write();
        if value.is_empty() {
            side.remove(name);
        } else {
            side.insert(name.to_owned(), value.to_vec());
        }
        Ok(())
    }
}
