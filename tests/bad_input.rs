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
use std::path::{Path, PathBuf};
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

/// A few chunks to show that a refused operation changed nothing.
fn seed(m: &TestMount) -> BTreeMap<String, Vec<u8>> {
    write_file(&m.path("aa"), &bytes(1, 70_000));
    write_file(&m.path("0b0c"), b"");
    write_file(&m.path("ff00ff"), &bytes(2, 3));
    m.snapshot()
}

/// Names that are not chunk names, with the words the log line gives as the reason.
fn bad_names() -> Vec<(String, &'static str)> {
    vec![
        (
            "zz11".into(),
            "'z' at offset 0 is not a lowercase hex digit",
        ),
        ("hello".into(), "is not a lowercase hex digit"),
        ("abc".into(), "odd number of characters (3)"),
        (
            "ABCD".into(),
            "'A' at offset 0 is not a lowercase hex digit",
        ),
        (
            "aBcd".into(),
            "'B' at offset 1 is not a lowercase hex digit",
        ),
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

/// A name that is not a chunk name but looks like a mistyped one (only hex digits): created as
/// a scratch file, logged with the reason, never a chunk, kept across an unmount.
fn mistyped_names_on_create_are_logged_scratch_files(m: &mut TestMount) {
    let before = seed(m);
    for (name, reason) in bad_names() {
        write_file(&m.path(&name), name.as_bytes());
        if name.bytes().all(|b| b.is_ascii_hexdigit()) {
            m.assert_logged(&["create", &quoted(&name), "not a chunk name", reason]);
        }
    }
    let ls = m.cli(&["ls"]);
    let listed = String::from_utf8_lossy(&ls.stdout).into_owned();
    for (name, _) in bad_names() {
        assert!(
            !listed.contains(&name),
            "{} is a chunk: {listed}",
            short(&name)
        );
    }
    m.remount();
    for (name, _) in bad_names() {
        assert_eq!(
            read_file(&m.path(&name)),
            name.as_bytes(),
            "{}",
            short(&name)
        );
        fs::remove_file(m.path(&name)).unwrap();
    }
    m.assert_unchanged(&before, "scratch files made and removed");
}

/// rename(2) of a chunk onto a name that is not a chunk name: the chunk leaves the store as a
/// scratch file (logged when the name looks like a mistyped chunk name); renamed back, it is
/// the same chunk.
fn mistyped_names_on_rename_are_logged(m: &mut TestMount) {
    let before = seed(m);
    for (name, reason) in bad_names() {
        fs::rename(m.path("aa"), m.path(&name)).unwrap();
        assert!(!m.path("aa").exists());
        if name.bytes().all(|b| b.is_ascii_hexdigit()) {
            m.assert_logged(&["rename to", &quoted(&name), "not a chunk name", reason]);
        }
        fs::rename(m.path(&name), m.path("aa")).unwrap();
    }
    m.assert_unchanged(&before, "renames there and back");
}

/// lookup (stat, open) of a name that does not exist: ENOENT, whatever the name.
fn bad_names_on_lookup(m: &mut TestMount) {
    let before = seed(m);
    for (name, _) in bad_names() {
        let e = fs::metadata(m.path(&name)).unwrap_err();
        assert_eq!(errno(&e), libc::ENOENT, "stat {}: {e}", short(&name));
        let e = fs::File::open(m.path(&name)).unwrap_err();
        assert_eq!(errno(&e), libc::ENOENT, "open {}: {e}", short(&name));
    }
    // Far over NAME_MAX: FUSE passes it on (up to 1024 bytes... and beyond, measured), and the
    // answer is the same.
    let e = fs::metadata(m.path(&"ab".repeat(600))).unwrap_err();
    assert_eq!(errno(&e), libc::ENOENT);
    m.assert_unchanged(&before, "lookups of invalid names");
}

/// mkdir, symlink, link, mknod: EPERM, logged, nothing created.
fn other_node_kinds_are_eperm(m: &mut TestMount) {
    let before = seed(m);
    let e = fs::create_dir(m.path("dd")).unwrap_err();
    assert_eq!(errno(&e), libc::EPERM, "mkdir: {e}");
    m.assert_logged(&["mkdir \"dd\"", "refused (EPERM)"]);
    let e = std::os::unix::fs::symlink("aa", m.path("ee")).unwrap_err();
    assert_eq!(errno(&e), libc::EPERM, "symlink: {e}");
    m.assert_logged(&["symlink \"ee\"", "refused (EPERM)"]);
    let e = fs::hard_link(m.path("aa"), m.path("ef")).unwrap_err();
    assert_eq!(errno(&e), libc::EPERM, "link: {e}");
    m.assert_logged(&["link \"ef\"", "refused (EPERM)"]);
    for (name, kind) in [("f0", libc::S_IFIFO), ("f1", libc::S_IFREG)] {
        let path = CString::new(m.path(name).as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid C string; mknod touches no memory of ours.
        let rc = unsafe { libc::mknod(path.as_ptr(), kind | 0o644, 0) };
        let e = std::io::Error::last_os_error();
        assert_eq!(rc, -1, "mknod {name} succeeded");
        assert_eq!(errno(&e), libc::EPERM, "mknod {name}: {e}");
        m.assert_logged(&[&format!("mknod \"{name}\""), "refused (EPERM)"]);
    }
    m.assert_unchanged(&before, "refused mkdir/symlink/link/mknod");
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
                "set" => {
                    libc::setxattr(p.as_ptr(), name.as_ptr(), b"v".as_ptr().cast(), 1, 0) as isize
                }
                _ => libc::removexattr(p.as_ptr(), name.as_ptr()) as isize,
            }
        };
        assert_eq!(rc, -1, "{op}xattr on {} succeeded", path.display());
        errno(&std::io::Error::last_os_error())
    };
    // The root first: before any write, so that the kernel's own security.capability probe has
    // not used up the one getxattr the daemon sees.
    assert_eq!(xattr("get", &m.mnt), libc::EOPNOTSUPP);
    m.assert_logged(&["getxattr \"user.cloudstore.test\"", "not supported (ENOSYS"]);
    let before = seed(m);
    for op in ["set", "remove", "list", "get"] {
        for path in [m.path("aa"), m.mnt.clone()] {
            assert_eq!(xattr(op, &path), libc::EOPNOTSUPP, "{op}xattr");
        }
    }
    m.assert_logged(&["setxattr \"user.cloudstore.test\"", "not supported"]);
    m.assert_logged(&["removexattr \"user.cloudstore.test\"", "not supported"]);
    m.assert_logged(&["listxattr on inode", "not supported"]);
    m.assert_unchanged(&before, "refused xattr calls");
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
    mistyped_names_on_create_are_logged_scratch_files,
    mistyped_names_on_rename_are_logged,
    bad_names_on_lookup,
    other_node_kinds_are_eperm,
    xattrs_are_not_supported,
    truncate_past_the_maximum_and_exact_sizes(&["--max-chunk-size", "1M"]),
    oversized_stored_value_is_efbig_on_open(&["--max-chunk-size", "4M"]),
]);

