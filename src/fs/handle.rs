//! An open file. A handle opened for writing builds its own new value (`buf`), so that nothing
//! of it is seen by anyone else until it is committed whole; every handle reads one consistent
//! version of the committed value (`view`) until it has written.

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

/// What a handle reads when it has not written.
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

/// A handle's own state.
#[derive(Default)]
pub struct HandleState {
    pub view: View,
    /// The new value being written (None until the first write, or O_TRUNC).
    pub buf: Option<Value>,
    /// `buf` has changes not committed yet.
    pub dirty: bool,
    /// A write, fetch or commit of this handle failed: it fails from then on and commits nothing.
    pub poisoned: Option<FsError>,
    /// An mtime set through this handle, stored after its commit.
    pub mtime: Option<SystemTime>,
    /// An O_APPEND handle that has only appended: `buf` is a base value of this many bytes
    /// followed by its own bytes, which its commit appends to the value as it then stands
    /// (`None`: the handle replaces the value whole, as any writer after an ftruncate).
    pub append_base: Option<usize>,
}

impl HandleState {
    /// Fails from now on with `e` (the first failure is the one reported).
    pub fn poison(&mut self, e: &FsError) {
        if self.poisoned.is_none() {
            self.poisoned = Some(e.clone().logged());
        }
        self.dirty = false;
        self.buf = None;
    }

    /// The error a poisoned handle answers with.
    pub fn check(&self) -> Result<(), FsError> {
        match &self.poisoned {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}
