//! Bad input, one test each: names the mount cannot hold, node kinds and xattrs it does not have,
//! and configuration values out of range (values past the maximum chunk size are in
//! tests/bad_input_sizes.rs, damaged LevelDB directories and Ceph settings that cannot work in
//! tests/bad_input_stores.rs). Each asserts the errno or the exit code and
//! message a user sees, the daemon's log line naming the name or key and the reason, and that
//! nothing changed (existing chunks byte-identical, no new chunk; the damaged files left as they
//! were). The mount cases run over LevelDB and the real Ceph cluster (`leveldb::NAME`,
//! `ceph::NAME`); they need root and /dev/fuse, the Ceph ones CLOUDSTORE_TEST_CEPH_CONF.

mod ceph_support;
mod common;

use std::ffi::CString;
use std::fs::{self};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::files::{errno, read_file, write_file};
use common::mount::{TestMount, BIN};
use common::refusals::{assert_fails, is_mounted, run_bin, seed};

// ---------------------------------------------------------------------------------------------
// Helpers.

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

mount_suites!([
    mistyped_names_on_create_are_logged_scratch_files,
    mistyped_names_on_rename_are_logged,
    bad_names_on_lookup,
    other_node_kinds_are_eperm,
    xattrs_are_not_supported,
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