// ---------------------------------------------------------------------------------------------
// Configuration values out of range: exit code 2 and a message naming the key.

#[test]
fn config_values_out_of_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let toml = dir.path().join("c.toml");
    let cases: [(&[&str], &str, &str); 5] = [
        (&["--memory-budget", "0"], "", "memory_budget = 0"),
        (&["--cache-size", "0"], "", "cache_size = 0"),
        (
            &["--memory-budget", "1M", "--max-chunk-size", "2M"],
            "",
            "memory_budget = 1048576: smaller than max_chunk_size (2097152)",
        ),
        (
            &[],
            "[ceph]\nop_timeout_secs = 0\n",
            "ceph.op_timeout_secs = 0",
        ),
        (
            &[],
            "[ceph]\nconnect_timeout_secs = 0\n",
            "ceph.connect_timeout_secs = 0",
        ),
    ];
    for (flags, file, want) in cases {
        fs::write(&toml, file).unwrap();
        for cmd in ["ls", "mount"] {
            let mut args: Vec<&std::ffi::OsStr> = vec![cmd.as_ref(), "--data-dir".as_ref()];
            args.push(data.as_os_str());
            args.extend(flags.iter().map(std::ffi::OsStr::new));
            args.extend(["--config".as_ref(), toml.as_os_str()]);
            if cmd == "mount" {
                args.push(dir.path().as_os_str());
            }
            let (out, _) = run_bin(&args, Duration::from_secs(30));
            assert_fails(
                &out,
                2,
                &["invalid configuration", want],
                &format!("{cmd} {flags:?} {file:?}"),
            );
        }
    }
    // Nothing was opened or created.
    assert!(
        !data.exists(),
        "a refused configuration created the data directory"
    );
}

