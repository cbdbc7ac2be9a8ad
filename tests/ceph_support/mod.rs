//! What the Ceph test files share: the cluster from the environment, a unique namespace per
//! test, the skip-or-fail rule (a missing cluster is a loud skip, and a failure under CI=true),
//! and deterministic test data.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use cloudstore_fs::config::{Backend, CephConfig, Config};

/// The environment variable naming the test cluster's ceph.conf.
pub const CONF_ENV: &str = "CLOUDSTORE_TEST_CEPH_CONF";
/// The environment variable naming the pool (default `cloudstore-test`).
pub const POOL_ENV: &str = "CLOUDSTORE_TEST_CEPH_POOL";

/// A test cluster: its conf, pool and a namespace of this test's own.
#[derive(Debug, Clone)]
pub struct TestCluster {
    pub conf: PathBuf,
    pub pool: String,
    pub namespace: String,
}

/// The cluster from the environment, with a fresh namespace; `None` (after a loud SKIPPED on
/// stderr) when there is none, and a panic instead under CI=true.
pub fn cluster(test: &str) -> Option<TestCluster> {
    let Some(conf) = std::env::var_os(CONF_ENV).filter(|v| !v.is_empty()) else {
        skip_or_fail(&format!(
            "{CONF_ENV} is not set, so the Ceph test {test} did not run \
             (start a cluster: conf=$(scripts/ceph-cluster.sh start /tmp/ceph); \
             export {CONF_ENV}=$conf)"
        ));
        return None;
    };
    let pool = std::env::var(POOL_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "cloudstore-test".into());
    Some(TestCluster {
        conf: PathBuf::from(conf),
        pool,
        namespace: unique_namespace(test),
    })
}

