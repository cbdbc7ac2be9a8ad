//! An open file. A handle that writes builds its own new value (`Written::New`), so that
//! nothing of it is seen by anyone else until it is committed whole; every handle reads one
//! consistent version of the committed value (its `View`) until it has written.

use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

use super::error::FsError;
use super::node::Node;
use super::value::Value;
use crate::store::Version;

/// The process (thread group) of thread `tid`, from /proc: a descriptor belongs to the whole
/// process, so a close() by any of its threads (Go, Java, thread pools) must publish what it
/// wrote and report the commit's failure. When /proc has no answer (the thread is gone), the
/// thread id is the best left.
pub fn process_of(tid: u32) -> u32 {
    crate::sys::process::thread_group(tid).unwrap_or(tid)
}

/// The open(2) flags the core acts on, read once from the raw flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenMode {
    /// Opened for writing (O_WRONLY or O_RDWR).
    pub write: bool,
    /// O_TRUNC, on an open for writing.
    pub truncate: bool,
    /// O_APPEND.
    pub append: bool,
    /// O_EXCL (with O_CREAT).
    pub exclusive: bool,
}

impl OpenMode {
    /// The mode of raw open(2) `flags`.
    pub fn of(flags: i32) -> Self {
        let acc = flags & libc::O_ACCMODE;
        let write = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        OpenMode {
            write,
            truncate: write && flags & libc::O_TRUNC != 0,
            append: flags & libc::O_APPEND != 0,
            exclusive: flags & libc::O_EXCL != 0,
        }
    }
}

/// What a handle reads while it has no new value of its own.
#[derive(Default)]
pub enum View {
    /// Nothing read yet: the first read decides.
    #[default]
    Unset,
    /// A committed value held in the daemon.
    Pinned(Arc<Value>),
    /// Reads go to the store (backends with versioned ranged reads): `version` is the node's
    /// version the handle reads (its value is kept in the daemon if this mount changes it),
    /// `store` the store's version of it (another client's change fails the read).
    Ranged { version: u64, store: Version },
}

/// One open(2) of a file.
pub struct Handle {
    pub ino: u64,
    /// The process that opened it (its thread group id).
    pub pid: u32,
    /// Its age for the memory budget (older handles win when memory is short).
    pub age: u64,
    pub node: Arc<Node>,
    pub write: bool,
    /// Direct I/O or through the page cache.
    pub io: super::readers::Io,
    pub append: bool,
    pub st: Mutex<HandleState>,
}

/// A handle's own state: the version it reads, and what it wrote.
#[derive(Default)]
pub struct HandleState {
    /// What it reads while `written` holds no new value (and, on a ranged store, the version
    /// the node keeps for it until it lets go of the view).
    pub view: View,
    pub written: Written,
}

/// What a handle wrote.
#[derive(Default)]
pub enum Written {
    /// Nothing (or it gave its new value to the node when it committed it): reads go to the
    /// view.
    #[default]
    Nothing,
    /// Its own new value, which reads go to (made by its first write, an O_TRUNC or a create).
    New(NewValue),
    /// A write, fetch or commit failed: it fails from then on and commits nothing (the first
    /// failure is the one reported).
    Poisoned(FsError),
}

/// A handle's new value and what goes with it.
pub struct NewValue {
    pub value: Value,
    /// Changes not committed yet.
    pub dirty: bool,
    /// An mtime set through this handle, stored after its commit.
    pub mtime: Option<SystemTime>,
    /// An O_APPEND handle that has only appended: `value` is a base value of this many bytes
    /// followed by its own bytes, which its commit appends to the value as it then stands
    /// (`None`: the handle replaces the value whole, as any writer after an ftruncate).
    pub append_base: Option<usize>,
}

impl NewValue {
    /// A value that replaces the chunk's whole when committed (dirty, so that closing the
    /// handle commits it).
    pub fn replacing(value: Value) -> Self {
        NewValue {
            value,
            dirty: true,
            mtime: None,
            append_base: None,
        }
    }

    /// After a write: changes to commit, whose mtime is the commit's time.
    pub fn changed(&mut self) {
        self.dirty = true;
        self.mtime = None;
    }
}

impl HandleState {
    /// The state of a new handle: `new`, the new value an O_TRUNC or a create starts with.
    pub fn opened(new: Option<NewValue>) -> Self {
        HandleState {
            view: View::Unset,
            written: new.map_or(Written::Nothing, Written::New),
        }
    }

    /// Its new value, if it has one.
    pub fn new_value(&self) -> Option<&NewValue> {
        match &self.written {
            Written::New(n) => Some(n),
            _ => None,
        }
    }

    /// Its new value, if it has one, to change.
    pub fn new_value_mut(&mut self) -> Option<&mut NewValue> {
        match &mut self.written {
            Written::New(n) => Some(n),
            _ => None,
        }
    }

    /// Gives its new value up (to the node that commits it, or because it is clean).
    pub fn take_new_value(&mut self) -> Option<NewValue> {
        match std::mem::take(&mut self.written) {
            Written::New(n) => Some(n),
            other => {
                self.written = other;
                None
            }
        }
    }

    /// Whether it has changes not committed yet.
    pub fn is_dirty(&self) -> bool {
        self.new_value().is_some_and(|n| n.dirty)
    }

    /// Whether a failure poisoned it.
    pub fn is_poisoned(&self) -> bool {
        matches!(self.written, Written::Poisoned(_))
    }

    /// Fails from now on with `e` (the first failure is the one reported); its new value is
    /// dropped.
    pub fn poison(&mut self, e: &FsError) {
        if !self.is_poisoned() {
            self.written = Written::Poisoned(e.clone().logged());
        }
    }

    /// The error a poisoned handle answers with.
    pub fn check(&self) -> Result<(), FsError> {
        match &self.written {
            Written::Poisoned(e) => Err(e.clone()),
            _ => Ok(()),
        }
    }
}
