//! A small safe wrapper over the C API of the reference LevelDB (`leveldb-sys`, LevelDB 1.22
//! with snappy): a database handle, options, write batches, snapshots and iterators, each
//! released by `Drop`; returned buffers are freed with `leveldb_free`; errors come from the
//! C API's `char **errptr`.
//!
//! The C++ `DB` is safe to use from many threads without a lock (LevelDB serialises writers
//! itself), so [`Db`] is `Send + Sync`. An [`Iter`] may move between threads but is used by one
//! at a time (`Send`, not `Sync`), and it keeps the database and its snapshot alive.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};

use leveldb_sys as sys;

mod iter;
pub use iter::{Iter, Snapshot};

/// A value as LevelDB's C API returned it: a buffer it allocated (`malloc`, freed with
/// `leveldb_free`), owned here and only read.
pub struct Value {
    ptr: ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: a plain heap buffer owned by this value alone; nothing else refers to it.
unsafe impl Send for Value {}
// SAFETY: only ever read (no interior mutability).
unsafe impl Sync for Value {}

impl std::ops::Deref for Value {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: LevelDB returned `len` initialised bytes at `ptr`, freed only in Drop.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl AsRef<[u8]> for Value {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        // SAFETY: allocated by LevelDB's C API for this value, freed once.
        unsafe { sys::leveldb_free(self.ptr.as_ptr() as *mut c_void) };
    }
}

/// An error from LevelDB, with its message as LevelDB gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    /// Whether this is LevelDB's "lock held by another process" error: "IO error: lock
    /// DIR/LOCK: Resource temporarily unavailable" (or "already held by process"). Failing to
    /// create the lock file ("IO error: DIR/LOCK: Read-only file system") is not.
    pub fn is_lock(&self) -> bool {
        self.0.contains("lock ") && self.0.contains("/LOCK:")
    }

    /// Whether LevelDB could not write its files because the directory is read-only (a
    /// read-only mount, or no write permission).
    pub fn is_read_only(&self) -> bool {
        self.0.contains("Read-only file system") || self.0.contains("Permission denied")
    }

