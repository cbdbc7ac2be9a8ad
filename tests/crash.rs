//! kill -9 of the daemon at random moments, over LevelDB and Ceph: 4 writer threads overwrite
//! 64 chunks with whole self-describing values while 2 readers read them; the daemon is killed,
//! the workers' operations fail, and `cloudstore-fs mount --daemon` on the stale mountpoint
//! takes it over (proving the takeover). Then every chunk must hold one whole value, and one
//! that the acknowledged closes allow:
//!
//! - a value some close() acknowledged (returned 0) for that chunk, unless another acknowledged
//!   close of that chunk began after this one had returned (it replaced it);
//! - or a value whose close() did not return 0 (killed mid-commit: it may have landed), under the
//!   same rule: no acknowledged close of that chunk began after this attempt had ended;
//! - or, when no close of that chunk was acknowledged this round, the value it held before.
//!
//! Every read that succeeds, during the rounds and after, must parse as one whole value of its
//! chunk (never torn). The seed is printed (set CRASH_SEED to replay one). Needs root and
//! /dev/fuse, and CLOUDSTORE_TEST_CEPH_CONF for the Ceph variant (SKIPPED otherwise).

mod ceph_support;
mod common;

use std::fs;
use std::io::Write;
use std::os::fd::IntoRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ceph_support::bytes;
use common::mount::{Store, TestMount};

const CHUNKS: u64 = 64;
const WRITERS: u64 = 4;
const READERS: u64 = 2;
const ROUNDS: u64 = 6;
/// magic, chunk, ticket, total length: 4 x u64.
const HEADER: usize = 32;
const MAGIC: u64 = 0xc10d_5707_e000_0001;

/// splitmix64: a small seeded generator, so that a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn name(chunk: u64) -> String {
    format!("c0{chunk:02x}")
}

/// Value lengths from a bare header up to 3 MiB, mostly small.
fn value_len(rng: &mut Rng) -> usize {
    HEADER
        + match rng.below(100) {
            0..=24 => 0,
            25..=59 => rng.below(4096) as usize,
            60..=84 => rng.below(256 << 10) as usize,
            _ => (1 << 20) + rng.below(2 << 20) as usize,
        }
}

/// The value of write `ticket` to `chunk`: a header naming both, then bytes drawn from the ticket.
fn value(chunk: u64, ticket: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    for x in [MAGIC, chunk, ticket, len as u64] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(&bytes(ticket, len - HEADER));
    v
}

/// The ticket of a whole value of `chunk`, or why `data` is not one.
fn parse(chunk: u64, data: &[u8]) -> Result<u64, String> {
    if data.len() < HEADER {
        return Err(format!("{} bytes: shorter than a header", data.len()));
    }
    let field = |i: usize| u64::from_le_bytes(data[i * 8..i * 8 + 8].try_into().unwrap());
    let (magic, c, ticket, len) = (field(0), field(1), field(2), field(3));
    if magic != MAGIC {
        return Err(format!("bad magic {magic:#x} ({} bytes)", data.len()));
    }
    if c != chunk {
        return Err(format!("the value of chunk {c}, ticket {ticket}"));
    }
    if len != data.len() as u64 {
        return Err(format!(
            "ticket {ticket}: {} bytes of a {len}-byte value (torn)",
            data.len()
        ));
    }
    if data[HEADER..] != bytes(ticket, data.len() - HEADER)[..] {
        return Err(format!("ticket {ticket}: body differs (torn)"));
    }
    Ok(ticket)
}

/// One write of a whole value: open with O_TRUNC, write, close.
#[derive(Debug, Clone)]
struct Attempt {
    ticket: u64,
    chunk: u64,
    /// When close() was called (None: open or write failed before it).
    close_start: Option<Instant>,
    /// When the attempt ended: close() returned, or an earlier step failed.
    end: Instant,
    /// close() returned 0.
    acked: bool,
    errno: i32,
}

