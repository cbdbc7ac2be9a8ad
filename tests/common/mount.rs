//! Real FUSE mounts for tests: the built binary mounted with `mount --daemon` in a temporary
//! directory, over LevelDB or over the test Ceph cluster, always unmounted on drop (also when the
//! test panics). Without root or /dev/fuse the test says SKIPPED (and fails under CI=true).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use tempfile::TempDir;

use crate::ceph_support::{self, skip_or_fail, TestCluster};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_cloudstore-fs");

/// A configuration file for [`TestMount::with_config`] that makes the store's own caches small
/// (LevelDB's block cache and write buffer: 64 MiB each by default), so that what the daemon's
/// memory holds beyond them is chunk data, which the memory budget bounds.
pub const SMALL_STORE_CACHES: &str = "cache_size = 4194304\nwrite_buffer_size = 4194304\n";

/// Which store a test mount runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Leveldb,
    Ceph,
}

/// Whether this machine can mount FUSE (root and /dev/fuse); says SKIPPED when not.
pub fn fuse_available(test: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        skip_or_fail(&format!("{test} needs root to mount FUSE (run as root)"));
        return false;
    }
    if !Path::new("/dev/fuse").exists() {
        skip_or_fail(&format!("{test} needs /dev/fuse (modprobe fuse)"));
        return false;
    }
    true
}

/// Whether this build has the `ceph` feature; says SKIPPED (a failure under CI=true) when not.
fn ceph_built(test: &str) -> bool {
    if !cfg!(feature = "ceph") {
        skip_or_fail(&format!(
            "{test}: built without the `ceph` feature (cargo test --all-features)"
        ));
    }
    cfg!(feature = "ceph")
}

/// A mounted store in a temporary directory: `dir/data` (LevelDB), `dir/mnt`, `dir/daemon.log`.
pub struct TestMount {
    pub store: Store,
    pub dir: TempDir,
    pub mnt: PathBuf,
    store_args: Vec<OsString>,
    cluster: Option<TestCluster>,
    mounted: bool,
    /// A signal may have left a stale mount (kill -9): cleared on drop unless mounted again.
    maybe_stale: bool,
}

impl TestMount {
    /// Mounts a fresh store; `None` (after SKIPPED) when FUSE or the Ceph cluster is missing.
    pub fn new(store: Store, test: &str) -> Option<TestMount> {
        TestMount::with_config(store, test, "", &[])
    }

    /// Like [`TestMount::new`], with extra store options (`--max-chunk-size 4M`, ...) given to the
    /// mount and to every CLI command of this mount.
    pub fn with_args(store: Store, test: &str, args: &[&str]) -> Option<TestMount> {
        TestMount::with_config(store, test, "", args)
    }

    /// Like [`TestMount::with_args`], with a configuration file (`dir/config.toml`, given with
    /// `--config`) holding `toml`, when it is not empty. The flags override it.
    pub fn with_config(store: Store, test: &str, toml: &str, args: &[&str]) -> Option<TestMount> {
        if !fuse_available(test) {
            return None;
        }
        let cluster = match store {
            Store::Leveldb => None,
            Store::Ceph => {
                if !ceph_built(test) {
                    return None;
                }
                Some(ceph_support::cluster(test)?)
            }
        };
        Some(TestMount::mounted(cluster, toml, args))
    }

    /// A Ceph mount of `cluster` (a conf, pool and namespace other than the environment's: the
    /// fault cluster), with a configuration file holding `toml` when it is not empty and extra
    /// options (`--ceph-user NAME`); `None` (after SKIPPED) without FUSE or the `ceph` feature.
    pub fn on_ceph_cluster(
        test: &str,
        cluster: TestCluster,
        toml: &str,
        args: &[&str],
    ) -> Option<TestMount> {
        if !fuse_available(test) || !ceph_built(test) {
            return None;
        }
        Some(TestMount::mounted(Some(cluster), toml, args))
    }

    /// Mounts a fresh store in a new temporary directory: LevelDB in `dir/data`, or `cluster`.
    fn mounted(cluster: Option<TestCluster>, toml: &str, args: &[&str]) -> TestMount {
        let dir = tempfile::Builder::new()
            .prefix("cloudstore-mount-test.")
            .tempdir()
            .unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let mut store_args: Vec<OsString> = match &cluster {
            None => vec![
                "--data-dir".into(),
                dir.path().join("data").into_os_string(),
            ],
            Some(cluster) => vec![
                "--backend".into(),
                "ceph".into(),
                "--ceph-conf".into(),
                cluster.conf.clone().into_os_string(),
                "--pool".into(),
                cluster.pool.clone().into(),
                "--namespace".into(),
                cluster.namespace.clone().into(),
            ],
        };
        if !toml.is_empty() {
            let path = dir.path().join("config.toml");
            std::fs::write(&path, toml).unwrap();
            store_args.push("--config".into());
            store_args.push(path.into_os_string());
        }
        store_args.extend(args.iter().map(OsString::from));
        let mut m = TestMount {
            store: if cluster.is_some() {
                Store::Ceph
            } else {
                Store::Leveldb
            },
            dir,
            mnt,
            store_args,
            cluster,
            mounted: false,
            maybe_stale: false,
        };
        m.mount();
        m
    }

