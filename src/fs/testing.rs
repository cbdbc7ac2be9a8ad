//! Store wrappers for tests: one that fails on demand (it proves that a failed commit reaches
//! the program, close() returns the error, instead of vanishing) and one that counts the calls
//! that read values (it proves that read-ahead batches instead of getting file by file).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crate::store::{
    Capabilities, ChunkList, Cloudstore, RawChunk, Result, SpaceInfo, StoreError, Version,
    VersionedRange,
};

/// Wraps a store; while `fail_writes` is on, every write (set, batch set, rename, delete,
/// set_mtime) fails with EIO; while `panic_writes` is on, it panics.
pub struct FailingStore {
    inner: Arc<dyn Cloudstore>,
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
        FailingStore {
            inner,
            fail_writes: AtomicBool::new(false),
            panic_writes: AtomicBool::new(false),
            stalled: parking_lot::Mutex::new(None),
            unstalled: parking_lot::Condvar::new(),
            stalled_stat: parking_lot::Mutex::default(),
        }
    }

    /// The next stat of `key` waits, before it reads the store, until [`release_stat`]: it then
    /// sees whatever changed meanwhile, which its caller may not expect.
    ///
    /// [`release_stat`]: FailingStore::release_stat
    pub fn stall_next_stat_of(&self, key: &[u8]) {
        *self.stalled_stat.lock() = StatStall {
            key: Some(key.to_vec()),
            ..StatStall::default()
        };
    }

    /// Whether a stat is held by [`FailingStore::stall_next_stat_of`] now.
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

    /// While on, every write panics instead (a bug in a backend or a library under it).
    pub fn panic_writes(&self, on: bool) {
        self.panic_writes.store(on, Ordering::SeqCst);
    }

    /// Turns write failures on or off.
    pub fn fail_writes(&self, on: bool) {
        self.fail_writes.store(on, Ordering::SeqCst);
    }

    fn check(&self, op: &'static str, key: &[u8]) -> Result<()> {
        if self.panic_writes.load(Ordering::SeqCst) {
            panic!(
                "injected panic in {op} of {} (FailingStore)",
                hex::encode(key)
            );
        }
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(StoreError::backend(
                self.inner.backend(),
                op,
                key,
                libc::EIO,
                "injected failure (FailingStore)",
            ));
        }
        Ok(())
    }
}

impl Cloudstore for FailingStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn get_chunk(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get_chunk(key)
    }
    fn get_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()> {
        self.inner.get_chunk_batch(chunks)
    }
    fn get_chunk_with_range(&self, key: &[u8], start: u64, end: u64) -> Result<Option<Vec<u8>>> {
        self.inner.get_chunk_with_range(key, start, end)
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn read_version(
        &self,
        key: &[u8],
        start: u64,
        end: u64,
        expect: Option<Version>,
    ) -> Result<Option<VersionedRange>> {
        self.inner.read_version(key, start, end, expect)
    }
    fn set_chunk(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check("set_chunk", key)?;
        self.wait_if_stalled(std::iter::once(key));
        self.inner.set_chunk(key, value)
    }
    fn set_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()> {
        self.check(
            "set_chunk_batch",
            chunks.first().map_or(&[][..], |c| &c.key),
        )?;
        self.wait_if_stalled(chunks.iter().map(|c| &c.key[..]));
        self.inner.set_chunk_batch(chunks)
    }
    fn close(&self) -> Result<()> {
        self.inner.close()
    }
    fn stat(&self, key: &[u8]) -> Result<Option<u64>> {
        let mut stall = self.stalled_stat.lock();
        if stall.key.as_deref() == Some(key) {
            stall.key = None;
            stall.waiting = true;
            while !stall.released {
                self.unstalled.wait(&mut stall);
            }
            stall.waiting = false;
        }
        drop(stall);
        self.inner.stat(key)
    }
    fn delete(&self, key: &[u8]) -> Result<bool> {
        self.check("delete", key)?;
        self.inner.delete(key)
    }
    fn list(&self, after: Option<&[u8]>) -> Result<ChunkList> {
        self.inner.list(after)
    }
    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }
    fn rename(&self, from: &[u8], to: &[u8]) -> Result<bool> {
        self.check("rename", from)?;
        self.inner.rename(from, to)
    }
    fn mtime(&self, key: &[u8]) -> Result<Option<SystemTime>> {
        self.inner.mtime(key)
    }
    fn set_mtime(&self, key: &[u8], mtime: SystemTime) -> Result<()> {
        self.check("set_mtime", key)?;
        self.inner.set_mtime(key, mtime)
    }
    fn space(&self) -> Result<Option<SpaceInfo>> {
        self.inner.space()
    }
    fn side_get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.inner.side_get(name)
    }
    fn side_put(&self, name: &str, value: &[u8]) -> Result<()> {
        self.inner.side_put(name, value)
    }
}

