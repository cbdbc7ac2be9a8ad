//! File helpers for the mount tests: whole-file reads and writes that name the path on failure,
//! close() with its result (std's `File` drops it), and self-identifying values whose bytes say
//! which writer and round made them, so that a mix, a shifted piece or a zero run is recognised and
//! described instead of just "differs".
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::IntoRawFd;
use std::path::Path;

/// Writes `data` to `path` in one go.
pub fn write_file(path: &Path, data: &[u8]) {
    fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Reads the whole of `path`.
pub fn read_file(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The errno of an I/O error (0 when it has none).
pub fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// Whether `path` is absent: stat gives ENOENT (anything else is a test failure).
pub fn absent(path: &Path) -> bool {
    match fs::metadata(path) {
        Ok(_) => false,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
        Err(e) => panic!("stat {}: {e}", path.display()),
    }
}

/// close(2) of `f`, returning its result (a FUSE flush: the commit of a written file).
pub fn close(f: File) -> io::Result<()> {
    let fd = f.into_raw_fd();
    // SAFETY: `fd` was just taken out of the File, so nothing else closes it.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What happened to one whole-file write: the first failed write (if any) and close's result.
#[derive(Debug)]
pub struct WriteOutcome {
    /// The errno of the first write that failed; later pieces were not written.
    pub write_errno: Option<i32>,
    /// close()'s errno, `None` when it returned 0.
    pub close_errno: Option<i32>,
}

impl WriteOutcome {
    /// Every write and the close returned success.
    pub fn ok(&self) -> bool {
        self.write_errno.is_none() && self.close_errno.is_none()
    }
}

/// Opens `path` (created, truncated when `truncate`), writes `data` in `piece`-byte writes,
/// stops at the first failed write, then closes; says what failed.
pub fn write_in_pieces(path: &Path, data: &[u8], piece: usize, truncate: bool) -> WriteOutcome {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(truncate)
        .open(path)
        .unwrap_or_else(|e| panic!("open {} for writing: {e}", path.display()));
    let mut write_errno = None;
    for p in data.chunks(piece.max(1)) {
        if let Err(e) = f.write_all(p) {
            write_errno = Some(errno(&e));
            break;
        }
    }
    WriteOutcome {
        write_errno,
        close_errno: close(f).err().map(|e| errno(&e)),
    }
}

/// A value that identifies itself: 8-byte little-endian words `MAGIC | writer | round | index`.
/// `len` is rounded down to a multiple of 8.
pub fn tagged(writer: u16, round: u32, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    for i in 0..(len / 8) as u64 {
        v.extend_from_slice(&word(writer, round, i).to_le_bytes());
    }
    v
}

const MAGIC: u64 = 0xC5;

fn word(writer: u16, round: u32, index: u64) -> u64 {
    (MAGIC << 56) | ((writer as u64 & 0xff) << 48) | ((round as u64 & 0xffff) << 32) | index
}

/// The (writer, round) of a buffer that is exactly one whole [`tagged`] value.
pub fn identify(buf: &[u8]) -> Option<(u16, u32)> {
    if buf.is_empty() || !buf.len().is_multiple_of(8) {
        return None;
    }
    let first = u64::from_le_bytes(buf[..8].try_into().unwrap());
    if first >> 56 != MAGIC || first & 0xffff_ffff != 0 {
        return None;
    }
    let (writer, round) = ((first >> 48) as u16 & 0xff, (first >> 32) as u32 & 0xffff);
    (buf == tagged(writer, round, buf.len()).as_slice()).then_some((writer, round))
}

/// A short description of what a buffer is made of: runs of `w<writer>r<round>` words (at their
/// own index or `shifted`), zero runs and other bytes, with byte offsets; for failure messages.
pub fn describe(buf: &[u8]) -> String {
    let mut runs: Vec<(usize, usize, String)> = Vec::new();
    for (i, w) in buf.chunks(8).enumerate() {
        let label = if w.len() < 8 {
            "tail".to_string()
        } else {
            let x = u64::from_le_bytes(w.try_into().unwrap());
            if x == 0 {
                "zeros".to_string()
            } else if x >> 56 == MAGIC {
                let at = if x & 0xffff_ffff == i as u64 {
                    ""
                } else {
                    " shifted"
                };
                format!("w{}r{}{at}", (x >> 48) & 0xff, (x >> 32) & 0xffff)
            } else {
                "other".to_string()
            }
        };
        match runs.last_mut() {
            Some((_, end, l)) if *l == label => *end = i * 8 + w.len(),
            _ => runs.push((i * 8, i * 8 + w.len(), label)),
        }
    }
    let shown: Vec<String> = runs
        .iter()
        .take(12)
        .map(|(a, b, l)| format!("[{a}..{b}) {l}"))
        .collect();
    let more = if runs.len() > 12 {
        format!(" ... ({} runs)", runs.len())
    } else {
        String::new()
    };
    format!("{} bytes: {}{more}", buf.len(), shown.join(", "))
}

/// The first byte offset where `a` and `b` differ (or the shorter length), for messages.
pub fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

/// Asserts that `got` is `want`, describing both when not (no multi-MiB dumps).
#[track_caller]
pub fn assert_bytes(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        panic!(
            "{what}: got {} ; want {} ; first difference at byte {}",
            describe(got),
            describe(want),
            first_difference(got, want)
        );
    }
}

/// Every file of `dir`, by name, with its bytes.
pub fn files_in(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}
