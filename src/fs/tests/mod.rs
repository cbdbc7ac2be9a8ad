//! The core driven directly (no mount) over the memory store, a failure-injecting wrapper and a
//! call-counting wrapper, by topic.

use std::ffi::{OsStr, OsString};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::namespace::{RENAME_EXCHANGE, RENAME_NOREPLACE};
use super::testing::{CountingStore, FailingStore};
use super::*;
use crate::store::memory::MemoryStore;
use crate::store::{ChunkList, RawChunk, Result as StoreResult};

mod commits;
mod files;
mod inodes;
mod listing;
mod names;
mod readahead;
const MAX: u64 = 1 << 20;

pub(crate) fn cfg() -> FsConfig {
    FsConfig {
        max_chunk_size: MAX,
        memory_budget: 8 << 20,
        budget_wait: Duration::from_millis(50),
        read_only: false,
        allow_other: true,
        uid: 1000,
        gid: 1000,
        file_mode: 0o644,
        attr_ttl: Duration::from_secs(1),
        whole_value_reads: false,
        open_read: crate::fs::OPEN_READ,
        metadata_parallelism: 4,
        readahead: ReadAheadConfig::default(),
        cached_reads: false,
    }
}

fn mem() -> Arc<dyn Cloudstore> {
    Arc::new(MemoryStore::new(MAX))
}

fn fs_over(store: Arc<dyn Cloudstore>) -> ChunkFs {
    ChunkFs::new(store, cfg())
}

fn n(s: &str) -> &OsStr {
    OsStr::new(s)
}

const CREATE: i32 = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC;

/// Writes a whole file like `cp`: create, write, flush (close), release.
fn put(fs: &ChunkFs, name: &str, data: &[u8]) -> FsResult<()> {
    let (_, fh) = fs.create(ROOT_INO, n(name), CREATE, 0)?;
    for (i, part) in data.chunks(4096).enumerate() {
        fs.write(fh, (i * 4096) as u64, part)?;
    }
    let flushed = fs.flush(fh, 0);
    let _ = fs.release(fh);
    flushed
}

/// Reads a whole file through open/read/release, 1000 bytes at a time.
fn cat(fs: &ChunkFs, name: &str) -> FsResult<Vec<u8>> {
    let attr = fs.lookup(ROOT_INO, n(name), 0)?;
    let fh = fs.open(attr.ino, libc::O_RDONLY, 0)?;
    let mut out = Vec::new();
    loop {
        let part = fs.read(fh, out.len() as u64, 1000)?;
        if part.is_empty() {
            break;
        }
        out.extend(part);
    }
    fs.release(fh)?;
    Ok(out)
}

fn ls(fs: &ChunkFs, plus: bool) -> Vec<DirEntry> {
    let fh = fs.opendir(ROOT_INO).unwrap();
    let mut out: Vec<DirEntry> = Vec::new();
    loop {
        let offset = out.last().map_or(0, |e| e.offset);
        let before = out.len();
        // Small pages, like a kernel buffer that fills after 7 entries.
        let mut page = 0;
        fs.readdir(fh, offset, plus, &mut |e| {
            if page == 7 {
                return true;
            }
            page += 1;
            out.push(e);
            false
        })
        .unwrap();
        if out.len() == before {
            break;
        }
    }
    fs.releasedir(fh);
    out
}

fn names(entries: &[DirEntry]) -> Vec<OsString> {
    entries.iter().map(|e| e.name.clone()).collect()
}
