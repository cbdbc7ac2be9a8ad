//! What the daemon tells about its own trouble (`cloudstore-fs stats MOUNTPOINT`): commits
//! pending and done, errors answered to programs by kind, the last one in full, and memory held
//! against the budget.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::error::FsError;
use crate::store::RoundTrips;

pub use crate::sys::errno::errno_name;

/// FUSE requests answered, by kind, and the file bytes they moved.
#[derive(Default)]
pub struct RequestCounts {
    by_kind: Mutex<BTreeMap<&'static str, u64>>,
    bytes_read: std::sync::atomic::AtomicU64,
    bytes_written: std::sync::atomic::AtomicU64,
    /// Opens answered through the page cache, and of them those told to keep it.
    cached_opens: std::sync::atomic::AtomicU64,
    kept_opens: std::sync::atomic::AtomicU64,
}

impl RequestCounts {
    /// Counts one request of `kind` ("lookup", "read", ...).
    pub fn count(&self, kind: &'static str) {
        *self.by_kind.lock().entry(kind).or_default() += 1;
    }

    /// Counts file bytes read (`read`) or written.
    pub fn add_bytes(&self, read: bool, bytes: u64) {
        let counter = if read {
            &self.bytes_read
        } else {
            &self.bytes_written
        };
        counter.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts an open answered through the page cache (`kept`: told to keep the pages the
    /// kernel holds of the inode, which are of the version opened).
    pub fn count_cached_open(&self, kept: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        self.cached_opens.fetch_add(1, Relaxed);
        if kept {
            self.kept_opens.fetch_add(1, Relaxed);
        }
    }

    /// (opens through the page cache, of them told to keep it).
    pub fn cached_opens(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.cached_opens.load(Relaxed),
            self.kept_opens.load(Relaxed),
        )
    }

    /// (requests by kind, bytes read, bytes written).
    pub fn snapshot(&self) -> (BTreeMap<&'static str, u64>, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.by_kind.lock().clone(),
            self.bytes_read.load(Relaxed),
            self.bytes_written.load(Relaxed),
        )
    }
}

/// The most recent failure answered to a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    /// When it was answered.
    pub at: SystemTime,
    /// The FUSE operation ("flush", "write", ...).
    pub op: String,
    /// The errno the program got.
    pub errno: i32,
    /// What failed, naming the file and the cause.
    pub message: String,
}

#[derive(Default)]
struct ErrorLog {
    by_errno: BTreeMap<i32, u64>,
    last: Option<LastError>,
}

/// Counters of the failures answered to programs, kept by the mount.
#[derive(Default)]
pub struct ErrorCounts {
    log: Mutex<ErrorLog>,
}

impl ErrorCounts {
    /// Counts a failure answered for `op`; expected answers (ENOENT, EEXIST, ...) are not trouble
    /// and are not counted.
    pub fn record(&self, op: &str, e: &FsError) {
        if e.is_answer() {
            return;
        }
        let mut log = self.log.lock();
        *log.by_errno.entry(e.errno).or_default() += 1;
        log.last = Some(LastError {
            at: SystemTime::now(),
            op: op.to_string(),
            errno: e.errno,
            message: e.message.clone(),
        });
    }

    /// The counts by errno and the last failure.
    pub fn snapshot(&self) -> (BTreeMap<i32, u64>, Option<LastError>) {
        let log = self.log.lock();
        (log.by_errno.clone(), log.last.clone())
    }
}

/// Commits through the group committer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitCounts {
    /// Accepted and not answered yet (queued or being written).
    pub pending: u64,
    /// Written and acknowledged.
    pub done: u64,
    /// Answered with an error.
    pub failed: u64,
}

/// A picture of the daemon at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsSnapshot {
    /// The store's backend ("leveldb", "ceph", "memory").
    pub backend: &'static str,
    /// How long the filesystem has been up.
    pub uptime: Duration,
    /// Commits pending, done and failed.
    pub commits: CommitCounts,
    /// Open files (handles), and how many of them write.
    pub open_files: usize,
    /// Open files that write.
    pub writers: usize,
    /// Bytes of chunk data held now.
    pub memory_used: u64,
    /// The memory budget.
    pub memory_budget: u64,
    /// Failures answered to programs, by errno.
    pub errors: BTreeMap<i32, u64>,
    /// The most recent of them.
    pub last_error: Option<LastError>,
    /// FUSE requests answered, by kind.
    pub requests: BTreeMap<&'static str, u64>,
    /// File bytes read and written through the mount.
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Opens answered through the page cache, and of them those told to keep the kernel's
    /// pages (the cache hits: the kernel reads nothing of the file from the daemon that it
    /// still holds).
    pub cached_opens: u64,
    pub kept_opens: u64,
    /// Round trips to the store's servers (Ceph), `None` for a local store.
    pub round_trips: Option<RoundTrips>,
}

