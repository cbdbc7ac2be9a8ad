//! Several clients of one Ceph pool: two real FUSE mounts of the built binary on the single-node
//! test cluster (CLOUDSTORE_TEST_CEPH_CONF, started with `--mgr` for the pool quotas), and the
//! `rados` tool writing and removing objects behind a mount's back:
//! - a reader sees one whole committed version of a chunk, or an error (ESTALE or EIO), whatever
//!   another mount or `rados` does meanwhile; never a mix of versions, never an early EOF;
//! - close-to-open: what one mount closed, the other reads at its next open;
//! - a name removed or renamed by another mount is ENOENT (or the old bytes, whole) at once,
//!   never a 0-byte success;
//! - a pool quota reached is EDQUOT within one round trip, the old value kept, and `rm` through
//!   the mount frees space;
//! - a pool deleted under a mount is an error on every operation (never an empty directory), and
//!   a pool of that name created again is picked up, or the log says to remount.
//!
//! Every test uses a namespace of its own (the quota and deletion tests a pool of their own), so
//! they run in parallel with the other suites. They need root and /dev/fuse.
#![cfg(feature = "ceph")]

mod ceph_support;
mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ceph_support::TestCluster;
use common::files::{close, describe, errno, identify, read_file, tagged, write_file};
use common::mount::{TestMount, BIN};

/// Short client timeouts: a failure that waits for one shows in seconds, not 30.
const TIMEOUTS: &str = "[ceph]\nop_timeout_secs = 5\nconnect_timeout_secs = 5\n";
/// Longer timeouts for the quota test, so that a refusal in one round trip (measured ~1 ms with
/// full-try) is told apart from a timeout by a generous bound ([`AT_ONCE`]).
const QUOTA_TIMEOUTS: &str = "[ceph]\nop_timeout_secs = 10\nconnect_timeout_secs = 5\n";
/// How long a refusal by a full pool, or an rm while full, may take on a loaded machine.
const AT_ONCE: Duration = Duration::from_secs(2);
/// The size of the large values: several ranged reads each.
const BIG: usize = 16 << 20;
/// A value at most this large is fetched whole at open (one round trip).
const SMALL: usize = 4 << 10;

/// The cluster of the environment with a namespace of `test`'s own, and two mounts of it;
/// `None` (after SKIPPED) without a cluster or FUSE.
fn two_mounts(test: &str) -> Option<(TestCluster, TestMount, TestMount)> {
    let cluster = ceph_support::cluster(test)?;
    let a = TestMount::on_ceph_cluster(test, cluster.clone(), TIMEOUTS, &[])?;
    let b = TestMount::on_ceph_cluster(test, cluster.clone(), TIMEOUTS, &[])?;
    Some((cluster, a, b))
}

/// An errno a reader may get when the version it reads is gone.
fn stale_or_eio(e: &std::io::Error) -> bool {
    [libc::ESTALE, libc::EIO].contains(&errno(e))
}

/// Writes `data` to `path` (truncating) and closes, returning close()'s result.
fn write_and_close(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all(data)?;
    close(f)
}

/// `rados put NAME` of `data` in the cluster's pool and namespace (through a file, as users do).
fn rados_put(c: &TestCluster, dir: &Path, name: &str, data: &[u8]) {
    let file = dir.join(format!("rados-put-{name}"));
    fs::write(&file, data).unwrap();
    c.rados(&["put", name, file.to_str().unwrap()]);
}

// ---------------------------------------------------------------------------------------------
// What a reader sees.

/// One whole read of a chunk in mount B, with its start and end.
struct Read1 {
    start: Instant,
    end: Instant,
    /// The round read, or the errno of the failure.
    outcome: Result<u32, i32>,
}

