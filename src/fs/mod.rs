//! The filesystem core: one flat directory whose files are the chunks of a [`Cloudstore`].
//! Plain Rust with no FUSE types, so it is tested directly; `crate::fuse` adapts it to fuser.
//!
//! - `name`: chunk names (lowercase hex of the key) and scratch names (every other name);
//! - `inode`: inode numbers derived from names, stable across forgets and remounts;
//! - `side`: what is kept beside the keyspace: saved scratch files, the directory's mtime;
//! - `node`: a file's in-daemon state (write buffer, fetched value, scratch content);
//! - `commit`: group commit of buffered writes into SetChunk / SetChunkBatch;
//! - `attr`: attribute types and the short-lived size/mtime cache; `getattr`: what an inode's
//!   attributes are;
//! - `open`, `read`, `write`, `setattr`, `publish`: open files, from open to the commit at close;
//!   `cache`: which readers read through the kernel's page cache;
//! - `lifecycle`: statfs and the end of a mount; `config`: [`FsConfig`];
//! - `dir`: streaming readdir over the backend listing;
//! - `readahead`: batched prefetch when files are opened in listing order;
//! - `budget`: the memory budget for everything above.

pub mod attr;
pub mod budget;
mod cache;
pub mod commit;
mod config;
mod dir;
pub mod error;
mod getattr;
mod handle;
pub mod inode;
mod lifecycle;
pub mod name;
mod namespace;
mod node;
mod open;
mod publish;
mod read;
pub mod readahead;
mod readers;
mod setattr;
pub mod side;
pub mod stats;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod value;
mod write;
mod writeout;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use parking_lot::{Mutex, MutexGuard, RwLock};

pub use attr::{Attr, FileKind, SetTime, StatFs};
pub use config::{FsConfig, OPEN_READ};
pub use dir::DirEntry;
pub use error::{FsError, FsResult};
pub use inode::ROOT_INO;
pub use readers::Io;

use attr::AttrCache;
use budget::Budget;
use commit::Committer;
use dir::DirStream;
pub use handle::process_of;
use handle::Handle;
use inode::InodeTable;
use name::Name;
use node::Node;
use readahead::ReadAhead;
pub use readahead::{ReadAheadConfig, ReadAheadStats};
pub use stats::StatsSnapshot;
use stats::{ErrorCounts, RequestCounts};

use crate::store::Cloudstore;

/// How many times a lookup or getattr that raced renames asks again before it answers.
const MAX_RACED: usize = 3;

struct NodeEntry {
    node: Arc<Node>,
    /// Open handles (and temporary users) of the node.
    open: u32,
}

/// Everything indexed by number; one lock, held briefly.
///
/// Lock order: a handle's state, the namespace lock (`ChunkFs::ns`), a node's gate, a node's
/// state, then this. Locks are parking_lot's: a panic never poisons them.
#[derive(Default)]
struct Tables {
    inodes: InodeTable,
    nodes: HashMap<u64, NodeEntry>,
    handles: HashMap<u64, Arc<Handle>>,
    dirs: HashMap<u64, Arc<Mutex<DirStream>>>,
}

impl Tables {
    /// Drops `ino` from the inode table when the kernel holds no lookup on it and no node (an
    /// open file, uncommitted or loaded content, a scratch file) refers to it. Open handles
    /// always hold their node, so a node-less inode has none.
    fn drop_if_unused(&mut self, ino: u64) -> bool {
        let in_use = self.nodes.contains_key(&ino);
        self.inodes.drop_if_unused(ino, in_use)
    }
}