impl fmt::Display for StatsSnapshot {
    /// One "name: value" line each, for people and for `grep`/`awk`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "backend: {}", self.backend)?;
        writeln!(f, "uptime_seconds: {}", self.uptime.as_secs())?;
        writeln!(f, "commits_pending: {}", self.commits.pending)?;
        writeln!(f, "commits_done: {}", self.commits.done)?;
        writeln!(f, "commits_failed: {}", self.commits.failed)?;
        writeln!(f, "open_files: {}", self.open_files)?;
        writeln!(f, "open_writers: {}", self.writers)?;
        writeln!(f, "memory_used_bytes: {}", self.memory_used)?;
        writeln!(f, "memory_budget_bytes: {}", self.memory_budget)?;
        let requests: u64 = self.requests.values().sum();
        writeln!(f, "requests_total: {requests}")?;
        for (kind, count) in &self.requests {
            writeln!(f, "requests_{kind}: {count}")?;
        }
        writeln!(f, "bytes_read: {}", self.bytes_read)?;
        writeln!(f, "bytes_written: {}", self.bytes_written)?;
        writeln!(f, "opens_page_cache: {}", self.cached_opens)?;
        writeln!(f, "opens_page_cache_kept: {}", self.kept_opens)?;
        if let Some(t) = &self.round_trips {
            writeln!(f, "store_round_trips: {}", t.ops)?;
            writeln!(f, "store_batches: {}", t.batches)?;
            writeln!(f, "store_batched_round_trips: {}", t.batched_ops)?;
        }
        let total: u64 = self.errors.values().sum();
        writeln!(f, "errors_total: {total}")?;
        for (errno, count) in &self.errors {
            writeln!(f, "errors_{}: {count}", errno_name(*errno))?;
        }
        match &self.last_error {
            None => writeln!(f, "last_error: none"),
            Some(e) => {
                let secs =
                    e.at.duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                let ago = SystemTime::now()
                    .duration_since(e.at)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                writeln!(
                    f,
                    "last_error: {} {}: {} (at unix time {secs}, {ago} s ago)",
                    errno_name(e.errno),
                    e.op,
                    e.message
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_not_trouble_and_failures_are_counted_by_kind() {
        let counts = ErrorCounts::default();
        counts.record("lookup", &FsError::not_found("00ab"));
        assert_eq!(counts.snapshot(), (BTreeMap::new(), None));
        counts.record("write", &FsError::new(libc::EFBIG, "write 00ab: too big"));
        counts.record("flush", &FsError::new(libc::EIO, "commit 00cd: gone"));
        counts.record("flush", &FsError::new(libc::EIO, "commit 00ef: gone"));
        let (by, last) = counts.snapshot();
        assert_eq!(by.get(&libc::EIO), Some(&2));
        assert_eq!(by.get(&libc::EFBIG), Some(&1));
        let last = last.unwrap();
        assert_eq!((last.op.as_str(), last.errno), ("flush", libc::EIO));
        assert_eq!(last.message, "commit 00ef: gone");
    }

    #[test]
    fn the_text_names_every_figure() {
        let counts = ErrorCounts::default();
        counts.record(
            "flush",
            &FsError::new(libc::ETIMEDOUT, "commit 00ab: timed out"),
        );
        let (errors, last_error) = counts.snapshot();
        let s = StatsSnapshot {
            backend: "memory",
            uptime: Duration::from_secs(3),
            commits: CommitCounts {
                pending: 2,
                done: 5,
                failed: 1,
            },
            open_files: 4,
            writers: 1,
            memory_used: 100,
            memory_budget: 1000,
            errors,
            last_error,
            requests: BTreeMap::from([("open", 3), ("read", 4)]),
            bytes_read: 4096,
            bytes_written: 0,
            cached_opens: 2,
            kept_opens: 1,
            round_trips: Some(RoundTrips {
                ops: 9,
                batches: 2,
                batched_ops: 7,
            }),
        }
        .to_string();
        for line in [
            "commits_pending: 2",
            "commits_done: 5",
            "commits_failed: 1",
            "memory_used_bytes: 100",
            "memory_budget_bytes: 1000",
            "errors_total: 1",
            "errors_ETIMEDOUT: 1",
            "requests_total: 7",
            "requests_open: 3",
            "bytes_read: 4096",
            "opens_page_cache: 2",
            "opens_page_cache_kept: 1",
            "store_round_trips: 9",
            "store_batches: 2",
            "store_batched_round_trips: 7",
            "last_error: ETIMEDOUT flush: commit 00ab: timed out",
        ] {
            assert!(s.contains(line), "{line:?} missing from:\n{s}");
        }
        assert_eq!(errno_name(12345), "errno 12345");
    }
}
