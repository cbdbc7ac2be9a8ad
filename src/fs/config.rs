//! How the core behaves: [`FsConfig`], built from the configuration and the store's capabilities.

use std::time::Duration;

use super::budget;
use super::readahead::ReadAheadConfig;
use crate::config::Config;
use crate::store::Cloudstore;

/// How the core behaves; built from the configuration with [`FsConfig::new`].
#[derive(Debug, Clone)]
pub struct FsConfig {
    /// Largest file (chunk value) in bytes; writing past it is EFBIG.
    pub max_chunk_size: u64,
    /// Bytes of file data the daemon may hold at once.
    pub memory_budget: u64,
    /// How long an operation waits for room in the budget before it fails with ENOMEM.
    pub budget_wait: Duration,
    /// Refuse every change with EROFS.
    pub read_only: bool,
    /// Other users may reach the mount (--allow-other): then a chmod or chown that cannot be
    /// kept is refused, since someone may count on it. On an owner-only mount nobody else can
    /// reach the files, and it is accepted without effect, as `rsync -a` and `cp -p` need.
    pub allow_other: bool,
    /// Owner of every file (the mounting user).
    pub uid: u32,
    /// Group of every file.
    pub gid: u32,
    /// Permission bits every file shows (0644 unless `--file-mode`).
    pub file_mode: u32,
    /// How long sizes and mtimes learned from the store stay valid (also the kernel's attr TTL).
    pub attr_ttl: Duration,
    /// Fetch a whole value once per open file instead of ranged reads (for backends without a
    /// real partial read, such as LevelDB).
    pub whole_value_reads: bool,
    /// Bytes an open reads with the chunk's version on a ranged store: a value that fits is
    /// held by the handle, a longer one is read by range.
    pub open_read: u64,
    /// Metadata lookups (mtimes for readdirplus) in flight at once: more than one pays off on
    /// a remote store where each is a round trip.
    pub metadata_parallelism: usize,
    /// Batched read-ahead for files opened in listing order.
    pub readahead: ReadAheadConfig,
    /// Read-only opens of stored chunks may read through the kernel's page cache (see
    /// `cache.rs`); off, every open is direct I/O.
    pub cached_reads: bool,
}

impl FsConfig {
    /// The settings for `config` over `store`, owned by the calling user.
    pub fn new(config: &Config, store: &dyn Cloudstore, read_only: bool) -> Self {
        let (uid, gid) = (crate::sys::process::uid(), crate::sys::process::gid());
        // A store with versioned ranged reads is a remote one (each call a round trip) that
        // other clients may share.
        let remote = store.capabilities().versioned_ranges;
        FsConfig {
            max_chunk_size: config.max_chunk_size,
            memory_budget: config.memory_budget,
            budget_wait: budget::DEFAULT_WAIT,
            read_only,
            allow_other: false,
            uid,
            gid,
            file_mode: 0o644,
            attr_ttl: Duration::from_secs(1),
            whole_value_reads: !remote,
            open_read: OPEN_READ,
            metadata_parallelism: if remote { 16 } else { 1 },
            readahead: ReadAheadConfig {
                // Prefetched values wait no longer than the sizes the kernel caches.
                max_age: Duration::from_secs(1),
                ..ReadAheadConfig::default()
            },
            cached_reads: true,
        }
    }
}

/// Bytes an open of a chunk on a ranged store reads with its version: the common chunk (4 to
/// 64 KiB) is then read whole in that one round trip.
pub const OPEN_READ: u64 = 64 << 10;