    /// The errno the filesystem should see.
    pub fn errno(&self) -> i32 {
        if self.0.starts_with("NotFound") {
            libc::ENOENT
        } else if self.0.starts_with("Invalid argument") {
            libc::EINVAL
        } else if self.0.contains("No space left") {
            libc::ENOSPC
        } else {
            libc::EIO
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs a C call that reports failure through `errptr`.
fn check<T>(call: impl FnOnce(*mut *mut c_char) -> T) -> Result<T, Error> {
    let mut err: *mut c_char = ptr::null_mut();
    let out = call(&mut err);
    if err.is_null() {
        return Ok(out);
    }
    // SAFETY: LevelDB set `err` to a NUL-terminated malloc'd string, which we free once.
    let msg = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    unsafe { sys::leveldb_free(err as *mut c_void) };
    Err(Error(msg))
}

extern "C" {
    /// `leveldb::EnvPosixTestHelper::SetReadOnlyMMapLimit(int)` of LevelDB 1.22
    /// (util/env_posix.cc, declared in util/env_posix_test_helper.h; built into leveldb-sys's
    /// static library): how many table files the default Env may mmap. It is read once, when
    /// the default Env is built (the first `leveldb_options_create`), so it is set before that.
    #[link_name = "_ZN7leveldb18EnvPosixTestHelper20SetReadOnlyMMapLimitEi"]
    fn leveldb_set_read_only_mmap_limit(limit: c_int);
}

static NO_MMAP: Once = Once::new();

/// Makes LevelDB read table files with pread(2) instead of mapping them (its default on 64-bit:
/// up to 1,000 mapped tables). A mapped table's pages that a read touched count in the
/// daemon's RSS and stay there until the table is closed: reading 100,000 distinct 4 KiB values
/// left ~400 MB of table pages resident (issue 14). With pread the bytes go through the page
/// cache (the kernel's, reclaimable, outside RSS) and LevelDB keeps only what its block cache
/// holds, which `cache_size` bounds. Called before any LevelDB object exists, once per process.
fn read_tables_without_mmap() {
    // SAFETY: a plain setter of a global int; the Once runs it before the first Options (and
    // so the default Env) is created by this process, as LevelDB requires.
    NO_MMAP.call_once(|| unsafe { leveldb_set_read_only_mmap_limit(0) });
}

/// Bits of the tables' bloom filters per key (LevelDB's recommended 10: ~1% false positives).
const BLOOM_BITS_PER_KEY: c_int = 10;

/// LevelDB's default table block size.
pub const DEFAULT_BLOCK_SIZE: usize = 4 << 10;
/// The smallest table block size LevelDB accepts.
pub const MIN_BLOCK_SIZE: usize = 1 << 10;

/// How a database is opened.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bytes of the LRU block cache.
    pub cache_bytes: usize,
    /// Bytes of the memtable before it is written out as a table.
    pub write_buffer_size: usize,
    /// Table files LevelDB keeps open.
    pub max_open_files: i32,
    /// Snappy-compress table blocks.
    pub compression: bool,
    /// Bytes of data a table block fills before it is closed (LevelDB: 4 KiB by default, at
    /// least 1 KiB). A block closes after the entry that fills it, so a small value can share
    /// its block with the big value written next to it, and a get of the small one reads,
    /// checksums and copies the whole block: 1 KiB keeps every value of 1 KiB or more in a
    /// block of its own (issue 14: a get of a 1,307-byte value read a 30 MiB block).
    pub block_size: usize,
}

/// An open database; closed when dropped (after every iterator and snapshot on it).
pub struct Db {
    raw: *mut sys::leveldb_t,
    // Owned by the database's options: destroyed after the database is closed.
    options: *mut sys::leveldb_options_t,
    cache: *mut sys::leveldb_cache_t,
    filter: *mut sys::leveldb_filterpolicy_t,
    async_write: *mut sys::leveldb_writeoptions_t,
    sync_write: *mut sys::leveldb_writeoptions_t,
    read: *mut sys::leveldb_readoptions_t,
    /// Like `read`, without filling the block cache.
    read_uncached: *mut sys::leveldb_readoptions_t,
    synced: AtomicU64,
}

// SAFETY: leveldb_t is documented thread-safe; the option objects are only read after creation.
unsafe impl Send for Db {}
unsafe impl Sync for Db {}

impl Db {
    /// Opens (creating when missing) the database in `path`.
    pub fn open(path: &Path, opts: &Options) -> Result<Db, Error> {
        let name = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| Error(format!("path {} contains a NUL byte", path.display())))?;
        read_tables_without_mmap();
        // SAFETY: plain constructor calls; each object is destroyed in Drop (or below on error).
        unsafe {
            let options = sys::leveldb_options_create();
            let cache = sys::leveldb_cache_create_lru(opts.cache_bytes);
            sys::leveldb_options_set_create_if_missing(options, 1);
            sys::leveldb_options_set_cache(options, cache);
            // A bloom filter per table (10 bits a key, ~1% false positives): a get skips every
            // table that does not hold its key without reading a data block of it. Without it
            // a get read, checksummed and copied one block of every level-0 table and of every
            // deeper level whose key range covers the key; next to multi-MiB values such a
            // block is as big as the value, so a get of a 4 KiB chunk read up to 100 MiB of
            // unrelated values (issue 14: opens of 120-165 ms after a restic restore, the CPU
            // in crc32c). Tables written without a filter (older ones, other programs') are read
            // as before; other readers ignore the filter block.
            let filter = sys::leveldb_filterpolicy_create_bloom(BLOOM_BITS_PER_KEY);
            sys::leveldb_options_set_filter_policy(options, filter);
            sys::leveldb_options_set_write_buffer_size(options, opts.write_buffer_size);
            sys::leveldb_options_set_max_open_files(options, opts.max_open_files);
            sys::leveldb_options_set_block_size(options, opts.block_size);
            sys::leveldb_options_set_compression(
                options,
                if opts.compression {
                    sys::Compression::Snappy
                } else {
                    sys::Compression::No
                },
            );
            let async_write = sys::leveldb_writeoptions_create();
            let sync_write = sys::leveldb_writeoptions_create();
            sys::leveldb_writeoptions_set_sync(sync_write, 1);
            let read = sys::leveldb_readoptions_create();
            // Every block read is checked against its CRC: without it a damaged table block that
            // is stored uncompressed (as incompressible values are) reads back as wrong bytes.
            sys::leveldb_readoptions_set_verify_checksums(read, 1);
            let read_uncached = sys::leveldb_readoptions_create();
            sys::leveldb_readoptions_set_verify_checksums(read_uncached, 1);
            sys::leveldb_readoptions_set_fill_cache(read_uncached, 0);
            let mut db = Db {
                raw: ptr::null_mut(),
                options,
                cache,
                filter,
                async_write,
                sync_write,
                read,
                read_uncached,
                synced: AtomicU64::new(0),
            };
            // On failure `db` drops with a null handle: only the option objects are destroyed.
            db.raw = check(|err| sys::leveldb_open(options, name.as_ptr(), err))?;
            Ok(db)
        }
    }

    fn write_options(&self, sync: bool) -> *const sys::leveldb_writeoptions_t {
        if sync {
            self.synced.fetch_add(1, Ordering::Relaxed);
            self.sync_write
        } else {
            self.async_write
        }
    }

    /// How many synced writes (`sync = true`: LevelDB fsyncs its log) were made on this
    /// database: a hook for tests that check that fsync(2) reaches the disk.
    pub fn synced_writes(&self) -> u64 {
        self.synced.load(Ordering::Relaxed)
    }

    /// The value of `key`, `None` when missing.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.get_with(self.read, key)
    }

