//! Store wrappers for tests, built on [`PassThrough`]: one that fails on demand (it proves that
//! a failed commit reaches the program, close() returns the error, instead of vanishing) and one
//! that counts the calls that read values (it proves that read-ahead batches instead of getting
//! file by file). Compiled for the unit tests and with the `testing` feature.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::store::passthrough::{Call, Hook, PassThrough};
use crate::store::{ChunkList, Cloudstore, Result, StoreError};

/// Wraps a store; while `fail_writes` is on, every write (set, batch set, rename, delete,
/// set_mtime) fails with EIO; while `panic_writes` is on, it panics.
pub type FailingStore = PassThrough<Faults>;

/// The faults a [`FailingStore`] injects.
#[derive(Default)]
pub struct Faults {
    fail_writes: AtomicBool,
    panic_writes: AtomicBool,
    /// Writes of this key wait until it is cleared (a slow or hung backend call).
    stalled: parking_lot::Mutex<Option<Vec<u8>>>,
    unstalled: parking_lot::Condvar,
    /// The next stat of this key waits until `release_stat` (a stat overtaken by a change).
    stalled_stat: parking_lot::Mutex<StatStall>,
}

/// The state of a stalled stat: armed for a key, then holding one caller until released.
#[derive(Default)]
struct StatStall {
    key: Option<Vec<u8>>,
    waiting: bool,
    released: bool,
}

impl FailingStore {
    /// Wraps `inner`, passing everything through until told to fail.
    pub fn new(inner: Arc<dyn Cloudstore>) -> Self {
        PassThrough::wrap(inner, Faults::default())
    }
}

impl Faults {
    /// The next stat of `key` waits, before it reads the store, until [`release_stat`]: it then
    /// sees whatever changed meanwhile, which its caller may not expect.
    ///
    /// [`release_stat`]: Faults::release_stat
    pub fn stall_next_stat_of(&self, key: &[u8]) {
        *self.stalled_stat.lock() = StatStall {
            key: Some(key.to_vec()),
            ..StatStall::default()
        };
    }

    /// Whether a stat is held by [`Faults::stall_next_stat_of`] now.
    pub fn stat_is_stalled(&self) -> bool {
        self.stalled_stat.lock().waiting
    }

    /// Lets the stalled stat answer.
    pub fn release_stat(&self) {
        self.stalled_stat.lock().released = true;
        self.unstalled.notify_all();
    }

    /// While set, writes (set, batch set) of `key` wait; `None` lets them go.
    pub fn stall_writes_of(&self, key: Option<&[u8]>) {
        *self.stalled.lock() = key.map(<[u8]>::to_vec);
        self.unstalled.notify_all();
    }

    fn wait_if_stalled<'k>(&self, keys: impl Iterator<Item = &'k [u8]> + Clone) {
        let mut stalled = self.stalled.lock();
        while stalled
            .as_deref()
            .is_some_and(|s| keys.clone().any(|k| k == s))
        {
            self.unstalled.wait(&mut stalled);
        }
    }

    fn wait_if_stat_stalled(&self, key: &[u8]) {
        let mut stall = self.stalled_stat.lock();
        if stall.key.as_deref() == Some(key) {
            stall.key = None;
            stall.waiting = true;
            while !stall.released {
                self.unstalled.wait(&mut stall);
            }
            stall.waiting = false;
        }
    }

    /// While on, every write panics instead (a bug in a backend or a library under it).
    pub fn panic_writes(&self, on: bool) {
        self.panic_writes.store(on, Ordering::SeqCst);
    }

    /// Turns write failures on or off.
    pub fn fail_writes(&self, on: bool) {
        self.fail_writes.store(on, Ordering::SeqCst);
    }

    fn check(&self, inner: &dyn Cloudstore, op: &'static str, key: &[u8]) -> Result<()> {
        if self.panic_writes.load(Ordering::SeqCst) {
            panic!(
                "injected panic in {op} of {} (FailingStore)",
                hex::encode(key)
            );
        }
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(StoreError::backend(
                inner.backend(),
                op,
                key,
                libc::EIO,
                "injected failure (FailingStore)",
            ));
        }
        Ok(())
    }
}

