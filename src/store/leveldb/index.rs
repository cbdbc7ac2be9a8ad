//! The size and mtime index (`cloudstore-meta/`): its entries, the clean-close record that says
//! when it can be trusted, and the rebuild from the data after an unclean shutdown.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::db::{Db, WriteBatch};
use super::{io_err, ldb_err};
use crate::store::Result;

/// The clean-close record, inside [`super::META_DIR`].
pub const STATE_FILE: &str = "cloudstore-state";
/// Index entries per write batch while rebuilding.
const REBUILD_BATCH: usize = 10_000;
/// An mtime of "unknown" (an entry made for a key another program wrote).
pub const NO_MTIME: [u8; 12] = [0xff; 12];

/// An mtime as stored: seconds (u64) and nanoseconds (u32) since the epoch, little-endian.
pub fn encode_mtime(t: SystemTime) -> [u8; 12] {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&d.as_secs().to_le_bytes());
    out[8..].copy_from_slice(&d.subsec_nanos().to_le_bytes());
    out
}

/// An index entry: the mtime (12 bytes, as stored) and the size when known.
pub struct Entry {
    pub mtime: [u8; 12],
    pub size: Option<u64>,
}

impl Entry {
    /// Decodes a stored entry (12 bytes: mtime only; 20: mtime and size).
    pub fn decode(b: &[u8]) -> Entry {
        let mut mtime = NO_MTIME;
        if let Some(m) = b.get(..12) {
            mtime.copy_from_slice(m);
        }
        let size = b
            .get(12..20)
            .map(|s| u64::from_le_bytes(s.try_into().unwrap()));
        Entry { mtime, size }
    }

    /// The stored form of an entry with its size.
    pub fn encode(mtime: &[u8; 12], size: u64) -> [u8; 20] {
        let mut out = [0u8; 20];
        out[..12].copy_from_slice(mtime);
        out[12..].copy_from_slice(&size.to_le_bytes());
        out
    }

    /// The mtime, `None` when unknown.
    pub fn mtime(&self) -> Option<SystemTime> {
        if self.mtime == NO_MTIME {
            return None;
        }
        let secs = u64::from_le_bytes(self.mtime[..8].try_into().unwrap());
        let nanos = u32::from_le_bytes(self.mtime[8..].try_into().unwrap());
        UNIX_EPOCH.checked_add(Duration::new(secs, nanos.min(999_999_999)))
    }
}

/// A fingerprint of a LevelDB directory's own files (names and lengths): any other program
/// that opens the database at least starts a new log file, and so changes it.
pub fn fingerprint(dir: &Path) -> Result<u64> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err("fingerprint", dir, e))? {
        let entry = entry.map_err(|e| io_err("fingerprint", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name == "CURRENT"
            || name.starts_with("MANIFEST-")
            || [".log", ".ldb", ".sst"].iter().any(|s| name.ends_with(s));
        if ours {
            let len = entry
                .metadata()
                .map_err(|e| io_err("fingerprint", dir, e))?
                .len();
            files.push((name, len));
        }
    }
    files.sort();
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for (name, len) in &files {
        for b in name.bytes().chain([0]).chain(len.to_le_bytes()) {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    Ok(h)
}

/// fsyncs a directory (after a rename or removal in it).
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("sync directory", dir, e))
}

/// The fingerprint recorded by the last clean close, if any.
pub fn read_state(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let hex = text.trim().strip_prefix("clean ")?;
    u64::from_str_radix(hex, 16).ok()
}

/// Records a clean close: written whole (temporary file, fsync, rename, fsync of the directory).
pub fn write_state(meta_dir: &Path, fp: u64) -> Result<()> {
    let path = meta_dir.join(STATE_FILE);
    let tmp = meta_dir.join(format!("{STATE_FILE}.tmp"));
    let mut f = File::create(&tmp).map_err(|e| io_err("write state", &tmp, e))?;
    f.write_all(format!("clean {fp:016x}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err("write state", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io_err("write state", &path, e))?;
    sync_dir(meta_dir)
}

/// LevelDB's table magic number (table/format.h `kTableMagicNumber`): the last 8 bytes of every
/// table file, little-endian.
const TABLE_MAGIC: u64 = 0xdb47_7524_8b80_fb57;

/// The table files of `dir` (`*.ldb`, `*.sst`) that do not end with LevelDB's table magic number:
/// cut short or overwritten.
fn tables_without_footer(dir: &Path) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut bad: Vec<String> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ldb" || x == "sst"))
        .filter(|p| {
            let mut tail = [0u8; 8];
            let whole = File::open(p).and_then(|mut f| {
                f.seek(SeekFrom::End(-8))?;
                f.read_exact(&mut tail)
            });
            whole.is_err() || u64::from_le_bytes(tail) != TABLE_MAGIC
        })
        .map(|p| p.display().to_string())
        .collect();
    bad.sort();
    bad
}

/// LevelDB's error for a damaged table read with pread ("Corruption: not an sstable (bad magic
/// number)") does not say which file; this adds the table files of `dir` that are damaged so.
fn name_damaged_tables(dir: &Path, mut e: super::db::Error) -> super::db::Error {
    if e.0.starts_with("Corruption") {
        let bad = tables_without_footer(dir);
        if !bad.is_empty() {
            e.0 = format!("{} (damaged table files: {})", e.0, bad.join(", "));
        }
    }
    e
}

/// Makes the index exact again with one scan of the data in `dir`: every data key gets an entry
/// with its size (keeping its mtime), entries without data go. Returns (chunks, entries changed).
pub fn rebuild_index(dir: &Path, data: &Arc<Db>, meta: &Arc<Db>) -> Result<(u64, u64)> {
    let mut d = data.iter(data.snapshot(), false);
    let mut m = meta.iter(meta.snapshot(), false);
    d.seek_to_first();
    m.seek_to_first();
    let mut batch = WriteBatch::default();
    let (mut chunks, mut changed) = (0u64, 0u64);
    let flush = |batch: &mut WriteBatch, sync: bool| -> Result<()> {
        meta.write(batch, sync)
            .map_err(|e| ldb_err("rebuild index", b"", e))?;
        *batch = WriteBatch::default();
        Ok(())
    };
    while d.valid() {
        let key = d.key();
        let size = d.value().len() as u64;
        while m.valid() && m.key() < key {
            batch.delete(m.key());
            changed += 1;
            m.next();
        }
        if m.valid() && m.key() == key {
            let e = Entry::decode(m.value());
            if e.size != Some(size) {
                batch.put(key, &Entry::encode(&e.mtime, size));
                changed += 1;
            }
            m.next();
        } else {
            batch.put(key, &Entry::encode(&NO_MTIME, size));
            changed += 1;
        }
        chunks += 1;
        d.next();
        if batch.len() >= REBUILD_BATCH {
            flush(&mut batch, false)?;
        }
    }
    d.status()
        .map_err(|e| ldb_err("rebuild index", b"", name_damaged_tables(dir, e)))?;
    while m.valid() {
        batch.delete(m.key());
        changed += 1;
        m.next();
    }
    m.status().map_err(|e| ldb_err("rebuild index", b"", e))?;
    flush(&mut batch, true)?;
    Ok((chunks, changed))
}
