//! The filesystem core: one flat directory whose files are the chunks of a [`Cloudstore`].
//! Plain Rust with no FUSE types, so it is tested directly; `crate::fuse` adapts it to fuser.
//!
//! - `name`: chunk names (lowercase hex of the key) and scratch names (every other name);
//! - `inode`: inode numbers derived from names, stable across forgets and remounts;
//! - `side`: what is kept beside the keyspace: saved scratch files, the directory's mtime;
//! - `node`: a file's in-daemon state (write buffer, fetched value, scratch content);
//! - `commit`: group commit of buffered writes into SetChunk / SetChunkBatch;
//! - `attr`: attributes and the short-lived size/mtime cache;
//! - `dir`: streaming readdir over the backend listing;
//! - `readahead`: batched prefetch when files are opened in listing order;
//! - `budget`: the memory budget for everything above.

pub mod attr;
pub mod budget;
pub mod commit;
mod dir;
pub mod error;
mod file;
mod handle;
pub mod inode;
pub mod name;
mod namespace;
mod node;
pub mod readahead;
pub mod side;
pub mod stats;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod value;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, MutexGuard, RwLock};

pub use attr::{Attr, FileKind, SetTime, StatFs};
pub use dir::DirEntry;
pub use error::{FsError, FsResult};
pub use inode::ROOT_INO;

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
}

impl FsConfig {
    /// The settings for `config` over `store`, owned by the calling user.
    pub fn new(config: &Config, store: &dyn Cloudstore, read_only: bool) -> Self {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
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
        }
    }
}

