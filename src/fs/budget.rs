//! The memory budget: bytes of chunk data the daemon may hold at once (write buffers by their
//! capacity, values fetched for reading, prefetched values, scratch files, and the transient copy
//! a store makes of a value it reads or writes). Bytes are reserved before the memory is taken.
//! Running short, an operation waits a while for others to give bytes back, then fails with
//! ENOMEM; the daemon never grows past the budget.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::error::{FsError, FsResult};

/// How long an operation waits for budget by default before it fails with ENOMEM: long enough
/// for another writer to finish its commit, short enough that a program is told, not hung.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// A byte counter with a limit, shared by everything that holds chunk data.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    wait: Duration,
    used: Mutex<u64>,
    freed: Condvar,
}

impl Budget {
    /// A budget of `limit` bytes whose waiters give up after `wait`.
    pub fn new(limit: u64, wait: Duration) -> Self {
        Budget {
            limit,
            wait,
            used: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    fn exhausted(&self, used: u64, bytes: u64, what: &dyn std::fmt::Display) -> FsError {
        let message = format!(
            "{what}: memory budget exhausted ({used} of {} bytes in use, {bytes} more wanted; \
             raise memory_budget or close files)",
            self.limit
        );
        log::warn!("{message} (ENOMEM)");
        FsError::new(libc::ENOMEM, message).logged()
    }

    /// Takes `bytes` from the budget, or fails with ENOMEM at once when they do not fit.
    pub fn reserve(&self, bytes: u64, what: &dyn std::fmt::Display) -> FsResult<()> {
        let mut used = self.used.lock();
        match used.checked_add(bytes).filter(|&n| n <= self.limit) {
            Some(n) => {
                *used = n;
                Ok(())
            }
            None => Err(self.exhausted(*used, bytes, what)),
        }
    }

    /// Takes `bytes`, waiting a while for others to give bytes back; ENOMEM after that, or at
    /// once when `bytes` exceed the whole budget.
    pub fn reserve_wait(&self, bytes: u64, what: &dyn std::fmt::Display) -> FsResult<()> {
        let deadline = Instant::now() + self.wait;
        let mut used = self.used.lock();
        loop {
            if let Some(n) = used.checked_add(bytes).filter(|&n| n <= self.limit) {
                *used = n;
                return Ok(());
            }
            if bytes > self.limit || self.freed.wait_until(&mut used, deadline).timed_out() {
                return Err(self.exhausted(*used, bytes, what));
            }
        }
    }

    /// Takes `bytes` if they fit; false otherwise.
    pub fn try_reserve(&self, bytes: u64) -> bool {
        let mut used = self.used.lock();
        match used.checked_add(bytes).filter(|&n| n <= self.limit) {
            Some(n) => {
                *used = n;
                true
            }
            None => false,
        }
    }

    /// Gives `bytes` back.
    pub fn release(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut used = self.used.lock();
        debug_assert!(*used >= bytes, "budget released more than reserved");
        *used = used.saturating_sub(bytes);
        self.freed.notify_all();
    }

    /// Bytes in use.
    pub fn used(&self) -> u64 {
        *self.used.lock()
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn reserves_up_to_the_limit() {
        let b = Budget::new(10, DEFAULT_WAIT);
        assert!(b.try_reserve(6));
        assert!(!b.try_reserve(5));
        let e = b.reserve(5, &"f").unwrap_err();
        assert_eq!(e.errno, libc::ENOMEM);
        b.release(6);
        assert!(b.try_reserve(10));
        assert_eq!(b.used(), 10);
    }

    #[test]
    fn a_waiter_gets_bytes_given_back_and_times_out_otherwise() {
        let b = Arc::new(Budget::new(10, Duration::from_millis(20)));
        b.reserve(8, &"a").unwrap();
        let giver = {
            let b = b.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                b.release(8);
            })
        };
        // The giver sleeps longer than the wait would allow, so this is a loop over waits:
        // wait long enough in total.
        let mut got = b.reserve_wait(9, &"b");
        for _ in 0..500 {
            if got.is_ok() {
                break;
            }
            got = b.reserve_wait(9, &"b");
        }
        got.unwrap();
        giver.join().unwrap();
        let e = b.reserve_wait(2, &"c").unwrap_err();
        assert_eq!(e.errno, libc::ENOMEM);
        let e = b.reserve_wait(11, &"d").unwrap_err();
        assert_eq!(
            e.errno,
            libc::ENOMEM,
            "more than the whole budget fails at once"
        );
    }
}
