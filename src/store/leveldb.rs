//! The embedded LevelDB backend (rusty-leveldb): raw key bytes -> raw value bytes, so a database
//! written by the Go implementation opens and reads unchanged.
//!
//! rusty-leveldb's `DB` is not `Sync` and never fsyncs, so:
//! - the database sits behind one mutex, and no iterator outlives the lock (listings page);
//! - every write is flushed to the OS before it is acknowledged (it survives a kill -9);
//! - `sync` makes everything durable with syncfs(2) on the data directory.
//!
//! Modification times live in a second small database inside the data directory
//! (`cloudstore-meta/`), beside the chunk keyspace and never in it; LevelDB ignores foreign names.
//!
//! LevelDB cannot tell a value's size without reading it, so sizes learned from reads, writes and
//! listings are remembered in memory. The cache is always right: the database is locked to this
//! process, and every change to it passes through here under the same mutex.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusty_leveldb::{LdbIterator, Options, Status, StatusCode, WriteBatch, DB};

use super::{
    check_chunk, clamp_range, ChunkInfo, ChunkList, Cloudstore, RawChunk, Result, StoreError,
};
use crate::config::Config;

const BACKEND: &str = "leveldb";
/// The directory, inside the data directory, of the modification-time database.
pub const META_DIR: &str = "cloudstore-meta";
/// Entries per listing page: the lock is held for one page at a time.
const LIST_PAGE: usize = 1024;
/// Sizes remembered at most (about 100 bytes each); the cache starts over when full.
const SIZE_CACHE_ENTRIES: usize = 1 << 20;

struct Dbs {
    data: DB,
    meta: DB,
    sizes: SizeCache,
}

/// Value sizes by key, bounded in entries.
#[derive(Default)]
struct SizeCache(HashMap<Vec<u8>, u64>);

impl SizeCache {
    fn get(&self, key: &[u8]) -> Option<u64> {
        self.0.get(key).copied()
    }

    fn insert(&mut self, key: &[u8], size: u64) {
        if self.0.len() >= SIZE_CACHE_ENTRIES && !self.0.contains_key(key) {
            self.0.clear();
        }
        self.0.insert(key.to_vec(), size);
    }

    fn remove(&mut self, key: &[u8]) {
        self.0.remove(key);
    }
}

/// The LevelDB backend.
pub struct LevelDbStore {
    dbs: Arc<Mutex<Option<Dbs>>>,
    dir: PathBuf,
    max_chunk_size: u64,
}

fn ldb_err(op: &'static str, key: &[u8], status: Status) -> StoreError {
    let errno = match status.code {
        StatusCode::Errno(e) => e.0,
        StatusCode::NotFound => libc::ENOENT,
        StatusCode::InvalidArgument => libc::EINVAL,
        _ => libc::EIO,
    };
    let err = StoreError::backend(BACKEND, op, key, errno, status.to_string());
    log::error!("{err}");
    err
}

fn options(config: &Config, cache_bytes: u64) -> Options {
    Options {
        create_if_missing: true,
        block_cache_capacity_bytes: cache_bytes as usize,
        write_buffer_size: config.write_buffer_size as usize,
        ..Options::default()
    }
}

fn open_db(path: &Path, opts: Options) -> Result<DB> {
    DB::open(path, opts).map_err(|status| {
        if status.code == StatusCode::LockError {
            StoreError::Locked {
                backend: BACKEND,
                dir: path.display().to_string(),
            }
        } else {
            StoreError::Config(format!(
                "{BACKEND}: cannot open database {}: {status}",
                path.display()
            ))
        }
    })
}

fn encode_mtime(t: SystemTime) -> [u8; 12] {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&d.as_secs().to_le_bytes());
    out[8..].copy_from_slice(&d.subsec_nanos().to_le_bytes());
    out
}

fn decode_mtime(b: &[u8]) -> Option<SystemTime> {
    let secs = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
    let nanos = u32::from_le_bytes(b.get(8..12)?.try_into().ok()?);
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos.min(999_999_999)))
}