fn write_value(path: &Path, chunk: u64, ticket: u64, data: &[u8]) -> Attempt {
    let failed = |close_start, errno| Attempt {
        ticket,
        chunk,
        close_start,
        end: Instant::now(),
        acked: false,
        errno,
    };
    let mut f = match fs::File::create(path) {
        Ok(f) => f,
        Err(e) => return failed(None, e.raw_os_error().unwrap_or(0)),
    };
    if let Err(e) = f.write_all(data) {
        return failed(None, e.raw_os_error().unwrap_or(0));
    }
    let fd = f.into_raw_fd();
    let close_start = Instant::now();
    // SAFETY: fd is ours (taken from the File), closed once.
    let rc = unsafe { libc::close(fd) };
    let errno = if rc == 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    };
    Attempt {
        ticket,
        chunk,
        close_start: Some(close_start),
        end: Instant::now(),
        acked: rc == 0,
        errno,
    }
}

/// What a round's workers did.
#[derive(Default)]
struct Workload {
    attempts: Vec<Attempt>,
    reads_ok: u64,
    /// Failed reads: (errno, when).
    read_errors: Vec<(i32, Instant)>,
}

fn writer(mnt: PathBuf, seed: u64, tickets: Arc<AtomicU64>, stop: Arc<AtomicBool>) -> Workload {
    let mut rng = Rng(seed);
    let mut w = Workload::default();
    while !stop.load(Ordering::Relaxed) {
        let chunk = rng.below(CHUNKS);
        let ticket = tickets.fetch_add(1, Ordering::SeqCst);
        let data = value(chunk, ticket, value_len(&mut rng));
        let a = write_value(&mnt.join(name(chunk)), chunk, ticket, &data);
        let failed = !a.acked;
        w.attempts.push(a);
        if failed {
            // The daemon is gone (ENOTCONN, ECONNABORTED): nothing more will work.
            break;
        }
    }
    w
}

fn reader(mnt: PathBuf, seed: u64, stop: Arc<AtomicBool>, ctx: String) -> Workload {
    let mut rng = Rng(seed);
    let mut w = Workload::default();
    while !stop.load(Ordering::Relaxed) {
        let chunk = rng.below(CHUNKS);
        match fs::read(mnt.join(name(chunk))) {
            Ok(data) => {
                if let Err(e) = parse(chunk, &data) {
                    panic!("{ctx}: a reader of {} got no whole value: {e}", name(chunk));
                }
                w.reads_ok += 1;
            }
            Err(e) => {
                w.read_errors
                    .push((e.raw_os_error().unwrap_or(0), Instant::now()));
                break;
            }
        }
    }
    w
}

/// Where a chunk's value after a round came from.
#[derive(Debug, Default)]
struct Found {
    last_acked: u64,
    unacked_landed: u64,
    baseline: u64,
}

/// Checks every chunk against the round's attempts (see the module doc); returns the new
/// baseline (the ticket each chunk holds).
fn check(m: &TestMount, baseline: &[u64], attempts: &[Attempt], ctx: &str) -> (Vec<u64>, Found) {
    let mut found = Found::default();
    let mut now = Vec::new();
    for chunk in 0..CHUNKS {
        let path = m.path(&name(chunk));
        let data = fs::read(&path).unwrap_or_else(|e| panic!("{ctx}: read {}: {e}", name(chunk)));
        let ticket = parse(chunk, &data)
            .unwrap_or_else(|e| panic!("{ctx}: {} holds no whole value: {e}", name(chunk)));
        let mine: Vec<&Attempt> = attempts.iter().filter(|a| a.chunk == chunk).collect();
        let acked: Vec<&Attempt> = mine.iter().copied().filter(|a| a.acked).collect();
        // Replaced for sure: an acknowledged close of this chunk began after it had ended.
        let replaced = |end: Instant| {
            acked
                .iter()
                .find(|w| w.close_start.is_some_and(|s| s > end))
                .map(|w| w.ticket)
        };
        if ticket == baseline[chunk as usize] {
            if let Some(w) = acked.first() {
                panic!(
                    "{ctx}: {} holds the previous round's ticket {ticket}, but close() of \
                     ticket {} acknowledged a new value: lost",
                    name(chunk),
                    w.ticket
                );
            }
            found.baseline += 1;
        } else {
            let Some(a) = mine.iter().find(|a| a.ticket == ticket) else {
                panic!(
                    "{ctx}: {} holds ticket {ticket}, never written to it this round",
                    name(chunk)
                );
            };
            if let Some(newer) = replaced(a.end) {
                panic!(
                    "{ctx}: {} holds ticket {ticket} (acked: {}), but ticket {newer} was \
                     acknowledged by a close() that began after it had ended: lost",
                    name(chunk),
                    a.acked
                );
            }
            if a.acked {
                found.last_acked += 1;
            } else {
                found.unacked_landed += 1;
            }
        }
        now.push(ticket);
    }
    (now, found)
}

