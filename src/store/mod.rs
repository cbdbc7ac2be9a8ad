//! The chunk-store abstraction: the `Cloudstore` trait (the operations of the original Go
//! interface plus what a filesystem needs), its shared types, and `open`, which picks a backend
//! from a [`Config`].

mod error;
pub mod leveldb;
pub mod memory;
pub mod passthrough;

#[cfg(feature = "ceph")]
pub mod ceph;

use std::sync::Arc;
use std::time::SystemTime;

pub use error::{Result, StoreError};

use crate::config::{Backend, Config};

/// Bytes a store hands out in an allocation of its own (LevelDB's C API returns each value in a
/// buffer it allocated), read-only: kept as they are instead of copied into a `Vec`.
pub type SharedBytes = Box<dyn AsRef<[u8]> + Send + Sync>;

/// One item of a batch call: the key, and after the call its value, whether it was found (`ok`)
/// and the error that concerned this chunk alone, if any.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawChunk {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub ok: bool,
    pub error: Option<StoreError>,
}

impl RawChunk {
    /// A batch item to read: only the key is set.
    pub fn for_get(key: impl Into<Vec<u8>>) -> Self {
        RawChunk {
            key: key.into(),
            ..Default::default()
        }
    }

    /// A batch item to write.
    pub fn for_set(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        RawChunk {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }
    }
}

/// A chunk seen in a listing: its key, the size of its value in bytes, and its modification
/// time when the listing had it without another round trip (see [`Cloudstore::mtime`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkInfo {
    pub key: Vec<u8>,
    pub size: u64,
    pub mtime: Option<SystemTime>,
}

/// Round trips a backend made to its servers so far (`cloudstore-fs stats`): every operation
/// sent (a compound RADOS operation, e.g. a stat with a read, is one), and those of them that
/// went out pipelined, several in flight at once, with how many batches that took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundTrips {
    pub ops: u64,
    pub batches: u64,
    pub batched_ops: u64,
}

/// A streaming listing. It owns what it needs (no borrow of the store), so a directory handle can
/// keep it between readdir calls.
pub type ChunkList = Box<dyn Iterator<Item = Result<ChunkInfo>> + Send>;

/// One stored version of a chunk's value: a token that changes whenever the value is replaced,
/// deleted or created again, by anyone (this mount, another mount, another program).
pub type Version = u64;

/// Bytes of one version of a value, read together with that version's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedRange {
    /// The bytes asked for, clamped to the value.
    pub bytes: Vec<u8>,
    /// The size of the whole value of this version.
    pub size: u64,
    pub version: Version,
}

/// What a backend can do beyond the common operations; the core chooses how to read from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// A read of part of a value costs only that part, and every read can be tied to one
    /// version ([`Cloudstore::read_version`]): open files read ranges straight from the store.
    /// Without it a value is fetched whole, once per open file.
    /// Such a store may also be changed by other clients while mounted (several mounts of one
    /// Ceph pool, the `rados` tool): the core trusts nothing read from it past the open that
    /// read it.
    pub versioned_ranges: bool,
    /// [`Cloudstore::snapshot`] gives a read-only view of the store as it is at that moment,
    /// which later changes do not reach.
    pub snapshots: bool,
}

/// Figures for statfs, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceInfo {
    pub total: u64,
    /// Not in use (`total - free` is what `df` shows as used).
    pub free: u64,
    /// What this process may still write (less than `free` where the filesystem reserves
    /// blocks, or a thin-provisioned disk has less behind it).
    pub available: u64,
}

/// A chunk store. Implementations are safe to call from many threads at once.
///
/// Semantics (pinned by the contract suite in `tests/contract/`):
/// - a missing key is `Ok(None)` (never an error); a stored 0-byte value is `Ok(Some(vec![]))`;
/// - ranges are half-open `[start, end)`, `end == 0` means "to the end", `start > end` is
///   [`StoreError::InvalidRange`], a range past the end is clamped, never padded;
/// - a set replaces the whole value;
/// - batch calls fill each item's `value`/`ok`/`error` and return `Err` only when the call as a
///   whole failed;
/// - `close` flushes everything still pending.
pub trait Cloudstore: Send + Sync {
    /// The backend's name, for log lines and errors ("leveldb", "ceph", "memory").
    fn backend(&self) -> &'static str;

