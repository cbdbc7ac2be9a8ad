//! A store that forwards every call to another, with a hook that sees each call first: what the
//! fault-injecting and counting stores of the tests (`fs::testing`) are made of.

use std::ops::Deref;
use std::sync::Arc;
use std::time::SystemTime;

use super::{
    Capabilities, ChunkList, Cloudstore, RawChunk, Result, RoundTrips, SpaceInfo, Version,
    VersionedRange,
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
    /// `stat` and `stat_with_mtime`.
    Stat(&'a [u8]),
    Delete(&'a [u8]),
    Rename {
        from: &'a [u8],
        to: &'a [u8],
    },
    Mtime(&'a [u8]),
    SetMtime(&'a [u8]),
    List(Option<&'a [u8]>),
    Sync,
    Close,
    Space,
    SideGet(&'a str),
    SidePut(&'a str),
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

    /// The backend name shown, given the inner store's.
    fn backend(&self, inner: &'static str) -> &'static str {
        inner
    }

    /// The listing, given the inner store (after [`Hook::before`]).
    fn list(&self, inner: &dyn Cloudstore, after: Option<&[u8]>) -> Result<ChunkList> {
        inner.list(after)
    }
}

/// Forwards every call to `inner`, after `hook` has seen it. Derefs to the hook, so the hook's
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

    fn before(&self, call: Call<'_>) -> Result<()> {
        self.hook.before(&*self.inner, call)
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
        self.before(Call::Get(key))?;
        self.inner.get_chunk(key)
    }
    fn get_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()> {
        self.before(Call::GetBatch(chunks))?;
        self.inner.get_chunk_batch(chunks)
    }
    fn get_chunk_with_range(&self, key: &[u8], start: u64, end: u64) -> Result<Option<Vec<u8>>> {
        self.before(Call::GetRange(key))?;
        self.inner.get_chunk_with_range(key, start, end)
    }
    fn set_chunk(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.before(Call::Set(key))?;
        self.inner.set_chunk(key, value)
    }
    fn set_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()> {
        self.before(Call::SetBatch(chunks))?;
        self.inner.set_chunk_batch(chunks)
    }
    fn close(&self) -> Result<()> {
        self.before(Call::Close)?;
        self.inner.close()
    }
    fn stat(&self, key: &[u8]) -> Result<Option<u64>> {
        self.before(Call::Stat(key))?;
        self.inner.stat(key)
    }
    fn delete(&self, key: &[u8]) -> Result<bool> {
        self.before(Call::Delete(key))?;
        self.inner.delete(key)
    }
    fn list(&self, after: Option<&[u8]>) -> Result<ChunkList> {
        self.before(Call::List(after))?;
        self.hook.list(&*self.inner, after)
    }
    fn sync(&self) -> Result<()> {
        self.before(Call::Sync)?;
        self.inner.sync()
    }
    fn rename(&self, from: &[u8], to: &[u8]) -> Result<bool> {
        self.before(Call::Rename { from, to })?;
        self.inner.rename(from, to)
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
        self.before(Call::ReadVersion(key))?;
        self.inner.read_version(key, start, end, expect)
    }
    fn stat_with_mtime(&self, key: &[u8]) -> Result<Option<(u64, Option<SystemTime>)>> {
        self.before(Call::Stat(key))?;
        self.inner.stat_with_mtime(key)
    }
    fn mtime(&self, key: &[u8]) -> Result<Option<SystemTime>> {
        self.before(Call::Mtime(key))?;
        self.inner.mtime(key)
    }
    fn set_mtime(&self, key: &[u8], mtime: SystemTime) -> Result<()> {
        self.before(Call::SetMtime(key))?;
        self.inner.set_mtime(key, mtime)
    }
    fn round_trips(&self) -> Option<RoundTrips> {
        self.inner.round_trips()
    }
    fn space(&self) -> Result<Option<SpaceInfo>> {
        self.before(Call::Space)?;
        self.inner.space()
    }
    fn side_get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.before(Call::SideGet(name))?;
        self.inner.side_get(name)
    }
    fn side_put(&self, name: &str, value: &[u8]) -> Result<()> {
        self.before(Call::SidePut(name))?;
        self.inner.side_put(name, value)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::StoreError;

    /// Counts calls and refuses deletes.
    #[derive(Default)]
    struct Probe(AtomicUsize);

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
    }
}
