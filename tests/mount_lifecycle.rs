//! The life of a mount around the filesystem: where it may be mounted (missing path, file,
//! non-empty directory, a mount point, a LevelDB directory already mounted), the stale mount a
//! killed daemon leaves, shutdown by SIGTERM / SIGINT / `unmount` (everything pending is
//! committed first), a busy `unmount`, and the daemon's log and pid files. Through the built
//! binary; needs root and /dev/fuse (SKIPPED otherwise; a failure under CI=true).

mod ceph_support;
mod common;

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ceph_support::bytes;
use cloudstore_fs::mount::wait_for_exit;
use common::files::{read_file, write_file};
use common::mount::{fuse_available, Store, TestMount, BIN};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a command failed with exit code 3 and a message holding each of `words`.
fn assert_fails(out: &Output, words: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(3), "expected exit 3: {err}");
    for w in words {
        assert!(err.contains(w), "{w:?} missing from: {err}");
    }
}

/// Whether anything is mounted at `path`.
fn is_mounted(path: &Path) -> bool {
    let path = path.canonicalize().unwrap();
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = path.to_str().unwrap();
    text.lines().any(|l| l.split(' ').nth(4) == Some(want))
}

fn unmount_cmd(mnt: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .arg("unmount")
        .args(extra)
        .arg(mnt)
        .output()
        .unwrap()
}

/// Mounting on a missing path, on a file, on a non-empty directory and on a mount point fails
/// before the store is opened, each with its reason; --nonempty mounts over files (hidden while
/// mounted).
#[test]
fn bad_mountpoints_are_refused_with_a_reason() {
    let Some(mut m) = TestMount::new(Store::Leveldb, "bad_mountpoints_are_refused_with_a_reason")
    else {
        return;
    };
    let missing = m.outside("missing");
    let out = m.try_mount(&missing, &[]);
    assert_fails(&out, &[missing.to_str().unwrap(), "does not exist"]);

    let file = m.outside("a-file");
    write_file(&file, b"a file");
    let out = m.try_mount(&file, &[]);
    assert_fails(&out, &[file.to_str().unwrap(), "is not a directory"]);

    // The mount point of this very mount (also the store's lock holder: the mountpoint is
    // checked first).
    let out = m.try_mount(&m.mnt.clone(), &[]);
    assert_fails(&out, &["already a mount point", "fuse.cloudstore-fs"]);

    let full = m.outside("full");
    fs::create_dir(&full).unwrap();
    write_file(&full.join("notes.txt"), b"mine");
    let out = m.try_mount(&full, &[]);
    assert_fails(&out, &["not empty", "notes.txt", "--nonempty"]);
    assert!(!is_mounted(&full));
    assert_eq!(read_file(&full.join("notes.txt")), b"mine");

    // --nonempty: the store of this mount moves there.
    m.unmount();
    let out = m.try_mount(&full, &["--nonempty"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!full.join("notes.txt").exists(), "hidden while mounted");
    write_file(&full.join("0e"), b"over the files");
    let out = unmount_cmd(&full, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_file(&full.join("notes.txt")), b"mine");
    m.mount();
    assert_eq!(read_file(&m.path("0e")), b"over the files");
}

/// A second mount of a LevelDB directory that is mounted fails (the directory's lock is held),
/// naming the directory; the first mount keeps working.
#[test]
fn second_mount_of_a_leveldb_directory_fails_and_the_first_keeps_working() {
    let Some(mut m) = TestMount::new(
        Store::Leveldb,
        "second_mount_of_a_leveldb_directory_fails_and_the_first_keeps_working",
    ) else {
        return;
    };
    write_file(&m.path("f1"), b"before");
    let second = m.outside("mnt2");
    fs::create_dir(&second).unwrap();
    let data = m.outside("data");
    let out = m.try_mount(&second, &[]);
    // The message names the daemon that holds the store, with its mountpoint.
    let first = m.mnt.to_str().unwrap();
    assert_fails(&out, &[data.to_str().unwrap(), "locked by process", first]);
    assert!(!is_mounted(&second));
    // A foreground (non-daemon) attempt fails the same way, at once: a live holder is not
    // waited for (only a dying one is).
    let t = std::time::Instant::now();
    let out = Command::new(BIN)
        .arg("mount")
        .args(m.store_args())
        .arg(&second)
        .output()
        .unwrap();
    assert_fails(&out, &[data.to_str().unwrap(), "locked by process", first]);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(3),
        "a live holder was waited for: {:?}",
        t.elapsed()
    );
    assert!(!is_mounted(&second));
    // The first mount: reads, writes, and it all reaches the store.
    assert_eq!(read_file(&m.path("f1")), b"before");
    write_file(&m.path("f2"), b"after the refused mount");
    assert_eq!(read_file(&m.path("f2")), b"after the refused mount");
    m.remount();
    assert_eq!(read_file(&m.path("f1")), b"before");
    assert_eq!(read_file(&m.path("f2")), b"after the refused mount");
}

