//! Write-outs: after a commit of a big value the store may still hold copies of it in memory
//! (LevelDB: its memtable) until it writes them out (LevelDB: as a table). That runs here, in
//! the background, off the commit's path (a close or fsync does not wait for a table to be
//! written), holding the value's share of the memory budget until it is done; the unmount
//! waits for it.

use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::budget::Budget;
use crate::store::Cloudstore;

/// Write-outs under way.
#[derive(Default)]
pub(super) struct WriteOuts {
    pending: Mutex<usize>,
    idle: Condvar,
}

/// Ends one write-out however its thread ends: its budget given back, the count lowered.
struct Done {
    outs: Arc<WriteOuts>,
    budget: Arc<Budget>,
    reserved: u64,
}

impl Drop for Done {
    fn drop(&mut self) {
        self.budget.release(self.reserved);
        let mut pending = self.outs.pending.lock();
        *pending -= 1;
        if *pending == 0 {
            self.outs.idle.notify_all();
        }
    }
}

impl WriteOuts {
    /// Writes out what `store` holds of the values written, in the background, then gives
    /// `reserved` bytes back to `budget`.
    pub(super) fn start(
        self: &Arc<Self>,
        store: &Arc<dyn Cloudstore>,
        budget: &Arc<Budget>,
        reserved: u64,
    ) {
        *self.pending.lock() += 1;
        let done = Done {
            outs: self.clone(),
            budget: budget.clone(),
            reserved,
        };
        let store = store.clone();
        // A thread per write-out: they follow commits of values as big as the store's write
        // buffer (64 MiB by default), each taking a second or so. Without a thread, the
        // closure (and with it `done`) is dropped: the store writes its memory out later.
        let spawned = std::thread::Builder::new()
            .name("write-out".into())
            .spawn(move || {
                let _done = done;
                store.write_out();
            });
        if let Err(e) = spawned {
            log::warn!("no thread for a write-out ({e}): the store writes it out later");
        }
    }

    /// Waits until every write-out started is done.
    pub(super) fn wait(&self) {
        let mut pending = self.pending.lock();
        while *pending > 0 {
            self.idle.wait(&mut pending);
        }
    }
}
