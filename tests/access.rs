//! Who may do what on the mount: only its owner reaches it unless --allow-other; with
//! --allow-other others may read (files 0644, the directory 0755) but not change anything;
//! chmod and chown that the mount cannot keep fail with EPERM instead of pretending; --read-only
//! refuses every change with EROFS and still reads. Through real mounts over LevelDB and Ceph
//! (`leveldb::NAME`, `ceph::NAME`); another user is `nobody` through setpriv. Needs root and
//! /dev/fuse (SKIPPED otherwise; a failure under CI=true).

mod ceph_support;
mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use ceph_support::bytes;
use common::files::{errno, read_file, write_file};
use common::mount::TestMount;

/// The text of chunk aa, which other users read.
const TEXT: &[u8] = b"readable by others with --allow-other\n";

/// Two chunks, and what the mount shows.
fn seed(m: &TestMount) -> BTreeMap<String, Vec<u8>> {
    write_file(&m.path("aa"), TEXT);
    write_file(&m.path("bb"), &bytes(3, 50_000));
    m.snapshot()
}

/// Runs `script` as nobody and asserts it fails with `message` on stderr.
fn nobody_fails(m: &TestMount, script: &str, message: &str) {
    let out = m.sh_as_nobody(script);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "as nobody, `{script}` succeeded");
    assert!(
        stderr.contains(message),
        "as nobody, `{script}`: want {message:?}, got:\n{stderr}"
    );
}