/// kill -9 of the daemon leaves "Transport endpoint is not connected"; `mount` clears that stale
/// mount itself, says so, and mounts: every closed file is there.
#[test]
fn mount_takes_over_the_stale_mount_of_a_killed_daemon() {
    let test = "mount_takes_over_the_stale_mount_of_a_killed_daemon";
    let Some(mut m) = TestMount::new(Store::Leveldb, test) else {
        return;
    };
    for round in 0..2u64 {
        write_file(&m.path(&format!("{round:02x}")), &bytes(round, 100_000));
        let pid_file = cloudstore_fs::mount::pid_file(&m.mnt).unwrap();
        assert!(pid_file.exists());
        let dead = m.signal_daemon(libc::SIGKILL);
        // A listing always asks the daemon (stat may be answered from the kernel's cache).
        // (ECONNABORTED while the kernel is still aborting the connection.)
        let e = fs::read_dir(&m.mnt).unwrap_err();
        assert!(
            matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)),
            "{e}"
        );
        let out = m.mount_output();
        let err = stderr(&out);
        assert!(
            err.contains("had died") && err.contains("stale mount") && err.contains("unmounted"),
            "no word of the takeover: {err}"
        );
        for r in 0..=round {
            assert_eq!(read_file(&m.path(&format!("{r:02x}"))), bytes(r, 100_000));
        }
        // The dead daemon's pid file went with its mount.
        assert!(m.daemon_pid().is_some());
        assert_pid_file_gone(&pid_file, dead);
    }
    // A stale mount is also cleared by `unmount` (the daemon is gone: nothing to wait for),
    // with its pid file.
    let pid_file = cloudstore_fs::mount::pid_file(&m.mnt).unwrap();
    let dead = m.signal_daemon(libc::SIGKILL);
    let out = unmount_cmd(&m.mnt, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!is_mounted(&m.mnt));
    assert_pid_file_gone(&pid_file, dead);
    m.mount();
}

/// A mount that is not ours is never taken over: a tmpfs at the mountpoint is refused, and so
/// is `unmount` of it.
#[test]
fn foreign_mounts_are_left_alone() {
    let Some(m) = TestMount::new(Store::Leveldb, "foreign_mounts_are_left_alone") else {
        return;
    };
    let other = m.outside("tmpfs");
    fs::create_dir(&other).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "cloudstore-test-tmpfs"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(status.success());
    let out = m.try_mount(&other, &[]);
    assert_fails(&out, &["already a mount point", "tmpfs"]);
    let out = unmount_cmd(&other, &[]);
    assert_fails(&out, &["tmpfs", "not a cloudstore-fs"]);
    assert!(is_mounted(&other));
    assert!(Command::new("umount")
        .arg(&other)
        .status()
        .unwrap()
        .success());
}

