//! The memory budget: bytes of chunk data the daemon may hold at once (write buffers by their
//! capacity, values fetched for reading, prefetched values, scratch files, and the transient copy
//! a store makes of a value it reads or writes). Bytes are reserved before the memory is taken.
//! Running short, an operation waits a while for others to give bytes back, then fails with
//! ENOMEM; the daemon never grows past the budget.
//!
//! Requests carry an age (a ticket: smaller is older, e.g. a file opened earlier). Among
//! waiters the oldest wins: a younger request that finds an older one waiting fails at once, and
//! what its handle holds goes back. So eight writers that each took part of the budget do not
//! wait on each other until all of them time out: the oldest finishes, the others get ENOMEM.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::error::{FsError, FsResult};

/// How long an operation waits for budget by default before it fails with ENOMEM: long enough
/// for another writer to finish its commit, short enough that a program is told, not hung.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// A byte counter with a limit, shared by everything that holds chunk data.
pub struct Budget {
    limit: u64,
    wait: Duration,
    used: Mutex<u64>,
    /// The ages of the requests waiting now (with their counts).
    waiters: Mutex<BTreeMap<u64, usize>>,
    next_age: AtomicU64,
    freed: Condvar,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Budget({} of {})", self.used(), self.limit)
    }
}

impl Budget {
    /// A budget of `limit` bytes whose waiters give up after `wait`.
    pub fn new(limit: u64, wait: Duration) -> Self {
        Budget {
            limit,
            wait,
            used: Mutex::new(0),
            waiters: Mutex::default(),
            next_age: AtomicU64::new(1),
            freed: Condvar::new(),
        }
    }

    /// A new age: younger than every age handed out before.
    pub fn ticket(&self) -> u64 {
        self.next_age.fetch_add(1, Ordering::Relaxed)
    }

    /// `used` plus `bytes`, if that fits.
    fn fits(&self, used: u64, bytes: u64) -> Option<u64> {
        used.checked_add(bytes).filter(|&n| n <= self.limit)
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
        match self.fits(*used, bytes) {
            Some(n) => {
                *used = n;
                Ok(())
            }
            None => Err(self.exhausted(*used, bytes, what)),
        }
    }

    /// Takes `bytes` for a request of age `age`, waiting a while for others to give bytes
    /// back; ENOMEM after that, at once when `bytes` exceed the whole budget, and at once when
    /// an older request is waiting (see the module doc).
    pub fn reserve_wait(&self, bytes: u64, age: u64, what: &dyn std::fmt::Display) -> FsResult<()> {
        let deadline = Instant::now() + self.wait;
        let mut used = self.used.lock();
        let mut waiting = false;
        let result = loop {
            if let Some(n) = self.fits(*used, bytes) {
                *used = n;
                break Ok(());
            }
            let now = Instant::now();
            let older_waits = {
                let mut w = self.waiters.lock();
                let older = w.keys().next().is_some_and(|&oldest| oldest < age);
                if !older && !waiting {
                    *w.entry(age).or_default() += 1;
                    waiting = true;
                    // Younger waiters look again, and give up.
                    self.freed.notify_all();
                }
                older
            };
            if bytes > self.limit || now >= deadline || older_waits {
                break Err(self.exhausted(*used, bytes, what));
            }
            let _ = self.freed.wait_until(&mut used, deadline);
        };
        if waiting {
            let mut w = self.waiters.lock();
            if let Some(n) = w.get_mut(&age) {
                *n -= 1;
                if *n == 0 {
                    w.remove(&age);
                }
            }
        }
        result
    }

    /// Takes `bytes` if they fit; false otherwise.
    pub fn try_reserve(&self, bytes: u64) -> bool {
        let mut used = self.used.lock();
        match self.fits(*used, bytes) {
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
    #[test]
    fn the_oldest_waiter_wins_and_younger_ones_give_up() {
        let b = Arc::new(Budget::new(10, Duration::from_secs(30)));
        b.reserve(10, &"held").unwrap();
        let old = {
            let b = b.clone();
            std::thread::spawn(move || b.reserve_wait(5, 1, &"old"))
        };
        while b.waiters.lock().is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let start = Instant::now();
        let e = b.reserve_wait(5, 2, &"young").unwrap_err();
        assert_eq!(e.errno, libc::ENOMEM);
        assert!(start.elapsed() < Duration::from_secs(5), "gave up at once");
        b.release(5);
        old.join().unwrap().unwrap();
        assert_eq!(b.used(), 10);
    }

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
        let mut got = b.reserve_wait(9, 1, &"b");
        for _ in 0..500 {
            if got.is_ok() {
                break;
            }
            got = b.reserve_wait(9, 1, &"b");
        }
        got.unwrap();
        giver.join().unwrap();
        let e = b.reserve_wait(2, 1, &"c").unwrap_err();
        assert_eq!(e.errno, libc::ENOMEM);
        let e = b.reserve_wait(11, 1, &"d").unwrap_err();
        assert_eq!(
            e.errno,
            libc::ENOMEM,
            "more than the whole budget fails at once"
        );
    }
}