impl LevelDbStore {
    /// Opens (creating if needed) the database in `config.data_dir`.
    pub fn open(config: &Config) -> Result<Self> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| {
            StoreError::Config(format!(
                "{BACKEND}: cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let data = open_db(&dir, options(config, config.cache_size))?;
        // The meta database holds 12-byte values: a small cache is plenty.
        let meta = open_db(&dir.join(META_DIR), options(config, 1 << 20))?;
        log::info!("{BACKEND}: opened {}", dir.display());
        Ok(LevelDbStore {
            dbs: Arc::new(Mutex::new(Some(Dbs {
                data,
                meta,
                sizes: SizeCache::default(),
            }))),
            dir,
            max_chunk_size: config.max_chunk_size,
        })
    }

    /// Runs `f` on the open databases, or fails with `Closed`.
    fn with<T>(&self, f: impl FnOnce(&mut Dbs) -> Result<T>) -> Result<T> {
        with_dbs(&self.dbs, f)
    }

    fn check_value(&self, key: &[u8], value: &[u8]) -> Result<()> {
        check_chunk(BACKEND, key, value, self.max_chunk_size)
    }
}

fn lock(dbs: &Mutex<Option<Dbs>>) -> MutexGuard<'_, Option<Dbs>> {
    // A panic while holding the lock leaves LevelDB's own state consistent (every write is one
    // log record), so a poisoned lock is still usable.
    dbs.lock().unwrap_or_else(|p| p.into_inner())
}

fn with_dbs<T>(dbs: &Mutex<Option<Dbs>>, f: impl FnOnce(&mut Dbs) -> Result<T>) -> Result<T> {
    match lock(dbs).as_mut() {
        Some(d) => f(d),
        None => Err(StoreError::Closed { backend: BACKEND }),
    }
}

/// Writes a data batch and the matching meta batch, then flushes both to the OS.
fn write_batches(dbs: &mut Dbs, data: WriteBatch, meta: WriteBatch, key: &[u8]) -> Result<()> {
    dbs.data
        .write(data, true)
        .map_err(|s| ldb_err("write", key, s))?;
    dbs.meta
        .write(meta, true)
        .map_err(|s| ldb_err("write mtime", key, s))
}

fn read(dbs: &mut Dbs, key: &[u8]) -> Result<Option<Vec<u8>>> {
    let snapshot = dbs.data.get_snapshot();
    let found = dbs
        .data
        .get_at(&snapshot, key)
        .map_err(|s| ldb_err("get", key, s))?;
    // Vec::from takes the buffer without a copy when it can.
    let value = found.map(Vec::from);
    match &value {
        Some(v) => dbs.sizes.insert(key, v.len() as u64),
        None => dbs.sizes.remove(key),
    }
    Ok(value)
}

impl Cloudstore for LevelDbStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn get_chunk(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.with(|d| read(d, key))
    }

