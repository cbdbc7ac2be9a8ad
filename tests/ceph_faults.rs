//! Ceph faults through real FUSE mounts of the built binary, on the 3-OSD cephx test cluster
//! (`scripts/ceph-cluster.sh start DIR --osds 3 --cephx`: pools of size 3 / min_size 2, named by
//! CLOUDSTORE_TEST_CEPH_FAULT_DIR / _CONF / _LIMITED_CONF; scripts/test.sh starts it):
//! - one OSD killed with -9 under a read/write workload: no operation fails, every acknowledged
//!   value reads back, and the restarted OSD rejoins (every PG active+clean);
//! - the whole cluster frozen (SIGSTOP: connections stay open, nothing answers): read, write +
//!   close, stat, ls, statfs and fsync fail with EIO or ETIMEDOUT within the configured timeout
//!   (all at once: no commit waits for another key's), a new mount fails within the connect
//!   timeout, the daemon stays up,
//!   unmount finishes; thawed, the same mount works again;
//! - a write whose outcome is unknown (its replicas frozen after the primary applied it) is
//!   reported by close() as an error, never as success;
//! - cephx: a client whose key may use one pool mounts that pool and works; another pool and a
//!   wrong key are refused at mount with a clear message; a missing keyring is named;
//! - one op timeout per call: with the cluster frozen, cat, cp and rm each fail within one op
//!   timeout; with the OSDs frozen, the CLI's get and ls and a new mount wait one, not two;
//! - the cluster past its full ratio: a write + close is ENOSPC at once, rm still works.
//!
//! The tests break the cluster they share, so they take turns (a static mutex), and each leaves
//! it thawed with every OSD running, also when it fails. They need root and /dev/fuse.

mod ceph_support;
mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use ceph_support::{fault_cluster, FaultCluster, TestCluster, LIMITED_USER};
use common::files::{
    close, describe, errno, identify, read_file, tagged, write_file, write_in_pieces,
};
use common::mount::{fuse_available, TestMount, BIN};

/// The client timeouts of the mounts that meet a stopped cluster.
const TIMEOUT: Duration = Duration::from_secs(4);
/// What a failure may take beyond its timeouts on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(4);
/// A configuration file giving a mount the short timeouts.
const SHORT_TIMEOUTS: &str = "[ceph]\nop_timeout_secs = 4\nconnect_timeout_secs = 4\n";
/// How long the cluster may take to be active+clean again (an OSD restarted, a thaw).
const CLEAN_BOUND: Duration = Duration::from_secs(90);

static CLUSTER: Mutex<()> = Mutex::new(());

/// Exclusive use of the fault cluster. Dropped (also on a panic), it thaws every daemon and
/// starts the OSDs the test killed, so the next test finds a working cluster.
struct Faults {
    cluster: FaultCluster,
    killed: Vec<u32>,
    _turn: MutexGuard<'static, ()>,
}

impl Faults {
    /// Waits for our turn, then for a clean cluster; `None` (after SKIPPED) without the fault
    /// cluster or FUSE.
    fn take(test: &str) -> Option<Faults> {
        let cluster = fault_cluster(test)?;
        if !fuse_available(test) {
            return None;
        }
        let turn = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
        let took = cluster.wait_clean(CLEAN_BOUND);
        eprintln!("{test}: the fault cluster was clean after {took:.1?}");
        Some(Faults {
            cluster,
            killed: Vec::new(),
            _turn: turn,
        })
    }

    fn kill_osd(&mut self, id: u32) {
        self.cluster.kill_osd(id);
        self.killed.push(id);
    }

    fn start_osd(&mut self, id: u32) {
        self.cluster.start_osd(id);
        self.killed.retain(|&k| k != id);
    }

    /// The cluster for a mount as client.admin in a namespace of `test`'s own.
    fn admin(&self, test: &str) -> TestCluster {
        self.cluster
            .test_cluster(test, &self.cluster.conf, &self.cluster.pool)
    }
}

impl Drop for Faults {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ceph-cluster.sh");
        let run = |args: &[String]| {
            let _ = Command::new(script)
                .args(args)
                .stdout(std::process::Stdio::null())
                .status();
        };
        let dir = self.cluster.dir.display().to_string();
        run(&["thaw".into(), dir.clone()]);
        for id in std::mem::take(&mut self.killed) {
            run(&["start-osd".into(), dir.clone(), id.to_string()]);
        }
    }
}

/// Runs `op` on a thread and returns its result and how long it took; panics when it has not
/// returned after `deadline` (a hang: the test must fail, not wait forever).
fn timed<T: Send + 'static>(
    what: &str,
    deadline: Duration,
    op: impl FnOnce() -> T + Send + 'static,
) -> (T, Duration) {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let start = Instant::now();
        let out = op();
        let _ = tx.send((out, start.elapsed()));
    });
    rx.recv_timeout(deadline)
        .unwrap_or_else(|_| panic!("{what} has not returned after {deadline:?}: it hangs"))
}