/// The filesystem over one store.
pub struct ChunkFs {
    store: Arc<dyn Cloudstore>,
    cfg: FsConfig,
    tables: Mutex<Tables>,
    attrs: AttrCache,
    budget: Arc<Budget>,
    committer: Committer,
    /// What the store holds of big values after their commits, written out in the background.
    write_outs: Arc<writeout::WriteOuts>,
    readahead: ReadAhead,
    /// Commits hold it shared from resolving their name to the end of the store write; renames
    /// and unlinks hold it exclusively, so no commit lands under a name after it moved.
    ns: RwLock<()>,
    /// Renames and unlinks begun (counted under `ns` held exclusively): a lookup or getattr
    /// that raced one asks again once it is done (see `raced_a_rename`).
    ns_changes: AtomicU64,
    next_fh: AtomicU64,
    started: SystemTime,
    /// Failures answered to programs, for `cloudstore-fs stats`.
    errors: ErrorCounts,
    /// Requests answered, by kind, for `cloudstore-fs stats`.
    requests: RequestCounts,
    /// Names moved off cached readers for a writer that has yet to open them again.
    writers_due: cache::WritersDue,
    /// Tells the kernel to drop what it caches of an inode (pages, attributes) after a change.
    invalidator: OnceLock<Box<dyn Fn(u64) + Send + Sync>>,
    /// Tells the kernel, at once, to drop its attributes of an inode (no pages).
    attr_invalidator: OnceLock<Box<dyn Fn(u64) + Send + Sync>>,
    /// The directory's mtime, kept beside the keyspace (`side`).
    dir_mtime: Arc<side::DirState>,
    /// Scratch files saved by an earlier unmount could not be loaded: they are not replaced.
    scratch_unloaded: std::sync::atomic::AtomicBool,
    /// The saved scratch files this mount loaded (or saved): its own to replace at unmount.
    scratch_loaded: Mutex<std::collections::BTreeSet<OsString>>,
    /// What saving the scratch files at shutdown gave (`None`: not saved yet).
    scratch_saved: Mutex<Option<FsResult<()>>>,
}

impl ChunkFs {
    /// A filesystem showing `store`, with the scratch files the last unmount saved.
    pub fn new(store: Arc<dyn Cloudstore>, cfg: FsConfig) -> Self {
        let budget = Arc::new(Budget::new(cfg.memory_budget, cfg.budget_wait));
        let started = SystemTime::now();
        let fs = ChunkFs {
            committer: Committer::new(store.clone()),
            write_outs: Arc::default(),
            attrs: AttrCache::new(cfg.attr_ttl),
            readahead: ReadAhead::new(cfg.readahead.clone(), budget.clone()),
            budget,
            store,
            cfg,
            tables: Mutex::default(),
            ns: RwLock::new(()),
            ns_changes: AtomicU64::new(0),
            next_fh: AtomicU64::new(1),
            started,
            errors: ErrorCounts::default(),
            requests: RequestCounts::default(),
            writers_due: Default::default(),
            invalidator: OnceLock::new(),
            attr_invalidator: OnceLock::new(),
            dir_mtime: Arc::new(side::DirState::new(started)),
            scratch_unloaded: Default::default(),
            scratch_loaded: Default::default(),
            scratch_saved: Mutex::new(None),
        };
        fs.load_side();
        fs
    }

    /// Sets what tells the kernel to drop its cache of an inode (the mount's notifier). It is
    /// called after commits, renames and unlinks, and must not block on a FUSE request.
    pub fn set_invalidator(&self, f: Box<dyn Fn(u64) + Send + Sync>) {
        let _ = self.invalidator.set(f);
    }

    /// Sets what tells the kernel to drop its attributes of an inode at once (no pages: safe
    /// from a request handler).
    pub fn set_attr_invalidator(&self, f: Box<dyn Fn(u64) + Send + Sync>) {
        let _ = self.attr_invalidator.set(f);
    }

    fn invalidate_kernel_attrs(&self, ino: u64) {
        if let Some(f) = self.attr_invalidator.get() {
            f(ino);
        }
    }

