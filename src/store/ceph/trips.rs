//! Round trips to the OSDs: what `cloudstore-fs stats` reports of a connection.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use crate::store::RoundTrips;

/// The operations a connection sent to the OSDs (`cloudstore-fs stats`): each is one round
/// trip, however many steps (stat, read, xattrs) it carries.
#[derive(Default)]
pub struct TripCounter {
    ops: AtomicU64,
    batches: AtomicU64,
    batched_ops: AtomicU64,
}

impl TripCounter {
    /// `n` operations sent together (pipelined when more than one).
    pub fn sent(&self, n: usize) {
        let n = n as u64;
        self.ops.fetch_add(n, Relaxed);
        if n > 1 {
            self.batches.fetch_add(1, Relaxed);
            self.batched_ops.fetch_add(n, Relaxed);
        }
    }

    pub fn get(&self) -> RoundTrips {
        RoundTrips {
            ops: self.ops.load(Relaxed),
            batches: self.batches.load(Relaxed),
            batched_ops: self.batched_ops.load(Relaxed),
        }
    }
}