/// Bytes an open of a chunk on a ranged store reads with its version: the common chunk (4 to
/// 64 KiB) is then read whole in that one round trip.
pub const OPEN_READ: u64 = 64 << 10;

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
        match name::classify(&self.name_of(ino)?) {
            Name::Chunk(key) => Some(key),
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
        let keep_scratch = t
            .inodes
            .name_of(ino)
            .is_some_and(|n| name::classify(n) == Name::Scratch);
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

    fn root_attr(&self) -> Attr {
        Attr {
            ino: ROOT_INO,
            kind: FileKind::Directory,
            size: 4096,
            mtime: self.dir_mtime(),
            perm: 0o755,
            nlink: 2,
            uid: self.cfg.uid,
            gid: self.cfg.gid,
            volatile: false,
        }
    }

    fn file_attr(&self, ino: u64, size: u64, mtime: SystemTime) -> Attr {
        Attr {
            ino,
            kind: FileKind::File,
            size,
            mtime,
            perm: self.cfg.file_mode as u16,
            nlink: 1,
            uid: self.cfg.uid,
            gid: self.cfg.gid,
            volatile: false,
        }
    }

    /// The size of a chunk from the cache or the store; None when it does not exist.
    fn chunk_size(&self, key: &[u8], name: &OsStr) -> FsResult<Option<u64>> {
        if let Some(size) = self.attrs.size(key) {
            return Ok(size);
        }
        let since = self.attrs.generation();
        let size = self
            .store
            .stat(key)
            .map_err(|e| FsError::store("stat", name.to_string_lossy(), e))?;
        // On a store other clients share, a missing name is not remembered: another mount
        // may create it, and the next open here must find it (close-to-open).
        if size.is_some() || !self.ranged() {
            self.attrs.learn_size(key, size, since);
        }
        Ok(size)
    }

    /// The mtime of a chunk from the cache or the store (the epoch when the store has none).
    fn chunk_mtime(&self, key: &[u8], name: &OsStr) -> FsResult<SystemTime> {
        if let Some(t) = self.attrs.mtime(key) {
            return Ok(t);
        }
        let since = self.attrs.generation();
        let t = self
            .store
            .mtime(key)
            .map_err(|e| FsError::store("mtime", name.to_string_lossy(), e))?
            .unwrap_or(SystemTime::UNIX_EPOCH);
        self.attrs.learn_mtime(key, t, since);
        Ok(t)
    }

    /// The size and mtime of a chunk, from the cache or with one store call for both;
    /// `None` when it does not exist.
    fn chunk_attrs(&self, key: &[u8], name: &OsStr) -> FsResult<Option<(u64, SystemTime)>> {
        if let (Some(size), Some(mtime)) = (self.attrs.size(key), self.attrs.mtime(key)) {
            return Ok(size.map(|size| (size, mtime)));
        }
        if self.attrs.size(key).is_some() {
            let Some(size) = self.chunk_size(key, name)? else {
                return Ok(None);
            };
            return Ok(Some((size, self.chunk_mtime(key, name)?)));
        }
        let since = self.attrs.generation();
        let found = self
            .store
            .stat_with_mtime(key)
            .map_err(|e| FsError::store("stat", name.to_string_lossy(), e))?;
        let Some((size, mtime)) = found else {
            if !self.ranged() {
                self.attrs.learn_size(key, None, since);
            }
            return Ok(None);
        };
        self.attrs.learn_size(key, Some(size), since);
        let mtime = mtime.unwrap_or(SystemTime::UNIX_EPOCH);
        self.attrs.learn_mtime(key, mtime, since);
        Ok(Some((size, mtime)))
    }

    /// The attributes of an inode that has a node (an open chunk or a scratch file, or a file
    /// that lost its name while open: `name` None): those of its committed value, or, asked
    /// through a handle that has written, of that handle's value.
    fn node_attr(
        &self,
        ino: u64,
        node: &Node,
        name: Option<&OsStr>,
        writer: Option<&Handle>,
    ) -> FsResult<Attr> {
        if let Some(h) = writer {
            let hs = h.st.lock();
            if let Some(buf) = &hs.buf {
                let mtime = hs.mtime.unwrap_or_else(SystemTime::now);
                let mut attr = self.file_attr(ino, buf.len() as u64, mtime);
                attr.volatile = true;
                return Ok(attr);
            }
        }
        // A chunk's key and name; a scratch file and a nameless one live only in the daemon.
        let chunk = name.and_then(|name| match name::classify(name) {
            Name::Chunk(key) => Some((key, name)),
            _ => None,
        });
        let (size, mtime, volatile) = {
            let st = node.state.lock();
            let local = st.is_local(chunk.is_none());
            // On a ranged store a stored chunk's value held here may be another client's past.
            let held = st.value.as_ref().filter(|_| local || !self.ranged());
            let size = match held.map(|v| v.len() as u64) {
                Some(size) => Some(size),
                None if local => Some(0),
                None => None,
            };
            let mtime = if local || st.mtime_explicit {
                st.mtime
            } else {
                None
            };
            (size, mtime, st.writers > 0)
        };
        let size = match (size, &chunk) {
            (Some(size), _) => size,
            (None, Some((key, name))) => self
                .chunk_size(key, name)?
                .ok_or_else(|| FsError::not_found(name.to_string_lossy()))?,
            (None, None) => 0,
        };
        let mtime = match (mtime, &chunk) {
            (Some(t), _) => t,
            (None, Some((key, name))) => self.chunk_mtime(key, name)?,
            (None, None) => self.started,
        };
        let mut attr = self.file_attr(ino, size, mtime);
        attr.volatile = volatile;
        Ok(attr)
    }

    /// The handle through which thread `tid`'s process writes to `ino` (the most recent, if
    /// several): a process sees its own uncommitted writes in stat, everyone else the committed
    /// value. The thread is mapped to its process only when the file has writers.
    fn writer_of(&self, ino: u64, tid: u32) -> Option<Arc<Handle>> {
        // Lock order: a node's state before the tables, never the other way round.
        let node = self.node_of(ino)?;
        if node.state.lock().writers == 0 {
            return None;
        }
        let pid = process_of(tid);
        self.tables()
            .handles
            .iter()
            .filter(|(_, h)| h.write && h.ino == ino && (h.pid == tid || h.pid == pid))
            .max_by_key(|(fh, _)| **fh)
            .map(|(_, h)| h.clone())
    }

    /// The attributes of `ino` under its current name.
    fn attr_of(&self, ino: u64, name: &OsStr) -> FsResult<Attr> {
        self.attr_with(ino, name, None)
    }

    /// The attributes of `ino`, as `writer` (a handle open for writing) sees them if given.
    fn attr_with(&self, ino: u64, name: &OsStr, writer: Option<&Handle>) -> FsResult<Attr> {
        if let Some(node) = self.node_of(ino) {
            return self.node_attr(ino, &node, Some(name), writer);
        }
        match name::classify(name) {
            Name::Chunk(key) => {
                let (size, mtime) = self
                    .chunk_attrs(&key, name)?
                    .ok_or_else(|| FsError::not_found(name.to_string_lossy()))?;
                Ok(self.file_attr(ino, size, mtime))
            }
            _ => Err(FsError::not_found(name.to_string_lossy())),
        }
    }

    /// getattr, asked by process `pid` (`fh`: a handle the kernel names, as for ftruncate): a
    /// process that writes the file sees its own value, everyone else the committed one.
    ///
    /// An inode that is no longer what its name stands for (unlinked or replaced by a rename
    /// since the kernel looked it up, or deleted behind the daemon's back) is answered ESTALE,
    /// not ENOENT: the kernel then looks the path up again, so an open or stat that raced a
    /// rename onto its name finds what the name holds now instead of failing (the name never
    /// stopped existing). An unlinked file still open has attributes: those of its handles.
    pub fn getattr(&self, ino: u64, fh: Option<u64>, pid: u32) -> FsResult<Attr> {
        if ino == ROOT_INO {
            return Ok(self.root_attr());
        }
        // The name is read before the store is asked: a rename in between moves the inode to
        // a name the store has and leaves the old one absent. Asked again after it, the inode
        // answers under its new name.
        for _ in 0..MAX_RACED {
            let before = self.ns_changes.load(Ordering::SeqCst);
            match self.getattr_once(ino, fh, pid) {
                Err(e) if e.errno == libc::ESTALE && self.raced_a_rename(before) => continue,
                result => return result,
            }
        }
        self.getattr_once(ino, fh, pid)
    }

    /// Whether a rename or unlink ran (or runs) since `ns_changes` was `before`; if so, waits
    /// until it is done. Nothing else may be held: the wait takes the namespace lock.
    fn raced_a_rename(&self, before: u64) -> bool {
        let raced =
            self.ns.is_locked_exclusive() || self.ns_changes.load(Ordering::SeqCst) != before;
        if raced {
            drop(self.ns.read());
        }
        raced
    }

    fn getattr_once(&self, ino: u64, fh: Option<u64>, pid: u32) -> FsResult<Attr> {
        let writer = || {
            fh.and_then(|fh| self.handle(fh).ok())
                .filter(|h| h.write && h.ino == ino)
                .or_else(|| self.writer_of(ino, pid))
        };
        let Some(name) = self.name_of(ino) else {
            return self.nameless_attr(ino, writer().as_deref());
        };
        self.attr_with(ino, &name, writer().as_deref())
            .map_err(|e| match e.errno {
                libc::ENOENT => FsError::new(
                    libc::ESTALE,
                    format!(
                        "inode {ino} ({name:?}): gone from the store since the kernel looked it up"
                    ),
                ),
                _ => e,
            })
    }

    /// The attributes of `ino`, which has no name: a file that lost it while open (unlinked or
    /// replaced) has them (its handles keep its bytes), with no link; otherwise ESTALE.
    fn nameless_attr(&self, ino: u64, writer: Option<&Handle>) -> FsResult<Attr> {
        let node = self.node_of(ino).ok_or_else(|| Self::nameless(ino))?;
        let attr = self.node_attr(ino, &node, None, writer)?;
        Ok(Attr { nlink: 0, ..attr })
    }

    /// ESTALE for `ino`, which has no name and is not open: the kernel looks its path up again.
    fn nameless(ino: u64) -> FsError {
        FsError::new(
            libc::ESTALE,
            format!("inode {ino}: no name (unlinked, replaced or forgotten since looked up)"),
        )
    }

    /// statfs: the store's space figures, or generous defaults when it has none.
    pub fn statfs(&self) -> FsResult<StatFs> {
        const BSIZE: u64 = 4096;
        let space = self
            .store
            .space()
            .map_err(|e| FsError::store("statfs", self.store.backend(), e))?;
        // Without figures, say 1 PiB free rather than 0 so that tools that check space proceed.
        let (total, free, available) = space.map_or((1 << 50, 1 << 50, 1 << 50), |s| {
            (s.total, s.free, s.available)
        });
        Ok(StatFs {
            blocks: total / BSIZE,
            bfree: free / BSIZE,
            bavail: available / BSIZE,
            // Used inodes (files - ffree, `df -i`) are the numbers live in the daemon.
            files: u32::MAX as u64,
            ffree: (u32::MAX as u64).saturating_sub(self.inode_count() as u64),
            bsize: BSIZE as u32,
            namelen: 255,
        })
    }

    /// Publishes every handle with uncommitted writes (fsync on the directory, shutdown).
    /// Returns the first failure after trying them all.
    pub fn commit_all(&self) -> FsResult<()> {
        let writers: Vec<Arc<Handle>> = self
            .tables()
            .handles
            .values()
            .filter(|h| h.write)
            .cloned()
            .collect();
        let mut first = None;
        for h in writers {
            let mut hs = h.st.lock();
            if hs.poisoned.is_some() {
                // Already reported to the program by its write or close.
                continue;
            }
            if let Err(e) = self.publish(&h, &mut hs, false) {
                first.get_or_insert(e.logged());
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// fsyncdir: a barrier for every pending commit, then durable.
    pub fn fsyncdir(&self) -> FsResult<()> {
        self.commit_all()?;
        self.write_dir_mtime()?;
        self.store
            .sync()
            .map_err(|e| FsError::store("sync", self.store.backend(), e))
    }

    /// At unmount: commits what is pending and drops the scratch files, saying which.
    pub fn shutdown(&self) -> FsResult<()> {
        let result = self.commit_all();
        self.readahead.clear();
        let ra = self.readahead.stats();
        if ra.batches > 0 {
            log::info!(
                "read-ahead: {} batch(es) fetched {} chunk(s), {} open(s) served from them",
                ra.batches,
                ra.fetched,
                ra.served
            );
        }
        // Scratch files are kept for the next mount; a failure to save them fails the unmount
        // (the daemon's exit status) and names them.
        let saved = self.save_scratch();
        *self.scratch_saved.lock() = Some(saved.as_ref().map(drop).map_err(Clone::clone));
        if let Ok(names) = &saved {
            if !names.is_empty() {
                log::warn!(
                    "unmount: kept {} scratch file(s) for the next mount, beside the chunks \
                     ({}): {names:?}",
                    names.len(),
                    self.scratch_location()
                );
            }
        }
        let dir_mtime = self.write_dir_mtime_at_unmount();
        log::info!(
            "unmount: {} inode(s) live, {} byte(s) of the memory budget in use",
            self.inode_count(),
            self.budget.used()
        );
        if let Err(e) = self.store.sync() {
            log::error!("unmount: sync of {} failed: {e}", self.store.backend());
        }
        if let Err(e) = &dir_mtime {
            log::warn!("unmount: {e}");
        }
        result.and(saved.map(drop))
    }

    /// After the FUSE session ended (however it ended): commits what a lost connection left
    /// behind and saves the scratch files if `shutdown` did not run (an unmount that never
    /// reached destroy); returns the first failure, a failed save included, so that the
    /// daemon's exit status tells.
    pub fn finish_unmount(&self) -> FsResult<()> {
        let late = self.commit_all();
        let saved = self.scratch_saved.lock().clone();
        let saved = match saved {
            Some(result) => result,
            None => {
                if let Err(e) = self.write_dir_mtime_at_unmount() {
                    log::warn!("unmount: {e}");
                }
                let result = self.save_scratch().map(drop);
                *self.scratch_saved.lock() = Some(result.clone());
                result
            }
        };
        late.and(saved)
    }

    /// Where the store keeps saved scratch files, for the log.
    fn scratch_location(&self) -> String {
        match self.store.backend() {
            "leveldb" => "LevelDB: the file cloudstore-meta/cloudstore-side-scratch of the data \
                          directory"
                .into(),
            "ceph" => "Ceph: the object cloudstore-fs.side.scratch of the pool".into(),
            other => format!("the {other} store's side record \"scratch\""),
        }
    }

    /// mkdir, symlink, link, mknod: refused, this is one flat directory of chunks.
    pub fn refuse(&self, op: &str, name: &OsStr) -> FsError {
        log::warn!("{op} {name:?}: refused (EPERM): the mount is one flat directory of chunks");
        FsError::new(libc::EPERM, format!("{op} {name:?}: not supported")).logged()
    }
}
