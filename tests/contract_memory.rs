//! The contract suite on the in-memory backend, and proof that the suite catches backends that
//! pad ranges, keep an old tail, or report a missing key as an error.

mod contract;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use cloudstore_fs::store::memory::MemoryStore;
use cloudstore_fs::store::{ChunkList, Cloudstore, RawChunk, Result, StoreError};

const MAX: u64 = 17 << 20;

struct Memory {
    root: MemoryStore,
}

impl contract::Harness for Memory {
    fn open(&self) -> Arc<dyn Cloudstore> {
        Arc::new(self.root.reopen())
    }

    fn max_chunk_size(&self) -> u64 {
        MAX
    }
}

fn memory() -> Option<Memory> {
    Some(Memory {
        root: MemoryStore::new(MAX),
    })
}

contract_tests!(memory);

/// A deliberately broken store: memory underneath, with one fault.
#[derive(Clone, Copy)]
enum Fault {
    PadsRanges,
    KeepsOldTail,
    MissingIsAnError,
}

struct Faulty {
    inner: MemoryStore,
    fault: Fault,
}

impl Cloudstore for Faulty {
    fn backend(&self) -> &'static str {
        "faulty"
    }
    fn get_chunk(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match (self.fault, self.inner.get_chunk(key)?) {
            (Fault::MissingIsAnError, None) => Err(StoreError::backend(
                "faulty",
                "get",
                key,
                libc::ENOENT,
                "not found",
            )),
            (_, v) => Ok(v),
        }
    }
    fn get_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()> {
        self.inner.get_chunk_batch(chunks)?;
        if let Fault::MissingIsAnError = self.fault {
            for c in chunks.iter_mut().filter(|c| !c.ok) {
                c.error = Some(StoreError::backend(
                    "faulty",
                    "get",
                    &c.key,
                    libc::ENOENT,
                    "not found",
                ));
            }
        }
        Ok(())
    }
    fn get_chunk_with_range(&self, key: &[u8], start: u64, end: u64) -> Result<Option<Vec<u8>>> {
        let v = self.inner.get_chunk_with_range(key, start, end)?;
        match (self.fault, v) {
            (Fault::PadsRanges, Some(mut v)) if end > start => {
                v.resize((end - start) as usize, 0);
                Ok(Some(v))
            }
            (Fault::MissingIsAnError, None) => Err(StoreError::backend(
                "faulty",
                "get",
                key,
                libc::ENOENT,
                "not found",
            )),
            (_, v) => Ok(v),
        }
    }
    fn set_chunk(&self, key: &[u8], value: &[u8]) -> Result<()> {
        match (self.fault, self.inner.get_chunk(key)?) {
            (Fault::KeepsOldTail, Some(mut old)) if old.len() > value.len() => {
                old[..value.len()].copy_from_slice(value);
                self.inner.set_chunk(key, &old)
            }
            _ => self.inner.set_chunk(key, value),
        }
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
        self.inner.list(after)
    }
    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }
}

struct FaultyHarness {
    root: MemoryStore,
    fault: Fault,
}

impl contract::Harness for FaultyHarness {
    fn open(&self) -> Arc<dyn Cloudstore> {
        Arc::new(Faulty {
            inner: self.root.reopen(),
            fault: self.fault,
        })
    }
    fn max_chunk_size(&self) -> u64 {
        MAX
    }
}

fn fails(fault: Fault, check: fn(&dyn contract::Harness)) -> bool {
    let h = FaultyHarness {
        root: MemoryStore::new(MAX),
        fault,
    };
    catch_unwind(AssertUnwindSafe(|| check(&h))).is_err()
}

#[test]
fn the_suite_catches_a_backend_that_pads_ranges() {
    assert!(fails(
        Fault::PadsRanges,
        contract::ranges_are_half_open_and_clamped
    ));
}

#[test]
fn the_suite_catches_a_backend_that_keeps_an_old_tail() {
    assert!(fails(
        Fault::KeepsOldTail,
        contract::shorter_overwrite_leaves_no_old_tail
    ));
}

#[test]
fn the_suite_catches_a_backend_that_reports_a_missing_key_as_an_error() {
    assert!(fails(
        Fault::MissingIsAnError,
        contract::missing_key_is_not_ok_and_no_error
    ));
}