fn crash_rounds(store: Store, test: &str) {
    let Some(mut m) = TestMount::new(store, test) else {
        return;
    };
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("{test}: CRASH_SEED={seed}");
    let started = Instant::now();
    let mut rng = Rng(seed);
    let tickets = Arc::new(AtomicU64::new(0));
    // Round 0's baseline: every chunk written once, acknowledged.
    let mut baseline = Vec::new();
    for chunk in 0..CHUNKS {
        let ticket = tickets.fetch_add(1, Ordering::SeqCst);
        let a = write_value(
            &m.path(&name(chunk)),
            chunk,
            ticket,
            &value(chunk, ticket, value_len(&mut rng)),
        );
        assert!(a.acked, "seeding {}: errno {}", name(chunk), a.errno);
        baseline.push(ticket);
    }
    for round in 1..=ROUNDS {
        let ctx = format!("{test} CRASH_SEED={seed} round {round}");
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (mnt, tickets, stop) = (m.mnt.clone(), tickets.clone(), stop.clone());
                let s = rng.next();
                std::thread::spawn(move || writer(mnt, s, tickets, stop))
            })
            .collect();
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                let (mnt, stop, ctx) = (m.mnt.clone(), stop.clone(), ctx.clone());
                let s = rng.next();
                std::thread::spawn(move || reader(mnt, s, stop, ctx))
            })
            .collect();
        let delay = Duration::from_millis(200 + rng.below(1800));
        std::thread::sleep(delay);
        let killed_at = Instant::now();
        m.signal_daemon(libc::SIGKILL);
        stop.store(true, Ordering::Relaxed);
        let mut work = Workload::default();
        for h in writers.into_iter().chain(readers) {
            let w = h
                .join()
                .unwrap_or_else(|_| panic!("{ctx}: a worker panicked"));
            work.attempts.extend(w.attempts);
            work.reads_ok += w.reads_ok;
            work.read_errors.extend(w.read_errors);
        }
        // Nothing may fail before the kill: a failure then is a bug, not the crash.
        for a in work.attempts.iter().filter(|a| !a.acked) {
            assert!(
                a.end >= killed_at,
                "{ctx}: write of ticket {} to {} failed before the kill (errno {})",
                a.ticket,
                name(a.chunk),
                a.errno
            );
        }
        for (errno, when) in &work.read_errors {
            assert!(
                *when >= killed_at,
                "{ctx}: a read failed before the kill (errno {errno})"
            );
        }
        let out = m.mount_output();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("had died") && said.contains("stale mount"),
            "{ctx}: mount said nothing of the stale mount it took over: {said}"
        );
        let (now, found) = check(&m, &baseline, &work.attempts, &ctx);
        let acked = work.attempts.iter().filter(|a| a.acked).count();
        let in_flight = work
            .attempts
            .iter()
            .filter(|a| !a.acked && a.close_start.is_some())
            .count();
        println!(
            "round {round}: killed after {delay:?}; writes {} (acknowledged {acked}, killed in \
             close() {in_flight}), whole reads {}; chunks holding: an acknowledged value {}, \
             an unacknowledged one {}, the previous round's {}",
            work.attempts.len(),
            work.reads_ok,
            found.last_acked,
            found.unacked_landed,
            found.baseline
        );
        assert!(
            acked > 0,
            "{ctx}: no write was acknowledged before the kill"
        );
        baseline = now;
    }
    println!("{test}: {ROUNDS} rounds in {:?}", started.elapsed());
}

#[test]
fn leveldb_kill_9_rounds() {
    crash_rounds(Store::Leveldb, "leveldb_kill_9_rounds");
}

#[test]
fn ceph_kill_9_rounds() {
    crash_rounds(Store::Ceph, "ceph_kill_9_rounds");
}