    /// The value of `key`, `None` when missing, in the buffer LevelDB's C API allocated for it
    /// (no copy into a `Vec`), leaving the block cache as it was: the block read for it is
    /// freed once the value is copied out. For values (chunks) of several KiB and more, one
    /// block each, caching the block would keep a second copy of what the kernel's page cache
    /// holds anyway (the table file's pages), up to `cache_bytes` of RSS.
    pub fn get_uncached_value(&self, key: &[u8]) -> Result<Option<Value>, Error> {
        self.get_value(self.read_uncached, key)
    }

    fn get_with(
        &self,
        read: *const sys::leveldb_readoptions_t,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.get_value(read, key)?.map(|v| v.to_vec()))
    }

    fn get_value(
        &self,
        read: *const sys::leveldb_readoptions_t,
        key: &[u8],
    ) -> Result<Option<Value>, Error> {
        let mut len: usize = 0;
        // SAFETY: key is valid for its length; the returned buffer is owned by the `Value`,
        // which frees it.
        let buf = check(|err| unsafe {
            sys::leveldb_get(
                self.raw,
                read,
                key.as_ptr() as *const c_char,
                key.len(),
                &mut len,
                err,
            )
        })?;
        Ok(ptr::NonNull::new(buf as *mut u8).map(|ptr| Value { ptr, len }))
    }

    /// Stores `value` under `key`; with `sync`, the log is fsynced before this returns.
    pub fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<(), Error> {
        let opts = self.write_options(sync);
        // SAFETY: key and value are valid for their lengths during the call.
        check(|err| unsafe {
            sys::leveldb_put(
                self.raw,
                opts,
                key.as_ptr() as *const c_char,
                key.len(),
                value.as_ptr() as *const c_char,
                value.len(),
                err,
            )
        })
    }

    /// Applies `batch` atomically; with `sync`, the log is fsynced before this returns. An empty
    /// batch with `sync` still appends a record and fsyncs the log (LevelDB 1.22
    /// DBImpl::Write), which makes every earlier write durable.
    pub fn write(&self, batch: &WriteBatch, sync: bool) -> Result<(), Error> {
        let opts = self.write_options(sync);
        // SAFETY: the batch is valid; LevelDB does not keep it after the call.
        check(|err| unsafe { sys::leveldb_write(self.raw, opts, batch.raw, err) })
    }

    /// Writes the memtable out as a level-0 table and waits for it (nothing else is compacted:
    /// the range given to LevelDB's CompactRange is the empty key alone, which no chunk has).
    ///
    /// Why before a close: LevelDB does not write its memtable at close, the next open replays
    /// the log instead, and replaying a big value holds it four to five times at once (the
    /// log reader's record, the batch, the memtable, the table block being built and snappy's
    /// output buffer): a 256 MiB value took 1.34 GiB of RSS at the next mount (issue 14).
    /// Written out here, it costs the memtable, the block and the compression buffer, once,
    /// when the daemon holds nothing else.
    pub fn write_memtable(&self) {
        let empty: &[u8] = b"";
        // SAFETY: valid database; the (empty) keys are only read during the call.
        unsafe {
            sys::leveldb_compact_range(
                self.raw,
                empty.as_ptr() as *const c_char,
                0,
                empty.as_ptr() as *const c_char,
                0,
            )
        }
    }

    /// A consistent view of the database as it is now.
    pub fn snapshot(self: &Arc<Self>) -> Snapshot {
        // SAFETY: the snapshot is released in Drop, before the Arc'd database can close.
        let raw = unsafe { sys::leveldb_create_snapshot(self.raw) };
        Snapshot {
            raw,
            db: Arc::clone(self),
        }
    }

    /// The value of `key` as it was when `snapshot` was taken, `None` when it was missing
    /// then; like [`Db::get_uncached_value`], the block cache is left as it was.
    pub fn get_at(&self, snapshot: &Snapshot, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        assert!(ptr::eq(self, &*snapshot.db), "snapshot of another db");
        // SAFETY: read options made for this call, destroyed after it; the snapshot is live.
        unsafe {
            let read = sys::leveldb_readoptions_create();
            sys::leveldb_readoptions_set_verify_checksums(read, 1);
            sys::leveldb_readoptions_set_fill_cache(read, 0);
            sys::leveldb_readoptions_set_snapshot(read, snapshot.raw);
            let value = self.get_with(read, key);
            sys::leveldb_readoptions_destroy(read);
            value
        }
    }

    /// An iterator over `snapshot`; `fill_cache = false` keeps a scan out of the block cache.
    pub fn iter(self: &Arc<Self>, snapshot: Snapshot, fill_cache: bool) -> Iter {
        self.iter_shared(Arc::new(snapshot), fill_cache)
    }

    /// An iterator over a snapshot that other readers share (a snapshot view's listings).
    pub fn iter_shared(self: &Arc<Self>, snapshot: Arc<Snapshot>, fill_cache: bool) -> Iter {
        assert!(Arc::ptr_eq(self, &snapshot.db), "snapshot of another db");
        // SAFETY: the read options and snapshot outlive the iterator (fields of Iter, dropped
        // after it).
        unsafe {
            let read = sys::leveldb_readoptions_create();
            sys::leveldb_readoptions_set_verify_checksums(read, 1);
            sys::leveldb_readoptions_set_snapshot(read, snapshot.raw);
            sys::leveldb_readoptions_set_fill_cache(read, fill_cache as u8);
            let raw = sys::leveldb_create_iterator(self.raw, read);
            Iter {
                raw,
                read,
                _snapshot: snapshot,
            }
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // SAFETY: every object was created in open and is destroyed once; closing the database
        // first, its options (and cache) after.
        unsafe {
            if !self.raw.is_null() {
                sys::leveldb_close(self.raw);
            }
            sys::leveldb_readoptions_destroy(self.read);
            sys::leveldb_readoptions_destroy(self.read_uncached);
            sys::leveldb_writeoptions_destroy(self.sync_write);
            sys::leveldb_writeoptions_destroy(self.async_write);
            sys::leveldb_options_destroy(self.options);
            sys::leveldb_cache_destroy(self.cache);
            sys::leveldb_filterpolicy_destroy(self.filter);
        }
    }
}

