//! Bad input: values past the maximum chunk size (truncate past it, exact sizes, a stored value
//! larger than the mount's maximum). Each asserts the errno a user sees, the daemon's log line
//! naming the name and the reason, and that nothing changed. The cases run over LevelDB and the
//! real Ceph cluster (`leveldb::NAME`, `ceph::NAME`); they need root and /dev/fuse, the Ceph ones
//! CLOUDSTORE_TEST_CEPH_CONF.

mod ceph_support;
mod common;

use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt;

use ceph_support::bytes;
use cloudstore_fs::config::Config;
use cloudstore_fs::store::leveldb::LevelDbStore;
use cloudstore_fs::store::Cloudstore;
use common::files::{close, errno, read_file, write_file};
use common::mount::{Store, TestMount};
use common::refusals::seed;

/// The daemon's peak resident memory (VmHWM) in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb * 1024
}

// ---------------------------------------------------------------------------------------------
// The maximum chunk size (1 MiB for these mounts).

const MAX: u64 = 1 << 20;

/// What tests/integrity.rs `efbig_keeps_the_old_value` does not: truncate past the maximum (path
/// and handle) is EFBIG with a log line and keeps the old value; 0 bytes and exactly the
/// maximum round-trip, also across a remount; truncating up to exactly the maximum works.
fn truncate_past_the_maximum_and_exact_sizes(m: &mut TestMount) {
    let before = seed(m);
    let old = before["aa"].clone();

    // truncate(2) by path, and the truncate tool.
    let e = OpenOptions::new()
        .write(true)
        .open(m.path("aa"))
        .and_then(|f| f.set_len(MAX + 1))
        .unwrap_err();
    assert_eq!(errno(&e), libc::EFBIG, "ftruncate past the maximum: {e}");
    let path = CString::new(m.path("aa").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C string.
    let rc = unsafe { libc::truncate(path.as_ptr(), (MAX + 1) as libc::off_t) };
    let e = std::io::Error::last_os_error();
    assert_eq!((rc, errno(&e)), (-1, libc::EFBIG), "truncate(2): {e}");
    let out = m.sh_output(&format!("truncate -s {} \"$MNT\"/aa", MAX + 1));
    assert!(
        !out.status.success(),
        "truncate -s past the maximum succeeded"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("File too large"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.assert_logged(&[
        &format!("truncate aa to {}", MAX + 1),
        &format!("exceeds the maximum chunk size of {MAX} (EFBIG)"),
    ]);
    // A poisoned handle's close reports it too, and commits nothing.
    let f = OpenOptions::new().write(true).open(m.path("aa")).unwrap();
    assert_eq!(errno(&f.set_len(MAX * 2).unwrap_err()), libc::EFBIG);
    assert_eq!(errno(&close(f).unwrap_err()), libc::EFBIG);
    assert_eq!(read_file(&m.path("aa")), old);
    m.assert_unchanged(&before, "truncates past the maximum");

    // Exactly the maximum and 0 bytes are values like any other.
    let max = bytes(7, MAX as usize);
    write_file(&m.path("bb"), &max);
    write_file(&m.path("cc"), b"");
    m.sh(&format!("truncate -s {MAX} \"$MNT\"/ff00ff"));
    let mut grown = before["ff00ff"].clone();
    grown.resize(MAX as usize, 0);
    m.remount();
    assert!(
        read_file(&m.path("bb")) == max,
        "bb: the maximum did not round-trip"
    );
    assert_eq!(fs::metadata(m.path("bb")).unwrap().len(), MAX);
    assert_eq!(
        read_file(&m.path("cc")),
        b"",
        "cc: 0 bytes did not round-trip"
    );
    assert_eq!(fs::metadata(m.path("cc")).unwrap().len(), 0);
    assert!(read_file(&m.path("ff00ff")) == grown, "truncate -s MAX");
    // One byte more is refused on a fresh handle too.
    let e = fs::write(m.path("bb"), bytes(8, MAX as usize + 1)).unwrap_err();
    assert_eq!(errno(&e), libc::EFBIG);
    assert!(read_file(&m.path("bb")) == max, "bb after a refused write");
}

/// The mount's LevelDB store, opened directly with the default maximum chunk size (the mount
/// being down).
fn leveldb_with_default_maximum(m: &TestMount) -> LevelDbStore {
    let config = Config {
        data_dir: m.outside("data"),
        ..Config::default()
    };
    LevelDbStore::open(&config).unwrap()
}

/// The bytes of chunk ab12, read with the store's own tools (the mount being down).
fn stored_ab12(m: &TestMount) -> Vec<u8> {
    match m.store {
        Store::Leveldb => {
            let store = leveldb_with_default_maximum(m);
            let v = store
                .get_chunk(&[0xab, 0x12])
                .unwrap()
                .expect("ab12 stored");
            store.close().unwrap();
            v
        }
        Store::Ceph => {
            let out = m.outside("huge.back");
            let c = m.cluster().unwrap();
            c.rados(&["get", "ab12", out.to_str().unwrap()]);
            read_file(&out)
        }
    }
}

/// A value over the maximum already in the store (the rados tool, another program, a lowered
/// maximum): open for reading or writing is EFBIG, with a log line naming the key and both
/// sizes, and nothing of it is read (the daemon's peak memory does not grow by its size).
/// An O_TRUNC open may replace it.
fn oversized_stored_value_is_efbig_on_open(m: &mut TestMount) {
    const SMALL: u64 = 4 << 20;
    const HUGE: usize = 3 * SMALL as usize;
    let value = bytes(9, HUGE);
    m.unmount();
    let file = m.outside("huge");
    write_file(&file, &value);
    match m.store {
        Store::Leveldb => {
            // Written before the maximum was lowered.
            let store = leveldb_with_default_maximum(m);
            store.set_chunk(&[0xab, 0x12], &value).unwrap();
            store.close().unwrap();
        }
        Store::Ceph => {
            let c = m.cluster().unwrap();
            c.rados(&["put", "ab12", file.to_str().unwrap()]);
        }
    }
    m.mount();
    let pid = m.daemon_pid().expect("the daemon's pid");
    let base = peak_rss(pid);
    // It is listed with its size (stat reads nothing).
    assert_eq!(fs::metadata(m.path("ab12")).unwrap().len(), HUGE as u64);
    for (what, opts) in [
        ("read", OpenOptions::new().read(true).clone()),
        ("write", OpenOptions::new().write(true).clone()),
        (
            "read-write",
            OpenOptions::new().read(true).write(true).clone(),
        ),
        ("append", OpenOptions::new().append(true).clone()),
    ] {
        let e = opts.open(m.path("ab12")).unwrap_err();
        assert_eq!(errno(&e), libc::EFBIG, "open for {what}: {e}");
    }
    let out = m.sh_output("cat \"$MNT\"/ab12 > /dev/null");
    assert!(String::from_utf8_lossy(&out.stderr).contains("File too large"));
    m.assert_logged(&[
        "open ab12",
        &format!("has {HUGE} bytes"),
        &format!("maximum chunk size of {SMALL} (EFBIG)"),
    ]);
    let grew = peak_rss(pid).saturating_sub(base);
    println!(
        "peak RSS {} MiB before the opens, grew by {} KiB",
        base >> 20,
        grew >> 10
    );
    assert!(
        grew < HUGE as u64 / 2,
        "the daemon's peak RSS grew by {grew} bytes: the {HUGE}-byte value was read"
    );
    // The value is still there, whole.
    m.unmount();
    assert!(stored_ab12(m) == value, "the oversized value changed");
    m.mount();
    // O_TRUNC replaces it with a value within the maximum.
    write_file(&m.path("ab12"), b"small now");
    m.remount();
    assert_eq!(read_file(&m.path("ab12")), b"small now");
}

mount_suites!([
    truncate_past_the_maximum_and_exact_sizes(&["--max-chunk-size", "1M"]),
    oversized_stored_value_is_efbig_on_open(&["--max-chunk-size", "4M"]),
]);
