//! Prometheus metrics (`mount --metrics-addr HOST:PORT`): an HTTP endpoint, `/metrics`, in the
//! OpenMetrics text format (which Prometheus scrapes), encoded by `prometheus-client` and served
//! by `tiny_http`.
//!
//! The figures are the ones `cloudstore-fs stats` shows ([`StatsSnapshot`], read at each
//! scrape), plus latency histograms of the store calls, measured by the store [`timed`] makes
//! (a `PassThrough` around the mounted store whose hook times each call). Names carry the
//! `cloudstore_` prefix and their unit (`_seconds`, `_bytes`; counters end in `_total`); the
//! list and what each means is in README.md ("Metrics").
//!
//! The endpoint binds to loopback unless `--metrics-allow-remote` is given: the figures name
//! nothing secret, but a scrape port open to the network is a choice to make on purpose.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::fs::stats::errno_name;
use crate::fs::{ChunkFs, StatsSnapshot};
use crate::store::passthrough::{Hook, PassThrough};
use crate::store::Cloudstore;

/// A `--metrics-addr` that cannot be used: its message names the address and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AddrError(pub String);

impl From<String> for AddrError {
    fn from(s: String) -> Self {
        AddrError(s)
    }
}

/// The content type of the OpenMetrics text `prometheus-client` writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Where `--metrics-addr` binds: `HOST:PORT` (`127.0.0.1:9100`, `[::1]:9100`,
/// `localhost:9100`) or a bare `PORT` (loopback). An address other than loopback is refused
/// unless `allow_remote`.
pub fn parse_addr(text: &str, allow_remote: bool) -> std::result::Result<SocketAddr, AddrError> {
    let addr = if let Ok(port) = text.parse::<u16>() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    } else {
        text.to_socket_addrs()
            .map_err(|e| format!("--metrics-addr {text:?}: not HOST:PORT or PORT ({e})"))?
            .next()
            .ok_or_else(|| format!("--metrics-addr {text:?}: the host has no address"))?
    };
    if !addr.ip().is_loopback() && !allow_remote {
        return Err(format!(
            "--metrics-addr {text:?} is not a loopback address: the metrics endpoint is only \
             served to this machine unless --metrics-allow-remote is given"
        )
        .into());
    }
    Ok(addr)
}

/// The store call a histogram sample belongs to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

/// Latencies of the store calls, shared by the store [`timed`] makes and the endpoint.
#[derive(Debug)]
pub struct StoreTimings {
    calls: Family<OpLabel, Histogram, fn() -> Histogram>,
    errors: Family<OpLabel, Counter>,
    commits: Histogram,
}

/// 100 us to ~26 s, by factors of 4: local LevelDB calls sit in the first buckets, Ceph round
/// trips in the middle, timeouts at the end.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 4.0, 10))
}

impl Default for StoreTimings {
    fn default() -> Self {
        StoreTimings {
            calls: Family::new_with_constructor(latency_histogram),
            errors: Family::default(),
            commits: latency_histogram(),
        }
    }
}

impl StoreTimings {
    fn observe(&self, op: &'static str, took: Duration, failed: bool) {
        let secs = took.as_secs_f64();
        let label = OpLabel { op };
        self.calls.get_or_create(&label).observe(secs);
        if failed {
            self.errors.get_or_create(&label).inc();
        }
        // The group committer publishes each commit (one file's, or a batch of them) with
        // one of these two calls.
        if matches!(op, "set_chunk" | "set_chunk_batch") {
            self.commits.observe(secs);
        }
    }
}

/// Wraps `inner` in a store that times each of its calls (but `close`); the timings are the
/// second value.
pub fn timed(inner: Arc<dyn Cloudstore>) -> (Arc<dyn Cloudstore>, Arc<StoreTimings>) {
    let timings = Arc::new(StoreTimings::default());
    let store = PassThrough::wrap(inner, Timer(timings.clone()));
    (Arc::new(store), timings)
}