/// Puts and deletes applied together by [`Db::write`].
pub struct WriteBatch {
    raw: *mut sys::leveldb_writebatch_t,
    len: usize,
}

// SAFETY: a write batch is plain owned memory.
unsafe impl Send for WriteBatch {}

impl Default for WriteBatch {
    fn default() -> Self {
        WriteBatch {
            // SAFETY: destroyed in Drop.
            raw: unsafe { sys::leveldb_writebatch_create() },
            len: 0,
        }
    }
}

impl WriteBatch {
    /// Adds a put of `value` under `key`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        // SAFETY: LevelDB copies key and value into the batch.
        unsafe {
            sys::leveldb_writebatch_put(
                self.raw,
                key.as_ptr() as *const c_char,
                key.len(),
                value.as_ptr() as *const c_char,
                value.len(),
            )
        };
        self.len += 1;
    }

    /// Adds a delete of `key`.
    pub fn delete(&mut self, key: &[u8]) {
        // SAFETY: LevelDB copies the key into the batch.
        unsafe {
            sys::leveldb_writebatch_delete(self.raw, key.as_ptr() as *const c_char, key.len())
        };
        self.len += 1;
    }

    /// Operations added so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for WriteBatch {
    fn drop(&mut self) {
        // SAFETY: created in default(), destroyed once.
        unsafe { sys::leveldb_writebatch_destroy(self.raw) };
    }
}