/// Store flags of another backend than the one used: a forgotten `--backend ceph` (`--ceph-conf`
/// and `--pool` with the LevelDB default), and `--data-dir` with `--backend ceph`, are refused
/// (exit 2) naming the flags, by `ls` and by `mount`, before anything is opened or created: no
/// empty LevelDB store in ./cloudstore-data, no mount.
#[test]
fn flags_of_another_backend_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let conf = dir.path().join("ceph.conf");
    fs::write(&conf, "[global]\n").unwrap();
    let conf = conf.to_str().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let cases: [(&[&str], &str); 2] = [
        (
            &["--ceph-conf", conf, "--pool", "p"],
            "--ceph-conf, --pool are options of the ceph backend, but the backend is leveldb \
             (the default, or `backend` in the config file); choose the backend with --backend",
        ),
        (
            &["--backend", "ceph", "--data-dir", data, "--pool", "p"],
            "--data-dir is an option of the leveldb backend, but the backend is ceph (--backend); \
             choose the backend with --backend",
        ),
    ];
    for (flags, want) in cases {
        for cmd in ["ls", "mount"] {
            let mut args: Vec<&std::ffi::OsStr> = vec![cmd.as_ref()];
            args.extend(flags.iter().map(std::ffi::OsStr::new));
            if cmd == "mount" {
                args.extend(["--daemon".as_ref(), mnt.as_os_str()]);
            }
            let out = Command::new(BIN)
                .args(&args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            if cmd == "mount" && out.status.success() {
                let _ = cloudstore_fs::mount::unmount(&mnt);
            }
            assert_fails(
                &out,
                2,
                &[&format!("cloudstore-fs: {want}\n")],
                &format!("{cmd} {flags:?}"),
            );
            assert!(!is_mounted(&mnt), "{cmd} {flags:?} mounted");
        }
    }
    let made: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(made.len(), 2, "files made by refused commands: {made:?}");
}

// ---------------------------------------------------------------------------------------------
// A damaged LevelDB directory: the open fails with a clear error, nothing panics, no repair
// runs, and the files are left as they were (putting the damaged file back gives every chunk).