/// A writer in mount A rewrites a 16 MiB chunk 20 times while a reader in mount B reads it
/// whole again and again: every read is one whole committed value or fails with ESTALE or EIO;
/// a read that began after a commit and ended before the next write began is that value.
#[test]
fn reads_in_another_mount_are_one_whole_version_or_an_error() {
    const TEST: &str = "ceph_clients::reads_in_another_mount_are_one_whole_version_or_an_error";
    const ROUNDS: u32 = 20;
    let Some((_c, a, b)) = two_mounts(TEST) else {
        return;
    };
    write_file(&a.path("c101"), &tagged(1, 0, BIG));
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicU32::new(0));
    let reader = {
        let (stop, attempts, path) = (stop.clone(), attempts.clone(), b.path("c101"));
        thread::spawn(move || {
            let mut reads = Vec::new();
            let mut torn = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let got = fs::read(&path);
                let end = Instant::now();
                attempts.fetch_add(1, Ordering::SeqCst);
                let outcome = match got {
                    Ok(v) => match identify(&v) {
                        Some((1, round)) if v.len() == BIG => Ok(round),
                        _ => {
                            torn.push(format!("a read returned success with {}", describe(&v)));
                            continue;
                        }
                    },
                    Err(e) if stale_or_eio(&e) => Err(errno(&e)),
                    Err(e) => {
                        torn.push(format!("a read failed with {e} (not ESTALE or EIO)"));
                        continue;
                    }
                };
                reads.push(Read1 {
                    start,
                    end,
                    outcome,
                });
            }
            (reads, torn)
        })
    };
    // (round, committed at, next write began at)
    let mut quiet = Vec::new();
    for round in 1..=ROUNDS {
        let began = Instant::now();
        if let Some(last) = quiet.last_mut() {
            let (_, _, next): &mut (u32, Instant, Instant) = last;
            *next = began;
        }
        write_and_close(&a.path("c101"), &tagged(1, round, BIG))
            .unwrap_or_else(|e| panic!("round {round}: write + close in mount A: {e}"));
        let committed = Instant::now();
        quiet.push((round, committed, committed + Duration::from_secs(3600)));
        // Let the reader finish one read begun after this commit (it must see this value),
        // then start the next write while it is in the middle of another.
        let seen = attempts.load(Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(60);
        while attempts.load(Ordering::SeqCst) < seen + 2 {
            assert!(Instant::now() < deadline, "the reader is stuck");
            thread::sleep(Duration::from_millis(5));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (reads, torn) = reader.join().unwrap();
    let ok = reads.iter().filter(|r| r.outcome.is_ok()).count();
    let stale = reads
        .iter()
        .filter(|r| r.outcome == Err(libc::ESTALE))
        .count();
    let eio = reads.iter().filter(|r| r.outcome == Err(libc::EIO)).count();
    eprintln!(
        "{} reads of a 16 MiB chunk in mount B during {ROUNDS} rewrites in mount A: {ok} whole \
         values, {stale} ESTALE, {eio} EIO, {} torn or wrong",
        reads.len() + torn.len(),
        torn.len()
    );
    assert!(
        torn.is_empty(),
        "{} of {} reads in mount B were neither one whole value nor ESTALE/EIO:\n{}",
        torn.len(),
        reads.len() + torn.len(),
        torn[..torn.len().min(10)].join("\n")
    );
    // Close-to-open: a read entirely between a commit and the next write is that commit.
    let mut checked = 0;
    for r in &reads {
        if let Some((round, _, _)) = quiet
            .iter()
            .find(|(_, committed, next)| r.start >= *committed && r.end <= *next)
        {
            checked += 1;
            assert_eq!(
                r.outcome,
                Ok(*round),
                "a read begun after round {round} was committed and done before the next write \
                 began gave {:?} (Ok(round) or Err(errno))",
                r.outcome
            );
        }
    }
    assert!(
        checked >= ROUNDS as usize && ok >= ROUNDS as usize,
        "only {ok} successful reads ({checked} in quiet windows): the test did not exercise \
         close-to-open"
    );
}

/// Opens `path`, reads its first 64 KiB, runs `between`, then reads the rest: the whole of what
/// was read, or the error of the second part.
fn read_around(path: &Path, between: impl FnOnce()) -> (Vec<u8>, std::io::Result<()>) {
    let mut f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut first = vec![0u8; 64 << 10];
    f.read_exact(&mut first)
        .unwrap_or_else(|e| panic!("the first 64 KiB of {}: {e}", path.display()));
    between();
    let rest = f.read_to_end(&mut first).map(drop);
    (first, rest)
}

/// `rados put` of a new value while a reader of the mount is 64 KiB into a 16 MiB chunk: the
/// rest of its read fails with ESTALE or EIO, or it reads the old value whole; never the old
/// first 64 KiB followed by the new value.
#[test]
fn rados_put_under_an_open_reader_is_an_error_or_the_old_value() {
    const TEST: &str = "ceph_clients::rados_put_under_an_open_reader_is_an_error_or_the_old_value";
    let Some(c) = ceph_support::cluster(TEST) else {
        return;
    };
    let Some(m) = TestMount::on_ceph_cluster(TEST, c.clone(), TIMEOUTS, &[]) else {
        return;
    };
    let old = tagged(1, 1, BIG);
    let new = tagged(2, 2, BIG);
    write_file(&m.path("c201"), &old);
    let (got, rest) = read_around(&m.path("c201"), || {
        rados_put(&c, m.dir.path(), "c201", &new)
    });
    match rest {
        Ok(()) => assert!(
            got == old,
            "the read succeeded with {} (want the old value, w1r1, whole)",
            describe(&got)
        ),
        Err(e) => {
            assert!(
                stale_or_eio(&e),
                "the rest of the read failed with {e}, not ESTALE or EIO"
            );
            eprintln!("the rest of the read failed: {e}");
        }
    }
    // A new open reads the new value.
    assert!(
        read_file(&m.path("c201")) == new,
        "a new open after rados put"
    );
}

/// `rados rm` while a reader of the mount is 64 KiB into a 16 MiB chunk: the rest of its read
/// fails with ESTALE or EIO; never EOF with success after 64 KiB.
#[test]
fn rados_rm_under_an_open_reader_is_an_error() {
    const TEST: &str = "ceph_clients::rados_rm_under_an_open_reader_is_an_error";
    let Some(c) = ceph_support::cluster(TEST) else {
        return;
    };
    let Some(m) = TestMount::on_ceph_cluster(TEST, c.clone(), TIMEOUTS, &[]) else {
        return;
    };
    let old = tagged(1, 1, BIG);
    write_file(&m.path("c301"), &old);
    let (got, rest) = read_around(&m.path("c301"), || {
        c.rados(&["rm", "c301"]);
    });
    match rest {
        Ok(()) => panic!("the read succeeded after rados rm with {}", describe(&got)),
        Err(e) => assert!(
            stale_or_eio(&e),
            "the read failed with {e}, not ESTALE or EIO"
        ),
    }
    // The reader's close returned, but the kernel sends its RELEASE on its own time (a cached
    // reader has no FLUSH): until it arrives, the daemon answers a stat of the inode with the
    // size its cached reader's pages have (the kernel keeps one size per inode). Then ENOENT.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let e = loop {
        match fs::metadata(m.path("c301")) {
            Err(e) => break e,
            Ok(meta) if std::time::Instant::now() >= deadline => {
                panic!("c301 2 s after rados rm and the reader's close: {meta:?}")
            }
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    };
    assert_eq!(errno(&e), libc::ENOENT, "stat of c301 after rados rm: {e}");
}

/// `cat NAME` in `m`: Ok(stdout) on exit 0, else Err(stderr).
fn cat(m: &TestMount, name: &str) -> Result<Vec<u8>, String> {
    let out: Output = Command::new("cat").arg(m.path(name)).output().unwrap();
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `cat` of `name` in `b` right after another mount removed it: "No such file or directory", or
/// the old bytes whole; never a success with other bytes (0 of them).
#[track_caller]
fn assert_gone_or_old(b: &TestMount, name: &str, old: &[u8], what: &str) {
    match cat(b, name) {
        Ok(got) => assert!(
            got == old,
            "{what}: cat {name} in mount B succeeded with {} (want ENOENT or the old value)",
            describe(&got)
        ),
        Err(stderr) => assert!(
            stderr.contains("No such file or directory"),
            "{what}: cat {name} in mount B: {stderr}"
        ),
    }
}

/// rm and mv in mount A, then at once `cat` of the old name in mount B (which had just read it,
/// so its kernel knows the name): ENOENT or the old bytes whole, never a 0-byte success; the new
/// name of a mv reads the value whole. Small values (read whole at open) and large ones.
#[test]
fn names_removed_or_renamed_in_another_mount_are_gone_there_at_once() {
    const TEST: &str =
        "ceph_clients::names_removed_or_renamed_in_another_mount_are_gone_there_at_once";
    let Some((_c, a, b)) = two_mounts(TEST) else {
        return;
    };
    for round in 0..4u32 {
        let len = if round % 2 == 0 { SMALL } else { 1 << 20 };
        let value = tagged(1, round, len);
        let (r, x, y) = (
            format!("d1{round:02x}"),
            format!("d2{round:02x}"),
            format!("d3{round:02x}"),
        );
        write_file(&a.path(&r), &value);
        assert!(cat(&b, &r).unwrap() == value, "round {round}: B reads {r}");
        fs::remove_file(a.path(&r)).unwrap();
        assert_gone_or_old(&b, &r, &value, &format!("round {round}, rm in A"));

        write_file(&a.path(&x), &value);
        assert!(cat(&b, &x).unwrap() == value, "round {round}: B reads {x}");
        fs::rename(a.path(&x), a.path(&y)).unwrap();
        assert_gone_or_old(&b, &x, &value, &format!("round {round}, mv in A"));
        let got = cat(&b, &y).unwrap_or_else(|e| panic!("round {round}: cat {y} in B: {e}"));
        assert!(
            got == value,
            "round {round}: {y} in B after mv: {}",
            describe(&got)
        );
    }
}

/// Close-to-open across mounts: what mount A closed, mount B reads at its next open, also when B
/// read the old value just before, twice (its kernel has the old size, attributes and pages:
/// reads go through the page cache, and the second kept it), both ways; sizes grow, shrink and
/// stay (a same-size rewrite differs only in its version); and a name B looked up while it did
/// not exist, once A created it.
#[test]
fn two_mounts_see_each_others_closed_values_at_the_next_open() {
    const TEST: &str = "ceph_clients::two_mounts_see_each_others_closed_values_at_the_next_open";
    let Some((_c, a, b)) = two_mounts(TEST) else {
        return;
    };
    write_file(&a.path("e101"), &tagged(1, 0, SMALL));
    let sizes = [
        SMALL,
        SMALL,
        64 << 10,
        64 << 10,
        100,
        3 << 20,
        3 << 20,
        SMALL / 2,
        1 << 20,
        8,
    ];
    for (round, &len) in sizes.iter().enumerate() {
        let round = round as u32 + 1;
        for (w, r, who) in [(&a, &b, "A -> B"), (&b, &a, "B -> A")] {
            let value = tagged(1, round, len);
            let before = read_file(&r.path("e101"));
            assert!(
                read_file(&r.path("e101")) == before,
                "round {round}: two reads differ"
            );
            write_file(&w.path("e101"), &value);
            let got = read_file(&r.path("e101"));
            assert!(
                got == value,
                "round {round} ({who}): the next open reads {} (want w1r{round}, {} bytes; \
                 it had read {} just before)",
                describe(&got),
                value.len(),
                describe(&before)
            );
            // The open revalidated the attributes too (the kernel clamps cached reads at them).
            let size = fs::metadata(r.path("e101")).unwrap().len();
            assert_eq!(
                size,
                value.len() as u64,
                "round {round} ({who}): stat after the open that read the new value"
            );
        }
    }
    // A name B looked up while it did not exist: A creates it, B's next open reads it.
    let e = fs::metadata(b.path("e102")).expect_err("e102 before it was written");
    assert_eq!(errno(&e), libc::ENOENT);
    let value = tagged(2, 1, SMALL);
    write_file(&a.path("e102"), &value);
    match fs::read(b.path("e102")) {
        Ok(got) => assert!(got == value, "e102 in B: {}", describe(&got)),
        Err(e) => panic!("B's next open of e102, created by A after B looked it up: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Pools of their own: a quota, a deletion.

/// Runs `ceph -c CONF ARGS`, with a bound on how long it may take.
fn ceph(conf: &Path, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("60")
        .arg("ceph")
        .arg("-c")
        .arg(conf)
        .args(args)
        .output()
        .expect("run ceph (package ceph-common)")
}

/// Runs `ceph ARGS`, asserting success.
fn ceph_ok(conf: &Path, args: &[&str]) {
    let out = ceph(conf, args);
    assert!(
        out.status.success(),
        "ceph {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A pool made for one test, deleted when dropped.
struct OwnPool {
    conf: std::path::PathBuf,
    name: String,
}

impl OwnPool {
    fn create(conf: &Path, what: &str) -> OwnPool {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("cloudstore-{what}-{}-{nanos}", std::process::id());
        let pool = OwnPool {
            conf: conf.to_path_buf(),
            name,
        };
        pool.make();
        pool
    }

    /// `ceph osd pool create` (again, after a deletion) and its application tag.
    fn make(&self) {
        ceph_ok(&self.conf, &["osd", "pool", "create", &self.name, "8", "8"]);
        ceph_ok(
            &self.conf,
            &["osd", "pool", "application", "enable", &self.name, "rados"],
        );
    }

    fn delete(&self) {
        ceph_ok(
            &self.conf,
            &[
                "osd",
                "pool",
                "delete",
                &self.name,
                &self.name,
                "--yes-i-really-really-mean-it",
            ],
        );
    }

    /// The pool's flags (`full`, `full_quota`, ...), from `ceph osd pool ls detail`; `None` when
    /// the pool does not exist.
    fn flags(&self) -> Option<Vec<String>> {
        let out = ceph(&self.conf, &["osd", "pool", "ls", "detail"]);
        assert!(out.status.success(), "ceph osd pool ls detail: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let quoted = format!("'{}'", self.name);
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(2) == Some(quoted.as_str()))?;
        let flags = line
            .split_whitespace()
            .skip_while(|w| *w != "flags")
            .nth(1)
            .unwrap_or("");
        Some(flags.split(',').map(str::to_string).collect())
    }

    /// Waits until the pool has `flag` (or has not, when `present` is false); returns how long
    /// it took. The flags come from the manager's statistics: seconds (`--mgr` cluster).
    fn wait_flag(&self, flag: &str, present: bool) -> Duration {
        let start = Instant::now();
        let bound = Duration::from_secs(90);
        loop {
            let flags = self.flags().unwrap_or_default();
            if flags.iter().any(|f| f == flag) == present {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < bound,
                "pool {} {} flag {flag} after {bound:?} (flags: {flags:?}); is a ceph-mgr \
                 running? (scripts/ceph-cluster.sh start DIR --mgr)",
                self.name,
                if present { "still lacks" } else { "still has" },
            );
            thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for OwnPool {
    fn drop(&mut self) {
        let _ = ceph(
            &self.conf,
            &[
                "osd",
                "pool",
                "delete",
                &self.name,
                &self.name,
                "--yes-i-really-really-mean-it",
            ],
        );
    }
}

/// A write + close that would grow a full pool: the errno, the time, and whether the old value
/// stayed. (Ceph refuses only writes that add bytes or objects to a full pool: a rewrite that
/// does not grow it still succeeds, as the quota test shows.)
#[track_caller]
fn assert_refused_at_once(m: &TestMount, name: &str, old: Option<&[u8]>, want: i32, what: &str) {
    let path = m.path(name);
    let start = Instant::now();
    let result = write_and_close(&path, &tagged(9, 9, 128 << 10));
    let took = start.elapsed();
    eprintln!("{what}: write + close of {name}: {result:?} after {took:.2?}");
    let e = result.expect_err(&format!("{what}: write + close of {name} succeeded"));
    assert_eq!(
        errno(&e),
        want,
        "{what}: write + close of {name} failed with {e} after {took:.2?}, want errno {want}"
    );
    assert!(
        took < AT_ONCE,
        "{what}: the refusal of {name} took {took:.2?} (one round trip expected, not a timeout)"
    );
    match old {
        Some(old) => assert!(read_file(&path) == old, "{what}: {name} lost its old value"),
        None => {
            let e = fs::metadata(&path).expect_err("a refused new chunk exists");
            assert_eq!(errno(&e), libc::ENOENT, "{what}: stat of refused {name}");
        }
    }
}

/// `rm` through the mount of a full pool: succeeds, quickly.
#[track_caller]
fn assert_rm_works(m: &TestMount, name: &str, what: &str) {
    let start = Instant::now();
    let result = fs::remove_file(m.path(name));
    let took = start.elapsed();
    eprintln!("{what}: rm {name}: {result:?} after {took:.2?}");
    result.unwrap_or_else(|e| panic!("{what}: rm {name} failed after {took:.2?}: {e}"));
    assert!(took < AT_ONCE, "{what}: rm {name} took {took:.2?}");
}

/// A pool quota reached (max_objects, then max_bytes): a write + close fails with EDQUOT at once
/// (under 2 s with a 10 s op timeout; one round trip is ~1 ms) and the chunk keeps its old value (a new name stays absent); rm through the mount works
/// while the pool is full and frees the space, after which writes work again.
#[test]
fn a_pool_quota_is_edquot_at_once_and_rm_frees_space() {
    const TEST: &str = "ceph_clients::a_pool_quota_is_edquot_at_once_and_rm_frees_space";
    let Some(env) = ceph_support::cluster(TEST) else {
        return;
    };
    if !common::mount::fuse_available(TEST) {
        return;
    }
    let pool = OwnPool::create(&env.conf, "quota");
    let cluster = TestCluster {
        pool: pool.name.clone(),
        ..env
    };
    let Some(m) = TestMount::on_ceph_cluster(TEST, cluster, QUOTA_TIMEOUTS, &[]) else {
        return;
    };
    let values: Vec<Vec<u8>> = (0..3).map(|i| tagged(1, i, 64 << 10)).collect();
    for (i, v) in values.iter().enumerate() {
        write_file(&m.path(&format!("f1{i:02x}")), v);
    }

    // max_objects: the pool's objects (the 3 chunks and the mount's records beside the
    // keyspace, such as the directory's mtime: an fsync of the directory writes it now), quota
    // that many.
    File::open(&m.mnt).unwrap().sync_all().unwrap();
    let listed = Command::new("rados")
        .arg("-c")
        .arg(&pool.conf)
        .args(["-p", &pool.name, "ls", "--all"])
        .output()
        .expect("rados ls");
    assert!(listed.status.success(), "rados ls: {listed:?}");
    let objects = String::from_utf8_lossy(&listed.stdout).lines().count();
    assert!(objects >= 3, "{objects} objects in pool {}", pool.name);
    ceph_ok(
        &pool.conf,
        &[
            "osd",
            "pool",
            "set-quota",
            &pool.name,
            "max_objects",
            &objects.to_string(),
        ],
    );
    let took = pool.wait_flag("full_quota", true);
    eprintln!("max_objects 3: the pool is full_quota after {took:.1?}");
    // Ceph's rule: a rewrite that adds no object and no byte goes through a full pool.
    let same_size = tagged(1, 7, 64 << 10);
    write_and_close(&m.path("f101"), &same_size)
        .unwrap_or_else(|e| panic!("a same-size rewrite in a full pool: {e}"));
    assert!(read_file(&m.path("f101")) == same_size);
    write_and_close(&m.path("f101"), &values[1])
        .unwrap_or_else(|e| panic!("a same-size rewrite in a full pool: {e}"));
    assert_refused_at_once(&m, "f100", Some(&values[0]), libc::EDQUOT, "max_objects");
    assert_refused_at_once(&m, "f1ff", None, libc::EDQUOT, "max_objects");
    assert_rm_works(&m, "f102", "max_objects");
    let took = pool.wait_flag("full_quota", false);
    eprintln!("rm freed the quota after {took:.1?}");
    write_and_close(&m.path("f102"), &values[2])
        .unwrap_or_else(|e| panic!("write after rm freed the quota: {e}"));
    assert!(read_file(&m.path("f102")) == values[2]);
    ceph_ok(
        &pool.conf,
        &["osd", "pool", "set-quota", &pool.name, "max_objects", "0"],
    );

    // max_bytes: 3 x 64 KiB stored, quota 128 KiB.
    ceph_ok(
        &pool.conf,
        &[
            "osd",
            "pool",
            "set-quota",
            &pool.name,
            "max_bytes",
            "131072",
        ],
    );
    let took = pool.wait_flag("full_quota", true);
    eprintln!("max_bytes 128 KiB: the pool is full_quota after {took:.1?}");
    assert_refused_at_once(&m, "f101", Some(&values[1]), libc::EDQUOT, "max_bytes");
    assert_rm_works(&m, "f100", "max_bytes");
    assert_rm_works(&m, "f101", "max_bytes");
    let took = pool.wait_flag("full_quota", false);
    eprintln!("rm freed the quota after {took:.1?}");
    write_and_close(&m.path("f103"), &values[0])
        .unwrap_or_else(|e| panic!("write after rm freed the quota: {e}"));
    assert!(read_file(&m.path("f103")) == values[0]);
    let names: Vec<String> = fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, ["f102", "f103"], "ls at the end");
}

/// `ls MNT`: exit status, stdout, stderr.
fn ls(m: &TestMount) -> (Option<i32>, String, String) {
    let out = Command::new("ls").arg("-l").arg(&m.mnt).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The pool under a mount deleted (`ceph osd pool delete`): ls, cat and write + close fail
/// (never an empty directory with exit 0, never ENOENT-as-success), the log names the pool and
/// `stats` counts the failures; the pool created again under the same name is then either
/// picked up by the same mount (a write and a read work, ls shows only the new chunk) or the
/// log says the mount must be remounted.
#[test]
fn a_deleted_pool_is_an_error_on_every_operation() {
    const TEST: &str = "ceph_clients::a_deleted_pool_is_an_error_on_every_operation";
    let Some(env) = ceph_support::cluster(TEST) else {
        return;
    };
    if !common::mount::fuse_available(TEST) {
        return;
    }
    let pool = OwnPool::create(&env.conf, "deleted");
    let cluster = TestCluster {
        pool: pool.name.clone(),
        ..env
    };
    let Some(m) = TestMount::on_ceph_cluster(TEST, cluster, TIMEOUTS, &[]) else {
        return;
    };
    let value = tagged(1, 1, 64 << 10);
    write_file(&m.path("a101"), &value);
    assert!(read_file(&m.path("a101")) == value);

    pool.delete();
    assert!(pool.flags().is_none(), "the pool still exists");
    // The daemon learns of the deletion with its next osdmap: give it a moment.
    thread::sleep(Duration::from_secs(2));

    let start = Instant::now();
    let (code, stdout, stderr) = ls(&m);
    eprintln!(
        "ls -l with the pool deleted: exit {code:?} after {:.2?}: {stdout}{stderr}",
        start.elapsed()
    );
    assert_ne!(
        code,
        Some(0),
        "ls -l of the mount succeeded with the pool deleted: {stdout:?}"
    );
    let start = Instant::now();
    let got = fs::read(m.path("a101"));
    eprintln!(
        "read with the pool deleted: {:?} after {:.2?}",
        got.as_ref().map(|v| v.len()),
        start.elapsed()
    );
    assert!(
        got.is_err(),
        "a read succeeded with the pool deleted: {}",
        describe(&got.unwrap())
    );
    let start = Instant::now();
    let written = write_and_close(&m.path("a102"), &value);
    eprintln!(
        "write + close with the pool deleted: {written:?} after {:.2?}",
        start.elapsed()
    );
    assert!(
        written.is_err(),
        "a write + close succeeded with the pool deleted"
    );
    let log = fs::read_to_string(m.log_path()).unwrap();
    assert!(
        log.lines().any(|l| l.contains(&pool.name)
            && ["exist", "deleted", "gone", "removed"]
                .iter()
                .any(|w| l.contains(w))),
        "no log line names pool {} and says it is gone:\n{}",
        pool.name,
        m.log_tail()
    );
    let stats = Command::new(BIN).arg("stats").arg(&m.mnt).output().unwrap();
    let stats = String::from_utf8_lossy(&stats.stdout).into_owned();
    let errors: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("errors_total: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no errors_total in stats:\n{stats}"));
    assert!(
        errors >= 2,
        "stats count {errors} errors after a failed read and a failed commit:\n{stats}"
    );

    // Created again (empty): the same mount works on it, or says to remount.
    pool.make();
    let deadline = Instant::now() + Duration::from_secs(30);
    let picked_up = loop {
        if write_and_close(&m.path("a103"), &value).is_ok() {
            break true;
        }
        let log = fs::read_to_string(m.log_path()).unwrap();
        if log
            .lines()
            .any(|l| l.contains(&pool.name) && l.contains("remount"))
        {
            break false;
        }
        assert!(
            Instant::now() < deadline,
            "30 s after the pool was created again, writes still fail and the log does not \
             say to remount:\n{}",
            m.log_tail()
        );
        thread::sleep(Duration::from_millis(500));
    };
    if picked_up {
        assert!(read_file(&m.path("a103")) == value, "a103 in the new pool");
        let names: Vec<String> = fs::read_dir(&m.mnt)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["a103"], "ls of the new pool");
        eprintln!("the mount picked up the pool created again");
    } else {
        eprintln!("the mount says it must be remounted");
    }
}
