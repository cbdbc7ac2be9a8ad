//! The in-daemon state of a file: for a chunk while it is open (its write buffer, or the whole
//! value fetched once for reading), for a scratch file for as long as it exists (its only copy).
//! All of it is counted against the memory budget.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::budget::Budget;
use super::error::FsResult;

/// One file's state, shared by its open handles.
pub struct Node {
    pub ino: u64,
    pub state: Mutex<NodeState>,
}

/// What a node holds; locked while it is read, written or committed.
pub struct NodeState {
    /// The bytes, once loaded (always loaded for a new file and a scratch file).
    pub content: Option<Vec<u8>>,
    /// Written since the last commit.
    pub dirty: bool,
    /// A scratch file's mtime; for a chunk, the mtime of uncommitted writes or one set by setattr.
    pub mtime: Option<SystemTime>,
    /// `mtime` was set explicitly (touch -d, futimens) and must be stored after the commit.
    pub mtime_explicit: bool,
    /// A chunk created in the daemon (create of a name the store did not have) and not yet
    /// stored by a successful commit: readdir lists it from the daemon, since the store's listing
    /// does not have it. Cleared by a successful commit and by unlink; a rename commits first.
    pub new_chunk: bool,
    reserved: u64,
    budget: Arc<Budget>,
}

impl Node {
    /// A node whose content is not loaded yet (an existing chunk being opened).
    pub fn unloaded(ino: u64, budget: Arc<Budget>) -> Self {
        Node {
            ino,
            state: Mutex::new(NodeState {
                content: None,
                dirty: false,
                mtime: None,
                mtime_explicit: false,
                new_chunk: false,
                reserved: 0,
                budget,
            }),
        }
    }

    /// A new empty file: dirty, so that closing it stores a 0-byte chunk (`touch`). `new_chunk`
    /// for a chunk name the store does not have yet (see [`NodeState::new_chunk`]).
    pub fn created(ino: u64, budget: Arc<Budget>, new_chunk: bool) -> Self {
        let node = Node::unloaded(ino, budget);
        {
            let mut st = node.state.lock().unwrap();
            st.content = Some(Vec::new());
            st.dirty = true;
            st.mtime = Some(SystemTime::now());
            st.new_chunk = new_chunk;
        }
        node
    }
}

impl NodeState {
    /// Replaces the content with `value`, counting it against the budget.
    pub fn install(&mut self, value: Vec<u8>, what: &dyn std::fmt::Display) -> FsResult<()> {
        let len = value.len() as u64;
        if len > self.reserved {
            self.budget.reserve(len - self.reserved, what)?;
        } else {
            self.budget.release(self.reserved - len);
        }
        self.reserved = len;
        self.content = Some(value);
        Ok(())
    }

    /// Like `install`, but hands the value back when the budget has no room for it.
    pub fn try_install(&mut self, value: Vec<u8>) -> Result<(), Vec<u8>> {
        let len = value.len() as u64;
        if len > self.reserved && !self.budget.try_reserve(len - self.reserved) {
            return Err(value);
        }
        if len < self.reserved {
            self.budget.release(self.reserved - len);
        }
        self.reserved = len;
        self.content = Some(value);
        Ok(())
    }

    /// Resizes the (loaded) content, zero-filling growth; growth is counted against the budget.
    pub fn resize(&mut self, len: usize, what: &dyn std::fmt::Display) -> FsResult<()> {
        let content = self.content.get_or_insert_with(Vec::new);
        let want = len as u64;
        if want > self.reserved {
            self.budget.reserve(want - self.reserved, what)?;
            self.reserved = want;
        }
        content.resize(len, 0);
        if want < self.reserved {
            self.budget.release(self.reserved - want);
            self.reserved = want;
        }
        Ok(())
    }

    /// Records a write: dirty, modified now.
    pub fn touch_written(&mut self) {
        self.dirty = true;
        self.mtime = Some(SystemTime::now());
        self.mtime_explicit = false;
    }
}

impl Drop for NodeState {
    fn drop(&mut self) {
        self.budget.release(self.reserved);
    }
}