/// The files under `dir` and their bytes, without LevelDB's diagnostic log (LOG, LOG.old: every
/// open rotates it) and its LOCK file.
fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
                continue;
            }
            let name = p.file_name().unwrap().to_str().unwrap();
            if !matches!(name, "LOG" | "LOG.old" | "LOCK") {
                let rel = p.strip_prefix(dir).unwrap().to_str().unwrap().to_string();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A LevelDB directory with chunks aa (300 KB), bb and cc (30 KB each), each in its own table
/// (every CLI command opens and closes the store; an open turns the log into a table).
fn damaged_db_setup(dir: &Path) -> (PathBuf, BTreeMap<&'static str, Vec<u8>>) {
    let data = dir.join("data");
    let mut chunks = BTreeMap::new();
    for (i, (key, len)) in [("aa", 300_000), ("bb", 30_000), ("cc", 30_000)]
        .iter()
        .enumerate()
    {
        let value = bytes(20 + i as u64, *len);
        let file = dir.join(key);
        fs::write(&file, &value).unwrap();
        let (out, _) = run_bin(
            &[
                "put".as_ref(),
                key.as_ref(),
                file.as_os_str(),
                "--data-dir".as_ref(),
                data.as_os_str(),
            ],
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "put {key}: {out:?}");
        chunks.insert(*key, value);
    }
    assert_ls(&data, &chunks);
    (data, chunks)
}

/// `cloudstore-fs ls` succeeds and every chunk reads back whole.
fn assert_ls(data: &Path, chunks: &BTreeMap<&'static str, Vec<u8>>) {
    let (out, _) = run_bin(
        &["ls".as_ref(), "--data-dir".as_ref(), data.as_os_str()],
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "ls: {out:?}");
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    for (key, value) in chunks {
        assert!(
            listed.contains(&format!("{key} {}", value.len())),
            "{listed}"
        );
        let (out, _) = run_bin(
            &[
                "get".as_ref(),
                key.as_ref(),
                "--data-dir".as_ref(),
                data.as_os_str(),
            ],
            Duration::from_secs(30),
        );
        assert!(out.status.success() && out.stdout == *value, "get {key}");
    }
}

/// `ls`, `get` and `mount` of the damaged directory fail (exit 3) with `needles` in the message.
fn assert_open_fails(dir: &Path, data: &Path, needles: &[&str]) {
    for cmd in [&["ls"][..], &["get", "bb"], &["mount", "--daemon"]] {
        let mut args: Vec<&std::ffi::OsStr> = cmd.iter().map(|a| a.as_ref()).collect();
        args.extend(["--data-dir".as_ref(), data.as_os_str()]);
        let mnt = dir.join("mnt");
        fs::create_dir_all(&mnt).unwrap();
        if cmd[0] == "mount" {
            if !fuse_available("bad_input::damaged LevelDB mount") {
                continue;
            }
            args.push(mnt.as_os_str());
        }
        let (out, _) = run_bin(&args, Duration::from_secs(60));
        if cmd[0] == "mount" && out.status.success() {
            let _ = cloudstore_fs::mount::unmount(&mnt);
            panic!("mount of a damaged LevelDB directory succeeded");
        }
        let mut want = vec!["cannot open the store"];
        want.extend(needles);
        assert_fails(&out, 3, &want, &format!("{cmd:?} of a damaged directory"));
        assert!(!is_mounted(&mnt), "{cmd:?} left a mount");
    }
}

#[test]
fn leveldb_truncated_table_is_an_error_and_nothing_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let (data, chunks) = damaged_db_setup(dir.path());
    // The table holding aa: the largest one.
    let before = files_of(&data);
    let (table, whole) = before
        .iter()
        .filter(|(n, _)| n.ends_with(".ldb") && !n.contains('/'))
        .max_by_key(|(_, b)| b.len())
        .map(|(n, b)| (data.join(n), b.clone()))
        .expect("a table file");
    let tables: Vec<String> = before
        .keys()
        .filter(|n| n.ends_with(".ldb"))
        .cloned()
        .collect();
    fs::write(&table, &whole[..whole.len() / 2]).unwrap();
    let damaged = files_of(&data);

    // LevelDB opens (tables are read lazily); the scan that checks our size index meets the
    // damage and the open fails, naming the file.
    let table_name = table.file_name().unwrap().to_str().unwrap().to_string();
    assert_open_fails(
        dir.path(),
        &data,
        &["leveldb: rebuild index: IO error", &table_name],
    );

    // Every table is still there, byte for byte (the damaged one still damaged: no repair).
    // LevelDB's open itself rewrites its MANIFEST and log (it replays the log into a table
    // before our index scan meets the damage), so those are not compared.
    let after = files_of(&data);
    for t in &tables {
        assert!(after.get(t) == damaged.get(t), "table {t} changed");
    }
    assert!(
        !data.join("lost").exists(),
        "a LevelDB repair ran (lost/ exists)"
    );
    // Put back, the table gives every chunk whole: the failed opens lost nothing.
    fs::write(&table, &whole).unwrap();
    assert_ls(&data, &chunks);
}