    /// The store options of this mount, for CLI commands.
    pub fn store_args(&self) -> &[OsString] {
        &self.store_args
    }

    /// The Ceph cluster, for Ceph mounts.
    pub fn cluster(&self) -> Option<&TestCluster> {
        self.cluster.as_ref()
    }

    /// The daemon's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    /// A path inside the mount.
    pub fn path(&self, name: &str) -> PathBuf {
        self.mnt.join(name)
    }

    /// A path in the test directory, outside the mount.
    pub fn outside(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `cloudstore-fs mount --daemon`, asserting success.
    pub fn mount(&mut self) {
        self.mount_output();
    }

    /// `cloudstore-fs mount --daemon`, asserting success; returns its output (what it said).
    pub fn mount_output(&mut self) -> Output {
        assert!(!self.mounted);
        let out = self.try_mount(&self.mnt, &[]);
        assert!(
            out.status.success(),
            "mount failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        self.mounted = true;
        self.maybe_stale = false;
        out
    }

    /// `cloudstore-fs mount --daemon [extra] MNT` with this mount's store options, whatever it
    /// gives (for mounts expected to fail; a success there is not tracked by this TestMount).
    pub fn try_mount(&self, mnt: &Path, extra: &[&str]) -> Output {
        Command::new(BIN)
            .arg("mount")
            .args(&self.store_args)
            .arg("--daemon")
            .args(extra)
            .arg(mnt)
            .env("CLOUDSTORE_FS_LOG", self.log_path())
            .env("RUST_LOG", daemon_log_level())
            .output()
            .unwrap()
    }

    /// Sends `signal` to the daemon and waits until it has exited; the mount is then gone
    /// (SIGTERM, SIGINT) or stale (SIGKILL). Returns the daemon's pid.
    pub fn signal_daemon(&mut self, signal: libc::c_int) -> u32 {
        let pid = self.daemon_pid().expect("daemon pid");
        // SAFETY: signalling the daemon this test started.
        assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
        assert!(
            cloudstore_fs::mount::wait_for_exit(pid, Duration::from_secs(60)),
            "daemon {pid} still runs 60 s after signal {signal}\n{}",
            self.log_tail()
        );
        self.mounted = false;
        self.maybe_stale = true;
        pid
    }

    /// Sends SIGKILL to the daemon and returns at once, without waiting for it to exit: a mount
    /// made right after meets the dying daemon (its stale mount, its LevelDB lock). Returns the
    /// daemon's pid.
    pub fn kill_daemon_now(&mut self) -> u32 {
        let pid = self.daemon_pid().expect("daemon pid");
        // SAFETY: signalling the daemon this test started.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
        self.mounted = false;
        self.maybe_stale = true;
        pid
    }

    /// Mounts again (after [`TestMount::unmount`]) with extra `mount` flags (`--read-only`,
    /// `--allow-other`), asserting success. A later [`TestMount::remount`] mounts without them.
    pub fn mount_with_flags(&mut self, flags: &[&str]) {
        assert!(!self.mounted);
        let out = Command::new(BIN)
            .arg("mount")
            .args(&self.store_args)
            .args(flags)
            .arg("--daemon")
            .arg(&self.mnt)
            .env("CLOUDSTORE_FS_LOG", self.log_path())
            .env("RUST_LOG", daemon_log_level())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount {flags:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        self.mounted = true;
    }

    /// Runs a bash script as user `nobody` (uid and gid 65534, no other groups) with `$MNT` set;
    /// returns its output. The test directory is opened to others (0755) for it, so that what
    /// stops the user is the mount, not the directory above it.
    pub fn sh_as_nobody(&self, script: &str) -> Output {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .args(["bash", "-c"])
            .arg(format!("set -uo pipefail\n{script}"))
            .current_dir("/")
            .env("MNT", &self.mnt)
            .output()
            .unwrap()
    }

    /// `cloudstore-fs unmount`, asserting success (it waits for the daemon's last commits).
    pub fn unmount(&mut self) {
        assert!(self.mounted);
        let pid = self.daemon_pid();
        let out = Command::new(BIN)
            .arg("unmount")
            .arg(&self.mnt)
            .output()
            .unwrap();
        self.mounted = false;
        assert!(
            out.status.success(),
            "unmount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The mount is gone before the daemon has closed its store (and LevelDB's lock, which
        // the next mount or CLI command takes): wait for the daemon to exit.
        if let Some(pid) = pid {
            assert!(
                cloudstore_fs::mount::wait_for_exit(pid, Duration::from_secs(60)),
                "the daemon (pid {pid}) still runs 60 s after unmount\n{}",
                self.log_tail()
            );
        }
    }

    /// Records that a mount made by [`TestMount::try_mount`] at `mnt` succeeded: it is this
    /// mount's now (unmounted on drop).
    pub fn mark_mounted(&mut self) {
        self.mounted = true;
        self.maybe_stale = false;
    }

    /// Records that the mount went away by other means (a signal to the daemon).
    pub fn mark_unmounted(&mut self) {
        self.mounted = false;
    }

    /// Unmounts and mounts again.
    pub fn remount(&mut self) {
        self.unmount();
        self.mount();
    }

    /// Runs the CLI with this mount's store options. LevelDB allows one opener, so the mount is
    /// taken down around the command there; Ceph runs it while mounted.
    pub fn cli(&mut self, args: &[&str]) -> Output {
        let remount = self.store == Store::Leveldb && self.mounted;
        if remount {
            self.unmount();
        }
        let out = Command::new(BIN)
            .args(args)
            .args(&self.store_args)
            .output()
            .unwrap();
        if remount {
            self.mount();
        }
        out
    }

    /// Runs a bash script in the test directory with `$MNT` set; returns its output.
    pub fn sh_output(&self, script: &str) -> Output {
        Command::new("bash")
            .arg("-c")
            .arg(format!("set -euo pipefail\n{script}"))
            .current_dir(self.dir.path())
            .env("MNT", &self.mnt)
            .output()
            .unwrap()
    }

    /// Runs a bash script, asserting success; returns its stdout.
    pub fn sh(&self, script: &str) -> String {
        let out = self.sh_output(script);
        assert!(
            out.status.success(),
            "script failed ({}):\n{script}\nstdout:\n{}\nstderr:\n{}\ndaemon log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The last lines of the daemon's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits (up to 5 s: the log is written by another process) for a line of the daemon's log
    /// holding every one of `needles`.
    pub fn assert_logged(&self, needles: &[&str]) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            if log.lines().any(|l| needles.iter().all(|n| l.contains(n))) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no log line with all of {needles:?}; the log ends:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every chunk the mount shows, with its bytes (read through fresh opens).
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(&self.mnt)
            .unwrap()
            .map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                let data = std::fs::read(self.path(&name)).unwrap();
                (name, data)
            })
            .collect()
    }

    /// Asserts that the mount still shows exactly `before`, also after a plain remount (so the
    /// store itself holds it, not just the daemon).
    pub fn assert_unchanged(&mut self, before: &BTreeMap<String, Vec<u8>>, when: &str) {
        for pass in ["", " and a remount"] {
            if !pass.is_empty() {
                self.remount();
            }
            let now = self.snapshot();
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

    /// The pid of the daemon serving the mount.
    pub fn daemon_pid(&self) -> Option<u32> {
        cloudstore_fs::mount::daemon_pid(&self.mnt)
    }
}

/// The daemons' log level: info, or `$CLOUDSTORE_TEST_DAEMON_LOG` (e.g. debug, to chase a
/// failure; with `$CLOUDSTORE_TEST_KEEP` set, a failed test's directory and log are kept).
fn daemon_log_level() -> String {
    std::env::var("CLOUDSTORE_TEST_DAEMON_LOG").unwrap_or_else(|_| "info".into())
}

impl Drop for TestMount {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("CLOUDSTORE_TEST_KEEP").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("kept {}", self.dir.path().display());
        }
        if !self.mounted {
            if self.maybe_stale {
                // Not a mount point any more is fine; a stale one is cleared.
                let _ = cloudstore_fs::mount::unmount(&self.mnt);
            }
            return;
        }
        if std::thread::panicking() {
            eprintln!(
                "daemon log ({}):\n{}",
                self.log_path().display(),
                self.log_tail()
            );
        }
        // Lazily: a panicking test may still hold files open.
        let opts = cloudstore_fs::mount::UnmountOptions {
            lazy: true,
            timeout: Duration::from_secs(30),
        };
        let pid = self.daemon_pid();
        if let Err(e) = cloudstore_fs::mount::unmount_with(&self.mnt, &opts) {
            eprintln!("teardown: unmount {}: {e}", self.mnt.display());
        }
        if let Some(pid) = pid {
            cloudstore_fs::mount::wait_for_exit(pid, Duration::from_secs(30));
        }
    }
}