/// Asserts that `result` is an EIO or ETIMEDOUT failure that came within `timeouts` x TIMEOUT
/// + SLACK: 1 for one store call; 2 for a commit, which may first wait for the batch in flight
///   (group commit: one batch at a time), then fail in its own.
#[track_caller]
fn assert_timely_failure<T: std::fmt::Debug>(
    what: &str,
    result: &std::io::Result<T>,
    took: Duration,
    timeouts: u32,
) {
    let bound = TIMEOUT * timeouts + SLACK;
    eprintln!(
        "{what}: {:?} after {took:.2?} (timeout {TIMEOUT:?}, bound {bound:?})",
        result.as_ref().map_err(errno),
    );
    match result {
        Ok(v) => panic!("{what} succeeded with the cluster stopped: {v:?}"),
        Err(e) => assert!(
            [libc::EIO, libc::ETIMEDOUT].contains(&errno(e)),
            "{what}: {e} (errno {}), expected EIO or ETIMEDOUT",
            errno(e)
        ),
    }
    assert!(
        took <= bound,
        "{what} took {took:?}, more than {timeouts} x the timeout {TIMEOUT:?} + {SLACK:?}"
    );
}

/// statfs(2) of `path`: its block counts, or the error.
fn statfs(path: &Path) -> std::io::Result<String> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string and an out-struct on the stack.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(format!("{} blocks, {} free", st.f_blocks, st.f_bfree))
}

/// Whether process `pid` exists.
fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// A chunk's value as the store holds it (`cloudstore-fs get` with the mount's options).
fn stored(m: &mut TestMount, name: &str) -> Vec<u8> {
    let out = m.cli(&["get", name]);
    assert!(
        out.status.success(),
        "cloudstore-fs get {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

// ---------------------------------------------------------------------------------------------

/// Writers and readers through the mount while osd.1 is killed with -9 and later restarted.
#[test]
fn one_osd_killed_under_load_loses_nothing() {
    const TEST: &str = "ceph_faults::one_osd_killed_under_load_loses_nothing";
    const NAMES: usize = 24;
    const WRITERS: usize = 4;
    const READERS: usize = 2;
    let Some(mut faults) = Faults::take(TEST) else {
        return;
    };
    let Some(mut m) = TestMount::on_ceph_cluster(TEST, faults.admin(TEST), "", &[]) else {
        return;
    };
    let name = |i: usize| format!("fa{i:02x}");
    // Value lengths vary by round: 8 KiB to ~200 KiB, whole 8-byte words.
    let len = |round: u32| 8192 + (round as usize * 12_344) % (192 << 10) / 8 * 8;
    // Each name has one writer (i % WRITERS), so the last value it acknowledged is what the name
    // must hold at the end. Round 0 is written before the fault.
    for i in 0..NAMES {
        write_file(&m.path(&name(i)), &tagged((i % WRITERS) as u16, 0, len(0)));
    }

    let stop = Arc::new(AtomicBool::new(false));
    // 0: before the kill, 1: one OSD down, 2: restarted
    let phase = Arc::new(AtomicU32::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (stop, phase, mnt) = (stop.clone(), phase.clone(), m.mnt.clone());
        writers.push(thread::spawn(move || {
            let mine: Vec<usize> = (w..NAMES).step_by(WRITERS).collect();
            let mut last = vec![0u32; NAMES];
            let mut done = [0u32; 3];
            let mut failures = Vec::new();
            let mut slowest = Duration::ZERO;
            let mut round = 0u32;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let i = mine[round as usize % mine.len()];
                let start = Instant::now();
                let out = write_in_pieces(
                    &mnt.join(name(i)),
                    &tagged(w as u16, round, len(round)),
                    64 << 10,
                    true,
                );
                slowest = slowest.max(start.elapsed());
                if out.ok() {
                    last[i] = round;
                    done[phase.load(Ordering::Relaxed) as usize] += 1;
                } else {
                    failures.push(format!("writer {w}: {} round {round}: {out:?}", name(i)));
                }
            }
            (last, done, failures, slowest)
        }));
    }
    let mut readers = Vec::new();
    for r in 0..READERS {
        let (stop, mnt) = (stop.clone(), m.mnt.clone());
        readers.push(thread::spawn(move || {
            let mut reads = 0u32;
            let mut failures = Vec::new();
            let mut slowest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let i = (reads as usize * 7 + r * 5) % NAMES;
                reads += 1;
                let start = Instant::now();
                match fs::read(mnt.join(name(i))) {
                    Ok(v) => match identify(&v) {
                        Some((w, _)) if w as usize == i % WRITERS => {}
                        _ => failures.push(format!("reader {r}: {} is {}", name(i), describe(&v))),
                    },
                    Err(e) => failures.push(format!("reader {r}: read {}: {e}", name(i))),
                }
                slowest = slowest.max(start.elapsed());
            }
            (reads, failures, slowest)
        }));
    }

    thread::sleep(Duration::from_secs(2));
    let killed_at = Instant::now();
    faults.kill_osd(1);
    phase.store(1, Ordering::Relaxed);
    thread::sleep(Duration::from_secs(5));
    faults.start_osd(1);
    phase.store(2, Ordering::Relaxed);
    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);

    let mut last = [0u32; NAMES];
    let mut failures = Vec::new();
    let mut per_phase = [0u32; 3];
    let mut least_while_down = u32::MAX;
    let mut slowest = Duration::ZERO;
    for h in writers {
        let (l, done, f, s) = h.join().unwrap();
        for (mine, theirs) in last.iter_mut().zip(l) {
            *mine = (*mine).max(theirs);
        }
        for (total, n) in per_phase.iter_mut().zip(done) {
            *total += n;
        }
        least_while_down = least_while_down.min(done[1]);
        failures.extend(f);
        slowest = slowest.max(s);
    }
    let mut reads = 0;
    let mut slowest_read = Duration::ZERO;
    for h in readers {
        let (n, f, s) = h.join().unwrap();
        reads += n;
        failures.extend(f);
        slowest_read = slowest_read.max(s);
    }
    eprintln!(
        "acknowledged writes: {} before the kill, {} with osd.1 down, {} after its restart; \
         {reads} whole reads; slowest write+close {slowest:.2?}, slowest read {slowest_read:.2?}",
        per_phase[0], per_phase[1], per_phase[2]
    );
    assert!(
        failures.is_empty(),
        "{} operations failed or read a torn value:\n{}\ndaemon log:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n"),
        m.log_tail()
    );
    assert!(
        least_while_down >= 3,
        "a writer had only {least_while_down} writes acknowledged while osd.1 was down: the \
         workload did not run through the fault"
    );

    // Every acknowledged value reads back: through the mount and from the store itself.
    for (i, &round) in last.iter().enumerate() {
        let want = tagged((i % WRITERS) as u16, round, len(round));
        let got = read_file(&m.path(&name(i)));
        assert!(
            got == want,
            "{} through the mount: {}; want round {round}",
            name(i),
            describe(&got),
        );
        let got = stored(&mut m, &name(i));
        assert!(
            got == want,
            "{} in the store: {}; want round {round}",
            name(i),
            describe(&got),
        );
    }

    // The restarted OSD rejoins: up and in, every PG active+clean.
    let took = faults.cluster.wait_clean(CLEAN_BOUND);
    eprintln!(
        "osd.1 up and in, every PG active+clean {took:.1?} after the workload stopped \
         ({:.1?} after the kill)",
        killed_at.elapsed()
    );
    m.unmount();
}

