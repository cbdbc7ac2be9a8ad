//! The in-daemon state of a file (one per inode while anything refers to it): the committed value
//! when it is loaded, the versions that open readers still need, and for files that live only in
//! the daemon (scratch files, new chunks not committed yet, files unlinked while open) their
//! bytes. Write buffers are not here: each open handle builds its own (`handle.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock};

use super::value::Value;
use crate::store::Version;

/// One file's shared state.
pub struct Node {
    pub ino: u64,
    /// Held shared while the committed value is read from the store (a ranged read, a whole
    /// fetch), exclusively while it is replaced (a commit, a rename or unlink onto it): no read
    /// straddles a change, and no stale fetch is installed after one.
    pub gate: RwLock<()>,
    pub state: Mutex<NodeState>,
}

/// What a node knows; locked briefly (never across a store call that another reader waits on).
#[derive(Default)]
pub struct NodeState {
    /// Bumped by every change of the committed value made through this daemon.
    pub version: u64,
    /// The committed value at `version`, when loaded. For a file that lives only in the daemon
    /// (see [`NodeState::is_local`]) this is its content (`None` = empty).
    pub value: Option<Arc<Value>>,
    /// The store's version of `value`, when it was read from a store with versions.
    pub value_version: Option<Version>,
    /// Where the committed value lives.
    pub residence: Residence,
    /// A scratch file's or new chunk's mtime, or one set while writers were open.
    pub mtime: Option<SystemTime>,
    /// `mtime` was set explicitly (touch -d, cp -p, rsync) and is stored after the next commit.
    pub mtime_explicit: bool,
    /// Handles open for writing.
    pub writers: usize,
    /// Who reads through the kernel's page cache, and who through the daemon (see `cache.rs`).
    pub readers: super::readers::Readers,
    /// Ranged readers (handles reading straight from the store) by the version they read.
    ranged: HashMap<u64, usize>,
    /// Values of older versions kept for the ranged readers still on them, with their store
    /// versions (`None`: it could not be kept, and their reads fail with EIO).
    retired: HashMap<u64, Option<Kept>>,
}

impl Node {
    /// The node of an existing chunk (nothing loaded).
    pub fn stored(ino: u64) -> Self {
        Node {
            ino,
            gate: RwLock::new(()),
            state: Mutex::new(NodeState::default()),
        }
    }

    /// The node of a file created in the daemon: a new chunk (`new_chunk`) or a scratch file.
    pub fn created(ino: u64, new_chunk: bool) -> Self {
        let node = Node::stored(ino);
        {
            let mut st = node.state.lock();
            st.residence = if new_chunk {
                Residence::New
            } else {
                Residence::Stored
            };
            st.mtime = Some(SystemTime::now());
        }
        node
    }
}

/// Where a file's committed value lives. A scratch file's bytes live in the daemon whatever
/// this says: its name says it is one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Residence {
    /// In the store (the node holds at most a copy).
    #[default]
    Stored,
    /// A chunk created in the daemon whose first commit has not succeeded: it exists only here,
    /// with an empty committed value, and readdir lists it from the daemon.
    New,
    /// Unlinked or replaced while open: no name; its handles keep reading `value`.
    Detached,
}

/// An older value kept for its ranged readers, with its store version (when the store has
/// versions).
type Kept = (Arc<Value>, Option<Version>);

/// What a ranged reader finds for the version it reads.
pub enum RangedView {
    /// Still the current version: read the store.
    Current,
    /// An older version, kept in the daemon, with its store version.
    Kept(Arc<Value>, Option<Version>),
    /// An older version that could not be kept.
    Lost,
}

impl NodeState {
    /// The committed value lives in the daemon, not the store.
    pub fn is_local(&self, scratch: bool) -> bool {
        scratch || self.residence != Residence::Stored
    }

    /// Registers a ranged reader on the current version; returns the version.
    pub fn add_ranged(&mut self) -> u64 {
        *self.ranged.entry(self.version).or_default() += 1;
        self.version
    }

    /// Removes a ranged reader of `version`, dropping a kept value nobody reads any more.
    pub fn remove_ranged(&mut self, version: u64) {
        if let Some(n) = self.ranged.get_mut(&version) {
            *n -= 1;
            if *n == 0 {
                self.ranged.remove(&version);
                self.retired.remove(&version);
            }
        }
    }

    /// What a ranged reader of `version` reads.
    pub fn ranged_view(&self, version: u64) -> RangedView {
        if version == self.version {
            return RangedView::Current;
        }
        match self.retired.get(&version) {
            Some(Some((v, store))) => RangedView::Kept(v.clone(), *store),
            _ => RangedView::Lost,
        }
    }

    /// Whether a change of the committed value must first load it: ranged readers are on the
    /// current version and it is not loaded (`trusted`: a loaded value is the current one; on
    /// a store other clients change it may not be, and is loaded again).
    pub fn must_keep_current(&self, trusted: bool) -> bool {
        (self.value.is_none() || !trusted) && self.ranged.contains_key(&self.version)
    }

    /// The committed value changed (or may have: a failed commit): the current value is kept for
    /// its ranged readers, and the next version starts unloaded (or as `value`).
    pub fn advance(&mut self, value: Option<Arc<Value>>) {
        let kept_version = self.value_version.take();
        if self.ranged.contains_key(&self.version) {
            let kept = self.value.take().map(|v| (v, kept_version));
            if kept.is_none() {
                log::warn!(
                    "a chunk changed under {} open reader(s) and its old value could not be \
                     kept: their reads fail with EIO",
                    self.ranged[&self.version]
                );
            }
            self.retired.insert(self.version, kept);
        }
        self.version += 1;
        self.value = value;
    }
}
