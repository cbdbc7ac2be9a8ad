//! Bad input, one test each: names the mount cannot hold, node kinds and xattrs it does not have,
//! values past the maximum chunk size, a damaged LevelDB directory, Ceph settings that cannot
//! work, and configuration values out of range. Each asserts the errno or the exit code and
//! message a user sees, the daemon's log line naming the name or key and the reason, and that
//! nothing changed (existing chunks byte-identical, no new chunk; the damaged files left as they
//! were). The mount cases run over LevelDB and the real Ceph cluster (`leveldb::NAME`,
//! `ceph::NAME`); they need root and /dev/fuse, the Ceph ones CLOUDSTORE_TEST_CEPH_CONF.

mod ceph_support;
mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ceph_support::bytes;
use cloudstore_fs::config::Config;
use cloudstore_fs::store::leveldb::LevelDbStore;
use cloudstore_fs::store::Cloudstore;
use common::files::{close, errno, read_file, write_file};
use common::mount::{fuse_available, Store, TestMount, BIN};

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Every chunk the mount shows, with its bytes (read through fresh opens).
fn snapshot(m: &TestMount) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let data = read_file(&m.path(&name));
            (name, data)
        })
        .collect()
}

/// Asserts that the mount still shows exactly `before`, also after a remount (so the store
/// itself holds it, not just the daemon).
fn assert_unchanged(m: &mut TestMount, before: &BTreeMap<String, Vec<u8>>, when: &str) {
    for pass in ["", " and a remount"] {
        if !pass.is_empty() {
            m.remount();
        }
        let now = snapshot(m);
        let names = |s: &BTreeMap<String, Vec<u8>>| s.keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(&now), names(before), "chunks after {when}{pass}");
        for (name, data) in before {
            assert!(
                now[name] == *data,
                "{name} changed after {when}{pass}: {} bytes, was {}",
                now[name].len(),
                data.len()
            );
        }
    }
}