    /// GetChunk: the whole value of `key`, `None` when the key is missing.
    fn get_chunk(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// GetChunk into bytes the store may keep in its own allocation (no copy into a `Vec`):
    /// for values read whole and then only read.
    fn get_chunk_bytes(&self, key: &[u8]) -> Result<Option<SharedBytes>> {
        Ok(self.get_chunk(key)?.map(|v| Box::new(v) as SharedBytes))
    }

    /// GetChunkBatch: reads every item's key into its `value`/`ok`/`error`.
    fn get_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()>;

    /// GetChunkWithRange: the bytes `[start, end)` of the value (`end == 0`: to the end).
    fn get_chunk_with_range(&self, key: &[u8], start: u64, end: u64) -> Result<Option<Vec<u8>>>;

    /// SetChunk: stores `value` under `key`, replacing any previous value whole.
    fn set_chunk(&self, key: &[u8], value: &[u8]) -> Result<()>;

    /// SetChunk of a value the caller gives up: a store that copies the value on its way in
    /// frees the caller's bytes as soon as it holds its copy, so that the value is not held
    /// three times at once (the caller's, the store's batch, its memtable).
    fn set_chunk_owned(&self, key: &[u8], value: Vec<u8>) -> Result<()> {
        self.set_chunk(key, &value)
    }

    /// The memory, beyond the caller's `len` bytes, that writing a value of `len` bytes holds
    /// at its peak (`owned`: through `set_chunk_owned`, where a store may free the caller's
    /// bytes early, which this then subtracts): what the daemon reserves in its memory budget
    /// before a commit. The default: one copy (a store that copies the value into its request).
    fn write_cost(&self, len: u64, _owned: bool) -> u64 {
        len
    }

    /// Whether a commit of `len` bytes leaves copies of the value in the store's memory that
    /// [`Cloudstore::write_out`] writes out (its share of `write_cost` is held until then).
    fn holds_after_write(&self, _len: u64) -> bool {
        false
    }

    /// Writes out what the store holds in memory of the values written (LevelDB: the memtable,
    /// as a table), so that the memory is given back; errors are the store's to log.
    fn write_out(&self) {}

    /// SetChunkBatch: stores every item; per-item failures go to the item's `error`.
    fn set_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()>;

    /// Close: flushes everything pending. Calls after close fail with [`StoreError::Closed`].
    fn close(&self) -> Result<()>;

    /// The size of the value of `key` in bytes, `None` when missing.
    fn stat(&self, key: &[u8]) -> Result<Option<u64>>;

    /// Deletes `key`; `Ok(false)` when it was not there.
    fn delete(&self, key: &[u8]) -> Result<bool>;

    /// Lists chunks, streaming; with `after`, starts after that key (in the backend's order).
    fn list(&self, after: Option<&[u8]>) -> Result<ChunkList>;

    /// Makes every acknowledged write durable on stable storage.
    fn sync(&self) -> Result<()>;

    /// Moves the value of `from` to `to`, replacing `to`; `Ok(false)` when `from` is missing.
    /// Backends that can do it atomically override this.
    fn rename(&self, from: &[u8], to: &[u8]) -> Result<bool> {
        let Some(value) = self.get_chunk(from)? else {
            return Ok(false);
        };
        self.set_chunk(to, &value)?;
        if from != to {
            self.delete(from)?;
        }
        Ok(true)
    }

    /// What this backend can do (see [`Capabilities`]).
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Reads `[start, end)` (`end == 0`: to the end) of one version of `key`'s value, with that
    /// version's size, in one round trip. With `expect`, the read is of that version only: a
    /// value replaced or deleted since is [`StoreError::Changed`], never other bytes. `None`:
    /// the key is missing (only without `expect`). Backends without versions refuse it.
    fn read_version(
        &self,
        key: &[u8],
        _start: u64,
        _end: u64,
        _expect: Option<Version>,
    ) -> Result<Option<VersionedRange>> {
        Err(StoreError::Config(format!(
            "{}: no versioned reads (read {})",
            self.backend(),
            hex::encode(key)
        )))
    }

    /// The size and modification time of `key` together (one round trip where the backend
    /// allows); `None` when missing.
    fn stat_with_mtime(&self, key: &[u8]) -> Result<Option<(u64, Option<SystemTime>)>> {
        let Some(size) = self.stat(key)? else {
            return Ok(None);
        };
        Ok(Some((size, self.mtime(key)?)))
    }

    /// The modification time of `key`, kept beside the chunk keyspace; `None` when unknown.
    fn mtime(&self, _key: &[u8]) -> Result<Option<SystemTime>> {
        Ok(None)
    }

    /// Sets the modification time of an existing `key` (touch -d, tar x, rsync -a).
    fn set_mtime(&self, _key: &[u8], _mtime: SystemTime) -> Result<()> {
        Ok(())
    }

    /// The round trips made so far, for a backend that talks to servers (`None` otherwise).
    fn round_trips(&self) -> Option<RoundTrips> {
        None
    }

    /// Space figures for statfs, when the backend knows them.
    fn space(&self) -> Result<Option<SpaceInfo>> {
        Ok(None)
    }

    /// A read-only view of the store as it is now (see [`Capabilities::snapshots`]): later
    /// changes through this store or any other client do not show in it. What it holds on to
    /// (old versions the backend must keep) is let go when the view is closed or dropped.
    fn snapshot(&self) -> Result<Arc<dyn Cloudstore>> {
        Err(StoreError::Backend {
            backend: self.backend(),
            op: "snapshot",
            key: String::new(),
            errno: libc::EOPNOTSUPP,
            message: "this backend has no point-in-time snapshots".into(),
        })
    }

    /// A record kept beside the chunk keyspace, never a chunk (`name` is one of [`SIDE_NAMES`]):
    /// the mount keeps its scratch files and its directory's mtime there. `None` when absent.
    fn side_get(&self, _name: &str) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    /// Replaces a side record whole, durably (an empty value removes it).
    fn side_put(&self, name: &str, _value: &[u8]) -> Result<()> {
        Err(StoreError::Config(format!(
            "backend {}: cannot keep the record {name:?} beside the chunks",
            self.backend()
        )))
    }
}

/// The side records the mount keeps (see [`Cloudstore::side_get`]).
pub const SIDE_NAMES: [&str; 2] = [SIDE_SCRATCH, SIDE_DIR_MTIME];
/// The scratch files saved at unmount.
pub const SIDE_SCRATCH: &str = "scratch";
/// The mtime of the mount's directory.
pub const SIDE_DIR_MTIME: &str = "dir-mtime";

/// The error of a change asked of a read-only view (a snapshot): EROFS, naming the key.
pub fn read_only_view(backend: &'static str, op: &'static str, key: &[u8]) -> StoreError {
    StoreError::backend(
        backend,
        op,
        key,
        libc::EROFS,
        "a snapshot is a read-only view: nothing in it can change",
    )
}

/// Checks a range and clamps it to a value of `len` bytes: the byte span to return.
pub fn clamp_range(key: &[u8], start: u64, end: u64, len: u64) -> Result<(usize, usize)> {
    if end != 0 && start > end {
        return Err(StoreError::InvalidRange {
            key: hex::encode(key),
            start,
            end,
        });
    }
    let end = if end == 0 { len } else { end.min(len) };
    let start = start.min(end);
    Ok((start as usize, end as usize))
}

/// Checks a chunk a backend is about to store: a non-empty key and a value of at most
/// `max_chunk_size` bytes.
pub fn check_chunk(backend: &'static str, key: &[u8], value: &[u8], max: u64) -> Result<()> {
    if key.is_empty() {
        return Err(StoreError::InvalidKey {
            backend,
            key: String::new(),
            reason: "empty key".into(),
        });
    }
    if value.len() as u64 > max {
        return Err(StoreError::TooLarge {
            backend,
            key: hex::encode(key),
            size: value.len() as u64,
            max,
        });
    }
    Ok(())
}

/// Opens the backend that `config` names (the Go `NewCloudstore(config)`).
pub fn open(config: &Config) -> Result<Arc<dyn Cloudstore>> {
    match config.backend {
        Backend::Leveldb => Ok(Arc::new(leveldb::LevelDbStore::open(config)?)),
        Backend::Memory => Ok(Arc::new(memory::MemoryStore::new(config.max_chunk_size))),
        #[cfg(feature = "ceph")]
        Backend::Ceph => Ok(Arc::new(ceph::CephStore::open(config)?)),
        #[cfg(not(feature = "ceph"))]
        Backend::Ceph => Err(StoreError::Config(
            "backend ceph: this binary was built without the `ceph` feature \
             (--no-default-features); a default `cargo build` includes it"
                .into(),
        )),
    }
}