#[test]
fn leveldb_garbage_manifest_is_an_error_and_the_files_stay() {
    let dir = tempfile::tempdir().unwrap();
    let (data, chunks) = damaged_db_setup(dir.path());
    let manifest = fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("MANIFEST-")
        })
        .expect("a MANIFEST");
    let good = fs::read(&manifest).unwrap();
    fs::write(&manifest, bytes(77, good.len())).unwrap();
    let before = files_of(dir.path());

    assert_open_fails(dir.path(), &data, &["Corruption", "cannot open database"]);

    // Nothing under the directory changed (besides LevelDB's own LOG).
    let after = files_of(dir.path());
    let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&after), names(&before), "files added or removed");
    for (name, b) in &before {
        assert!(after[name] == *b, "{name} changed");
    }
    fs::write(&manifest, &good).unwrap();
    assert_ls(&data, &chunks);
}

// ---------------------------------------------------------------------------------------------
// Ceph settings that cannot work: a clear message and a non-zero exit, within the timeout.

/// The Ceph store options for `conf` and `pool`, for `cmd` (ls or mount).
fn ceph_args<'a>(
    cmd: &'a str,
    conf: &'a Path,
    pool: &'a str,
    extra: &[&'a std::ffi::OsStr],
) -> Vec<&'a std::ffi::OsStr> {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        cmd.as_ref(),
        "--backend".as_ref(),
        "ceph".as_ref(),
        "--ceph-conf".as_ref(),
        conf.as_os_str(),
        "--pool".as_ref(),
        pool.as_ref(),
    ];
    args.extend(extra);
    args
}

/// Runs `ls` and `mount --daemon` with these settings; both must fail with `needles`.
fn assert_ceph_fails(
    conf: &Path,
    pool: &str,
    config: Option<&Path>,
    needles: &[&str],
    limit: Duration,
) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let mut slowest = Duration::ZERO;
    for cmd in ["ls", "mount"] {
        let mut extra: Vec<&std::ffi::OsStr> = Vec::new();
        if let Some(c) = config {
            extra.extend(["--config".as_ref(), c.as_os_str()]);
        }
        if cmd == "mount" {
            if !fuse_available("bad_input::ceph mount") {
                continue;
            }
            extra.extend(["--daemon".as_ref(), mnt.as_os_str()]);
        }
        let (out, took) = run_bin(&ceph_args(cmd, conf, pool, &extra), limit);
        if cmd == "mount" && out.status.success() {
            let _ = cloudstore_fs::mount::unmount(&mnt);
            panic!("mount succeeded with conf {} pool {pool}", conf.display());
        }
        assert_fails(
            &out,
            3,
            needles,
            &format!("{cmd} (conf {}, pool {pool})", conf.display()),
        );
        assert!(!is_mounted(&mnt));
        slowest = slowest.max(took);
    }
    slowest
}

#[test]
fn ceph_missing_pool_is_a_clear_error() {
    if !cfg!(feature = "ceph") {
        return ceph_support::skip_or_fail("ceph_missing_pool: built without the `ceph` feature");
    }
    let Some(cluster) = ceph_support::cluster("bad_input::ceph_missing_pool") else {
        return;
    };
    assert_ceph_fails(
        &cluster.conf,
        "no-such-pool-here",
        None,
        &["pool \"no-such-pool-here\" does not exist"],
        Duration::from_secs(60),
    );
}

#[test]
fn ceph_wrong_conf_path_is_a_clear_error() {
    if !cfg!(feature = "ceph") {
        return ceph_support::skip_or_fail(
            "ceph_wrong_conf_path: built without the `ceph` feature",
        );
    }
    let missing = Path::new("/nonexistent/cloudstore/ceph.conf");
    assert_ceph_fails(
        missing,
        "p",
        None,
        &[
            "cannot read conf file /nonexistent/cloudstore/ceph.conf",
            "No such file",
        ],
        Duration::from_secs(30),
    );
    // A directory is not a conf file either.
    assert_ceph_fails(
        Path::new("/tmp"),
        "p",
        None,
        &["/tmp is not a regular file"],
        Duration::from_secs(30),
    );
}

