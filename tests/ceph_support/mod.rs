//! What the Ceph test files share: the cluster from the environment, a unique namespace per
//! test, the skip-or-fail rule (a missing cluster is a loud skip, and a failure under CI=true),
//! and deterministic test data.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
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