/// The whole cluster frozen: each operation fails in time, the daemon stays up; thawed, the same
/// mount works again; frozen once more, unmount finishes.
#[test]
fn a_stopped_cluster_fails_in_time_and_the_mount_recovers() {
    const TEST: &str = "ceph_faults::a_stopped_cluster_fails_in_time_and_the_mount_recovers";
    let Some(faults) = Faults::take(TEST) else {
        return;
    };
    let Some(mut m) = TestMount::on_ceph_cluster(TEST, faults.admin(TEST), SHORT_TIMEOUTS, &[])
    else {
        return;
    };
    let pid = m.daemon_pid().expect("the daemon's pid");
    // A chunk the daemon has never read (stored by the CLI), opened but not read yet; files
    // opened for writing (new values, so that no write needs the old one); a committed chunk.
    let unread = tagged(1, 1, 300 << 10);
    fs::write(m.outside("unread"), &unread).unwrap();
    let out = m.cli(&["put", "ab01", m.outside("unread").to_str().unwrap()]);
    assert!(out.status.success(), "put: {out:?}");
    let committed = tagged(4, 1, 100 << 10);
    write_file(&m.path("ab04"), &committed);
    let opened = |name: &str| {
        let p = m.path(name);
        move || {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(p)
                .unwrap()
        }
    };
    let reader = {
        let p = m.path("ab01");
        move || File::open(p).unwrap()
    };
    let (unknown, dir) = (m.path("abff"), m.mnt.clone());
    let ops = [
        stage("read of a chunk not read before", 1, reader, |mut f| {
            let mut buf = vec![0u8; 64 << 10];
            f.read(&mut buf).map(|n| format!("{n} bytes"))
        }),
        stage("write + close", 1, opened("ab02"), |mut f| {
            f.write_all(&tagged(2, 1, 64 << 10))?;
            close(f).map(|()| "closed".into())
        }),
        stage(
            "stat of an unknown name",
            1,
            || (),
            move |()| fs::metadata(unknown).map(|md| format!("{md:?}")),
        ),
        stage(
            "ls",
            1,
            || (),
            move |()| {
                let names: std::io::Result<Vec<_>> = fs::read_dir(dir)?.collect();
                names.map(|n| format!("{} names", n.len()))
            },
        ),
        stage("statfs (df)", 1, || (), {
            let dir = m.mnt.clone();
            move |()| statfs(&dir)
        }),
        stage("write + fsync", 1, opened("ab03"), |mut f| {
            f.write_all(&tagged(3, 1, 64 << 10))?;
            f.sync_all().map(|()| "synced".into())
        }),
    ];

    faults.cluster.freeze(&[]);
    let deadline = Instant::now() + TIMEOUT * 3 + Duration::from_secs(30);
    // All at once, as programs would; each is timed on its own.
    for op in &ops {
        op.start();
    }
    for op in &ops {
        let (result, took) = op.result(deadline);
        assert_timely_failure(op.what, &result, took, op.timeouts);
    }
    // A new mount meanwhile: the monitors do not answer either (their port still accepts), so
    // it fails within the connect timeout, saying so.
    let second = m.outside("mnt2");
    fs::create_dir(&second).unwrap();
    let (args, log) = (m.store_args().to_vec(), m.outside("second-mount.log"));
    let (out, took) = timed(
        "a new mount with the cluster stopped",
        TIMEOUT * 3 + Duration::from_secs(30),
        {
            let second = second.clone();
            move || {
                Command::new(BIN)
                    .arg("mount")
                    .args(&args)
                    .arg("--daemon")
                    .arg(&second)
                    .env("CLOUDSTORE_FS_LOG", log)
                    .output()
                    .unwrap()
            }
        },
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "a new mount with the cluster stopped: {} after {took:.2?}: {stderr}",
        out.status
    );
    if out.status.success() {
        let _ = cloudstore_fs::mount::unmount(&second);
        panic!("a new mount succeeded with the cluster stopped");
    }
    assert!(
        stderr.contains("cannot connect to the monitors")
            && stderr.contains("as client.admin within 4s"),
        "the failed mount does not say why: {stderr}"
    );
    assert!(took <= TIMEOUT + SLACK, "the failed mount took {took:?}");
    assert!(alive(pid), "the daemon (pid {pid}) died:\n{}", m.log_tail());
    let log = fs::read_to_string(m.log_path()).unwrap();
    assert!(
        log.contains("ab02") && log.contains("no answer from the cluster within 4s"),
        "the daemon log names neither the failed commit of ab02 nor the timeout:\n{}",
        m.log_tail()
    );

    faults.cluster.thaw();
    let took = faults.cluster.wait_clean(CLEAN_BOUND);
    eprintln!("thawed: clean after {took:.1?}");
    // The same mount, no remount: reads and writes work again.
    let deadline = TIMEOUT * 3 + Duration::from_secs(30);
    let (_, took) = timed("the first write after the thaw", deadline, {
        let p = m.path("ab05");
        move || write_file(&p, &tagged(5, 1, 200 << 10))
    });
    eprintln!("first write + close after the thaw: {took:.2?}");
    assert!(read_file(&m.path("ab05")) == tagged(5, 1, 200 << 10));
    assert!(read_file(&m.path("ab01")) == unread, "ab01 after the thaw");
    assert!(
        read_file(&m.path("ab04")) == committed,
        "ab04 after the thaw"
    );
    let names: Vec<String> = fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for n in ["ab01", "ab04", "ab05"] {
        assert!(names.iter().any(|x| x == n), "ls after the thaw: {names:?}");
    }

    // Frozen again: unmount finishes and the daemon exits, within the bound.
    faults.cluster.freeze(&[]);
    let mnt = m.mnt.clone();
    let (out, took) = timed("unmount with the cluster stopped", deadline, move || {
        Command::new(BIN).arg("unmount").arg(&mnt).output().unwrap()
    });
    m.mark_unmounted();
    eprintln!(
        "unmount with the cluster stopped: {:?} after {took:.2?}",
        out.status
    );
    assert!(
        out.status.success(),
        "unmount: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took <= TIMEOUT + SLACK, "unmount took {took:?}");
    let start = Instant::now();
    assert!(
        cloudstore_fs::mount::wait_for_exit(pid, TIMEOUT + SLACK),
        "the daemon still runs {:?} after unmount with the cluster stopped:\n{}",
        TIMEOUT + SLACK,
        m.log_tail()
    );
    eprintln!("the daemon exited {:.2?} after unmount", start.elapsed());
}

/// An operation prepared on a thread of its own, run there when told to.
struct Staged {
    what: &'static str,
    /// Store timeouts the operation may wait through (see [`assert_timely_failure`]).
    timeouts: u32,
    go: mpsc::Sender<()>,
    done: mpsc::Receiver<(std::io::Result<String>, Duration)>,
}

/// Runs `prepare` on a new thread (returning once it has), and `op` on its result there when
/// [`Staged::start`] says so. A file is opened and closed by one thread: the daemon publishes at
/// a close by the thread that opened the file (FUSE names the thread), so a close by another
/// thread of the same process would return 0 and leave the commit to release.
fn stage<S: 'static>(
    what: &'static str,
    timeouts: u32,
    prepare: impl FnOnce() -> S + Send + 'static,
    op: impl FnOnce(S) -> std::io::Result<String> + Send + 'static,
) -> Staged {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    let (done_tx, done) = mpsc::channel();
    thread::spawn(move || {
        let state = prepare();
        let _ = ready_tx.send(());
        if go_rx.recv().is_err() {
            return;
        }
        let start = Instant::now();
        let out = op(state);
        let _ = done_tx.send((out, start.elapsed()));
    });
    ready_rx
        .recv()
        .unwrap_or_else(|_| panic!("preparing {what} failed"));
    Staged {
        what,
        timeouts,
        go,
        done,
    }
}