/// The 64 MiB value of round `round`: every 4 KiB block names the round and its index, so a
/// value mixed from two writes or cut short is told apart from a whole one.
fn big_value(round: u64) -> Vec<u8> {
    let mut v = vec![round as u8; BIG];
    for (i, block) in v.chunks_mut(4096).enumerate() {
        block[..8].copy_from_slice(&round.to_le_bytes());
        block[8..16].copy_from_slice(&(i as u64).to_le_bytes());
    }
    v
}

const BIG: usize = 64 << 20;

/// What a chunk holds, for messages: its length and the round stamped in its first block.
fn describe(v: &[u8]) -> String {
    let round = v
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()));
    format!("{} bytes, first block of round {round:?}", v.len())
}

/// kill -9 of the daemon during a 64 MiB write (or during its close, which commits it), and
/// at once a new `mount`: it must succeed every round. The killed daemon may still be exiting
/// and hold LevelDB's lock; the mount waits for it (bounded) instead of failing "locked". The
/// chunk then holds the old value or the new one, whole (the new one if close() returned 0).
#[test]
fn leveldb_mount_right_after_kill_9_of_a_64_mib_write() {
    const ROUNDS: u64 = 8;
    let test = "leveldb_mount_right_after_kill_9_of_a_64_mib_write";
    let Some(mut m) = TestMount::new(Store::Leveldb, test) else {
        return;
    };
    let started = Instant::now();
    let path = m.path("b160");
    let mut old = b"round 0".to_vec();
    fs::write(&path, &old).unwrap();
    let mut rng = Rng(0x5eed);
    let mut waited = 0;
    for round in 1..=ROUNDS {
        let new = Arc::new(big_value(round));
        let written = Arc::new(AtomicU64::new(0));
        let writer = {
            let (path, new, written) = (path.clone(), new.clone(), written.clone());
            std::thread::spawn(move || -> bool {
                let Ok(mut f) = fs::File::create(&path) else {
                    return false;
                };
                for piece in new.chunks(1 << 20) {
                    if f.write_all(piece).is_err() {
                        return false;
                    }
                    written.fetch_add(piece.len() as u64, Ordering::SeqCst);
                }
                // SAFETY: the fd is ours (taken from the File), closed once.
                unsafe { libc::close(f.into_raw_fd()) == 0 }
            })
        };
        // Rounds 1 and 2: killed in the middle of the writes. The others: once close() has
        // returned, within 40 ms, while LevelDB writes the 64 MiB out of its memtable into a
        // table and syncs it: the thread doing that can outlive the daemon's main thread by a
        // long moment, holding the lock (what made a mount after kill -9 fail "locked").
        let target = if round <= 2 {
            (1 + rng.below(56)) << 20
        } else {
            u64::MAX
        };
        let t = Instant::now();
        while written.load(Ordering::SeqCst) < target && !writer.is_finished() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "round {round}: the writer stalled"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        if round > 2 {
            std::thread::sleep(Duration::from_millis(rng.below(40)));
        }
        // At once, as soon as the daemon's main thread is gone (a zombie; as a restart loop or
        // a script sees it): its other threads may still be exiting, holding LevelDB's lock.
        let pid = m.kill_daemon_now();
        assert!(cloudstore_fs::mount::wait_for_exit(
            pid,
            Duration::from_secs(30)
        ));
        let t = Instant::now();
        let out = m.mount_output();
        let mount_secs = t.elapsed().as_secs_f64();
        let acked = writer.join().unwrap();
        let now = fs::read(&path).unwrap();
        let whole = if now == old {
            "the old value"
        } else if now[..] == new[..] {
            "the new value"
        } else {
            panic!(
                "round {round}: the chunk holds neither value whole: {} (old: {}, new: {})",
                describe(&now),
                describe(&old),
                describe(&new)
            );
        };
        assert!(
            !acked || now[..] == new[..],
            "round {round}: close() returned 0 but the chunk holds the old value"
        );
        let said = String::from_utf8_lossy(&out.stderr);
        if said.contains("which is exiting (killed?): waiting") {
            waited += 1;
        }
        println!(
            "round {round}: killed after {} MiB written (close acknowledged: {acked}); mount took \
             {mount_secs:.2} s and said {:?}; the chunk holds {whole}",
            written.load(Ordering::SeqCst) >> 20,
            said.trim()
        );
        old = now;
    }
    println!(
        "{test}: {ROUNDS} rounds in {:?}; {waited} mounts found the killed daemon still holding \
         the store and waited for it",
        started.elapsed()
    );
}

