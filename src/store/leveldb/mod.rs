//! The embedded LevelDB backend on the reference C++ LevelDB (1.22, through `leveldb-sys` and
//! the small wrapper in [`db`]): raw key bytes -> raw value bytes, no other keys, so a database
//! written by C++ LevelDB, goleveldb, plyvel or the Go implementation opens unchanged, and ours
//! opens in them.
//!
//! Beside the keyspace, never in it, a second database (`cloudstore-meta/`) holds per key the
//! modification time and the value's size (12 + 8 bytes; entries of 12 bytes, from before
//! sizes were kept, still decode). LevelDB cannot tell a value's size without reading the value,
//! and a listing iterator reads every value it passes, so stat and listings use this index.
//!
//! Crash safety of the index. Every change writes the data first and the index entry after,
//! one key at a time under that key's stripe lock, so a crash in between can leave the old mtime
//! on new data (allowed) but never a new mtime on old data (after a kill -9 always: both writes
//! are in the OS in that order; after a power loss, for everything up to the last `sync`: the
//! unsynced tails of the two logs may reach the disk in either order). It can also leave a stale
//! size, so the index is only trusted after a clean close: `close` syncs, closes the data
//! database, and records a fingerprint of its files (names and lengths) in
//! `cloudstore-meta/cloudstore-state`; `open` removes that record (durably) before the first
//! write. An open that finds no record, or one whose fingerprint differs (a crash, or another
//! program wrote the database), rebuilds the index with one scan of the data (logged) before
//! serving anything. If an index write fails while running, the store stops trusting the index
//! until the next open (stat then reads values, listings walk the data).
//!
//! Durability: writes use `sync = false`: LevelDB has appended them to its log with write(2)
//! before it returns, so they survive kill -9 of the daemon. `sync` writes an empty batch with
//! `sync = true` to both databases, which fsyncs each log (and so everything before it).

pub mod db;
mod dbs;
mod index;
mod listing;
pub mod lock;
mod open;
mod side;
mod snapshot;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use db::WriteBatch;
use dbs::{sync_dbs, Dbs, STRIPES};
pub use index::STATE_FILE;
use index::{
    encode_mtime, fingerprint, read_state, rebuild_index, sync_dir, write_state, Entry, NO_MTIME,
};
use listing::{read_batch, read_range, Listing};
use open::open_db;
pub use open::{inspect_data_dir, DataDir};

use super::{
    check_chunk, Capabilities, ChunkList, Cloudstore, RawChunk, Result, SharedBytes, SpaceInfo,
    StoreError,
};
use crate::config::{Compression, Config};

const BACKEND: &str = "leveldb";
/// The directory, inside the data directory, of the index (mtime and size) database.
pub const META_DIR: &str = "cloudstore-meta";
/// How long close waits for calls still running on other threads.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// The LevelDB backend.
pub struct LevelDbStore {
    dbs: RwLock<Option<Arc<Dbs>>>,
    dir: PathBuf,
    max_chunk_size: u64,
    /// LevelDB's write buffer: a value at least this big is written out of the memtable at once.
    write_buffer_size: u64,
    /// Tables are snappy-compressed.
    compression: bool,
}

fn ldb_err(op: &'static str, key: &[u8], e: db::Error) -> StoreError {
    let err = StoreError::backend(BACKEND, op, key, e.errno(), e.0);
    log::error!("{err}");
    err
}

fn io_err(op: &'static str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::backend(
        BACKEND,
        op,
        b"",
        e.raw_os_error().unwrap_or(libc::EIO),
        format!("{}: {e}", path.display()),
    )
}