/// Waits (up to 5 s: the log is written by another process) for a line of the daemon's log
/// holding every one of `needles`.
fn assert_logged(m: &TestMount, needles: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = fs::read_to_string(m.log_path()).unwrap_or_default();
        if log.lines().any(|l| needles.iter().all(|n| l.contains(n))) {
            return;
        }
        if Instant::now() > deadline {
            panic!("no log line with all of {needles:?}; the log ends:\n{}", m.log_tail());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A few chunks to show that a refused operation changed nothing.
fn seed(m: &TestMount) -> BTreeMap<String, Vec<u8>> {
    write_file(&m.path("aa"), &bytes(1, 70_000));
    write_file(&m.path("0b0c"), b"");
    write_file(&m.path("ff00ff"), &bytes(2, 3));
    snapshot(m)
}

/// Names that are not chunk names, with the words the log line gives as the reason.
fn bad_names() -> Vec<(String, &'static str)> {
    vec![
        ("zz11".into(), "'z' at offset 0 is not a lowercase hex digit"),
        ("hello".into(), "is not a lowercase hex digit"),
        ("abc".into(), "odd number of characters (3)"),
        ("ABCD".into(), "'A' at offset 0 is not a lowercase hex digit"),
        ("aBcd".into(), "'B' at offset 1 is not a lowercase hex digit"),
        // 256 characters of valid hex: too long (the longest chunk name is 254).
        ("ab".repeat(128), "256 characters, longer than 254"),
    ]
}

/// A name for a message: long names are shortened.
fn short(name: &str) -> String {
    if name.len() > 20 {
        format!("{}... ({} characters)", &name[..8], name.len())
    } else {
        name.to_string()
    }
}

/// The `{:?}` form a log line gives a name in.
fn quoted(name: &str) -> String {
    format!("{name:?}")
}

/// Runs the binary with `args`, giving up (and failing) after `limit`.
fn run_bin(args: &[&std::ffi::OsStr], limit: Duration) -> (Output, Duration) {
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
fn assert_fails(out: &Output, code: i32, needles: &[&str], what: &str) {
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
fn is_mounted(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let parent = path.parent().unwrap();
    match (fs::metadata(path), fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => true, // ENOTCONN and friends: something is mounted there
    }
}

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
// Names.

/// create(2) of a name that is not a chunk name: EINVAL, a log line naming it and why, nothing
/// stored.
fn bad_names_on_create(m: &mut TestMount) {
    let before = seed(m);
    for (name, reason) in bad_names() {
        let e = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(m.path(&name))
            .unwrap_err();
        assert_eq!(errno(&e), libc::EINVAL, "create {}: {e}", short(&name));
        assert_logged(m, &["create", &quoted(&name), "invalid name (EINVAL)", reason]);
    }
    // The shell's view: touch says "Invalid argument".
    let out = m.sh_output("touch \"$MNT\"/NotHex");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Invalid argument"));
    assert_unchanged(m, &before, "refused creates");
}

/// rename(2) onto a name that is not a chunk name: EINVAL, the source keeps its name and bytes.
fn bad_names_on_rename(m: &mut TestMount) {
    let before = seed(m);
    for (name, reason) in bad_names() {
        let e = fs::rename(m.path("aa"), m.path(&name)).unwrap_err();
        assert_eq!(errno(&e), libc::EINVAL, "rename aa -> {}: {e}", short(&name));
        assert_logged(m, &["rename", &quoted(&name), "invalid name (EINVAL)", reason]);
    }
    // A scratch file cannot become an invalid name either (it stays a scratch file).
    write_file(&m.path(".tmp"), b"scratch");
    let e = fs::rename(m.path(".tmp"), m.path("ABCD")).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    fs::remove_file(m.path(".tmp")).unwrap();
    assert_unchanged(m, &before, "refused renames");
}

/// lookup (stat, open) of a name that is not a chunk name: ENOENT, logged with the reason.
fn bad_names_on_lookup(m: &mut TestMount) {
    let before = seed(m);
    for (name, reason) in bad_names() {
        let e = fs::metadata(m.path(&name)).unwrap_err();
        assert_eq!(errno(&e), libc::ENOENT, "stat {}: {e}", short(&name));
        let e = fs::File::open(m.path(&name)).unwrap_err();
        assert_eq!(errno(&e), libc::ENOENT, "open {}: {e}", short(&name));
        assert_logged(m, &["lookup", &quoted(&name), "no such file (ENOENT)", reason]);
    }
    // Far over NAME_MAX: FUSE passes it on (up to 1024 bytes... and beyond, measured), and the
    // answer is the same.
    let e = fs::metadata(m.path(&"ab".repeat(600))).unwrap_err();
    assert_eq!(errno(&e), libc::ENOENT);
    assert_unchanged(m, &before, "lookups of invalid names");
}

/// mkdir, symlink, link, mknod: EPERM, logged, nothing created.
fn other_node_kinds_are_eperm(m: &mut TestMount) {
    let before = seed(m);
    let e = fs::create_dir(m.path("dd")).unwrap_err();
    assert_eq!(errno(&e), libc::EPERM, "mkdir: {e}");
    assert_logged(m, &["mkdir \"dd\"", "refused (EPERM)"]);
    let e = std::os::unix::fs::symlink("aa", m.path("ee")).unwrap_err();
    assert_eq!(errno(&e), libc::EPERM, "symlink: {e}");
    assert_logged(m, &["symlink \"ee\"", "refused (EPERM)"]);
    let e = fs::hard_link(m.path("aa"), m.path("ef")).unwrap_err();
    assert_eq!(errno(&e), libc::EPERM, "link: {e}");
    assert_logged(m, &["link \"ef\"", "refused (EPERM)"]);
    for (name, kind) in [("f0", libc::S_IFIFO), ("f1", libc::S_IFREG)] {
        let path = CString::new(m.path(name).as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid C string; mknod touches no memory of ours.
        let rc = unsafe { libc::mknod(path.as_ptr(), kind | 0o644, 0) };
        let e = std::io::Error::last_os_error();
        assert_eq!(rc, -1, "mknod {name} succeeded");
        assert_eq!(errno(&e), libc::EPERM, "mknod {name}: {e}");
        assert_logged(m, &[&format!("mknod \"{name}\""), "refused (EPERM)"]);
    }
    assert_unchanged(m, &before, "refused mkdir/symlink/link/mknod");
}

/// Extended attributes: the daemon answers ENOSYS, which programs see as EOPNOTSUPP.
fn xattrs_are_not_supported(m: &mut TestMount) {
    let xattr = |op: &str, path: &Path| -> i32 {
        let p = CString::new(path.as_os_str().as_bytes()).unwrap();
        let name = CString::new("user.cloudstore.test").unwrap();
        let mut buf = [0u8; 64];
        // SAFETY: valid C strings and a buffer of the length given.
        let rc = unsafe {
            match op {
                "get" => libc::getxattr(p.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), 64),
                "list" => libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), 64),
                "set" => libc::setxattr(p.as_ptr(), name.as_ptr(), b"v".as_ptr().cast(), 1, 0)
                    as isize,
                _ => libc::removexattr(p.as_ptr(), name.as_ptr()) as isize,
            }
        };
        assert_eq!(rc, -1, "{op}xattr on {} succeeded", path.display());
        errno(&std::io::Error::last_os_error())
    };
    // The root first: before any write, so that the kernel's own security.capability probe has
    // not used up the one getxattr the daemon sees.
    assert_eq!(xattr("get", &m.mnt), libc::EOPNOTSUPP);
    assert_logged(m, &["getxattr \"user.cloudstore.test\"", "not supported (ENOSYS"]);
    let before = seed(m);
    for op in ["set", "remove", "list", "get"] {
        for path in [m.path("aa"), m.mnt.clone()] {
            assert_eq!(xattr(op, &path), libc::EOPNOTSUPP, "{op}xattr");
        }
    }
    assert_logged(m, &["setxattr \"user.cloudstore.test\"", "not supported"]);
    assert_logged(m, &["removexattr \"user.cloudstore.test\"", "not supported"]);
    assert_logged(m, &["listxattr on inode", "not supported"]);
    assert_unchanged(m, &before, "refused xattr calls");
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
    assert!(!out.status.success(), "truncate -s past the maximum succeeded");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("File too large"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_logged(
        m,
        &[
            &format!("truncate aa to {}", MAX + 1),
            &format!("exceeds the maximum chunk size of {MAX} (EFBIG)"),
        ],
    );
    // A poisoned handle's close reports it too, and commits nothing.
    let f = OpenOptions::new().write(true).open(m.path("aa")).unwrap();
    assert_eq!(errno(&f.set_len(MAX * 2).unwrap_err()), libc::EFBIG);
    assert_eq!(errno(&close(f).unwrap_err()), libc::EFBIG);
    assert_eq!(read_file(&m.path("aa")), old);
    assert_unchanged(m, &before, "truncates past the maximum");

    // Exactly the maximum and 0 bytes are values like any other.
    let max = bytes(7, MAX as usize);
    write_file(&m.path("bb"), &max);
    write_file(&m.path("cc"), b"");
    m.sh(&format!("truncate -s {MAX} \"$MNT\"/ff00ff"));
    let mut grown = before["ff00ff"].clone();
    grown.resize(MAX as usize, 0);
    m.remount();
    assert!(read_file(&m.path("bb")) == max, "bb: the maximum did not round-trip");
    assert_eq!(fs::metadata(m.path("bb")).unwrap().len(), MAX);
    assert_eq!(read_file(&m.path("cc")), b"", "cc: 0 bytes did not round-trip");
    assert_eq!(fs::metadata(m.path("cc")).unwrap().len(), 0);
    assert!(read_file(&m.path("ff00ff")) == grown, "truncate -s MAX");
    // One byte more is refused on a fresh handle too.
    let e = fs::write(m.path("bb"), bytes(8, MAX as usize + 1)).unwrap_err();
    assert_eq!(errno(&e), libc::EFBIG);
    assert!(read_file(&m.path("bb")) == max, "bb after a refused write");
}

/// The bytes of chunk ab12, read with the store's own tools (the mount being down).
fn stored_ab12(m: &TestMount) -> Vec<u8> {
    match m.store {
        Store::Leveldb => {
            let config = Config {
                data_dir: m.outside("data"),
                ..Config::default()
            };
            let store = LevelDbStore::open(&config).unwrap();
            let v = store.get_chunk(&[0xab, 0x12]).unwrap().expect("ab12 stored");
            store.close().unwrap();
            v
        }
        Store::Ceph => {
            let c = m.cluster().unwrap();
            let out = m.outside("huge.back");
            let st = Command::new("rados")
                .arg("-c")
                .arg(&c.conf)
                .args(["-p", &c.pool, "-N", &c.namespace, "get", "ab12"])
                .arg(&out)
                .status()
                .unwrap();
            assert!(st.success(), "rados get");
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
            // Written before the maximum was lowered: a store opened with the default maximum.
            let config = Config {
                data_dir: m.outside("data"),
                ..Config::default()
            };
            let store = LevelDbStore::open(&config).unwrap();
            store.set_chunk(&[0xab, 0x12], &value).unwrap();
            store.close().unwrap();
        }
        Store::Ceph => {
            let c = m.cluster().unwrap();
            let out = Command::new("rados")
                .arg("-c")
                .arg(&c.conf)
                .args(["-p", &c.pool, "-N", &c.namespace, "put", "ab12"])
                .arg(&file)
                .output()
                .unwrap();
            assert!(out.status.success(), "rados put: {out:?}");
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
        ("read-write", OpenOptions::new().read(true).write(true).clone()),
        ("append", OpenOptions::new().append(true).clone()),
    ] {
        let e = opts.open(m.path("ab12")).unwrap_err();
        assert_eq!(errno(&e), libc::EFBIG, "open for {what}: {e}");
    }
    let out = m.sh_output("cat \"$MNT\"/ab12 > /dev/null");
    assert!(String::from_utf8_lossy(&out.stderr).contains("File too large"));
    assert_logged(
        m,
        &[
            "open ab12",
            &format!("has {HUGE} bytes"),
            &format!("maximum chunk size of {SMALL} (EFBIG)"),
        ],
    );
    let grew = peak_rss(pid).saturating_sub(base);
    println!("peak RSS {} MiB before the opens, grew by {} KiB", base >> 20, grew >> 10);
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

mount_suite!(
    leveldb,
    common::mount::Store::Leveldb,
    [
        bad_names_on_create,
        bad_names_on_rename,
        bad_names_on_lookup,
        other_node_kinds_are_eperm,
        xattrs_are_not_supported,
        truncate_past_the_maximum_and_exact_sizes(&["--max-chunk-size", "1M"]),
        oversized_stored_value_is_efbig_on_open(&["--max-chunk-size", "4M"]),
    ]
);

mount_suite!(
    ceph,
    common::mount::Store::Ceph,
    [
        bad_names_on_create,
        bad_names_on_rename,
        bad_names_on_lookup,
        other_node_kinds_are_eperm,
        xattrs_are_not_supported,
        truncate_past_the_maximum_and_exact_sizes(&["--max-chunk-size", "1M"]),
        oversized_stored_value_is_efbig_on_open(&["--max-chunk-size", "4M"]),
    ]
);
