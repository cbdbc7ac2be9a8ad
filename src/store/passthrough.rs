//! A store that forwards every call to another, with a hook around each call: what the store
//! that times calls for the metrics (`metrics`) and the fault-injecting and counting stores of
//! the tests (`fs::testing`) are made of.

use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::{
    Capabilities, ChunkList, Cloudstore, RawChunk, Result, RoundTrips, SharedBytes, SpaceInfo,
    Version, VersionedRange,
};

/// A call on its way to the inner store: the operation and the keys it concerns.
#[derive(Debug, Clone, Copy)]
pub enum Call<'a> {
    Get(&'a [u8]),
    GetBatch(&'a [RawChunk]),
    GetRange(&'a [u8]),
    ReadVersion(&'a [u8]),
    Set(&'a [u8]),
    SetBatch(&'a [RawChunk]),
    Stat(&'a [u8]),
    StatWithMtime(&'a [u8]),
    Delete(&'a [u8]),
    Rename { from: &'a [u8], to: &'a [u8] },
    Mtime(&'a [u8]),
    SetMtime(&'a [u8]),
    List(Option<&'a [u8]>),
    Sync,
    Close,
    Space,
    SideGet(&'a str),
    SidePut(&'a str),
    Snapshot,
}

impl Call<'_> {
    /// The name of the `Cloudstore` method called.
    pub fn op(&self) -> &'static str {
        match self {
            Call::Get(_) => "get_chunk",
            Call::GetBatch(_) => "get_chunk_batch",
            Call::GetRange(_) => "get_chunk_with_range",
            Call::ReadVersion(_) => "read_version",
            Call::Set(_) => "set_chunk",
            Call::SetBatch(_) => "set_chunk_batch",
            Call::Stat(_) => "stat",
            Call::StatWithMtime(_) => "stat_with_mtime",
            Call::Delete(_) => "delete",
            Call::Rename { .. } => "rename",
            Call::Mtime(_) => "mtime",
            Call::SetMtime(_) => "set_mtime",
            Call::List(_) => "list",
            Call::Sync => "sync",
            Call::Close => "close",
            Call::Space => "space",
            Call::SideGet(_) => "side_get",
            Call::SidePut(_) => "side_put",
            Call::Snapshot => "snapshot",
        }
    }
}

/// What a [`PassThrough`] does around the calls it forwards. Every method has a default that
/// changes nothing.
pub trait Hook: Send + Sync {
    /// Runs before `call` reaches `inner` (it may count, wait or panic); an error is returned in
    /// place of the call's result, and the call is not forwarded.
    fn before(&self, inner: &dyn Cloudstore, call: Call<'_>) -> Result<()> {
        let _ = (inner, call);
        Ok(())
    }

    /// Runs once the call `op` (a [`Call::op`]) returned, `took` after it was made; `failed`
    /// when it returned an error. Not run for a call [`Hook::before`] refused.
    fn after(&self, op: &'static str, took: Duration, failed: bool) {
        let _ = (op, took, failed);
    }

    /// The backend name shown, given the inner store's.
    fn backend(&self, inner: &'static str) -> &'static str {
        inner
    }

    /// The listing, given the inner store (after [`Hook::before`]).
    fn list(&self, inner: &dyn Cloudstore, after: Option<&[u8]>) -> Result<ChunkList> {
        inner.list(after)
    }

    /// What writing a value costs in memory ([`Cloudstore::write_cost`]), given the inner store.
    fn write_cost(&self, inner: &dyn Cloudstore, len: u64, owned: bool) -> u64 {
        inner.write_cost(len, owned)
    }

    /// Whether a commit leaves copies to write out ([`Cloudstore::holds_after_write`]).
    fn holds_after_write(&self, inner: &dyn Cloudstore, len: u64) -> bool {
        inner.holds_after_write(len)
    }

    /// The write-out ([`Cloudstore::write_out`]), given the inner store.
    fn write_out(&self, inner: &dyn Cloudstore) {
        inner.write_out()
    }
}

/// Forwards every call to `inner`, through `hook`. Derefs to the hook, so the hook's
/// controls (`fail_writes`, counters) are called on the store itself.
pub struct PassThrough<H> {
    inner: Arc<dyn Cloudstore>,
    hook: H,
}

impl<H: Hook> PassThrough<H> {
    /// Wraps `inner` with `hook`.
    pub fn wrap(inner: Arc<dyn Cloudstore>, hook: H) -> Self {
        PassThrough { inner, hook }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Cloudstore> {
        &self.inner
    }

    /// Shows `call` to the hook; the name of its operation when it may go on.
    fn before(&self, call: Call<'_>) -> Result<&'static str> {
        let op = call.op();
        self.hook.before(&*self.inner, call)?;
        Ok(op)
    }

    /// Makes the call `op` on the inner store, then shows its outcome to the hook.
    fn forward<T>(
        &self,
        op: &'static str,
        call: impl FnOnce(&dyn Cloudstore) -> Result<T>,
    ) -> Result<T> {
        let started = Instant::now();
        let out = call(&*self.inner);
        self.hook.after(op, started.elapsed(), out.is_err());
        out
    }
}

impl<H> Deref for PassThrough<H> {
    type Target = H;

    fn deref(&self) -> &H {
        &self.hook
    }
}

impl<H: Hook> Cloudstore for PassThrough<H> {
    fn backend(&self) -> &'static str {
        self.hook.backend(self.inner.backend())
    }
    fn get_chunk(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let op = self.before(Call::Get(key))?;
        self.forward(op, |s| s.get_chunk(key))
    }
    fn get_chunk_bytes(&self, key: &[u8]) -> Result<Option<SharedBytes>> {
        let op = self.before(Call::Get(key))?;
        self.forward(op, |s| s.get_chunk_bytes(key))
    }
    fn get_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()> {
        let op = self.before(Call::GetBatch(chunks))?;
        self.forward(op, |s| s.get_chunk_batch(chunks))
    }
    fn get_chunk_with_range(&self, key: &[u8], start: u64, end: u64) -> Result<Option<Vec<u8>>> {
        let op = self.before(Call::GetRange(key))?;
        self.forward(op, |s| s.get_chunk_with_range(key, start, end))
    }
    fn set_chunk(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let op = self.before(Call::Set(key))?;
        self.forward(op, |s| s.set_chunk(key, value))
    }
    fn set_chunk_owned(&self, key: &[u8], value: Vec<u8>) -> Result<()> {
        let op = self.before(Call::Set(key))?;
        self.forward(op, |s| s.set_chunk_owned(key, value))
    }
    fn write_cost(&self, len: u64, owned: bool) -> u64 {
        self.hook.write_cost(&*self.inner, len, owned)
    }
    fn holds_after_write(&self, len: u64) -> bool {
        self.hook.holds_after_write(&*self.inner, len)
    }
    fn write_out(&self) {
        self.hook.write_out(&*self.inner)
    }
    fn set_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()> {
        let op = self.before(Call::SetBatch(chunks))?;
        self.forward(op, |s| s.set_chunk_batch(chunks))
    }
    fn close(&self) -> Result<()> {
        let op = self.before(Call::Close)?;
        self.forward(op, |s| s.close())
    }
    fn stat(&self, key: &[u8]) -> Result<Option<u64>> {
        let op = self.before(Call::Stat(key))?;
        self.forward(op, |s| s.stat(key))
    }
    fn delete(&self, key: &[u8]) -> Result<bool> {
        let op = self.before(Call::Delete(key))?;
        self.forward(op, |s| s.delete(key))
    }
    fn list(&self, after: Option<&[u8]>) -> Result<ChunkList> {
        let op = self.before(Call::List(after))?;
        self.forward(op, |s| self.hook.list(s, after))
    }
    fn sync(&self) -> Result<()> {
        let op = self.before(Call::Sync)?;
        self.forward(op, |s| s.sync())
    }
    fn rename(&self, from: &[u8], to: &[u8]) -> Result<bool> {
        let op = self.before(Call::Rename { from, to })?;
        self.forward(op, |s| s.rename(from, to))
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
        let op = self.before(Call::ReadVersion(key))?;
        self.forward(op, |s| s.read_version(key, start, end, expect))
    }
    fn stat_with_mtime(&self, key: &[u8]) -> Result<Option<(u64, Option<SystemTime>)>> {
        let op = self.before(Call::StatWithMtime(key))?;
        self.forward(op, |s| s.stat_with_mtime(key))
    }
    fn mtime(&self, key: &[u8]) -> Result<Option<SystemTime>> {
        let op = self.before(Call::Mtime(key))?;
        self.forward(op, |s| s.mtime(key))
    }
    fn set_mtime(&self, key: &[u8], mtime: SystemTime) -> Result<()> {
        let op = self.before(Call::SetMtime(key))?;
        self.forward(op, |s| s.set_mtime(key, mtime))
    }
    fn round_trips(&self) -> Option<RoundTrips> {
        self.inner.round_trips()
    }
    fn space(&self) -> Result<Option<SpaceInfo>> {
        let op = self.before(Call::Space)?;
        self.forward(op, |s| s.space())
    }
    fn side_get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let op = self.before(Call::SideGet(name))?;
        self.forward(op, |s| s.side_get(name))
    }
    fn side_put(&self, name: &str, value: &[u8]) -> Result<()> {
        let op = self.before(Call::SidePut(name))?;
        self.forward(op, |s| s.side_put(name, value))
    }
    fn snapshot(&self) -> Result<Arc<dyn Cloudstore>> {
        let op = self.before(Call::Snapshot)?;
        self.forward(op, |s| s.snapshot())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::StoreError;

    /// Counts calls and refuses deletes; notes the outcomes it is shown.
    #[derive(Default)]
    struct Probe(AtomicUsize, Mutex<Vec<(&'static str, bool)>>);

    impl Hook for Probe {
        fn before(&self, inner: &dyn Cloudstore, call: Call<'_>) -> Result<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            match call {
                Call::Delete(key) => Err(StoreError::backend(
                    inner.backend(),
                    "delete",
                    key,
                    libc::EIO,
                    "refused",
                )),
                _ => Ok(()),
            }
        }

        fn after(&self, op: &'static str, _took: Duration, failed: bool) {
            self.1.lock().unwrap().push((op, failed));
        }
    }

    #[test]
    fn every_call_passes_the_hook_and_reaches_the_inner_store() {
        let inner: Arc<dyn Cloudstore> = Arc::new(MemoryStore::new(1 << 20));
        let store = PassThrough::wrap(inner.clone(), Probe::default());
        store.set_chunk(b"k", b"v").unwrap();
        assert_eq!(inner.get_chunk(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(store.stat(b"k").unwrap(), Some(1));
        assert!(store.delete(b"k").is_err());
        assert_eq!(
            inner.stat(b"k").unwrap(),
            Some(1),
            "a refused call is not forwarded"
        );
        assert_eq!(store.backend(), "memory");
        assert_eq!(store.0.load(Ordering::SeqCst), 3);
        assert!(store.get_chunk_with_range(b"k", 2, 1).is_err());
        assert_eq!(
            *store.1.lock().unwrap(),
            [
                ("set_chunk", false),
                ("stat", false),
                ("get_chunk_with_range", true)
            ],
            "each call forwarded, with its outcome; the refused delete is not"
        );
    }
}
