//! How the mount fits the system: `mount -t cloudstore-fs` and fstab lines through the
//! `mount.cloudstore-fs` helper, `umount` through `umount.fuse.cloudstore-fs`, with the real
//! mount(8) and umount(8) of util-linux.
//!
//! mount(8) looks for helpers only in /sbin (util-linux 2.38: "/sbin:/sbin/fs.d:/sbin/fs", no
//! other search path). So that nothing is installed on the host, each test runs its script in a
//! private mount namespace (`unshare --mount`) in which a read-only overlay puts the helper links
//! (to the binary under test) over /sbin; the host's /sbin is never touched, and parallel tests
//! (or other checkouts) cannot see each other's links. Needs root and /dev/fuse (SKIPPED
//! otherwise; a failure under CI=true).

mod ceph_support;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ceph_support::skip_or_fail;
use common::mount::{fuse_available, BIN};
use tempfile::TempDir;

/// A test directory with `sbin/` holding the helper links, `mnt/` and `fstab`.
struct System {
    dir: TempDir,
}

impl System {
    /// `None` (after SKIPPED) without root, /dev/fuse or unshare.
    fn new(test: &str, helpers: &[&str]) -> Option<System> {
        if !fuse_available(test) {
            return None;
        }
        if Command::new("unshare").arg("--version").output().is_err() {
            skip_or_fail(&format!("{test} needs unshare (util-linux)"));
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("cloudstore-system-test.")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("sbin")).unwrap();
        std::fs::create_dir(dir.path().join("mnt")).unwrap();
        for name in helpers {
            std::os::unix::fs::symlink(BIN, dir.path().join("sbin").join(name)).unwrap();
        }
        Some(System { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `script` (sh -eu) in a private mount namespace whose /sbin shows the helper links.
    /// `$T` is the test directory, `$MNT` its mountpoint, `$BIN` the binary under test; the
    /// mount is cleared on exit whatever happened (lazily, in that namespace only).
    fn run(&self, script: &str) -> Output {
        let prelude = r#"
            sbin=$(readlink -f /sbin)
            mount -t overlay overlay -o "lowerdir=$T/sbin:$sbin" "$sbin"
            cleanup() { if grep -q " $MNT " /proc/self/mountinfo; then umount -l "$MNT"; fi; }
            trap cleanup EXIT
        "#;
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-euc"])
            .arg(format!("{prelude}\n{script}"))
            .env("T", self.dir.path())
            .env("MNT", self.path("mnt"))
            .env("BIN", BIN)
            .env("CLOUDSTORE_FS_LOG", self.path("daemon.log"))
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        if !out.status.success() {
            eprintln!("daemon log:\n{}", self.log());
        }
        out
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("daemon.log")).unwrap_or_default()
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_ok(out: &Output) -> String {
    let (stdout, stderr) = text(out);
    assert!(
        out.status.success(),
        "script failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    stdout
}

/// Whether anything is mounted at `path` in this (the host's) namespace.
fn mounted_here(path: &Path) -> bool {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines()
        .any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
}

/// An fstab line mounted with `mount -T FSTAB MOUNTPOINT` (standard options among ours) and
/// unmounted with `umount`: the values written are in the store as soon as umount returns
/// (the daemon has committed, closed the store and exited: a CLI command opens it at once), and
/// a second mount from the same line reads them back.
#[test]
fn an_fstab_line_mounts_and_umount_commits() {
    let Some(sys) = System::new(
        "an_fstab_line_mounts_and_umount_commits",
        &["mount.cloudstore-fs", "umount.fuse.cloudstore-fs"],
    ) else {
        return;
    };
    std::fs::write(
        sys.path("fstab"),
        format!(
            "# a comment\nleveldb:{data} {mnt} cloudstore-fs \
             rw,nosuid,nodev,noatime,_netdev,nofail,x-systemd.automount,memory_budget=256M,max_chunk_size=8M 0 0\n",
            data = sys.path("data").display(),
            mnt = sys.path("mnt").display(),
        ),
    )
    .unwrap();
    let out = sys.run(
        r#"
        mount -T "$T/fstab" "$MNT" > "$T/mount.out"
        echo "type: $(awk -v m="$MNT" '$5 == m { for (i = 7; $i != "-"; i++); print $(i+1) }' /proc/self/mountinfo)"
        head -c 3000000 /dev/urandom > "$T/big"
        cp "$T/big" "$MNT/00ab"
        printf 'hello fstab' > "$MNT/01"
        umount "$MNT"
        echo "after umount: $(grep -c " $MNT " /proc/self/mountinfo || true) mounts"
        # The daemon is gone and the store closed: the CLI opens it at once.
        "$BIN" get 01 --data-dir "$T/data"; echo
        "$BIN" get 00ab --data-dir "$T/data" | cmp - "$T/big"
        mount -T "$T/fstab" "$MNT" > "$T/mount.out"
        echo "remounted: $(cat "$MNT/01")"
        cmp "$MNT/00ab" "$T/big"
        umount "$MNT"
        "#,
    );
    let stdout = assert_ok(&out);
    assert!(stdout.contains("type: fuse.cloudstore-fs\n"), "{stdout}");
    assert!(stdout.contains("after umount: 0 mounts\n"), "{stdout}");
    assert!(
        stdout.contains("hello fstab\nremounted: hello fstab\n"),
        "{stdout}"
    );
    assert!(!sys.log().contains("ERROR"), "{}", sys.log());
    assert!(!mounted_here(&sys.path("mnt")));
}

/// Without the umount helper, `umount` is the kernel's unmount under the daemon: its FUSE session
/// ends, and it still commits what is pending, closes the store and exits cleanly (no error in
/// its log); the values are in the store once it has exited.
#[test]
fn a_kernel_unmount_under_the_daemon_commits_and_it_exits() {
    let Some(sys) = System::new(
        "a_kernel_unmount_under_the_daemon_commits_and_it_exits",
        &["mount.cloudstore-fs"],
    ) else {
        return;
    };
    let out = sys.run(
        r#"
        mount -t cloudstore-fs "leveldb:$T/data" "$MNT" -o rw > "$T/mount.out" 2>&1
        pid=$(sed -n 's/.*daemon pid \([0-9]*\).*/\1/p' "$T/mount.out")
        test -n "$pid"
        printf 'kernel unmount' > "$MNT/0a0b"
        ls -a "$MNT" > /dev/null
        umount "$MNT"
        i=0
        while kill -0 "$pid" 2>/dev/null; do i=$((i + 1)); test $i -lt 600; sleep 0.05; done
        echo "daemon $pid exited"
        "$BIN" get 0a0b --data-dir "$T/data"; echo
        "#,
    );
    let stdout = assert_ok(&out);
    assert!(stdout.contains("exited\nkernel unmount\n"), "{stdout}");
    let log = sys.log();
    assert!(!log.contains("ERROR") && !log.contains("panic"), "{log}");
}

/// `mount -t cloudstore-fs` with an unknown option fails with a message naming it (exit 2 from
/// the helper), mounts nothing and creates no store; the standard options mount(8) and fstab
/// pass are accepted, and `ro` among them makes the mount read-only.
#[test]
fn mount_t_refuses_unknown_options_and_accepts_the_standard_ones() {
    let Some(sys) = System::new(
        "mount_t_refuses_unknown_options_and_accepts_the_standard_ones",
        &["mount.cloudstore-fs", "umount.fuse.cloudstore-fs"],
    ) else {
        return;
    };
    let out = sys.run(
        r#"
        if mount -t cloudstore-fs "leveldb:$T/data" "$MNT" -o rw,noatime_typo 2> "$T/err"; then
            echo "mounted with an unknown option"; exit 1
        else
            echo "status $?"
        fi
        cat "$T/err"
        echo "mounts: $(grep -c " $MNT " /proc/self/mountinfo || true)"
        test ! -e "$T/data" && echo "no store created"
        mount -t cloudstore-fs "leveldb:$T/data" "$MNT" -o config="$T/missing.toml" 2> "$T/err2" || echo "bad config: $(cat "$T/err2")"
        printf 'before' > "$T/v"
        "$BIN" put 0c "$T/v" --data-dir "$T/data" 2> /dev/null
        mount -t cloudstore-fs "leveldb:$T/data" "$MNT" > "$T/mount.out" \
            -o defaults,ro,nosuid,nodev,noexec,noatime,nofail,_netdev,users,auto,x-systemd.requires=a.service,comment=x
        echo "read: $(cat "$MNT/0c")"
        if (printf 'after' > "$MNT/0c") 2> "$T/werr"; then echo "wrote on ro"; fi
        cat "$T/werr"
        umount "$MNT"
        echo "mounts: $(grep -c " $MNT " /proc/self/mountinfo || true)"
        "#,
    );
    let stdout = assert_ok(&out);
    // mount(8) passes the helper's exit status on.
    assert!(stdout.contains("status 2\n"), "{stdout}");
    assert!(
        stdout.contains("mount.cloudstore-fs: mount option \"noatime_typo\": unknown option"),
        "{stdout}"
    );
    assert!(stdout.contains("nothing was mounted"), "{stdout}");
    assert!(stdout.contains("mounts: 0\nno store created\n"), "{stdout}");
    assert!(
        stdout.contains("bad config: ") && stdout.contains("missing.toml"),
        "{stdout}"
    );
    assert!(stdout.contains("read: before\n"), "{stdout}");
    assert!(stdout.contains("Read-only file system"), "{stdout}");
    assert!(!stdout.contains("wrote on ro"), "{stdout}");
    assert!(stdout.ends_with("mounts: 0\n"), "{stdout}");
}

/// A foreground `cloudstore-fs mount` (as systemd's Type=notify runs it), stopped on drop.
struct Foreground {
    child: std::process::Child,
    mnt: PathBuf,
}

impl Foreground {
    fn start(data: &Path, mnt: &Path, socket: &Path, log: &Path) -> Foreground {
        let child = Command::new(BIN)
            .args(["mount", "--foreground", "--data-dir"])
            .arg(data)
            .arg(mnt)
            .env("NOTIFY_SOCKET", socket)
            .env("RUST_LOG", "info")
            // The daemon sets glibc's mmap threshold itself (see `assert_pinned_and_unchanged`).
            .env_remove("MALLOC_MMAP_THRESHOLD_")
            .env_remove("GLIBC_TUNABLES")
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(std::fs::File::options().append(true).open(log).unwrap())
            .spawn()
            .unwrap();
        Foreground {
            child,
            mnt: mnt.to_path_buf(),
        }
    }

    /// Waits for the daemon to exit; its exit status.
    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the daemon did not exit"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let opts = cloudstore_fs::mount::UnmountOptions {
                lazy: true,
                timeout: std::time::Duration::from_secs(30),
            };
            let _ = cloudstore_fs::mount::unmount_with(&self.mnt, &opts);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The datagrams received on `socket` until one holds `want` (each datagram one entry).
fn notifications_until(socket: &std::os::unix::net::UnixDatagram, want: &str) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            // A signal caught by this process ends a recv that has a timeout with EINTR,
            // whatever SA_RESTART says (signal(7)): receive again.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("no {want:?} within 60 s (got {got:?}): {e}"),
        };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = msg.lines().any(|l| l == want);
        got.push(msg);
        if done {
            return got;
        }
    }
}

/// The daemon runs with glibc's mmap threshold at 1 MiB, which it sets by executing itself again
/// with `MALLOC_MMAP_THRESHOLD_` (`sys::malloc`): it is still the process that was started (the
/// main pid systemd watches, the pid file's), under the same command line and name.
fn assert_pinned_and_unchanged(daemon: &Foreground, data: &Path) {
    let pid = daemon.child.id();
    assert_eq!(cloudstore_fs::mount::daemon_pid(&daemon.mnt), Some(pid));
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(
        environ
            .split(|&b| b == 0)
            .any(|v| v == b"MALLOC_MMAP_THRESHOLD_=1048576"),
        "{}",
        String::from_utf8_lossy(&environ)
    );
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<&str> = cmdline.trim_end_matches('\0').split('\0').collect();
    let (data, mnt) = (data.to_str().unwrap(), daemon.mnt.to_str().unwrap());
    assert_eq!(
        args,
        [BIN, "mount", "--foreground", "--data-dir", data, mnt]
    );
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm, "cloudstore-fs\n");
}

/// With `$NOTIFY_SOCKET` set (systemd's Type=notify), a foreground mount sends `READY=1` only
/// once the mount answers (it is in mountinfo and a stat of the mountpoint is the FUSE
/// filesystem's root when the datagram arrives), with a `STATUS=` line saying what it serves,
/// from the process systemd started (glibc's tuning executes it again: same pid, command line
/// and name); `STOPPING=1` when it starts draining, on SIGTERM and on `cloudstore-fs unmount`;
/// it then exits 0 with everything committed.
#[test]
fn systemd_hears_ready_once_the_mount_answers_and_stopping_at_unmount() {
    let test = "systemd_hears_ready_once_the_mount_answers_and_stopping_at_unmount";
    if !fuse_available(test) {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("cloudstore-system-test.")
        .tempdir()
        .unwrap();
    let (data, mnt, log) = (
        dir.path().join("data"),
        dir.path().join("mnt"),
        dir.path().join("daemon.log"),
    );
    std::fs::create_dir(&mnt).unwrap();
    let socket_path = dir.path().join("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let parent_dev = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(dir.path()).unwrap());
    for stop in ["SIGTERM", "unmount"] {
        let mut daemon = Foreground::start(&data, &mnt, &socket_path, &log);
        let before = notifications_until(&socket, "READY=1");
        // Checked the moment READY=1 arrives: the mount is there and answers.
        assert!(mounted_here(&mnt), "READY=1 before the mount: {before:?}");
        let root = std::fs::metadata(&mnt).unwrap();
        assert_ne!(std::os::unix::fs::MetadataExt::dev(&root), parent_dev);
        let ready = before.last().unwrap();
        assert!(
            ready.contains("STATUS=serving the leveldb store at "),
            "{ready:?}"
        );
        assert_pinned_and_unchanged(&daemon, &data);
        std::fs::write(mnt.join("0a"), stop).unwrap();
        match stop {
            "SIGTERM" => {
                // SAFETY: kill sends a signal to the child we started.
                assert_eq!(
                    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGTERM) },
                    0
                );
            }
            _ => {
                let out = Command::new(BIN).arg("unmount").arg(&mnt).output().unwrap();
                assert!(out.status.success(), "{}", text(&out).1);
            }
        }
        let stopping = notifications_until(&socket, "STOPPING=1");
        assert!(stopping.last().unwrap().contains("STATUS="), "{stopping:?}");
        let status = daemon.wait();
        assert!(
            status.success(),
            "{stop}: {status}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(!mounted_here(&mnt));
        let out = Command::new(BIN)
            .args(["get", "0a", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), stop);
    }
}

fn run(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// Every store and mount option is also a `CLOUDSTORE_FS_*` variable (clap's env), and a flag
/// wins over its variable: `CLOUDSTORE_FS_DATA_DIR`, `CLOUDSTORE_FS_MAX_CHUNK_SIZE`, and
/// `CLOUDSTORE_FS_READ_ONLY=true` makes a mount read-only.
#[test]
fn options_come_from_cloudstore_fs_variables_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let value = dir.path().join("value");
    std::fs::write(&value, b"0123456789").unwrap();
    let v = value.to_str().unwrap();
    let out = run(&["put", "00ab", v], &[("CLOUDSTORE_FS_DATA_DIR", &data)]);
    assert!(out.status.success(), "{}", text(&out).1);
    let out = run(
        &["get", "00ab", "--data-dir", data.to_str().unwrap()],
        &[("CLOUDSTORE_FS_DATA_DIR", Path::new("/nonexistent"))],
    );
    assert_eq!(text(&out).0, "0123456789", "{}", text(&out).1);
    let out = run(
        &["put", "01", v],
        &[
            ("CLOUDSTORE_FS_DATA_DIR", &data),
            ("CLOUDSTORE_FS_MAX_CHUNK_SIZE", Path::new("4")),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
    if !fuse_available("options_come_from_cloudstore_fs_variables_and_flags_win (mount)") {
        return;
    }
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = run(
        &["mount", "--daemon", mnt.to_str().unwrap()],
        &[
            ("CLOUDSTORE_FS_DATA_DIR", &data),
            ("CLOUDSTORE_FS_READ_ONLY", Path::new("true")),
            ("CLOUDSTORE_FS_LOG", &dir.path().join("daemon.log")),
        ],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let written = std::fs::write(mnt.join("00ab"), b"x");
    let read = std::fs::read(mnt.join("00ab"));
    let out = run(&["unmount", mnt.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(written.unwrap_err().raw_os_error(), Some(libc::EROFS));
    assert_eq!(read.unwrap(), b"0123456789");
}

/// The configuration file: `--config`, else `$CLOUDSTORE_FS_CONFIG`, else
/// /etc/cloudstore-fs/config.toml when present (shown by an overlay on /etc in a private mount
/// namespace: the host's /etc is not touched).
#[test]
fn the_config_file_is_the_flag_else_the_variable_else_etc() {
    let Some(sys) = System::new(
        "the_config_file_is_the_flag_else_the_variable_else_etc",
        &[],
    ) else {
        return;
    };
    std::fs::create_dir_all(sys.path("etc/cloudstore-fs")).unwrap();
    for (file, data) in [
        ("etc/cloudstore-fs/config.toml", "etcdata"),
        ("env.toml", "envdata"),
        ("flag.toml", "flagdata"),
    ] {
        let data = sys.path(data);
        std::fs::write(sys.path(file), format!("data_dir = {:?}\n", data)).unwrap();
    }
    let out = sys.run(
        r#"
        printf x > "$T/v"
        for d in etcdata envdata flagdata; do "$BIN" put "$(printf %s $d | od -An -tx1 | tr -d ' \n' | cut -c1-4)" "$T/v" --data-dir "$T/$d" 2>/dev/null; done
        mount -t overlay overlay -o "lowerdir=$T/etc:/etc" /etc
        echo "etc: $("$BIN" ls)"
        echo "env: $(CLOUDSTORE_FS_CONFIG="$T/env.toml" "$BIN" ls)"
        echo "flag: $(CLOUDSTORE_FS_CONFIG="$T/env.toml" "$BIN" ls --config "$T/flag.toml")"
        "#,
    );
    let stdout = assert_ok(&out);
    // The first two bytes of each directory's name, in hex: "et", "en", "fl".
    assert!(stdout.contains("etc: 6574 1\n"), "{stdout}");
    assert!(stdout.contains("env: 656e 1\n"), "{stdout}");
    assert!(stdout.contains("flag: 666c 1\n"), "{stdout}");
}

/// `--log-file FILE` takes the log (also a `--daemon` mount's), `--log-level` sets how much and
/// wins over RUST_LOG, which still works alone; a bad level is exit 2, naming it.
#[test]
fn log_file_and_log_level() {
    let dir = tempfile::tempdir().unwrap();
    let bad = run(&["ls", "--log-level", "loud"], &[]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad).1.contains("--log-level \"loud\""),
        "{}",
        text(&bad).1
    );
    if !fuse_available("log_file_and_log_level") {
        return;
    }
    let data = dir.path().join("data");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let (d, m) = (data.to_str().unwrap(), mnt.to_str().unwrap());
    for (case, level, rust_log, info_logged) in [
        ("flag", Some("info"), None, true),
        ("rust_log", None, Some("info"), true),
        ("flag_over_rust_log", Some("warn"), Some("info"), false),
    ] {
        let log = dir.path().join(format!("{case}.log"));
        let mut args = vec!["mount", "--daemon", "--data-dir", d, "--log-file"];
        args.push(log.to_str().unwrap());
        if let Some(level) = level {
            args.extend(["--log-level", level]);
        }
        args.push(m);
        let mut c = Command::new(BIN);
        c.args(&args).env_remove("RUST_LOG");
        if let Some(r) = rust_log {
            c.env("RUST_LOG", r);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{case}: {}", text(&out).1);
        let out = run(&["unmount", m], &[]);
        assert!(out.status.success(), "{case}: {}", text(&out).1);
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            text.contains("mounted at"),
            info_logged,
            "{case}: the log file holds:\n{text}"
        );
    }
}

/// A user other than root (setpriv to uid/gid 65534) mounts on a directory they own, through
/// fusermount3: writes, reads, `stats` and `unmount` work, the log, pid file and stats socket
/// are in their `$XDG_RUNTIME_DIR`, the values are in the store after the unmount, and
/// `--allow-other` says that /etc/fuse.conf forbids it. /dev/fuse is 0600 on this machine (most
/// systems make it 0666, which fusermount3 needs): the test runs in a private mount namespace
/// in which a 0666 node of the same device is bound over it; the host's is not touched.
#[test]
fn a_user_mounts_through_fusermount3() {
    let Some(sys) = System::new("a_user_mounts_through_fusermount3", &[]) else {
        return;
    };
    if Command::new("fusermount3")
        .arg("--version")
        .output()
        .is_err()
    {
        skip_or_fail("a_user_mounts_through_fusermount3 needs fusermount3 (apt-get install fuse3)");
        return;
    }
    for d in ["run", "mnt2"] {
        std::fs::create_dir(sys.path(d)).unwrap();
    }
    let chown = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(sys.dir.path())
        .status()
        .unwrap();
    assert!(chown.success());
    std::fs::set_permissions(
        sys.path("run"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    // The test directory must be reachable for the user (tempdir makes it 0700, now theirs).
    let user = r#"
        set -eu
        "$BIN" mount --daemon --data-dir "$T/data" "$MNT" > "$T/mount.out" 2>&1
        awk -v m="$MNT" '$5 == m { print "uid option: " ($0 ~ /user_id=65534/) }' /proc/self/mountinfo
        printf 'from a user' > "$MNT/0b0b"
        echo "read: $(cat "$MNT/0b0b")"
        "$BIN" stats "$MNT" | grep -c commits_ | sed 's/^/stats lines: /'
        ls "$XDG_RUNTIME_DIR/cloudstore-fs" | sed 's/^/runtime: /'
        "$BIN" unmount "$MNT"
        echo "stored: $("$BIN" get 0b0b --data-dir "$T/data")"
        if "$BIN" mount --daemon --allow-other --data-dir "$T/data" "$T/mnt2" 2> "$T/ao.err"; then
            echo "allow_other mounted"; "$BIN" unmount "$T/mnt2"
        fi
        cat "$T/ao.err"
    "#;
    let out = sys.run(&format!(
        r#"
        mknod "$T/fuse" c 10 229
        chmod 666 "$T/fuse"
        mount --bind "$T/fuse" /dev/fuse
        setpriv --reuid=65534 --regid=65534 --clear-groups \
            env -i PATH=/usr/bin:/bin HOME="$T" XDG_RUNTIME_DIR="$T/run" T="$T" MNT="$MNT" BIN="$BIN" \
            sh -c '{}'
        "#,
        user.replace('\'', "'\\''")
    ));
    let stdout = assert_ok(&out);
    assert!(stdout.contains("uid option: 1\n"), "{stdout}");
    assert!(stdout.contains("read: from a user\n"), "{stdout}");
    assert!(stdout.contains("stats lines: "), "{stdout}");
    for kind in [".log\n", ".pid\n", ".sock\n"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("runtime: ") && format!("{l}\n").ends_with(kind)),
            "no {kind:?} in the runtime dir: {stdout}"
        );
    }
    assert!(stdout.contains("stored: from a user\n"), "{stdout}");
    if !std::fs::read_to_string("/etc/fuse.conf")
        .is_ok_and(|c| c.lines().any(|l| l.trim() == "user_allow_other"))
    {
        assert!(!stdout.contains("allow_other mounted"), "{stdout}");
        assert!(stdout.contains("user_allow_other"), "{stdout}");
    }
}

/// The Debian package: built with cargo-deb (from the binary under test: `--profile dev`),
/// installed with dpkg, its files listed and used (the mount helper answers, the man page is
/// found), removed again with its helper links. dpkg runs in a private mount namespace whose
/// /usr, /var and /etc are writable overlays in the test directory, so the host's system and
/// dpkg database are never touched.
#[test]
fn the_deb_installs_and_removes() {
    let Some(sys) = System::new("the_deb_installs_and_removes", &[]) else {
        return;
    };
    if Command::new("cargo-deb").arg("--version").output().is_err()
        && Command::new("cargo")
            .args(["deb", "--version"])
            .output()
            .map_or(true, |o| !o.status.success())
    {
        skip_or_fail("the_deb_installs_and_removes needs cargo-deb (cargo install cargo-deb)");
        return;
    }
    // The assets the package names under target/assets (packaging/build-deb.sh makes them).
    let target = Path::new(BIN).parent().unwrap().parent().unwrap();
    let assets = target.join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    let gen = |args: &[&str]| Command::new(BIN).args(args).output().unwrap().stdout;
    let mut gz = Command::new("gzip")
        .arg("-9n")
        .stdin(std::process::Stdio::piped())
        .stdout(std::fs::File::create(assets.join("cloudstore-fs.1.gz")).unwrap())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut gz.stdin.take().unwrap(), &gen(&["man"])).unwrap();
    assert!(gz.wait().unwrap().success());
    for (shell, file) in [
        ("bash", "cloudstore-fs.bash"),
        ("zsh", "_cloudstore-fs"),
        ("fish", "cloudstore-fs.fish"),
    ] {
        std::fs::write(assets.join(file), gen(&["completions", shell])).unwrap();
    }
    let deb = sys.path("cloudstore-fs.deb");
    let out = Command::new("cargo")
        .args([
            "deb",
            "--no-build",
            "--profile",
            "dev",
            "--no-strip",
            "--fast",
            "-o",
        ])
        .arg(&deb)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo deb: {}", text(&out).1);
    let out = sys.run(
        r#"
        for d in usr var etc; do
            mkdir -p "$T/upper-$d" "$T/work-$d"
            mount -t overlay overlay -o "lowerdir=/$d,upperdir=$T/upper-$d,workdir=$T/work-$d" "/$d"
        done
        dpkg-deb -f "$T/cloudstore-fs.deb" Depends | sed 's/^/depends: /'
        dpkg -i --force-depends "$T/cloudstore-fs.deb" > /dev/null
        dpkg -L cloudstore-fs | sed 's/^/file: /'
        echo "helper: $(readlink /sbin/mount.cloudstore-fs) $(readlink /sbin/umount.fuse.cloudstore-fs)"
        mount -t cloudstore-fs "leveldb:$T/data" "$MNT" -o bogus_option 2>&1 | sed 's/^/mount: /' || true
        echo "man: $(man -w cloudstore-fs)"
        dpkg -r cloudstore-fs > /dev/null
        echo "after removal: $(ls /usr/bin/cloudstore-fs /usr/sbin/mount.cloudstore-fs /usr/sbin/umount.fuse.cloudstore-fs 2>/dev/null | wc -l) files"
        "#,
    );
    let stdout = assert_ok(&out);
    assert!(
        stdout.contains("librados2") && stdout.contains("fuse3"),
        "{stdout}"
    );
    for file in [
        "file: /usr/bin/cloudstore-fs\n",
        "file: /lib/systemd/system/cloudstore-fs@.service\n",
        "file: /usr/share/man/man1/cloudstore-fs.1.gz\n",
        "file: /usr/share/bash-completion/completions/cloudstore-fs\n",
    ] {
        assert!(stdout.contains(file), "{file} missing: {stdout}");
    }
    assert!(
        stdout.contains("helper: /usr/bin/cloudstore-fs /usr/bin/cloudstore-fs\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("mount: mount.cloudstore-fs: mount option \"bogus_option\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("man: /usr/share/man/man1/cloudstore-fs.1.gz\n"),
        "{stdout}"
    );
    assert!(stdout.contains("after removal: 0 files\n"), "{stdout}");
}
