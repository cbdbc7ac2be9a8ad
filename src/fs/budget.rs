//! The memory budget: bytes of chunk data the daemon may hold at once (write buffers, whole values
//! cached for reading, scratch files). Running out is ENOMEM for the operation, never an OOM.

use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{FsError, FsResult};

/// A byte counter with a limit, shared by everything that holds chunk data.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    used: AtomicU64,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Budget {
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// Takes `bytes` from the budget, or fails with ENOMEM when that would pass the limit.
    pub fn reserve(&self, bytes: u64, what: &dyn std::fmt::Display) -> FsResult<()> {
        self.try_reserve(bytes).then_some(()).ok_or_else(|| {
            FsError::new(
                libc::ENOMEM,
                format!(
                    "{what}: memory budget exhausted ({} of {} bytes in use, {bytes} more wanted; \
                     raise memory_budget or close files)",
                    self.used(),
                    self.limit
                ),
            )
        })
    }

    /// Takes `bytes` if they fit; false otherwise.
    pub fn try_reserve(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&n| n <= self.limit)
            })
            .is_ok()
    }

    /// Gives `bytes` back.
    pub fn release(&self, bytes: u64) {
        if bytes > 0 {
            let prev = self.used.fetch_sub(bytes, Ordering::AcqRel);
            debug_assert!(prev >= bytes, "budget released more than reserved");
        }
    }

    /// Bytes in use.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_up_to_the_limit() {
        let b = Budget::new(10);
        assert!(b.try_reserve(6));
        assert!(!b.try_reserve(5));
        let e = b.reserve(5, &"f").unwrap_err();
        assert_eq!(e.errno, libc::ENOMEM);
        b.release(6);
        assert!(b.try_reserve(10));
        assert_eq!(b.used(), 10);
    }
}
