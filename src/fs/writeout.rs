//! Write-outs: after a commit of a big value the store may still hold copies of it in memory
//! (LevelDB: its memtable) until it writes them out (LevelDB: as a table). That runs here, in
//! the background, off the commit's path (a close or fsync does not wait for a table to be
//! written), holding the value's share of the memory budget until it is done; the unmount
//! waits for it.
//!
//! One write-out covers every commit made before it began, so commits that come faster than
//! tables are written share the next one instead of queueing one each (each holding its share
//! of the budget: a backlog of them once starved other requests of it).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::budget::Budget;
use crate::store::Cloudstore;

#[derive(Default)]
struct State {
    /// Commits waiting for the next write-out, and the budget they hold.
    commits: usize,
    reserved: u64,
    /// A thread is writing out (and will look for more before it stops).
    running: bool,
}

/// Write-outs under way.
#[derive(Default)]
pub(super) struct WriteOuts {
    state: Mutex<State>,
    idle: Condvar,
}

impl WriteOuts {
    /// After a commit that left copies in `store`: a write-out, in the background, then
    /// `reserved` bytes given back to `budget`.
    pub(super) fn start(
        self: &Arc<Self>,
        store: &Arc<dyn Cloudstore>,
        budget: &Arc<Budget>,
        reserved: u64,
    ) {
        {
            let mut st = self.state.lock();
            st.commits += 1;
            st.reserved += reserved;
            if st.running {
                return;
            }
            st.running = true;
        }
        let (outs, s, b) = (self.clone(), store.clone(), budget.clone());
        let spawned = std::thread::Builder::new()
            .name("write-out".into())
            .spawn(move || outs.drain(&*s, &b));
        if let Err(e) = spawned {
            log::warn!("no thread for a write-out ({e}): writing out now");
            self.drain(&**store, budget);
        }
    }

    /// Writes out until no commit waits for it.
    fn drain(&self, store: &dyn Cloudstore, budget: &Budget) {
        loop {
            let reserved = {
                let mut st = self.state.lock();
                if st.commits == 0 {
                    st.running = false;
                    self.idle.notify_all();
                    return;
                }
                st.commits = 0;
                std::mem::take(&mut st.reserved)
            };
            if catch_unwind(AssertUnwindSafe(|| store.write_out())).is_err() {
                log::error!("write-out: panic in the store; its memory is given back");
            }
            budget.release(reserved);
        }
    }

    /// Waits until every write-out started is done.
    pub(super) fn wait(&self) {
        let mut st = self.state.lock();
        while st.running || st.commits > 0 {
            self.idle.wait(&mut st);
        }
    }
}