impl Hook for Faults {
    fn before(&self, inner: &dyn Cloudstore, call: Call<'_>) -> Result<()> {
        match call {
            Call::Set(key) => {
                self.check(inner, "set_chunk", key)?;
                self.wait_if_stalled(std::iter::once(key));
            }
            Call::SetBatch(chunks) => {
                self.check(
                    inner,
                    "set_chunk_batch",
                    chunks.first().map_or(&[][..], |c| &c.key),
                )?;
                self.wait_if_stalled(chunks.iter().map(|c| &c.key[..]));
            }
            Call::Stat(key) | Call::StatWithMtime(key) => self.wait_if_stat_stalled(key),
            Call::Delete(key) => self.check(inner, "delete", key)?,
            Call::Rename { from, .. } => self.check(inner, "rename", from)?,
            Call::SetMtime(key) => self.check(inner, "set_mtime", key)?,
            _ => {}
        }
        Ok(())
    }
}

/// Wraps a store and counts the calls that read values; `shuffle_listing` lists in an order
/// other than the names' (like Ceph's hash order).
pub type CountingStore = PassThrough<Counts>;

/// The calls a [`CountingStore`] counted.
#[derive(Default)]
pub struct Counts {
    shuffle_listing: bool,
    /// get_chunk calls.
    pub gets: AtomicUsize,
    /// get_chunk_with_range and read_version calls.
    pub ranged: AtomicUsize,
    /// get_chunk_batch calls.
    pub batches: AtomicUsize,
    /// Chunks asked for by get_chunk_batch calls.
    pub batched: AtomicUsize,
}

impl CountingStore {
    /// Wraps `inner`, listing in its order.
    pub fn new(inner: Arc<dyn Cloudstore>) -> Self {
        PassThrough::wrap(inner, Counts::default())
    }

    /// Wraps `inner`, listing in a fixed order unrelated to the names.
    pub fn shuffled(inner: Arc<dyn Cloudstore>) -> Self {
        PassThrough::wrap(
            inner,
            Counts {
                shuffle_listing: true,
                ..Counts::default()
            },
        )
    }
}

impl Counts {
    /// (gets, ranged gets, batches, chunks in batches) so far.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        (
            self.gets.load(Ordering::SeqCst),
            self.ranged.load(Ordering::SeqCst),
            self.batches.load(Ordering::SeqCst),
            self.batched.load(Ordering::SeqCst),
        )
    }
}

impl Hook for Counts {
    fn before(&self, _inner: &dyn Cloudstore, call: Call<'_>) -> Result<()> {
        match call {
            Call::Get(_) => {
                self.gets.fetch_add(1, Ordering::SeqCst);
            }
            Call::GetBatch(chunks) => {
                self.batches.fetch_add(1, Ordering::SeqCst);
                self.batched.fetch_add(chunks.len(), Ordering::SeqCst);
            }
            Call::GetRange(_) | Call::ReadVersion(_) => {
                self.ranged.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
        Ok(())
    }

    fn backend(&self, _inner: &'static str) -> &'static str {
        "counting"
    }

    fn list(&self, inner: &dyn Cloudstore, after: Option<&[u8]>) -> Result<ChunkList> {
        if !self.shuffle_listing || after.is_some() {
            return inner.list(after);
        }
        let mut all: Vec<_> = inner.list(None)?.collect::<Result<Vec<_>>>()?;
        // A fixed "hash" order: by a simple mix of the key bytes.
        all.sort_by_key(|c| {
            c.key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            })
        });
        Ok(Box::new(all.into_iter().map(Ok)))
    }
}