/// Wraps a store and counts the calls that read values; `shuffle_listing` lists in an order
/// other than the names' (like Ceph's hash order).
pub struct CountingStore {
    inner: Arc<dyn Cloudstore>,
    shuffle_listing: bool,
    /// get_chunk calls.
    pub gets: AtomicUsize,
    /// get_chunk_with_range calls.
    pub ranged: AtomicUsize,
    /// get_chunk_batch calls.
    pub batches: AtomicUsize,
    /// Chunks asked for by get_chunk_batch calls.
    pub batched: AtomicUsize,
}

impl CountingStore {
    /// Wraps `inner`, listing in its order.
    pub fn new(inner: Arc<dyn Cloudstore>) -> Self {
        CountingStore {
            inner,
            shuffle_listing: false,
            gets: AtomicUsize::new(0),
            ranged: AtomicUsize::new(0),
            batches: AtomicUsize::new(0),
            batched: AtomicUsize::new(0),
        }
    }

    /// Wraps `inner`, listing in a fixed order unrelated to the names.
    pub fn shuffled(inner: Arc<dyn Cloudstore>) -> Self {
        CountingStore {
            shuffle_listing: true,
            ..Self::new(inner)
        }
    }

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

impl Cloudstore for CountingStore {
    fn backend(&self) -> &'static str {
        "counting"
    }
    fn get_chunk(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get_chunk(key)
    }
    fn get_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        self.batched.fetch_add(chunks.len(), Ordering::SeqCst);
        self.inner.get_chunk_batch(chunks)
    }
    fn get_chunk_with_range(&self, key: &[u8], start: u64, end: u64) -> Result<Option<Vec<u8>>> {
        self.ranged.fetch_add(1, Ordering::SeqCst);
        self.inner.get_chunk_with_range(key, start, end)
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn read_version(
        &self,
        key: &[u8],
        start: u64,
        end: u64,
        expect: Option<Version>,
    ) -> Result<Option<VersionedRange>> {
        self.ranged.fetch_add(1, Ordering::SeqCst);
        self.inner.read_version(key, start, end, expect)
    }
    fn set_chunk(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.inner.set_chunk(key, value)
    }
    fn set_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()> {
        self.inner.set_chunk_batch(chunks)
    }
    fn close(&self) -> Result<()> {
        self.inner.close()
    }
    fn stat(&self, key: &[u8]) -> Result<Option<u64>> {
        self.inner.stat(key)
    }
    fn delete(&self, key: &[u8]) -> Result<bool> {
        self.inner.delete(key)
    }
    fn list(&self, after: Option<&[u8]>) -> Result<ChunkList> {
        if !self.shuffle_listing || after.is_some() {
            return self.inner.list(after);
        }
        let mut all: Vec<_> = self.inner.list(None)?.collect::<Result<Vec<_>>>()?;
        // A fixed "hash" order: by a simple mix of the key bytes.
        all.sort_by_key(|c| {
            c.key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            })
        });
        Ok(Box::new(all.into_iter().map(Ok)))
    }
    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }
    fn rename(&self, from: &[u8], to: &[u8]) -> Result<bool> {
        self.inner.rename(from, to)
    }
    fn side_get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.inner.side_get(name)
    }
    fn side_put(&self, name: &str, value: &[u8]) -> Result<()> {
        self.inner.side_put(name, value)
    }
}