/// A process holding LevelDB's lock on `data` (a POSIX lock, as LevelDB takes it), in Python.
fn lock_holder(data: &Path) -> std::process::Child {
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import fcntl, sys, time\n\
             f = open(sys.argv[1] + '/LOCK', 'a')\n\
             fcntl.lockf(f, fcntl.LOCK_EX)\n\
             print('locked', flush=True)\n\
             time.sleep(120)\n",
        )
        .arg(data)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "locked\n");
    child
}

/// A holder of the store that is exiting (killed, but held in its exit for a second: ptrace
/// stops it at PTRACE_EVENT_EXIT, before its files are closed) is waited for: `mount` succeeds
/// once it has let go, and says what it waited for. A live holder is refused at once, named.
#[test]
fn mount_waits_for_a_dying_holder_of_the_store_and_refuses_a_live_one() {
    let test = "mount_waits_for_a_dying_holder_of_the_store_and_refuses_a_live_one";
    let python = std::process::Command::new("python3").arg("-V").output();
    if !python.is_ok_and(|o| o.status.success()) {
        ceph_support::skip_or_fail(&format!("{test} needs python3 (to hold the lock)"));
        return;
    }
    let Some(mut m) = TestMount::new(Store::Leveldb, test) else {
        return;
    };
    fs::write(m.path("01"), b"kept").unwrap();
    m.unmount();
    let data = m.outside("data");

    // Alive: refused at once, naming it.
    let mut holder = lock_holder(&data);
    let t = Instant::now();
    let out = m.try_mount(&m.mnt, &[]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(
        said.contains(&format!("is locked by process {} (`", holder.id()))
            && said.contains("python3 -c"),
        "{said}"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    // Dying: ptrace holds it at its exit, with the lock, for a second after kill -9.
    let pid = holder.id() as libc::pid_t;
    // SAFETY: ptrace and waitpid on our own child, from this thread only (a tracer is a thread).
    unsafe {
        assert_eq!(
            libc::ptrace(
                libc::PTRACE_SEIZE,
                pid,
                std::ptr::null_mut::<libc::c_void>(),
                libc::PTRACE_O_TRACEEXIT as usize as *mut libc::c_void,
            ),
            0,
            "PTRACE_SEIZE: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(libc::kill(pid, libc::SIGKILL), 0);
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        assert_eq!(status >> 8, libc::SIGTRAP | (libc::PTRACE_EVENT_EXIT << 8));
    }
    let mnt = m.mnt.clone();
    let (early, (out, took)) = std::thread::scope(|s| {
        let mount = s.spawn(|| {
            let t = Instant::now();
            (m.try_mount(&mnt, &[]), t.elapsed())
        });
        std::thread::sleep(Duration::from_secs(1));
        let early = mount.is_finished();
        // SAFETY: the tracee is stopped at its exit; continuing lets it finish exiting.
        let rc = unsafe {
            libc::ptrace(
                libc::PTRACE_CONT,
                pid,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_void>(),
            )
        };
        assert_eq!(rc, 0, "PTRACE_CONT: {}", std::io::Error::last_os_error());
        (early, mount.join().unwrap())
    });
    let _ = holder.wait();
    // `mount --daemon` opens the store in the daemon: what it waited for is in its log.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(m.log_path()).unwrap_or_default()
    );
    assert!(
        !early,
        "the mount did not wait for the dying holder: {said}"
    );
    assert!(out.status.success(), "mount failed after {took:?}: {said}");
    m.mark_mounted();
    assert!(
        said.contains(&format!("is locked by process {pid} (`"))
            && said.contains("which is exiting (killed?): waiting up to 10 s for it to let go")
            && said.contains(&format!("process {pid} let go of the lock after")),
        "{said}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert_eq!(fs::read(m.path("01")).unwrap(), b"kept");
}