/// The connect timeout of the unreachable-monitor test, and the slack allowed on top of it.
const CONNECT_TIMEOUT: u64 = 3;
const CONNECT_SLACK: Duration = Duration::from_secs(10);

#[test]
fn ceph_unreachable_monitor_fails_within_the_connect_timeout() {
    if !cfg!(feature = "ceph") {
        return ceph_support::skip_or_fail(
            "ceph_unreachable_monitor: built without the `ceph` feature",
        );
    }
    // No cluster needed: a conf naming a monitor on a port where nothing listens.
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("ceph.conf");
    fs::write(
        &conf,
        format!(
            "[global]\nmon host = 127.0.0.1:{port}\nauth cluster required = none\n\
             auth service required = none\nauth client required = none\n\
             log file = {0}/client.log\nadmin socket = {0}/client.asok\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let config = dir.path().join("c.toml");
    fs::write(
        &config,
        format!("[ceph]\nconnect_timeout_secs = {CONNECT_TIMEOUT}\n"),
    )
    .unwrap();
    let limit = Duration::from_secs(CONNECT_TIMEOUT) + CONNECT_SLACK;
    let took = assert_ceph_fails(
        &conf,
        "p",
        Some(&config),
        &[
            "cannot connect to the monitors",
            &format!("127.0.0.1:{port}"),
            &format!("within {CONNECT_TIMEOUT}s"),
        ],
        limit,
    );
    println!("unreachable monitor: failed after {took:?} (connect timeout {CONNECT_TIMEOUT} s, bound {limit:?})");
}

/// Bit rot inside a table (same length, so the store opens without a scan): reading the chunk
/// in the damaged block fails with EIO and a log line naming it, every other chunk still reads,
/// and nothing is rewritten.
fn leveldb_damaged_block_is_eio_on_read(m: &mut TestMount) {
    let chunks: Vec<(&str, Vec<u8>)> = vec![
        ("aa", bytes(30, 300_000)),
        ("bb", bytes(31, 30_000)),
        ("cc", bytes(32, 30_000)),
    ];
    for (key, value) in &chunks {
        write_file(&m.path(key), value);
        // Each in a table of its own: a remount turns LevelDB's log into a table.
        m.remount();
    }
    m.unmount();
    let data = m.outside("data");
    let (table, mut rotten) = files_of(&data)
        .into_iter()
        .filter(|(n, _)| n.ends_with(".ldb") && !n.contains('/'))
        .max_by_key(|(_, b)| b.len())
        .map(|(n, b)| (data.join(n), b))
        .expect("a table file");
    let middle = rotten.len() / 2;
    for b in &mut rotten[middle..middle + 64] {
        *b ^= 0x5a;
    }
    fs::write(&table, &rotten).unwrap();
    let tables_before: BTreeMap<String, Vec<u8>> = files_of(&data)
        .into_iter()
        .filter(|(n, _)| n.ends_with(".ldb"))
        .collect();
    m.mount();
    let e = match fs::read(m.path("aa")) {
        Ok(v) => panic!(
            "read of the damaged chunk succeeded ({} bytes, {})",
            v.len(),
            if v == chunks[0].1 {
                "the right ones"
            } else {
                "WRONG BYTES"
            }
        ),
        Err(e) => e,
    };
    assert_eq!(errno(&e), libc::EIO, "read of the damaged chunk: {e}");
    m.assert_logged(&["get aa", "Corruption: block checksum mismatch"]);
    for (key, value) in &chunks[1..] {
        assert!(read_file(&m.path(key)) == *value, "{key} after the damage");
    }
    m.unmount();
    let tables_after: BTreeMap<String, Vec<u8>> = files_of(&data)
        .into_iter()
        .filter(|(n, _)| n.ends_with(".ldb"))
        .collect();
    assert!(tables_after == tables_before, "the tables changed");
    m.mount();
}

mount_suite!(
    leveldb_only,
    common::mount::Store::Leveldb,
    [leveldb_damaged_block_is_eio_on_read]
);