/// `unmount` of a mount with a file open: exit 3 and a message naming the mountpoint and the
/// open files; the mount stays and the file's bytes are kept. Once it is closed, `unmount`
/// succeeds only after the daemon has exited (the LevelDB lock is free at once).
#[test]
fn unmount_of_a_busy_mount_fails_and_loses_nothing() {
    let Some(mut m) = TestMount::new(
        Store::Leveldb,
        "unmount_of_a_busy_mount_fails_and_loses_nothing",
    ) else {
        return;
    };
    let pid = m.daemon_pid().unwrap();
    let mut f = fs::File::create(m.path("b5")).unwrap();
    f.write_all(b"written before unmount").unwrap();
    let out = unmount_cmd(&m.mnt, &[]);
    assert_fails(
        &out,
        &[m.mnt.to_str().unwrap(), "busy", "files are open", "--lazy"],
    );
    assert!(is_mounted(&m.mnt));
    assert_eq!(m.daemon_pid(), Some(pid));
    f.write_all(b", and after").unwrap();
    drop(f);
    let out = unmount_cmd(&m.mnt, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        wait_for_exit(pid, Duration::ZERO),
        "unmount returned while the daemon still runs"
    );
    m.mark_unmounted();
    // The store is free right away: the CLI opens it.
    let out = Command::new(BIN)
        .arg("get")
        .arg("b5")
        .args(m.store_args())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"written before unmount, and after");
    m.mount();
    assert_eq!(
        read_file(&m.path("b5")),
        b"written before unmount, and after"
    );
}

/// `unmount --lazy` detaches a busy mount at once; the daemon serves the open file until it is
/// closed, commits it and exits.
#[test]
fn unmount_lazy_detaches_a_busy_mount() {
    let Some(mut m) = TestMount::new(Store::Leveldb, "unmount_lazy_detaches_a_busy_mount") else {
        return;
    };
    let pid = m.daemon_pid().unwrap();
    let mut f = fs::File::create(m.path("1a")).unwrap();
    f.write_all(b"lazy").unwrap();
    let out = unmount_cmd(&m.mnt, &["--lazy"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("detached lazily"), "{}", stderr(&out));
    m.mark_unmounted();
    assert!(!is_mounted(&m.mnt));
    assert!(
        !wait_for_exit(pid, Duration::from_millis(300)),
        "gone too early"
    );
    f.write_all(b", then closed").unwrap();
    drop(f);
    assert!(wait_for_exit(pid, Duration::from_secs(30)));
    m.mount();
    assert_eq!(read_file(&m.path("1a")), b"lazy, then closed");
}

/// A daemon that does not exit (stopped with SIGSTOP) makes `unmount` fail after --timeout,
/// saying that it still holds the store.
#[test]
fn unmount_fails_when_the_daemon_does_not_exit() {
    let Some(mut m) = TestMount::new(
        Store::Leveldb,
        "unmount_fails_when_the_daemon_does_not_exit",
    ) else {
        return;
    };
    write_file(&m.path("5707"), b"stopped");
    let pid = m.daemon_pid().unwrap();
    // SAFETY: signalling the daemon this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
    let started = Instant::now();
    let out = unmount_cmd(&m.mnt, &["--timeout", "2"]);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGCONT) }, 0);
    assert_fails(
        &out,
        &[
            &format!("pid {pid}"),
            "has not exited after 2s",
            "holds the store",
        ],
    );
    println!("unmount --timeout 2 returned after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(30));
    m.mark_unmounted();
    assert!(wait_for_exit(pid, Duration::from_secs(30)));
    m.mount();
    assert_eq!(read_file(&m.path("5707")), b"stopped");
}

/// How a mount is stopped.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Signal(libc::c_int),
    Unmount,
}

