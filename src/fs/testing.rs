//! A store wrapper that fails on demand, for tests: it proves that a failed commit reaches the
//! program (close() returns the error) instead of vanishing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crate::store::{ChunkList, Cloudstore, RawChunk, Result, SpaceInfo, StoreError};

/// Wraps a store; while `fail_writes` is on, every write (set, batch set, rename, delete,
/// set_mtime) fails with EIO.
pub struct FailingStore {
    inner: Arc<dyn Cloudstore>,
    fail_writes: AtomicBool,
}

impl FailingStore {
    /// Wraps `inner`, passing everything through until told to fail.
    pub fn new(inner: Arc<dyn Cloudstore>) -> Self {
        FailingStore {
            inner,
            fail_writes: AtomicBool::new(false),
        }
    }

    /// Turns write failures on or off.
    pub fn fail_writes(&self, on: bool) {
        self.fail_writes.store(on, Ordering::SeqCst);
    }

    fn check(&self, op: &'static str, key: &[u8]) -> Result<()> {
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
    fn set_chunk(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check("set_chunk", key)?;
        self.inner.set_chunk(key, value)
    }
    fn set_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()> {
        self.check(
            "set_chunk_batch",
            chunks.first().map_or(&[][..], |c| &c.key),
        )?;
        self.inner.set_chunk_batch(chunks)
    }
    fn close(&self) -> Result<()> {
        self.inner.close()
    }
    fn stat(&self, key: &[u8]) -> Result<Option<u64>> {
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
}