impl LevelDbStore {
    /// Opens the database in `config.data_dir`, creating it where the directory is missing or
    /// empty (see [`inspect_data_dir`] for what is refused).
    pub fn open(config: &Config) -> Result<Self> {
        let dir = config.data_dir.clone();
        inspect_data_dir(&dir)?;
        std::fs::create_dir_all(&dir).map_err(|e| {
            StoreError::Config(format!(
                "{BACKEND}: cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let compression = config.compression == Compression::Snappy;
        let fp = fingerprint(&dir)?;
        let data = Arc::new(open_db(
            &dir,
            &db::Options {
                cache_bytes: config.cache_size as usize,
                write_buffer_size: config.write_buffer_size as usize,
                max_open_files: config.max_open_files as i32,
                compression,
                block_size: db::MIN_BLOCK_SIZE,
            },
        )?);
        let meta_dir = dir.join(META_DIR);
        // The index holds 20-byte values: small buffers are plenty.
        let meta = Arc::new(open_db(
            &meta_dir,
            &db::Options {
                cache_bytes: 8 << 20,
                write_buffer_size: 4 << 20,
                max_open_files: 100,
                compression,
                block_size: db::DEFAULT_BLOCK_SIZE,
            },
        )?);
        let state = meta_dir.join(STATE_FILE);
        let clean = read_state(&state) == Some(fp);
        // From here on the databases change: the clean record goes first, durably.
        match std::fs::remove_file(&state) {
            Ok(()) => sync_dir(&meta_dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove state", &state, e)),
        }
        if clean {
            log::info!("{BACKEND}: opened {}", dir.display());
        } else {
            let t = Instant::now();
            let (chunks, changed) = rebuild_index(&dir, &data, &meta)?;
            log::info!(
                "{BACKEND}: opened {}; no clean close recorded for these files (a new database, \
                 a crash, or another writer): size index checked over {chunks} chunks, \
                 {changed} entries fixed, in {:.2} s",
                dir.display(),
                t.elapsed().as_secs_f64()
            );
        }
        Ok(LevelDbStore {
            dbs: RwLock::new(Some(Arc::new(Dbs {
                data,
                meta,
                stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
                index_ok: AtomicBool::new(true),
                value_reads: AtomicU64::new(0),
            }))),
            dir,
            max_chunk_size: config.max_chunk_size,
            write_buffer_size: config.write_buffer_size,
            compression,
        })
    }

    /// Synced writes (each an fsync of a LevelDB log) made on this store's databases since it
    /// was opened; 0 once closed.
    pub fn synced_writes(&self) -> u64 {
        self.dbs()
            .map_or(0, |d| d.data.synced_writes() + d.meta.synced_writes())
    }

    /// Values read from the data database since the store was opened (gets, and stat or
    /// listing when the index has no size); 0 once closed.
    pub fn value_reads(&self) -> u64 {
        self.dbs()
            .map_or(0, |d| d.value_reads.load(Ordering::Relaxed))
    }

    /// The open databases, or `Closed`.
    fn dbs(&self) -> Result<Arc<Dbs>> {
        self.dbs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(StoreError::Closed { backend: BACKEND })
    }

    fn check_value(&self, key: &[u8], value: &[u8]) -> Result<()> {
        check_chunk(BACKEND, key, value, self.max_chunk_size)
    }

    /// After the data of `key` (`len` bytes) is written: its mtime and size. Data first: a
    /// crash in between leaves the old mtime on the new data, never a new mtime on old data
    /// (and the open after it rebuilds the sizes).
    fn written(&self, d: &Dbs, key: &[u8], len: u64) -> Result<()> {
        let mut index = WriteBatch::default();
        index.put(key, &Entry::encode(&encode_mtime(SystemTime::now()), len));
        d.write_index(&index, key)
    }
}

/// Syncs both logs: an empty batch with `sync = true` fsyncs a log (LevelDB 1.22
/// DBImpl::Write appends the record, then syncs), and with it every write before it.
impl Cloudstore for LevelDbStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            snapshots: true,
            ..Capabilities::default()
        }
    }

    /// A LevelDB snapshot of both databases (see [`snapshot`]).
    fn snapshot(&self) -> Result<Arc<dyn Cloudstore>> {
        let d = self.dbs()?;
        Ok(Arc::new(snapshot::LevelDbSnapshot::take(&d, &self.dir)))
    }

    fn get_chunk(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.dbs()?.read(key)
    }

    fn get_chunk_bytes(&self, key: &[u8]) -> Result<Option<SharedBytes>> {
        Ok(self
            .dbs()?
            .read_value(key)?
            .map(|v| Box::new(v) as SharedBytes))
    }

    fn get_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()> {
        read_batch(&*self.dbs()?, chunks);
        Ok(())
    }

    fn get_chunk_with_range(&self, key: &[u8], start: u64, end: u64) -> Result<Option<Vec<u8>>> {
        read_range(&*self.dbs()?, key, start, end)
    }

    fn set_chunk(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_value(key, value)?;
        let d = self.dbs()?;
        let _lock = d.lock([key]);
        d.data
            .put(key, value, false)
            .map_err(|e| ldb_err("put", key, e))?;
        self.written(&d, key, value.len() as u64)
    }

    /// LevelDB copies a value twice on its way in: into the write batch, then into the
    /// memtable. The caller's bytes are freed once the batch holds them, so a commit holds the
    /// value twice at most, not three times (issue 14: a 512 MiB value under a 1 GiB budget).
    fn set_chunk_owned(&self, key: &[u8], value: Vec<u8>) -> Result<()> {
        self.check_value(key, &value)?;
        let d = self.dbs()?;
        let _lock = d.lock([key]);
        let len = value.len() as u64;
        let mut batch = WriteBatch::default();
        batch.put(key, &value);
        drop(value);
        d.data
            .write(&batch, false)
            .map_err(|e| ldb_err("put", key, e))?;
        drop(batch);
        self.written(&d, key, len)
    }

    /// LevelDB holds a value it writes twice (the batch, then the memtable), and a value as big
    /// as the write buffer, written out right after (`write_out`), three times: the memtable,
    /// and the table block it is copied into, which grows once more (to twice its size, by
    /// std::string's doubling) when LevelDB appends the block's trailer (1.22
    /// `BlockBuilder::Finish`); snappy then compresses the block into a buffer of 1 1/6 times
    /// its size, zero-filled first (measured, 512 MiB value: 1,553 MiB of RSS uncompressed).
    /// An owned value is freed once the batch holds it, so the caller's copy is one of these.
    fn write_cost(&self, len: u64, owned: bool) -> u64 {
        let caller = if owned { len } else { 0 };
        let held = if !self.holds_after_write(len) {
            2 * len
        } else if self.compression {
            3 * len + len / 6 + 32
        } else {
            3 * len
        };
        held - caller
    }

    /// A value as big as the write buffer: the memtable would hold it, outside any budget,
    /// until a later write fills it (and a read of it meanwhile holds it three times: the
    /// memtable's, LevelDB's read copy and the one handed out).
    fn holds_after_write(&self, len: u64) -> bool {
        len >= self.write_buffer_size
    }

    fn write_out(&self) {
        if let Ok(d) = self.dbs() {
            d.data.write_memtable();
        }
    }

    fn set_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()> {
        let mtime = encode_mtime(SystemTime::now());
        let mut data = WriteBatch::default();
        let mut index = WriteBatch::default();
        for chunk in chunks.iter_mut() {
            chunk.error = self.check_value(&chunk.key, &chunk.value).err();
            chunk.ok = chunk.error.is_none();
            if chunk.ok {
                data.put(&chunk.key, &chunk.value);
                index.put(&chunk.key, &Entry::encode(&mtime, chunk.value.len() as u64));
            }
        }
        if data.is_empty() {
            return Ok(());
        }
        let first = chunks.first().map(|c| c.key.clone()).unwrap_or_default();
        let result = self.dbs().and_then(|d| {
            let _lock = d.lock(chunks.iter().filter(|c| c.ok).map(|c| &c.key[..]));
            // One WriteBatch: the valid chunks of the batch land together or not at all. Data
            // before index, as in set_chunk.
            d.data
                .write(&data, false)
                .map_err(|e| ldb_err("write batch", &first, e))?;
            d.write_index(&index, &first)
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
        let Some(mut dbs) = self.dbs.write().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(());
        };
        sync_dbs(&dbs)?;
        // The next open then replays no big value from the log (see write_memtable).
        dbs.data.write_memtable();
        // Calls that started before the close finish first; a listing still open keeps the
        // databases open until it is dropped, and then the next open rebuilds the index.
        let deadline = Instant::now() + CLOSE_WAIT;
        let dbs = loop {
            match Arc::try_unwrap(dbs) {
                Ok(d) => break Some(d),
                Err(d) if Instant::now() < deadline => {
                    dbs = d;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => break None,
            }
        };
        let Some(Dbs {
            data,
            meta,
            index_ok,
            ..
        }) = dbs
        else {
            log::warn!(
                "{BACKEND}: {}: a listing is still open at close; the database closes when it \
                 ends, and the next open rebuilds the size index",
                self.dir.display()
            );
            return Ok(());
        };
        let closed = Arc::try_unwrap(data).map(drop).is_ok();
        if closed && index_ok.into_inner() {
            // leveldb_close has returned: the data files are final; record them.
            let fp = fingerprint(&self.dir)?;
            write_state(&self.dir.join(META_DIR), fp)?;
        }
        drop(meta);
        log::info!("{BACKEND}: closed {}", self.dir.display());
        Ok(())
    }

    fn stat(&self, key: &[u8]) -> Result<Option<u64>> {
        let d = self.dbs()?;
        if d.index_ok() {
            if let Some(size) = d.entry(key)?.and_then(|e| e.size) {
                return Ok(Some(size));
            }
        }
        // No size in the index (a key without an entry, or an untrusted index): measure the
        // value, and remember it when the index is trusted.
        let _lock = d.lock([key]);
        let entry = d.entry(key)?;
        if let Some(size) = entry.as_ref().and_then(|e| e.size).filter(|_| d.index_ok()) {
            return Ok(Some(size)); // a writer filled it meanwhile
        }
        let Some(value) = d.read(key)? else {
            return Ok(None);
        };
        let size = value.len() as u64;
        if d.index_ok() {
            let mtime = entry.map_or(NO_MTIME, |e| e.mtime);
            let mut index = WriteBatch::default();
            index.put(key, &Entry::encode(&mtime, size));
            d.write_index(&index, key)?;
        }
        Ok(Some(size))
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        let d = self.dbs()?;
        let _lock = d.lock([key]);
        let exists = (d.index_ok() && d.entry(key)?.is_some()) || d.read(key)?.is_some();
        if !exists {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        batch.delete(key);
        d.data
            .write(&batch, false)
            .map_err(|e| ldb_err("delete", key, e))?;
        d.write_index(&batch, key)?;
        Ok(true)
    }

    fn list(&self, after: Option<&[u8]>) -> Result<ChunkList> {
        let d = self.dbs()?;
        // The index when it is exact (no value is read); otherwise the data itself.
        let from_index = d.index_ok();
        let db = if from_index { &d.meta } else { &d.data };
        let mut it = db.iter(db.snapshot(), false);
        match after {
            Some(k) => it.seek(k),
            None => it.seek_to_first(),
        }
        Ok(Box::new(Listing {
            it,
            from_index,
            skip: after.map(<[u8]>::to_vec),
            src: d,
            done: false,
        }))
    }

    fn sync(&self) -> Result<()> {
        sync_dbs(&*self.dbs()?)
    }

    fn rename(&self, from: &[u8], to: &[u8]) -> Result<bool> {
        let d = self.dbs()?;
        let _lock = d.lock([from, to]);
        let Some(value) = d.read(from)? else {
            return Ok(false);
        };
        if from == to {
            return Ok(true);
        }
        let mtime = d
            .entry(from)?
            .map_or_else(|| encode_mtime(SystemTime::now()), |e| e.mtime);
        let mut data = WriteBatch::default();
        data.put(to, &value);
        data.delete(from);
        // One atomic batch: the chunk is at `from` or at `to`, never both or neither.
        d.data
            .write(&data, false)
            .map_err(|e| ldb_err("rename", from, e))?;
        let mut index = WriteBatch::default();
        index.put(to, &Entry::encode(&mtime, value.len() as u64));
        index.delete(from);
        d.write_index(&index, from)?;
        Ok(true)
    }

    fn mtime(&self, key: &[u8]) -> Result<Option<SystemTime>> {
        Ok(self.dbs()?.entry(key)?.and_then(|e| e.mtime()))
    }

    fn set_mtime(&self, key: &[u8], mtime: SystemTime) -> Result<()> {
        let d = self.dbs()?;
        let _lock = d.lock([key]);
        let size = match d.entry(key)?.and_then(|e| e.size) {
            Some(size) if d.index_ok() => size,
            _ => match d.read(key)? {
                Some(v) => v.len() as u64,
                None => return Ok(()), // no such chunk: nothing to date
            },
        };
        let mut index = WriteBatch::default();
        index.put(key, &Entry::encode(&encode_mtime(mtime), size));
        d.write_index(&index, key)
    }

    /// Side records are files beside the databases (see `side.rs`).
    fn side_get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.dbs()?;
        side::get(&self.dir, name)
    }

    fn side_put(&self, name: &str, value: &[u8]) -> Result<()> {
        self.dbs()?;
        side::put(&self.dir, name, value)
    }

    fn space(&self) -> Result<Option<SpaceInfo>> {
        // The data directory's filesystem as it is: df of the mount shows what df of the
        // directory shows.
        let Ok((total, free, available)) = crate::sys::fd::space(&self.dir) else {
            return Ok(None);
        };
        Ok(Some(SpaceInfo {
            total,
            free,
            available,
        }))
    }
}
