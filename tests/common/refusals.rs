//! Helpers of the bad-input tests: seed chunks, run the binary with a time limit, assert a
//! refusal, tell whether a path is mounted.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::files::write_file;
use super::mount::{TestMount, BIN};

/// A few chunks to show that a refused operation changed nothing.
pub fn seed(m: &TestMount) -> BTreeMap<String, Vec<u8>> {
    let aa: Vec<u8> = (0..70_000u32)
        .map(|i| (i.wrapping_mul(7) >> 3) as u8)
        .collect();
    write_file(&m.path("aa"), &aa);
    write_file(&m.path("0b0c"), b"");
    write_file(&m.path("ff00ff"), &[0xff, 0, 0x5a]);
    m.snapshot()
}

/// Runs the binary with `args`, giving up (and failing) after `limit`.
pub fn run_bin(args: &[&std::ffi::OsStr], limit: Duration) -> (Output, Duration) {
    let t = Instant::now();
    let out = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(took < limit, "{args:?} took {took:?}, over {limit:?}");
    (out, took)
}

/// Asserts a command failed with `code`, no panic, and stderr holding every one of `needles`.
pub fn assert_fails(out: &Output, code: i32, needles: &[&str], what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: exit status {}, stderr:\n{stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{what} panicked:\n{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{what}: stderr lacks {n:?}:\n{stderr}");
    }
}

/// Whether `path` is a mount point now (its device differs from its parent's).
pub fn is_mounted(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let parent = path.parent().unwrap();
    match (fs::metadata(path), fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => true, // ENOTCONN and friends: something is mounted there
    }
}