impl Staged {
    fn start(&self) {
        self.go.send(()).unwrap();
    }

    /// The result and duration of the operation; panics when it has not returned by `deadline`.
    fn result(&self, deadline: Instant) -> (std::io::Result<String>, Duration) {
        self.done
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("{} hangs with the cluster stopped", self.what))
    }
}

/// The acting OSDs of an object (`ceph osd map`), primary first.
fn acting_osds(cluster: &FaultCluster, namespace: &str, object: &str) -> Vec<u32> {
    let out = Command::new("ceph")
        .arg("-c")
        .arg(&cluster.conf)
        .args(["osd", "map", &cluster.pool, object, namespace])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // "... -> up ([1,0,2], p1) acting ([1,0,2], p1)"
    let list = text
        .split("acting ([")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .unwrap_or_else(|| {
            panic!(
                "ceph osd map: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    list.split(',').map(|n| n.trim().parse().unwrap()).collect()
}

/// The replicas of a chunk frozen after its primary applied a write: the outcome is unknown
/// when the client's timeout fires, and close() must say the write failed.
#[test]
fn a_write_with_an_unknown_outcome_is_an_error() {
    const TEST: &str = "ceph_faults::a_write_with_an_unknown_outcome_is_an_error";
    let Some(faults) = Faults::take(TEST) else {
        return;
    };
    let cluster = faults.admin(TEST);
    let namespace = cluster.namespace.clone();
    let Some(mut m) = TestMount::on_ceph_cluster(TEST, cluster, SHORT_TIMEOUTS, &[]) else {
        return;
    };
    let old = tagged(1, 1, 256 << 10);
    let new = tagged(2, 2, 1 << 20);
    write_file(&m.path("cd01"), &old);
    let writer = stage(
        "close() of a write whose replicas are frozen",
        1,
        {
            let (p, new) = (m.path("cd01"), new.clone());
            move || {
                let mut f = OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(p)
                    .unwrap();
                f.write_all(&new).unwrap();
                f
            }
        },
        |f| close(f).map(|()| "closed".into()),
    );

    // Freeze the two replicas: the primary applies the write and waits for them, and with one
    // OSD of three the PG is below min_size, so nothing can complete it before the timeout.
    let acting = acting_osds(&faults.cluster, &namespace, "cd01");
    assert_eq!(acting.len(), 3, "acting set of cd01: {acting:?}");
    let replicas: Vec<String> = acting[1..].iter().map(|id| format!("osd.{id}")).collect();
    let replicas: Vec<&str> = replicas.iter().map(String::as_str).collect();
    eprintln!(
        "cd01: primary osd.{}, freezing {replicas:?} before close()",
        acting[0]
    );
    faults.cluster.freeze(&replicas);
    writer.start();
    let (result, took) = writer.result(Instant::now() + TIMEOUT * 3 + Duration::from_secs(30));
    assert_timely_failure(writer.what, &result, took, writer.timeouts);
    let log = fs::read_to_string(m.log_path()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("cd01") && l.contains("no answer from the cluster within 4s"))
        .unwrap_or_else(|| panic!("no log line names cd01 and the timeout:\n{}", m.log_tail()));
    eprintln!("daemon log: {line}");
    let commit = log
        .lines()
        .find(|l| l.contains("commit cd01"))
        .unwrap_or_else(|| panic!("no log line for the commit of cd01:\n{}", m.log_tail()));
    assert!(
        commit.contains("the outcome is unknown") && !commit.contains("keeps its previous value"),
        "the failed commit's log line must say its outcome is unknown: {commit}"
    );

    // Thawed, the chunk holds one whole value: the old one or the unacknowledged new one.
    faults.cluster.thaw();
    let took = faults.cluster.wait_clean(CLEAN_BOUND);
    eprintln!("thawed: clean after {took:.1?}");
    let got = read_file(&m.path("cd01"));
    assert!(
        got == old || got == new,
        "cd01 after the thaw: {}",
        describe(&got)
    );
    eprintln!(
        "after the thaw cd01 holds the {} value (close() said the write failed)",
        if got == new { "new" } else { "old" }
    );
    assert!(
        stored(&mut m, "cd01") == got,
        "the store and the mount disagree"
    );
    // And the chunk takes new writes.
    let newer = tagged(3, 3, 64 << 10);
    write_file(&m.path("cd01"), &newer);
    assert!(read_file(&m.path("cd01")) == newer);
    m.unmount();
}

/// `cloudstore-fs mount` of `pool` through `conf` as client.cloudstore-limited, expected to fail:
/// returns the exit status and stderr, and how long it took.
fn refused_mount(conf: &Path, pool: &str) -> (Option<i32>, String, Duration) {
    let dir = tempfile::Builder::new()
        .prefix("cloudstore-ceph-faults.")
        .tempdir()
        .unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let start = Instant::now();
    let out = Command::new(BIN)
        .args(["mount", "--backend", "ceph", "--ceph-conf"])
        .arg(conf)
        .args(["--pool", pool, "--ceph-user", LIMITED_USER, "--daemon"])
        .arg(&mnt)
        .env("CLOUDSTORE_FS_LOG", dir.path().join("daemon.log"))
        .output()
        .unwrap();
    let took = start.elapsed();
    if out.status.success() {
        let _ = cloudstore_fs::mount::unmount(&mnt);
    }
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        took,
    )
}

/// cephx: client.cloudstore-limited (osd 'allow rw pool=cloudstore-test') works in its pool;
/// the other pool and a wrong key are refused at mount, with messages that say why.
#[test]
fn cephx_client_works_in_its_pool_and_is_refused_elsewhere() {
    const TEST: &str = "ceph_faults::cephx_client_works_in_its_pool_and_is_refused_elsewhere";
    let Some(faults) = Faults::take(TEST) else {
        return;
    };
    let c = &faults.cluster;
    let cluster = c.test_cluster(TEST, &c.limited_conf, &c.pool);
    let Some(mut m) = TestMount::on_ceph_cluster(TEST, cluster, "", &["--ceph-user", LIMITED_USER])
    else {
        return;
    };
    let value = tagged(7, 1, 100 << 10);
    write_file(&m.path("ee01"), &value);
    assert!(read_file(&m.path("ee01")) == value);
    assert!(stored(&mut m, "ee01") == value);
    // Names, not DirEntry values: those keep the directory open, and the unmount lazy.
    let names: Vec<String> = fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["ee01"], "ls of the limited client's namespace");
    m.unmount();

    let bound = TIMEOUT + SLACK;
    let (code, stderr, took) = refused_mount(&c.limited_conf, &c.other_pool);
    eprintln!(
        "mount of {} as client.{LIMITED_USER}: exit {code:?} after {took:.2?}: {stderr}",
        c.other_pool
    );
    assert_ne!(code, Some(0), "the other pool was mounted");
    let lower = stderr.to_lowercase();
    assert!(
        stderr.contains(&c.other_pool)
            && stderr.contains(&format!("client.{LIMITED_USER}"))
            && (lower.contains("permission denied") || lower.contains("not permitted")),
        "the refusal does not name the pool, the client and the reason: {stderr}"
    );
    assert!(took <= bound, "the refusal took {took:?}");

    let (code, stderr, took) = refused_mount(&c.wrong_key_conf, &c.pool);
    eprintln!("mount with a wrong key: exit {code:?} after {took:.2?}: {stderr}");
    assert_ne!(code, Some(0), "a wrong key was accepted");
    assert!(
        stderr.contains(&format!("client.{LIMITED_USER}"))
            && stderr.to_lowercase().contains("permission denied")
            && stderr.contains("key"),
        "the refusal does not name the client, the key and the reason: {stderr}"
    );
    assert!(took <= bound, "the refusal took {took:?}");
}

/// The op timeout of the one-timeout tests: long enough that two of them (8 s + 8 s) are told
/// apart from one plus the slack of a loaded machine.
const ONE_TIMEOUT: Duration = Duration::from_secs(8);
/// What one operation may take beyond one op timeout.
const ONE_SLACK: Duration = Duration::from_secs(3);
/// A configuration with [`ONE_TIMEOUT`].
const ONE_TIMEOUT_CONFIG: &str = "[ceph]\nop_timeout_secs = 8\nconnect_timeout_secs = 8\n";

/// Runs every command at once on threads of its own; returns each one's output and duration.
fn run_together(commands: Vec<(&'static str, Command)>) -> Vec<(&'static str, Output, Duration)> {
    let handles: Vec<_> = commands
        .into_iter()
        .map(|(what, mut cmd)| {
            thread::spawn(move || {
                let start = Instant::now();
                let out = cmd.output().unwrap();
                (what, out, start.elapsed())
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// What is wrong with a command that had to fail within one op timeout (plus slack), not two or
/// three: `None` when it did.
fn late_or_successful(what: &str, out: &Output, took: Duration) -> Option<String> {
    eprintln!(
        "{what}: {} after {took:.2?} (op timeout {ONE_TIMEOUT:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim_end()
    );
    if out.status.success() {
        Some(format!("{what} succeeded with the cluster stopped"))
    } else if took > ONE_TIMEOUT + ONE_SLACK {
        Some(format!(
            "{what} took {took:.2?}: more than one op timeout ({ONE_TIMEOUT:?}) + {ONE_SLACK:?}"
        ))
    } else {
        None
    }
}

/// The whole cluster frozen: `cat` of a chunk the mount has not looked up, `cp` onto a new name
/// and `rm` of a chunk each fail within ONE op timeout (a failed lookup is not asked again, an
/// unlink does not wait a second time), all three at once.
#[test]
fn a_stopped_cluster_fails_cat_cp_and_rm_within_one_timeout() {
    const TEST: &str = "ceph_faults::a_stopped_cluster_fails_cat_cp_and_rm_within_one_timeout";
    let Some(faults) = Faults::take(TEST) else {
        return;
    };
    let Some(mut m) = TestMount::on_ceph_cluster(TEST, faults.admin(TEST), ONE_TIMEOUT_CONFIG, &[])
    else {
        return;
    };
    // Chunks the daemon has never seen (stored by the CLI): its kernel knows no name.
    let local = m.outside("local");
    fs::write(&local, tagged(1, 1, 64 << 10)).unwrap();
    for key in ["ab11", "ab13"] {
        let out = m.cli(&["put", key, local.to_str().unwrap()]);
        assert!(out.status.success(), "put {key}: {out:?}");
    }
    let command = |program: &str, args: &[&Path]| {
        let mut c = Command::new(program);
        c.args(args);
        c
    };
    let (cat_path, cp_path, rm_path) = (m.path("ab11"), m.path("ab12"), m.path("ab13"));
    faults.cluster.freeze(&[]);
    let results = run_together(vec![
        ("cat of a chunk not looked up", command("cat", &[&cat_path])),
        ("cp onto a new name", command("cp", &[&local, &cp_path])),
        ("rm of a chunk not looked up", command("rm", &[&rm_path])),
    ]);
    let wrong: Vec<String> = results
        .iter()
        .filter_map(|(what, out, took)| late_or_successful(what, out, *took))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    faults.cluster.thaw();
    faults.cluster.wait_clean(CLEAN_BOUND);
    assert!(read_file(&m.path("ab11")) == tagged(1, 1, 64 << 10));
    m.unmount();
}

/// Every OSD frozen, the monitors answering: the CLI's `get` and `ls` and a new `mount --daemon`
/// each give up (or mount) within ONE op timeout: the access probe is not followed by a second
/// wait for the operation, nor run twice (in the parent and again in the daemon).
#[test]
fn with_the_osds_stopped_the_cli_and_a_new_mount_wait_one_timeout() {
    const TEST: &str =
        "ceph_faults::with_the_osds_stopped_the_cli_and_a_new_mount_wait_one_timeout";
    let Some(faults) = Faults::take(TEST) else {
        return;
    };
    let Some(mut m) = TestMount::on_ceph_cluster(TEST, faults.admin(TEST), ONE_TIMEOUT_CONFIG, &[])
    else {
        return;
    };
    let local = m.outside("local");
    fs::write(&local, tagged(1, 1, 64 << 10)).unwrap();
    let out = m.cli(&["put", "ab21", local.to_str().unwrap()]);
    assert!(out.status.success(), "put: {out:?}");
    m.unmount();
    let cli = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(args).args(m.store_args());
        c
    };
    let second = m.outside("mnt2");
    fs::create_dir(&second).unwrap();
    let mut mount = cli(&["mount", "--daemon"]);
    mount
        .arg(&second)
        .env("CLOUDSTORE_FS_LOG", m.outside("second-mount.log"));
    let osds: Vec<String> = (0..3).map(|i| format!("osd.{i}")).collect();
    let osds: Vec<&str> = osds.iter().map(String::as_str).collect();
    faults.cluster.freeze(&osds);
    let results = run_together(vec![
        ("cloudstore-fs get", cli(&["get", "ab21"])),
        ("cloudstore-fs ls", cli(&["ls"])),
        ("cloudstore-fs mount --daemon", mount),
    ]);
    let mut wrong = Vec::new();
    for (what, out, took) in &results {
        if *what == "cloudstore-fs mount --daemon" {
            // With the OSDs down a mount may go ahead (its operations fail until they are
            // back): what counts is that it did not wait twice.
            eprintln!(
                "{what}: {} after {took:.2?}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
            if out.status.success() {
                let opts = cloudstore_fs::mount::UnmountOptions {
                    lazy: true,
                    timeout: Duration::from_secs(30),
                };
                let _ = cloudstore_fs::mount::unmount_with(&second, &opts);
            }
            if *took > ONE_TIMEOUT + ONE_SLACK {
                wrong.push(format!(
                    "{what} took {took:.2?}: more than one op timeout ({ONE_TIMEOUT:?}) + \
                     {ONE_SLACK:?}"
                ));
            }
        } else {
            wrong.extend(late_or_successful(what, out, *took));
            if out.status.code() != Some(3) {
                wrong.push(format!("{what}: {}, not exit status 3", out.status));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The fault cluster's full ratios, set very low (the OSDs are then full) and restored when
/// dropped.
struct FullRatios {
    conf: std::path::PathBuf,
    /// The pool whose `full` flag must be gone again before the next test takes the cluster.
    pool: String,
    /// (command, value before), in the order that keeps nearfull <= backfillfull <= full when
    /// raising them again.
    old: Vec<(&'static str, String)>,
}

impl FullRatios {
    fn lower(conf: &Path, pool: &str) -> FullRatios {
        let dump = ceph_text(conf, &["osd", "dump"]);
        let value = |key: &str| {
            dump.lines()
                .find_map(|l| l.strip_prefix(&format!("{key} ")))
                .unwrap_or_else(|| panic!("no {key} in ceph osd dump:\n{dump}"))
                .trim()
                .to_string()
        };
        let ratios = FullRatios {
            conf: conf.to_path_buf(),
            pool: pool.to_string(),
            old: vec![
                ("set-full-ratio", value("full_ratio")),
                ("set-backfillfull-ratio", value("backfillfull_ratio")),
                ("set-nearfull-ratio", value("nearfull_ratio")),
            ],
        };
        // Lowest first, so that they never are out of order (the OSDs would use the highest).
        for (cmd, v) in [
            ("set-nearfull-ratio", "0.00005"),
            ("set-backfillfull-ratio", "0.00008"),
            ("set-full-ratio", "0.0001"),
        ] {
            ceph_text(conf, &["osd", cmd, v]);
        }
        ratios
    }
}

impl Drop for FullRatios {
    fn drop(&mut self) {
        for (cmd, v) in &self.old {
            let _ = Command::new("ceph")
                .arg("-c")
                .arg(&self.conf)
                .args(["osd", cmd, v])
                .output();
        }
        // Also when the test failed: the next test on this cluster must not find it full.
        // (No assertion here: a panic while unwinding would abort.)
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            let detail = Command::new("ceph")
                .arg("-c")
                .arg(&self.conf)
                .args(["osd", "pool", "ls", "detail"])
                .output();
            let quoted = format!("'{}'", self.pool);
            let full = detail.is_ok_and(|out| {
                String::from_utf8_lossy(&out.stdout).lines().any(|l| {
                    l.split_whitespace().nth(2) == Some(quoted.as_str()) && l.contains("full")
                })
            });
            if !full {
                break;
            }
            thread::sleep(Duration::from_millis(250));
        }
    }
}

/// `ceph -c CONF ARGS`, asserting success; its stdout.
fn ceph_text(conf: &Path, args: &[&str]) -> String {
    let out = Command::new("ceph")
        .arg("-c")
        .arg(conf)
        .args(args)
        .output()
        .expect("run ceph");
    assert!(
        out.status.success(),
        "ceph {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `pool` has `flag` (`ceph osd pool ls detail`: "... flags hashpspool,full ...").
fn pool_has_flag(conf: &Path, pool: &str, flag: &str) -> bool {
    let text = ceph_text(conf, &["osd", "pool", "ls", "detail"]);
    let quoted = format!("'{pool}'");
    text.lines()
        .find(|l| l.split_whitespace().nth(2) == Some(quoted.as_str()))
        .and_then(|l| l.split_whitespace().skip_while(|w| *w != "flags").nth(1))
        .is_some_and(|flags| flags.split(',').any(|f| f == flag))
}

/// Waits (up to 90 s) until `pool` has `flag`, or has not when `present` is false, in the
/// monitors' map and then in every OSD's: an OSD judges a write by the map it has, which may
/// lag behind the monitors' by a moment (a write then still went through to a "full" pool).
fn wait_pool_flag(conf: &Path, pool: &str, flag: &str, present: bool) -> Duration {
    let start = Instant::now();
    let waited = |what: &str| {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "pool {pool}: flag {flag} {} after 90 s ({what})",
            if present { "never set" } else { "still set" }
        );
        thread::sleep(Duration::from_millis(250));
    };
    while pool_has_flag(conf, pool, flag) != present {
        waited("monitors");
    }
    let epoch = map_number(&ceph_text(conf, &["osd", "dump"]), "epoch ");
    for osd in ceph_text(conf, &["osd", "ls"]).split_whitespace() {
        let target = format!("osd.{osd}");
        while map_number(
            &ceph_text(conf, &["tell", &target, "status"]),
            "\"newest_map\": ",
        ) < epoch
        {
            waited(&target);
        }
    }
    start.elapsed()
}

/// The number after `prefix` on the first line (trimmed) that starts with it: the map epoch in
/// `ceph osd dump` ("epoch 12") or an OSD's newest map in `ceph tell osd.N status`.
fn map_number(text: &str, prefix: &str) -> u64 {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .and_then(|rest| rest.trim_end_matches(',').trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix:?} number in:\n{text}"))
}

/// How long a refusal by a full cluster, or an rm while full, may take on a loaded machine (one
/// round trip is ~1 ms; the op timeout of the mount is [`ONE_TIMEOUT`]).
const AT_ONCE: Duration = Duration::from_secs(2);

/// The cluster past its full ratio: a write + close fails with ENOSPC at once (under 2 s, the op
/// timeout being 8 s) and the chunk keeps its old value; rm through the mount works while full; once
/// the ratio is back, writes work again.
#[test]
fn a_full_cluster_is_enospc_at_once_and_rm_still_works() {
    const TEST: &str = "ceph_faults::a_full_cluster_is_enospc_at_once_and_rm_still_works";
    let Some(faults) = Faults::take(TEST) else {
        return;
    };
    let Some(m) = TestMount::on_ceph_cluster(TEST, faults.admin(TEST), ONE_TIMEOUT_CONFIG, &[])
    else {
        return;
    };
    let (conf, pool) = (faults.cluster.conf.clone(), faults.cluster.pool.clone());
    let old = tagged(1, 1, 1 << 20);
    write_file(&m.path("af01"), &old);
    write_file(&m.path("af02"), &old);
    // Ceph refuses only what would grow a full pool (a same-size rewrite goes through): the
    // new value is larger.
    let ratios = FullRatios::lower(&conf, &pool);
    let took = wait_pool_flag(&conf, &pool, "full", true);
    eprintln!("full ratio 0.0001: pool {pool} is full after {took:.1?}");

    let start = Instant::now();
    let result = {
        let p = m.path("af01");
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(p)
            .and_then(|mut f| {
                f.write_all(&tagged(2, 2, 2 << 20))?;
                close(f)
            })
    };
    let took = start.elapsed();
    eprintln!("write + close with the cluster full: {result:?} after {took:.2?}");
    let e = result.expect_err("a write + close succeeded with the cluster full");
    assert_eq!(
        errno(&e),
        libc::ENOSPC,
        "write + close with the cluster full failed with {e} after {took:.2?}"
    );
    assert!(
        took < AT_ONCE,
        "the refusal took {took:.2?} (one round trip expected, not the {ONE_TIMEOUT:?} timeout)"
    );
    assert!(read_file(&m.path("af01")) == old, "af01 lost its old value");
    let start = Instant::now();
    let removed = fs::remove_file(m.path("af02"));
    let took = start.elapsed();
    eprintln!("rm with the cluster full: {removed:?} after {took:.2?}");
    removed.unwrap_or_else(|e| panic!("rm with the cluster full: {e} after {took:.2?}"));
    assert!(took < AT_ONCE, "rm took {took:.2?}");

    drop(ratios);
    let took = wait_pool_flag(&conf, &pool, "full", false);
    eprintln!("ratios restored: pool {pool} not full after {took:.1?}");
    let newer = tagged(3, 3, 64 << 10);
    write_file(&m.path("af01"), &newer);
    assert!(read_file(&m.path("af01")) == newer);
}

/// cephx with the keyring the conf names missing: `ls` and `mount` fail (exit 3) with a message
/// naming the keyring's path, not just "No such file or directory".
#[test]
fn a_missing_keyring_is_named() {
    const TEST: &str = "ceph_faults::a_missing_keyring_is_named";
    let Some(faults) = Faults::take(TEST) else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("cloudstore-ceph-faults.")
        .tempdir()
        .unwrap();
    let keyring = dir.path().join("no-such.keyring");
    let conf_text = fs::read_to_string(&faults.cluster.conf).unwrap();
    let conf = dir.path().join("ceph.conf");
    let replaced: Vec<String> = conf_text
        .lines()
        .map(|l| {
            if l.starts_with("keyring = ") {
                format!("keyring = {}", keyring.display())
            } else {
                l.to_string()
            }
        })
        .collect();
    fs::write(&conf, replaced.join("\n") + "\n").unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    for cmd in ["ls", "mount"] {
        let mut c = Command::new(BIN);
        c.args([cmd, "--backend", "ceph", "--ceph-conf"])
            .arg(&conf)
            .args(["--pool", &faults.cluster.pool])
            .env("CLOUDSTORE_FS_LOG", dir.path().join("daemon.log"));
        if cmd == "mount" {
            if !fuse_available(TEST) {
                continue;
            }
            c.arg("--daemon").arg(&mnt);
        }
        let start = Instant::now();
        let out = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "{cmd} without its keyring: {} after {:.2?}: {stderr}",
            out.status,
            start.elapsed()
        );
        if cmd == "mount" && out.status.success() {
            let _ = cloudstore_fs::mount::unmount(&mnt);
        }
        assert_eq!(out.status.code(), Some(3), "{cmd}: {stderr}");
        let want = format!(
            "keyring {} (from {}) does not exist",
            keyring.display(),
            conf.display()
        );
        assert!(
            stderr.contains(&want),
            "{cmd}: stderr lacks {want:?}: {stderr}"
        );
    }
}