/// A namespace no other test (in this or another run) uses.
pub fn unique_namespace(test: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{test}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl TestCluster {
    /// The `rados` tool on this cluster's pool and namespace, ready for its arguments.
    pub fn rados_command(&self) -> Command {
        let mut cmd = Command::new("rados");
        cmd.arg("-c")
            .arg(&self.conf)
            .args(["-p", &self.pool, "-N", &self.namespace]);
        cmd
    }

    /// Runs `rados ARGS` on this cluster's pool and namespace; panics with its stderr on
    /// failure; gives its stdout.
    pub fn rados(&self, args: &[&str]) -> Vec<u8> {
        let out = self
            .rados_command()
            .args(args)
            .output()
            .expect("run rados (package ceph-common)");
        assert!(
            out.status.success(),
            "rados {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A configuration for this cluster, pool and namespace.
    pub fn config(&self, max_chunk_size: u64) -> Config {
        Config {
            backend: Backend::Ceph,
            max_chunk_size,
            ceph: CephConfig {
                conf: self.conf.clone(),
                pool: self.pool.clone(),
                namespace: self.namespace.clone(),
                connect_timeout_secs: 10,
                op_timeout_secs: 30,
                ..CephConfig::default()
            },
            ..Config::default()
        }
    }
}

/// Says a test is skipped because `what`; under CI=true, fails instead.
pub fn skip_or_fail(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and {what}: this test must run in CI");
    }
    // Straight to the stderr handle: the test harness captures eprintln!, and a skip must show.
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {what} ***\n");
}

/// Deterministic pseudo-random bytes (xorshift), so that failures reproduce.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The environment variable naming the fault cluster's directory (`scripts/ceph-cluster.sh start
/// DIR --osds 3 --cephx`): the tests kill, freeze and restart its daemons through the script.
pub const FAULT_DIR_ENV: &str = "CLOUDSTORE_TEST_CEPH_FAULT_DIR";
/// The fault cluster's admin conf (client.admin).
pub const FAULT_CONF_ENV: &str = "CLOUDSTORE_TEST_CEPH_FAULT_CONF";
/// The fault cluster's conf for the restricted client ([`LIMITED_USER`]).
pub const FAULT_LIMITED_CONF_ENV: &str = "CLOUDSTORE_TEST_CEPH_FAULT_LIMITED_CONF";
/// The cephx client that may use [`FaultCluster::pool`] only.
pub const LIMITED_USER: &str = "cloudstore-limited";

/// The 3-OSD cephx cluster of the fault tests, and the script that breaks and mends it.
#[derive(Debug, Clone)]
pub struct FaultCluster {
    pub dir: PathBuf,
    /// client.admin's conf.
    pub conf: PathBuf,
    /// client.cloudstore-limited's conf (its keyring is named inside).
    pub limited_conf: PathBuf,
    /// The same client name with a key the cluster never issued.
    pub wrong_key_conf: PathBuf,
    /// The pool of size 3 / min_size 2 the limited client may use.
    pub pool: String,
    /// A pool the limited client may not use.
    pub other_pool: String,
}

/// The fault cluster from the environment; `None` (after a loud SKIPPED) when there is none,
/// and a panic instead under CI=true.
pub fn fault_cluster(test: &str) -> Option<FaultCluster> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let (Some(dir), Some(conf), Some(limited_conf)) = (
        var(FAULT_DIR_ENV),
        var(FAULT_CONF_ENV),
        var(FAULT_LIMITED_CONF_ENV),
    ) else {
        skip_or_fail(&format!(
            "{FAULT_DIR_ENV}, {FAULT_CONF_ENV} and {FAULT_LIMITED_CONF_ENV} are not all set, so \
             the Ceph fault test {test} did not run (start the 3-OSD cluster: \
             scripts/ceph-cluster.sh start /tmp/ceph-fault --osds 3 --cephx; export \
             {FAULT_DIR_ENV}=/tmp/ceph-fault {FAULT_CONF_ENV}=/tmp/ceph-fault/ceph.conf \
             {FAULT_LIMITED_CONF_ENV}=/tmp/ceph-fault/limited.conf)"
        ));
        return None;
    };
    let dir = PathBuf::from(dir);
    Some(FaultCluster {
        wrong_key_conf: dir.join("wrong-key.conf"),
        dir,
        conf: PathBuf::from(conf),
        limited_conf: PathBuf::from(limited_conf),
        pool: "cloudstore-test".into(),
        other_pool: "cloudstore-other".into(),
    })
}

impl FaultCluster {
    /// Runs `scripts/ceph-cluster.sh COMMAND DIR ARGS...`, asserting success.
    pub fn script(&self, command: &str, args: &[&str]) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ceph-cluster.sh");
        let out = std::process::Command::new(script)
            .arg(command)
            .arg(&self.dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ceph-cluster.sh {command} {} {args:?} failed ({}):\n{}{}",
            self.dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// kill -9 of osd.`id` (returns once it is gone).
    pub fn kill_osd(&self, id: u32) {
        self.script("kill-osd", &[&id.to_string()]);
    }

    /// Starts osd.`id` again.
    pub fn start_osd(&self, id: u32) {
        self.script("start-osd", &[&id.to_string()]);
    }

    /// SIGSTOP of the named daemons (`osd.0`, `mon.a`), or of all of them when none is named.
    pub fn freeze(&self, daemons: &[&str]) {
        self.script("freeze", daemons);
    }

    /// SIGCONT of every daemon.
    pub fn thaw(&self) {
        self.script("thaw", &[]);
    }

    /// Waits until every OSD is up and in and every PG active+clean; returns how long it took.
    pub fn wait_clean(&self, timeout: std::time::Duration) -> std::time::Duration {
        let start = std::time::Instant::now();
        self.script("wait-clean", &[&timeout.as_secs().to_string()]);
        start.elapsed()
    }

    /// A mount-ready cluster for `pool` through `conf`, in a namespace of this test's own.
    pub fn test_cluster(&self, test: &str, conf: &std::path::Path, pool: &str) -> TestCluster {
        TestCluster {
            conf: conf.to_path_buf(),
            pool: pool.to_string(),
            namespace: unique_namespace(test),
        }
    }
}