/// The hook of the store [`timed`] makes: each call's latency goes to the timings (a listing's
/// is its opening: its later pages are read as the directory is read).
struct Timer(Arc<StoreTimings>);

impl Hook for Timer {
    fn after(&self, op: &'static str, took: Duration, failed: bool) {
        if op != "close" {
            self.0.observe(op, took, failed);
        }
    }
}

/// A counter family with one label, filled from a snapshot's map.
fn labelled<'a>(
    label: &'static str,
    values: impl IntoIterator<Item = (String, u64)> + 'a,
) -> Family<Vec<(&'static str, String)>, Counter> {
    let family = Family::<Vec<(&'static str, String)>, Counter>::default();
    for (value, count) in values {
        family.get_or_create(&vec![(label, value)]).inc_by(count);
    }
    family
}

/// The ages of the snapshots the daemon holds (`cloudstore-fs snapshot`), asked at each scrape.
pub type SnapshotAges = Arc<dyn Fn() -> Vec<Duration> + Send + Sync>;

/// The metrics text for one scrape (`snapshots`: the ages of the snapshots held).
pub fn render(s: &StatsSnapshot, timings: Option<&StoreTimings>, snapshots: &[Duration]) -> String {
    let mut r = Registry::with_prefix("cloudstore");
    let gauge = |v: u64| ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    r.register_with_unit(
        "uptime",
        "How long the filesystem has been mounted",
        Unit::Seconds,
        ConstGauge::new(s.uptime.as_secs_f64()),
    );
    r.register(
        "commits",
        "Commits (a file's new value published to the store) acknowledged",
        ConstCounter::new(s.commits.done),
    );
    r.register(
        "commit_failures",
        "Commits answered with an error (the program's close or fsync got it)",
        ConstCounter::new(s.commits.failed),
    );
    r.register(
        "commits_pending",
        "Commits accepted and not answered yet (queued or being written)",
        gauge(s.commits.pending),
    );
    r.register(
        "errors",
        "Failures answered to programs, by errno",
        labelled("errno", s.errors.iter().map(|(e, n)| (errno_name(*e), *n))),
    );
    r.register(
        "fuse_requests",
        "FUSE requests answered, by kind",
        labelled("kind", s.requests.iter().map(|(k, n)| (k.to_string(), *n))),
    );
    r.register(
        "page_cache_opens",
        "Opens answered through the kernel's page cache",
        ConstCounter::new(s.cached_opens),
    );
    r.register(
        "page_cache_kept_opens",
        "Opens told to keep the kernel's pages of the file (they are of the version opened)",
        ConstCounter::new(s.kept_opens),
    );
    r.register_with_unit(
        "read",
        "File bytes read through the mount",
        Unit::Bytes,
        ConstCounter::new(s.bytes_read),
    );
    r.register_with_unit(
        "written",
        "File bytes written through the mount",
        Unit::Bytes,
        ConstCounter::new(s.bytes_written),
    );
    r.register_with_unit(
        "memory_used",
        "Bytes of file data the daemon holds now (write buffers, fetched values)",
        Unit::Bytes,
        gauge(s.memory_used),
    );
    r.register_with_unit(
        "memory_budget",
        "The memory budget (--memory-budget) those bytes count against",
        Unit::Bytes,
        gauge(s.memory_budget),
    );
    r.register(
        "open_files",
        "Open files (handles)",
        gauge(s.open_files as u64),
    );
    r.register(
        "open_writers",
        "Open files that write",
        gauge(s.writers as u64),
    );
    r.register(
        "snapshots",
        "Point-in-time snapshots held (each keeps old versions in the store)",
        gauge(snapshots.len() as u64),
    );
    r.register_with_unit(
        "oldest_snapshot_age",
        "Age of the oldest snapshot held (0 when none): what it costs grows with it",
        Unit::Seconds,
        ConstGauge::new(snapshots.iter().max().map_or(0.0, |d| d.as_secs_f64())),
    );
    if let Some(t) = timings {
        r.register_with_unit(
            "store_call_duration",
            "Latency of each store call (one round trip on Ceph; _count is the calls made), \
             by operation",
            Unit::Seconds,
            t.calls.clone(),
        );
        r.register(
            "store_call_errors",
            "Store calls that failed, by operation",
            t.errors.clone(),
        );
        r.register_with_unit(
            "commit_duration",
            "Latency of the store writes that publish commits (SetChunk, or SetChunkBatch for \
             a group of commits)",
            Unit::Seconds,
            t.commits.clone(),
        );
    }
    let mut text = String::new();
    encode(&mut text, &r).expect("writing to a String cannot fail");
    text
}

/// The serving end; stops when dropped.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

/// Binds the endpoint's socket (before the mount, so a port in use fails the mount).
pub fn bind(addr: SocketAddr) -> std::result::Result<tiny_http::Server, AddrError> {
    tiny_http::Server::http(addr).map_err(|e| AddrError(format!("metrics endpoint {addr}: {e}")))
}

/// Serves `/metrics` for `core` (and the store timings, when the store is wrapped).
pub fn serve(
    server: tiny_http::Server,
    core: Arc<ChunkFs>,
    timings: Option<Arc<StoreTimings>>,
    snapshots: SnapshotAges,
) -> std::io::Result<MetricsServer> {
    let server = Arc::new(server);
    let serving = server.clone();
    let thread = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for request in serving.incoming_requests() {
                let path = request.url().split('?').next().unwrap_or("");
                let response = if path == "/metrics" {
                    let text = render(&core.stats(), timings.as_deref(), &snapshots());
                    let header = tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE)
                        .expect("a valid header");
                    tiny_http::Response::from_string(text).with_header(header)
                } else {
                    tiny_http::Response::from_string("not found: the metrics are at /metrics\n")
                        .with_status_code(404)
                };
                if let Err(e) = request.respond(response) {
                    log::debug!("metrics: answering a scrape: {e}");
                }
            }
        })?;
    if let Some(addr) = server.server_addr().to_ip() {
        log::info!("metrics: serving http://{addr}/metrics");
    }
    Ok(MetricsServer {
        server,
        thread: Some(thread),
    })
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[test]
    fn addresses_are_loopback_unless_allowed() {
        assert_eq!(
            parse_addr("9100", false).unwrap(),
            "127.0.0.1:9100".parse().unwrap()
        );
        assert!(parse_addr("[::1]:9100", false).unwrap().ip().is_loopback());
        let e = parse_addr("0.0.0.0:9100", false).unwrap_err();
        assert!(e.0.contains("--metrics-allow-remote"), "{e}");
        assert!(parse_addr("0.0.0.0:9100", true).is_ok());
        assert!(parse_addr("nonsense", false).is_err());
    }

    #[test]
    fn the_timed_store_measures_each_call_and_the_text_names_it() {
        let (store, timings) = timed(Arc::new(MemoryStore::new(1 << 20)));
        store.set_chunk(b"\x01", b"v").unwrap();
        store.get_chunk(b"\x01").unwrap();
        store.get_chunk_with_range(b"\x01", 2, 1).unwrap_err();
        let cfg = crate::fs::FsConfig::new(&crate::config::Config::default(), &*store, false);
        let core = ChunkFs::new(store, cfg);
        let text = render(&core.stats(), Some(&timings), &[Duration::from_secs(5)]);
        for line in [
            "cloudstore_store_call_duration_seconds_count{op=\"set_chunk\"} 1",
            "cloudstore_store_call_duration_seconds_count{op=\"get_chunk\"} 1",
            "cloudstore_store_call_errors_total{op=\"get_chunk_with_range\"} 1",
            "cloudstore_commit_duration_seconds_count 1",
            "cloudstore_commits_total 0",
            "# TYPE cloudstore_memory_budget_bytes gauge",
            "# UNIT cloudstore_uptime_seconds seconds",
            "cloudstore_snapshots 1",
            "cloudstore_oldest_snapshot_age_seconds 5.0",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
    }
}