/// Runs `script` as nobody, asserting success; returns stdout.
fn nobody_ok(m: &TestMount, script: &str) -> Vec<u8> {
    let out = m.sh_as_nobody(script);
    assert!(
        out.status.success(),
        "as nobody, `{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

// ---------------------------------------------------------------------------------------------

/// Without --allow-other, another user gets EACCES for everything, the mount point included.
fn only_the_owner_reaches_the_mount(m: &mut TestMount) {
    let before = seed(m);
    for script in [
        "ls \"$MNT\"",
        "cat \"$MNT\"/aa",
        "stat \"$MNT\"/aa",
        "stat \"$MNT\"",
        "touch \"$MNT\"/cc",
        "rm \"$MNT\"/aa",
    ] {
        nobody_fails(m, script, "Permission denied");
    }
    // The errno itself, through stat(1)'s exit and a syscall-level probe: EACCES (13).
    let out = m.sh_as_nobody(
        "python3 -c 'import os,sys\ntry:\n os.stat(sys.argv[1])\nexcept OSError as e:\n \
         print(e.errno)' \"$MNT\"/aa",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        libc::EACCES.to_string(),
        "{out:?}"
    );
    // The owner still can. On a mount nobody else reaches, a chmod protects nothing: it is
    // accepted without effect (rsync -a and cp -p of 0600 files work), and the file stays 0644.
    assert_eq!(read_file(&m.path("aa")), TEXT);
    m.sh("chmod 600 \"$MNT\"/aa");
    assert_eq!(m.sh("stat -c %a \"$MNT\"/aa").trim(), "644");
    m.assert_unchanged(&before, "another user's attempts");
}

/// With --allow-other another user reads (0644 files in a 0755 directory owned by the mounting
/// user) but cannot write, create, remove, rename or chmod; chmod and chown by the owner that
/// the mount cannot keep are EPERM, with a log line; the same mode or owner again succeeds.
fn allow_other_reads_but_changes_nothing(m: &mut TestMount) {
    let before = seed(m);
    m.unmount();
    m.mount_with_flags(&["--allow-other"]);
    assert_eq!(nobody_ok(m, "cat \"$MNT\"/aa"), TEXT);
    let listed = String::from_utf8(nobody_ok(m, "ls \"$MNT\"")).unwrap();
    assert_eq!(listed, "aa\nbb\n");
    let modes = String::from_utf8(nobody_ok(m, "stat -c '%a %u %g' \"$MNT\" \"$MNT\"/aa")).unwrap();
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    assert_eq!(modes, format!("755 {uid} {gid}\n644 {uid} {gid}\n"));
    for script in [
        "echo x > \"$MNT\"/aa",
        "echo x >> \"$MNT\"/aa",
        "truncate -s 0 \"$MNT\"/aa",
        "touch \"$MNT\"/cc",
        "touch \"$MNT\"/.scratch",
        "rm \"$MNT\"/aa",
        "mv \"$MNT\"/aa \"$MNT\"/dd",
    ] {
        nobody_fails(m, script, "Permission denied");
    }
    // Not the owner: the kernel refuses chmod itself (touch -d opens the file first: EACCES).
    nobody_fails(m, "chmod 666 \"$MNT\"/aa", "Operation not permitted");
    nobody_fails(m, "touch -d 2001-01-01 \"$MNT\"/aa", "Permission denied");

    // The owner: chmod/chown to what the file has succeeds, anything else is EPERM.
    let aa = m.path("aa");
    fs::set_permissions(&aa, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(&m.mnt, fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&aa, Some(uid), Some(gid)).unwrap();
    for (what, result) in [
        (
            "chmod 600",
            fs::set_permissions(&aa, fs::Permissions::from_mode(0o600)),
        ),
        (
            "chmod 4644",
            fs::set_permissions(&aa, fs::Permissions::from_mode(0o4644)),
        ),
        (
            "chmod 700 on the directory",
            fs::set_permissions(&m.mnt, fs::Permissions::from_mode(0o700)),
        ),
        (
            "chown 65534",
            std::os::unix::fs::chown(&aa, Some(65534), None),
        ),
        (
            "chgrp 65534",
            std::os::unix::fs::chown(&aa, None, Some(65534)),
        ),
    ] {
        let e = result.expect_err(what);
        assert_eq!(errno(&e), libc::EPERM, "{what}: {e}");
    }
    m.assert_logged(&["chmod to 0600 of aa", "refused (EPERM)"]);
    m.assert_logged(&["chown to uid 65534 of aa", "refused (EPERM)"]);
    m.assert_logged(&["chgrp to gid 65534 of aa", "refused (EPERM)"]);
    m.assert_logged(&["chmod to 0700 of the mount's directory", "refused (EPERM)"]);
    let meta = fs::metadata(&aa).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o644, uid, gid)
    );
    // Scratch files (rsync's and editors' temporary files, which they make owner-only before
    // renaming them) accept any mode; it is not kept.
    write_file(&m.path(".tmp"), b"scratch");
    fs::set_permissions(m.path(".tmp"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(m.path(".tmp")).unwrap();
    // Tools that copy modes: cp -p of a 0644 file works, of a 0600 file says so.
    let out = m.sh_output(
        "printf one > src1 && chmod 644 src1 && cp -p src1 \"$MNT\"/e1 && \
         printf two > src2 && chmod 600 src2 && cp -p src2 \"$MNT\"/e2",
    );
    assert!(!out.status.success(), "cp -p of a 0600 file succeeded");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"));
    assert_eq!(read_file(&m.path("e1")), b"one");
    fs::remove_file(m.path("e1")).unwrap();
    // cp -p wrote e2's bytes before its chmod failed.
    let _ = fs::remove_file(m.path("e2"));
    m.assert_unchanged(&before, "others' attempts and refused chmod/chown");
}

/// With --read-only every change is EROFS (also for the owner, also scratch files) and reads
/// still work.
fn read_only_refuses_every_change(m: &mut TestMount) {
    let before = seed(m);
    m.unmount();
    m.mount_with_flags(&["--read-only"]);
    assert_eq!(read_file(&m.path("aa")), TEXT);
    assert_eq!(m.snapshot(), before, "reads through the read-only mount");
    let aa = m.path("aa");
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap();
    let last = || errno(&std::io::Error::last_os_error());
    let mut checks: Vec<(&str, i32)> = vec![
        (
            "create",
            errno(&fs::File::create(m.path("cc")).unwrap_err()),
        ),
        (
            "create scratch",
            errno(&fs::File::create(m.path(".tmp")).unwrap_err()),
        ),
        (
            "open for writing",
            errno(&OpenOptions::new().write(true).open(&aa).unwrap_err()),
        ),
        (
            "open O_TRUNC",
            errno(
                &OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&aa)
                    .unwrap_err(),
            ),
        ),
        (
            "open O_APPEND",
            errno(&OpenOptions::new().append(true).open(&aa).unwrap_err()),
        ),
        ("unlink", errno(&fs::remove_file(&aa).unwrap_err())),
        ("rename", errno(&fs::rename(&aa, m.path("dd")).unwrap_err())),
        ("mkdir", errno(&fs::create_dir(m.path("ee")).unwrap_err())),
        (
            "symlink",
            errno(&std::os::unix::fs::symlink("aa", m.path("ef")).unwrap_err()),
        ),
        (
            "link",
            errno(&fs::hard_link(&aa, m.path("f0")).unwrap_err()),
        ),
        (
            "chmod",
            errno(&fs::set_permissions(&aa, fs::Permissions::from_mode(0o600)).unwrap_err()),
        ),
    ];
    // SAFETY: valid C strings; these calls touch no memory of ours besides them.
    unsafe {
        checks.push((
            "truncate",
            if libc::truncate(c(&aa).as_ptr(), 0) == -1 {
                last()
            } else {
                0
            },
        ));
        checks.push((
            "utimes (touch)",
            if libc::utimes(c(&aa).as_ptr(), std::ptr::null()) == -1 {
                last()
            } else {
                0
            },
        ));
        checks.push((
            "mknod",
            if libc::mknod(c(&m.path("f1")).as_ptr(), libc::S_IFREG | 0o644, 0) == -1 {
                last()
            } else {
                0
            },
        ));
        checks.push((
            "setxattr",
            if libc::setxattr(
                c(&aa).as_ptr(),
                c(Path::new("user.x")).as_ptr(),
                b"v".as_ptr().cast(),
                1,
                0,
            ) == -1
            {
                last()
            } else {
                0
            },
        ));
    }
    for (what, got) in checks {
        assert_eq!(got, libc::EROFS, "{what} on a read-only mount");
    }
    // The shell's view.
    let out = m.sh_output("touch \"$MNT\"/aa");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"));
    assert_eq!(read_file(&m.path("bb")), before["bb"]);
    m.assert_unchanged(&before, "changes refused by a read-only mount");
}

/// `--uid`, `--gid` and `--file-mode` set what every file shows (the directory takes the owner
/// and group, and stays 0755); a mode that is not octal permission bits is refused (exit 2).
fn uid_gid_and_file_mode_are_what_the_files_show(m: &mut TestMount) {
    write_file(&m.path("aa"), b"owned");
    m.unmount();
    m.mount_with_flags(&["--uid", "1234", "--gid", "2345", "--file-mode", "0640"]);
    let aa = fs::metadata(m.path("aa")).unwrap();
    assert_eq!((aa.uid(), aa.gid(), aa.mode()), (1234, 2345, 0o100640));
    let root = fs::metadata(&m.mnt).unwrap();
    assert_eq!(
        (root.uid(), root.gid(), root.mode() & 0o7777),
        (1234, 2345, 0o755)
    );
    // A new file shows the same, and its bytes are the store's.
    write_file(&m.path("bb"), b"new");
    assert_eq!(fs::metadata(m.path("bb")).unwrap().mode(), 0o100640);
    assert_eq!(read_file(&m.path("bb")), b"new");
    m.unmount();
    let out = m.try_mount(&m.mnt.clone(), &["--file-mode", "0999"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a file mode"),
        "{out:?}"
    );
    m.mount();
}

mount_suites!([
    only_the_owner_reaches_the_mount,
    allow_other_reads_but_changes_nothing,
    read_only_refuses_every_change,
    uid_gid_and_file_mode_are_what_the_files_show,
]);