    fn get_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()> {
        self.with(|d| {
            for chunk in chunks.iter_mut() {
                match read(d, &chunk.key) {
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
            Ok(())
        })
    }

    fn get_chunk_with_range(&self, key: &[u8], start: u64, end: u64) -> Result<Option<Vec<u8>>> {
        clamp_range(key, start, end, u64::MAX)?;
        let Some(mut value) = self.get_chunk(key)? else {
            return Ok(None);
        };
        let (s, e) = clamp_range(key, start, end, value.len() as u64)?;
        value.truncate(e);
        value.drain(..s);
        Ok(Some(value))
    }

    fn set_chunk(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_value(key, value)?;
        let mut data = WriteBatch::default();
        data.put(key, value);
        let mut meta = WriteBatch::default();
        meta.put(key, &encode_mtime(SystemTime::now()));
        self.with(|d| {
            d.sizes.remove(key);
            write_batches(d, data, meta, key)?;
            d.sizes.insert(key, value.len() as u64);
            Ok(())
        })
    }

    fn set_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()> {
        let mtime = encode_mtime(SystemTime::now());
        let mut data = WriteBatch::default();
        let mut meta = WriteBatch::default();
        for chunk in chunks.iter_mut() {
            chunk.error = self.check_value(&chunk.key, &chunk.value).err();
            chunk.ok = chunk.error.is_none();
            if chunk.ok {
                data.put(&chunk.key, &chunk.value);
                meta.put(&chunk.key, &mtime);
            }
        }
        if data.count() == 0 {
            return Ok(());
        }
        let first = chunks.first().map(|c| c.key.clone()).unwrap_or_default();
        // One WriteBatch: the valid chunks of the batch land together or not at all.
        let result = self.with(|d| {
            for chunk in chunks.iter().filter(|c| c.ok) {
                d.sizes.remove(&chunk.key);
            }
            write_batches(d, data, meta, &first)?;
            for chunk in chunks.iter().filter(|c| c.ok) {
                d.sizes.insert(&chunk.key, chunk.value.len() as u64);
            }
            Ok(())
        });
        if let Err(e) = &result {
            for chunk in chunks.iter_mut().filter(|c| c.ok) {
                chunk.ok = false;
                chunk.error = Some(e.clone());
            }
        }
        result
    }

    fn close(&self) -> Result<()> {
        let Some(mut dbs) = lock(&self.dbs).take() else {
            return Ok(());
        };
        dbs.data.close().map_err(|s| ldb_err("close", b"", s))?;
        dbs.meta.close().map_err(|s| ldb_err("close", b"", s))?;
        log::info!("{BACKEND}: closed {}", self.dir.display());
        Ok(())
    }

    fn stat(&self, key: &[u8]) -> Result<Option<u64>> {
        self.with(|d| match d.sizes.get(key) {
            Some(size) => Ok(Some(size)),
            // LevelDB has no size-only lookup: the value is read and measured (and remembered).
            None => Ok(read(d, key)?.map(|v| v.len() as u64)),
        })
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        self.with(|d| {
            if read(d, key)?.is_none() {
                return Ok(false);
            }
            let mut data = WriteBatch::default();
            data.delete(key);
            let mut meta = WriteBatch::default();
            meta.delete(key);
            d.sizes.remove(key);
            write_batches(d, data, meta, key)?;
            Ok(true)
        })
    }

    fn list(&self, after: Option<&[u8]>) -> Result<ChunkList> {
        self.with(|_| Ok(()))?;
        Ok(Box::new(Listing {
            dbs: Arc::clone(&self.dbs),
            after: after.map(<[u8]>::to_vec),
            page: Vec::new().into_iter(),
            done: false,
        }))
    }

    fn sync(&self) -> Result<()> {
        self.with(|d| {
            d.data.flush().map_err(|s| ldb_err("flush", b"", s))?;
            d.meta.flush().map_err(|s| ldb_err("flush", b"", s))?;
            // rusty-leveldb never fsyncs (neither logs nor tables): syncfs covers every file
            // it has written, compaction output included.
            let dir = File::open(&self.dir).map_err(|e| {
                StoreError::backend(
                    BACKEND,
                    "sync",
                    b"",
                    e.raw_os_error().unwrap_or(libc::EIO),
                    e.to_string(),
                )
            })?;
            // SAFETY: syncfs on a valid open descriptor.
            if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
                let e = std::io::Error::last_os_error();
                return Err(StoreError::backend(
                    BACKEND,
                    "sync",
                    b"",
                    e.raw_os_error().unwrap_or(libc::EIO),
                    e.to_string(),
                ));
            }
            Ok(())
        })
    }

    fn rename(&self, from: &[u8], to: &[u8]) -> Result<bool> {
        self.with(|d| {
            let Some(value) = read(d, from)? else {
                return Ok(false);
            };
            if from == to {
                return Ok(true);
            }
            let mtime = d.meta.get(from);
            let mut data = WriteBatch::default();
            data.put(to, &value);
            data.delete(from);
            let mut meta = WriteBatch::default();
            meta.put(
                to,
                &mtime
                    .map(|m| m.to_vec())
                    .unwrap_or_else(|| encode_mtime(SystemTime::now()).to_vec()),
            );
            meta.delete(from);
            // The data batch is one atomic record: the chunk is at `from` or at `to`, never both
            // or neither.
            d.sizes.remove(to);
            write_batches(d, data, meta, from)?;
            d.sizes.remove(from);
            d.sizes.insert(to, value.len() as u64);
            Ok(true)
        })
    }

    fn mtime(&self, key: &[u8]) -> Result<Option<SystemTime>> {
        self.with(|d| Ok(d.meta.get(key).and_then(|b| decode_mtime(&b))))
    }

    fn set_mtime(&self, key: &[u8], mtime: SystemTime) -> Result<()> {
        self.with(|d| {
            d.meta
                .put(key, &encode_mtime(mtime))
                .and_then(|()| d.meta.flush())
                .map_err(|s| ldb_err("set mtime", key, s))
        })
    }

    fn space(&self) -> Result<Option<super::SpaceInfo>> {
        let path = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes())
            .map_err(|_| StoreError::Config(format!("bad path {}", self.dir.display())))?;
        // SAFETY: statvfs on a NUL-terminated path into a zeroed struct.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return Ok(None);
        }
        let frsize = st.f_frsize as u64;
        Ok(Some(super::SpaceInfo {
            total: st.f_blocks as u64 * frsize,
            free: st.f_bavail as u64 * frsize,
        }))
    }
}

/// A listing that takes the lock one page at a time and resumes after the last key it returned.
struct Listing {
    dbs: Arc<Mutex<Option<Dbs>>>,
    after: Option<Vec<u8>>,
    page: std::vec::IntoIter<ChunkInfo>,
    done: bool,
}

impl Listing {
    fn fill(&mut self) -> Result<()> {
        let after = self.after.clone();
        let page = with_dbs(&self.dbs, |d| {
            let mut it = d
                .data
                .new_iter()
                .map_err(|s| ldb_err("list", after.as_deref().unwrap_or(b""), s))?;
            match &after {
                Some(k) => it.seek(k),
                None => it.seek_to_first(),
            }
            let mut page = Vec::with_capacity(LIST_PAGE);
            while it.valid() && page.len() < LIST_PAGE {
                if let Some((k, v)) = it.current() {
                    if after.as_deref() != Some(&k[..]) {
                        page.push(ChunkInfo {
                            key: k.to_vec(),
                            size: v.len() as u64,
                        });
                    }
                }
                if !it.advance() {
                    break;
                }
            }
            for chunk in &page {
                d.sizes.insert(&chunk.key, chunk.size);
            }
            Ok(page)
        })?;
        self.done = page.len() < LIST_PAGE;
        self.after = page.last().map(|c| c.key.clone()).or(self.after.take());
        self.page = page.into_iter();
        Ok(())
    }
}

impl Iterator for Listing {
    type Item = Result<ChunkInfo>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(c) = self.page.next() {
            return Some(Ok(c));
        }
        if self.done {
            return None;
        }
        if let Err(e) = self.fill() {
            self.done = true;
            return Some(Err(e));
        }
        self.page.next().map(Ok)
    }
}