    fn invalidate_kernel(&self, ino: u64) {
        self.pages_unknown(ino);
        if let Some(f) = self.invalidator.get() {
            f(ino);
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Cloudstore> {
        &self.store
    }

    /// The settings.
    pub fn config(&self) -> &FsConfig {
        &self.cfg
    }

    /// Bytes of file data held in the daemon now.
    pub fn memory_in_use(&self) -> u64 {
        self.budget.used()
    }

    /// Counts a failure answered to a program for `op` (the adapter calls it for each one).
    pub fn record_error(&self, op: &str, e: &FsError) {
        self.errors.record(op, e);
    }

    /// Commits pending and done, failures answered by kind, the last one, and memory held.
    pub fn stats(&self) -> StatsSnapshot {
        let (open_files, writers) = {
            let t = self.tables();
            let writers = t.handles.values().filter(|h| h.write).count();
            (t.handles.len(), writers)
        };
        let (errors, last_error) = self.errors.snapshot();
        let (requests, bytes_read, bytes_written) = self.requests.snapshot();
        let (cached_opens, kept_opens) = self.requests.cached_opens();
        StatsSnapshot {
            backend: self.store.backend(),
            uptime: self.started.elapsed().unwrap_or_default(),
            commits: self.committer.counts(),
            open_files,
            writers,
            memory_used: self.budget.used(),
            memory_budget: self.budget.limit(),
            errors,
            last_error,
            requests,
            bytes_read,
            bytes_written,
            cached_opens,
            kept_opens,
            round_trips: self.store.round_trips(),
        }
    }

    /// Counts a FUSE request of `kind` for `stats`.
    pub fn count_request(&self, kind: &'static str) {
        self.requests.count(kind);
    }

    /// Counts file bytes moved by a read (`read`) or a write, for `stats`.
    pub fn count_bytes(&self, read: bool, bytes: u64) {
        self.requests.add_bytes(read, bytes);
    }

    /// What read-ahead has done so far.
    pub fn readahead_stats(&self) -> ReadAheadStats {
        self.readahead.stats()
    }

    /// Bytes held by read-ahead now (part of `memory_in_use`).
    pub fn readahead_bytes(&self) -> u64 {
        self.readahead.cached_bytes()
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock()
    }

    fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    fn check_writable(&self, op: impl std::fmt::Display) -> FsResult<()> {
        if self.cfg.read_only {
            return Err(FsError::new(
                libc::EROFS,
                format!("{op}: mounted read-only"),
            ));
        }
        Ok(())
    }

    fn check_parent(&self, parent: u64) -> FsResult<()> {
        if parent != ROOT_INO {
            return Err(FsError::new(libc::ENOENT, "only one directory exists"));
        }
        Ok(())
    }

    /// The current name of `ino` (None once unlinked or replaced).
    fn name_of(&self, ino: u64) -> Option<OsString> {
        self.tables().inodes.name_of(ino).map(OsStr::to_owned)
    }

    /// The chunk key `ino` stands for now (None for a scratch file or an unlinked one).
    fn key_of(&self, ino: u64) -> Option<Vec<u8>> {
        match self.tables().inodes.class_of(ino)? {
            Name::Chunk(key) => Some(key.clone()),
            _ => None,
        }
    }

    fn node_of(&self, ino: u64) -> Option<Arc<Node>> {
        self.tables().nodes.get(&ino).map(|e| e.node.clone())
    }

    fn handle(&self, fh: u64) -> FsResult<Arc<Handle>> {
        self.tables()
            .handles
            .get(&fh)
            .cloned()
            .ok_or_else(|| FsError::new(libc::EBADF, format!("no open file with handle {fh}")))
    }

    /// Takes a reference on the node of `ino`, creating it with `make` when there is none.
    fn acquire_node(&self, ino: u64, make: impl FnOnce() -> Node) -> (Arc<Node>, bool) {
        let mut t = self.tables();
        let mut created = false;
        let entry = t.nodes.entry(ino).or_insert_with(|| {
            created = true;
            NodeEntry {
                node: Arc::new(make()),
                open: 0,
            }
        });
        entry.open += 1;
        (entry.node.clone(), created)
    }

    /// Drops a reference taken by `acquire_node`; the last one frees a chunk's node (a scratch
    /// file's node lives as long as its name).
    fn release_node(&self, ino: u64) {
        let mut t = self.tables();
        let keep_scratch = t.inodes.class_of(ino) == Some(&Name::Scratch);
        if let Some(entry) = t.nodes.get_mut(&ino) {
            entry.open = entry.open.saturating_sub(1);
            if entry.open == 0 && !keep_scratch {
                t.nodes.remove(&ino);
            }
        }
        t.drop_if_unused(ino);
    }

    /// forget (and each node of batch_forget): the kernel dropped `nlookup` of its lookups on `ino`. At zero,
    /// and with nothing else in the daemon referring to it, the number leaves the table (a
    /// later lookup of the name gets a new one). The root is never dropped.
    pub fn forget(&self, ino: u64, nlookup: u64) {
        if ino == ROOT_INO {
            return;
        }
        let mut t = self.tables();
        if t.inodes.forget(ino, nlookup) == 0 {
            t.drop_if_unused(ino);
        }
    }

    /// Inode numbers live in the daemon, the root included (also `df -i`'s "used" count).
    pub fn inode_count(&self) -> usize {
        1 + self.tables().inodes.len()
    }
}