/// Many files closed by 4 threads, more written by child processes after their opener closed
/// (published at release, which reaches the daemon after the child exits), then at once the
/// stop: after a remount every file holds its exact bytes.
fn stop_commits_everything_pending(m: &mut TestMount, stop: Stop) {
    let mnt = m.mnt.clone();
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let mnt = mnt.clone();
            std::thread::spawn(move || {
                for i in 0..40u64 {
                    let seed = t * 1000 + i;
                    write_file(
                        &mnt.join(format!("{t:02x}{i:02x}")),
                        &bytes(seed, size_of(seed)),
                    );
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    // Files published at release, which reaches the daemon after the child has exited: the
    // stop follows at once.
    let children: Vec<_> = (0..RELEASED).map(|i| write_by_a_child(m, i)).collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    match stop {
        Stop::Signal(sig) => {
            m.signal_daemon(sig);
            assert!(!is_mounted(&m.mnt), "signal {sig} left the mount");
            let log = fs::read_to_string(m.log_path()).unwrap();
            assert!(
                log.contains(&format!("signal {sig}: committing pending writes")),
                "{log}"
            );
        }
        Stop::Unmount => m.unmount(),
    }
    m.mount();
    for t in 0..4u64 {
        for i in 0..40u64 {
            let seed = t * 1000 + i;
            let name = format!("{t:02x}{i:02x}");
            assert!(
                read_file(&m.path(&name)) == bytes(seed, size_of(seed)),
                "{stop:?}: {name} lost its bytes"
            );
        }
    }
    for i in 0..RELEASED {
        assert_eq!(
            read_file(&m.path(&format!("7e1ea5{i:02x}"))),
            b"by the opener; by a child after the opener closed",
            "{stop:?}: a file published at release lost its bytes"
        );
    }
}

/// How many files [`write_by_a_child`] writes before each stop.
const RELEASED: u64 = 8;

/// Opens a file, writes to it, passes the descriptor to a child that writes more, and closes
/// it: the child's bytes are published at release, after the child exits.
fn write_by_a_child(m: &TestMount, i: u64) -> std::process::Child {
    let mut f = fs::File::create(m.path(&format!("7e1ea5{i:02x}"))).unwrap();
    f.write_all(b"by the opener; ").unwrap();
    let fd = f.as_raw_fd();
    let mut child = Command::new("bash");
    child.args([
        "-c",
        "sleep 0.2; printf 'by a child after the opener closed' >&3",
    ]);
    // SAFETY: dup2 and fcntl are async-signal-safe; fd is open in the parent until spawn
    // returns. (dup2 of fd 3 onto itself keeps its FD_CLOEXEC: cleared explicitly.)
    unsafe {
        child.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = child.spawn().unwrap();
    drop(f);
    child
}

/// Sizes from empty to 2 MiB.
fn size_of(seed: u64) -> usize {
    match seed % 5 {
        0 => 0,
        1 => (seed as usize * 7) % 4096,
        2 => 65_536 + seed as usize,
        3 => 300_000,
        _ => (2 << 20) - seed as usize,
    }
}

/// A file still open at the signal: its bytes are committed before the (busy) mount is
/// detached, so that even a kill -9 of the daemon afterwards, while the file is still open,
/// loses nothing written before the signal.
fn signal_commits_open_files(m: &mut TestMount, sig: libc::c_int) {
    let pid = m.daemon_pid().unwrap();
    let mut f = fs::File::create(m.path("0be4")).unwrap();
    let data = bytes(u64::from(sig as u32), 3 << 20);
    f.write_all(&data).unwrap();
    // SAFETY: signalling the daemon this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while is_mounted(&m.mnt) {
        assert!(
            Instant::now() < deadline,
            "signal {sig}: still mounted after 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !wait_for_exit(pid, Duration::ZERO),
        "exited with a file open"
    );
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    assert!(wait_for_exit(pid, Duration::from_secs(30)));
    drop(f);
    m.mark_unmounted();
    m.mount();
    assert!(
        read_file(&m.path("0be4")) == data,
        "signal {sig}: the bytes written before it were lost"
    );
}

fn sigterm_commits_everything_pending(m: &mut TestMount) {
    stop_commits_everything_pending(m, Stop::Signal(libc::SIGTERM));
    signal_commits_open_files(m, libc::SIGTERM);
}

fn sigint_commits_everything_pending(m: &mut TestMount) {
    stop_commits_everything_pending(m, Stop::Signal(libc::SIGINT));
    signal_commits_open_files(m, libc::SIGINT);
}

fn unmount_commits_everything_pending(m: &mut TestMount) {
    stop_commits_everything_pending(m, Stop::Unmount);
}

mount_suites!([
    sigterm_commits_everything_pending,
    sigint_commits_everything_pending,
    unmount_commits_everything_pending,
]);

/// A fresh LevelDB mount run by hand (no CLOUDSTORE_FS_LOG unless `log` is given).
fn mount_by_hand(dir: &Path, mnt: &Path, log: Option<&Path>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("mount")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--daemon")
        .arg(mnt)
        .env_remove("CLOUDSTORE_FS_LOG");
    if let Some(log) = log {
        cmd.env("CLOUDSTORE_FS_LOG", log);
    }
    cmd.output().unwrap()
}

/// A symlink planted where the daemon's log goes is not followed (neither an explicit
/// CLOUDSTORE_FS_LOG nor the default path): the mount fails and the target is untouched.
#[test]
fn a_symlink_at_the_log_path_is_not_followed() {
    if !fuse_available("a_symlink_at_the_log_path_is_not_followed") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let target = dir.path().join("precious");
    fs::write(&target, b"untouched").unwrap();
    let before = fs::metadata(&target).unwrap();
    let link = dir.path().join("daemon.log");
    symlink(&target, &link).unwrap();
    let out = mount_by_hand(dir.path(), &mnt, Some(&link));
    assert_fails(&out, &[link.to_str().unwrap(), "symlink"]);
    assert!(!is_mounted(&mnt));

    let default = cloudstore_fs::mount::default_log_path(&mnt.canonicalize().unwrap()).unwrap();
    let _ = fs::remove_file(&default);
    symlink(&target, &default).unwrap();
    let out = mount_by_hand(dir.path(), &mnt, None);
    let _ = fs::remove_file(&default);
    assert_fails(&out, &[default.to_str().unwrap(), "symlink"]);
    assert!(!is_mounted(&mnt));

    assert_eq!(fs::read(&target).unwrap(), b"untouched");
    let after = fs::metadata(&target).unwrap();
    assert_eq!(after.mode(), before.mode());
    assert_eq!(after.mtime_nsec(), before.mtime_nsec());
}

/// The default log file and the pid file are owner-only (0600) in a directory of ours that
/// nobody else can write to; the pid file goes away with the daemon.
#[test]
fn log_and_pid_files_are_owner_only() {
    if !fuse_available("log_and_pid_files_are_owner_only") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let canonical = mnt.canonicalize().unwrap();
    let log = cloudstore_fs::mount::default_log_path(&canonical).unwrap();
    let _ = fs::remove_file(&log);
    let out = mount_by_hand(dir.path(), &mnt, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains(log.to_str().unwrap()), "{said}");
    let pid_file = cloudstore_fs::mount::pid_file(&canonical).expect("pid file path");
    let pid = cloudstore_fs::mount::daemon_pid(&mnt).expect("daemon pid");
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    for file in [&log, &pid_file] {
        let meta = fs::symlink_metadata(file).unwrap();
        assert!(meta.is_file(), "{}", file.display());
        assert_eq!(meta.mode() & 0o777, 0o600, "{}", file.display());
        assert_eq!(meta.uid(), me, "{}", file.display());
        let parent = fs::symlink_metadata(file.parent().unwrap()).unwrap();
        assert!(parent.is_dir());
        assert_eq!(parent.uid(), me);
        assert_eq!(parent.mode() & 0o022, 0, "{}", file.display());
    }
    assert!(!log.starts_with(std::env::temp_dir()), "{}", log.display());
    let out = unmount_cmd(&mnt, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_for_exit(pid, Duration::ZERO));
    assert_pid_file_gone(&pid_file, pid);
    let _ = fs::remove_file(&log);
}

/// The pid file of the mount whose daemon was `pid` is gone. Its name may already be another
/// mount's (this test's next one, or a parallel test's): device numbers are reused as soon as a
/// mount goes, so only a file still naming `pid` is left behind.
fn assert_pid_file_gone(pid_file: &Path, pid: u32) {
    let left = fs::read_to_string(pid_file).unwrap_or_default();
    assert_ne!(
        left.lines().next(),
        Some(pid.to_string().as_str()),
        "the pid file of daemon {pid} was left behind"
    );
}
