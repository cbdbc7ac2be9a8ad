//! Integrity through a real FUSE mount, over LevelDB and over Ceph: what close() acknowledges is
//! exactly what the store holds (issue 7). A handle opened for writing builds its own value and
//! publishes it whole on flush/fsync/close; other handles see the last committed value; a handle
//! whose write failed (EFBIG, ENOMEM) is poisoned and commits nothing; rename and unlink are ordered
//! with commits; the memory budget bounds the daemon's real memory. Values are self-identifying
//! (`common::files::tagged`), so a failure says which writers' pieces a stored value is made of.
//! Needs root and /dev/fuse (SKIPPED otherwise; a failure under CI=true); the Ceph variants need
//! CLOUDSTORE_TEST_CEPH_CONF (see scripts/test.sh).

mod ceph_support;
mod common;

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::files::{
    absent, assert_bytes, close, describe, errno, identify, read_file, tagged, write_file,
    write_in_pieces, WriteOutcome,
};
use common::mount::{Store, TestMount, SMALL_STORE_CACHES};

const MIB: usize = 1 << 20;

/// The chunk's value as the store holds it, through the CLI (`get`), bypassing the mount and the
/// kernel's caches (LevelDB: the mount is taken down around the command). `None`: absent.
fn stored(m: &mut TestMount, name: &str) -> Option<Vec<u8>> {
    let out = m.cli(&["get", name]);
    match out.status.code() {
        Some(0) => Some(out.stdout),
        Some(1) => None,
        _ => panic!(
            "cloudstore-fs get {name}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// What the mount shows under `name`: `None` when absent (ENOENT).
fn shown(m: &TestMount, name: &str) -> Option<Vec<u8>> {
    match fs::read(m.path(name)) {
        Ok(v) => Some(v),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
        Err(e) => panic!("read {name}: {e}"),
    }
}

/// The names the mount lists.
fn listed(m: &TestMount) -> BTreeSet<String> {
    fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// Asserts `name` holds `want` through the mount and in the store (`None`: absent in both).
#[track_caller]
fn assert_chunk(m: &mut TestMount, name: &str, want: Option<&[u8]>, when: &str) {
    for (whose, got) in [("mount", shown(m, name)), ("store", stored(m, name))] {
        match (got.as_deref(), want) {
            (Some(g), Some(w)) => assert_bytes(g, w, &format!("{name} in the {whose} {when}")),
            (None, None) => {}
            (g, w) => panic!(
                "{name} in the {whose} {when}: got {}, want {}",
                g.map_or("absent".into(), describe),
                w.map_or("absent".into(), describe)
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. EFBIG: a write past --max-chunk-size poisons the handle; the chunk keeps its old value.

/// The --max-chunk-size of the EFBIG test (small, so that over-size files are quick to write).
const SMALL_MAX: usize = 4 * MIB;

fn efbig_keeps_the_old_value(m: &mut TestMount) {
    let old = tagged(1, 0, 100_000);
    write_file(&m.path("aa"), &old);
    let big = tagged(2, 0, SMALL_MAX + 8);
    write_file(&m.outside("big"), &big);
    write_file(&m.outside("max"), &big[..SMALL_MAX]);

    // The option reached the daemon: exactly the maximum is accepted.
    m.sh("cp max \"$MNT\"/bb");
    assert_chunk(
        m,
        "bb",
        Some(&big[..SMALL_MAX]),
        "after cp of exactly the maximum",
    );

    // cp, dd conv=notrunc and >> onto an existing chunk fail with EFBIG, and the chunk keeps
    // its old bytes.
    for (tool, script) in [
        ("cp", "cp big \"$MNT\"/aa"),
        (
            "dd conv=notrunc",
            "dd if=big of=\"$MNT\"/aa bs=256k conv=notrunc status=none",
        ),
        ("cat >>", "cat big >> \"$MNT\"/aa"),
    ] {
        let out = m.sh_output(script);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{tool} of max+8 bytes onto aa succeeded"
        );
        assert!(stderr.contains("File too large"), "{tool}: {stderr}");
        assert_chunk(m, "aa", Some(&old), &format!("after a failed {tool}"));
    }
    // Plain dd truncates first: it opens with O_TRUNC, dups the descriptor and closes the
    // original, and that close (its own, before any write) commits the empty file it asked
    // for. The failed writes that follow commit nothing: the chunk is empty, never a prefix.
    let out = m.sh_output("dd if=big of=\"$MNT\"/aa bs=1M status=none");
    assert!(!out.status.success(), "dd of max+8 bytes onto aa succeeded");
    assert_chunk(m, "aa", Some(&[]), "after a failed plain dd");
    write_file(&m.path("aa"), &old);

    // The syscalls: the crossing write fails with EFBIG, the handle stays poisoned (a small
    // write at offset 0 fails too), close() returns the error; nothing is committed.
    let mut f = OpenOptions::new().write(true).open(m.path("aa")).unwrap();
    f.write_all(&big[..SMALL_MAX - 4096]).unwrap();
    let e = f.write_all(&big[SMALL_MAX - 4096..]).unwrap_err();
    assert_eq!(errno(&e), libc::EFBIG, "the write past the maximum: {e}");
    f.seek(SeekFrom::Start(0)).unwrap();
    assert!(
        f.write_all(b"x").is_err(),
        "a poisoned handle accepted a write"
    );
    let e = close(f).expect_err("close() of a poisoned handle returned 0");
    assert_eq!(
        errno(&e),
        libc::EFBIG,
        "close() of the poisoned handle: {e}"
    );
    assert_chunk(m, "aa", Some(&old), "after a poisoned handle closed");

    // Append across the maximum onto a chunk just under it.
    let near = tagged(3, 0, SMALL_MAX - 16);
    write_file(&m.path("cc"), &near);
    let mut f = OpenOptions::new().append(true).open(m.path("cc")).unwrap();
    let e = f.write_all(&[7u8; 64]).unwrap_err();
    assert_eq!(errno(&e), libc::EFBIG, "append past the maximum: {e}");
    assert_eq!(errno(&close(f).unwrap_err()), libc::EFBIG);
    assert_chunk(m, "cc", Some(&near), "after a failed append");

    // truncate past the maximum is refused and changes nothing.
    let out = m.sh_output(&format!("truncate -s {} \"$MNT\"/aa", SMALL_MAX + 1));
    assert!(!out.status.success(), "truncate past the maximum succeeded");
    assert_chunk(m, "aa", Some(&old), "after a failed truncate");

    // A new name: cp fails and the name does not exist afterwards.
    let out = m.sh_output("cp big \"$MNT\"/dd");
    assert!(
        !out.status.success(),
        "cp of max+8 bytes to a new name succeeded"
    );
    assert!(absent(&m.path("dd")), "dd exists after a failed cp");
    assert!(!listed(m).contains("dd"), "dd is listed after a failed cp");
    assert_chunk(m, "dd", None, "after a failed cp to a new name");

    // All of it holds after a remount.
    m.remount();
    assert_chunk(m, "aa", Some(&old), "after a remount");
    assert_chunk(m, "bb", Some(&big[..SMALL_MAX]), "after a remount");
    assert_chunk(m, "cc", Some(&near), "after a remount");
    assert_chunk(m, "dd", None, "after a remount");
}

// ---------------------------------------------------------------------------------------------
// 2. Parallel writers of one chunk: the stored value is one writer's whole value.

const WRITERS: u16 = 8;
const TRIALS: u32 = 10;

fn parallel_writers_leave_one_whole_value(m: &mut TestMount) {
    write_file(&m.path("ab"), &tagged(99, 0, 200_000));
    fs::create_dir(m.outside("in")).unwrap();
    let mut mixes = Vec::new();
    for trial in 0..TRIALS {
        // Six 1 MiB values and two 3 MiB ones, different in every trial.
        let inputs: Vec<Vec<u8>> = (0..WRITERS)
            .map(|w| tagged(w, trial, if w < 6 { MIB } else { 3 * MIB }))
            .collect();
        for (w, v) in inputs.iter().enumerate() {
            write_file(&m.outside(&format!("in/{w}")), v);
        }
        let children: Vec<_> = (0..WRITERS)
            .map(|w| {
                Command::new("cp")
                    .arg(m.outside(&format!("in/{w}")))
                    .arg(m.path("ab"))
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for (w, c) in children.into_iter().enumerate() {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "trial {trial}: cp of writer {w} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let got = read_file(&m.path("ab"));
        match identify(&got) {
            Some((w, t)) if t == trial && w < WRITERS && got == inputs[w as usize] => {}
            _ => mixes.push(format!("trial {trial}: {}", describe(&got))),
        }
        // The store holds what the mount showed (LevelDB: read after a remount).
        let s = stored(m, "ab").expect("ab is gone from the store");
        assert_bytes(&s, &got, &format!("trial {trial}: the store vs the mount"));
    }
    assert!(
        mixes.is_empty(),
        "{} of {TRIALS} trials stored something other than one writer's whole value:\n{}",
        mixes.len(),
        mixes.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Readers during writers see only whole committed values.

const RW_WRITERS: u16 = 4;
const RW_ROUNDS: u32 = 12;

/// The size of writer `w`'s value in round `r`: 64 KiB to 768 KiB, different from round to round.
fn rw_size(w: u16, r: u32) -> usize {
    64 * 1024 * (1 + (w as usize * 7 + r as usize * 5) % 12)
}

fn readers_see_only_whole_committed_values(m: &mut TestMount) {
    const INITIAL: u16 = 200;
    let initial = tagged(INITIAL, 0, 300_000);
    write_file(&m.path("cc"), &initial);
    let path = Arc::new(m.path("cc"));
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..RW_WRITERS)
        .map(|w| {
            let path = path.clone();
            thread::spawn(move || {
                let mut failures = Vec::new();
                for r in 0..RW_ROUNDS {
                    // 64 KiB writes, so that the writers' pieces interleave.
                    let out = write_in_pieces(&path, &tagged(w, r, rw_size(w, r)), 64 * 1024, true);
                    if !out.ok() {
                        failures.push(format!("writer {w} round {r}: {out:?}"));
                    }
                }
                failures
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (path, done) = (path.clone(), done.clone());
            let initial = initial.clone();
            thread::spawn(move || {
                let (mut reads, mut bad) = (0u32, Vec::new());
                loop {
                    let finished = done.load(Ordering::SeqCst);
                    reads += 1;
                    match fs::read(&*path) {
                        Ok(v) if v == initial => {}
                        Ok(v) => match identify(&v) {
                            Some((w, r)) if w < RW_WRITERS && r < RW_ROUNDS => {
                                if v.len() != rw_size(w, r) {
                                    bad.push(format!("a cut-off value: {}", describe(&v)));
                                }
                            }
                            _ => bad.push(describe(&v)),
                        },
                        Err(e) => bad.push(format!("read failed: {e}")),
                    }
                    // One last read after the writers finished.
                    if finished || bad.len() > 20 {
                        return (reads, bad);
                    }
                }
            })
        })
        .collect();
    let mut failures = Vec::new();
    for w in writers {
        failures.extend(w.join().unwrap());
    }
    done.store(true, Ordering::SeqCst);
    let mut bad_reads = Vec::new();
    let mut total = 0;
    for r in readers {
        let (reads, bad) = r.join().unwrap();
        total += reads;
        bad_reads.extend(bad);
    }
    assert!(
        failures.is_empty(),
        "writes failed:\n{}",
        failures.join("\n")
    );
    assert!(
        bad_reads.is_empty(),
        "{} of {total} whole-file reads were not one committed value:\n{}",
        bad_reads.len(),
        bad_reads.join("\n")
    );
    // The final value: one writer's whole value, the same in the store.
    let last = read_file(&m.path("cc"));
    let id = identify(&last);
    assert!(
        matches!(id, Some((w, r)) if w < RW_WRITERS && last.len() == rw_size(w, r)),
        "the final value: {}",
        describe(&last)
    );
    assert_chunk(m, "cc", Some(&last), "after the writers");
}

// ---------------------------------------------------------------------------------------------
// 4. rename is ordered with commits.

/// A close() that just returned is what a rename right after it moves; no older commit of
/// either name lands later (also not at a later release, nor after a remount).
fn rename_after_close_moves_the_closed_value(m: &mut TestMount) {
    let mut expect = Vec::new();
    for i in 0..10u32 {
        let (a, b) = (
            tagged(1, i, (1 + i as usize % 3) * MIB),
            tagged(2, i, 64 * 1024 * (1 + i as usize)),
        );
        // aa is the old destination, written and closed just before; bb is renamed onto it.
        assert!(write_in_pieces(&m.path("aa"), &a, 128 * 1024, true).ok());
        assert!(write_in_pieces(&m.path("bb"), &b, 128 * 1024, true).ok());
        fs::rename(m.path("bb"), m.path("aa")).unwrap();
        assert!(
            absent(&m.path("bb")),
            "round {i}: bb exists after the rename"
        );
        assert_bytes(
            &read_file(&m.path("aa")),
            &b,
            &format!("round {i}: aa right after the rename"),
        );
        expect = b;
    }
    // Late releases or retried commits would land by now.
    thread::sleep(Duration::from_millis(500));
    assert_chunk(m, "aa", Some(&expect), "after the renames");
    assert_chunk(m, "bb", None, "after the renames");
    m.remount();
    assert_chunk(m, "aa", Some(&expect), "after a remount");
    assert_chunk(m, "bb", None, "after a remount");
}

/// Handles open across a rename follow their files (POSIX): a writer of bb opened before
/// `rename(bb -> aa)` publishes to aa; a writer of the old aa (replaced by the rename) publishes
/// to a file that no longer has a name: its bytes never show under aa or bb.
fn rename_with_writers_open(m: &mut TestMount) {
    for (i, bb_closes_first) in [(0u32, true), (1, false), (2, true), (3, false)] {
        let (a0, b0) = (tagged(10, i, 300_000), tagged(20, i, 200_000));
        let (a1, b1) = (tagged(11, i, 2 * MIB), tagged(21, i, MIB + 4096));
        write_file(&m.path("aa"), &a0);
        write_file(&m.path("bb"), &b0);
        let mut fa = File::create(m.path("aa")).unwrap();
        let mut fb = File::create(m.path("bb")).unwrap();
        fa.write_all(&a1[..MIB]).unwrap();
        fb.write_all(&b1[..MIB / 2]).unwrap();
        fs::rename(m.path("bb"), m.path("aa")).unwrap();
        assert!(
            absent(&m.path("bb")),
            "round {i}: bb exists after the rename"
        );
        // Each writer's fstat shows its own size: the replaced aa's (no link) and bb's (as aa).
        let (ma, mb) = (fa.metadata().unwrap(), fb.metadata().unwrap());
        assert_eq!((ma.len(), ma.nlink()), (MIB as u64, 0), "round {i}: old aa");
        assert_eq!(
            (mb.len(), mb.nlink()),
            (MIB as u64 / 2, 1),
            "round {i}: bb as aa"
        );
        fa.write_all(&a1[MIB..]).unwrap();
        fb.write_all(&b1[MIB / 2..]).unwrap();
        let (ra, rb) = if bb_closes_first {
            let rb = close(fb);
            (close(fa), rb)
        } else {
            let ra = close(fa);
            (ra, close(fb))
        };
        // The old aa's writer may succeed (a nameless file) or fail; either way it is invisible.
        let _ = ra;
        let want: &[u8] = if rb.is_ok() { &b1 } else { &b0 };
        let when = format!("round {i}, after the writers closed (bb's close: {rb:?})");
        assert_chunk(m, "aa", Some(want), &when);
        assert_chunk(m, "bb", None, &when);
    }
}

/// The clock that orders the writers' steps against the rename.
struct Clock(AtomicU64);

impl Clock {
    fn now(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
}

/// One write round of a racing writer: when its open and close ran, and close's result.
#[derive(Debug, Clone)]
struct Round {
    round: u32,
    open_start: u64,
    open_end: u64,
    close_end: u64,
    ok: bool,
    /// open(O_CREAT | O_TRUNC) failed (it never may).
    open_error: Option<String>,
}

/// What a racing writer is doing, so that the rename can be aimed at an open handle or at a
/// close (a commit) in flight.
const WRITING: u8 = 1;
const CLOSING: u8 = 2;

/// Writes whole values of `writer` to `path` in a loop until `stop` (checked before each open),
/// then `extra` more rounds; records each round.
fn racing_writer(
    path: &Path,
    writer: u16,
    clock: &Clock,
    state: &AtomicU8,
    stop: &AtomicBool,
    extra: u32,
) -> Vec<Round> {
    let mut rounds = Vec::new();
    let mut left = extra;
    for r in 0.. {
        // Made before the stop check, so that a round opens right after it.
        let v = racing_value(writer, r);
        if stop.load(Ordering::SeqCst) {
            if left == 0 {
                break;
            }
            left -= 1;
        }
        let open_start = clock.now();
        let opened = File::create(path);
        let open_end = clock.now();
        let mut round = Round {
            round: r,
            open_start,
            open_end,
            close_end: open_end,
            ok: false,
            open_error: None,
        };
        match opened {
            Ok(mut f) => {
                state.store(WRITING, Ordering::SeqCst);
                let wrote = v.chunks(128 * 1024).all(|p| f.write_all(p).is_ok());
                state.store(CLOSING, Ordering::SeqCst);
                let closed = close(f).is_ok();
                state.store(0, Ordering::SeqCst);
                round.close_end = clock.now();
                round.ok = wrote && closed;
            }
            Err(e) => round.open_error = Some(e.to_string()),
        }
        rounds.push(round);
    }
    rounds
}

/// Round `round`'s value of racing writer 1 (aa's: 3 MiB, a long commit) or 2 (bb's: 768 KiB).
fn racing_value(writer: u16, round: u32) -> Vec<u8> {
    let size = if writer == 1 { 3 * MIB } else { 768 * 1024 };
    tagged(writer, round, size + 8 * (round as usize % 512))
}

/// Writers keep rewriting aa and bb while the test renames bb -> aa, aimed at a handle being
/// written and at a close in flight. Afterwards aa holds bb's value as of the rename (the last
/// closed one, or that of the handle open across the rename), never a value of the old aa opened
/// before the rename, never one of a bb opened after it; bb holds the last value written after.
fn rename_during_commits(m: &mut TestMount) {
    let mut bad = Vec::new();
    // Another chunk's large commits keep the committer busy, so that commits of aa and bb queue
    // up behind them (a commit in flight for a while, as under load).
    let stop_busy = Arc::new(AtomicBool::new(false));
    let busy_state = Arc::new(AtomicU8::new(0));
    let busy = {
        let (path, stop, state) = (m.path("cc"), stop_busy.clone(), busy_state.clone());
        thread::spawn(move || {
            let mut failed = Vec::new();
            for r in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let v = tagged(3, r, 16 * MIB);
                let mut f = File::create(&path).unwrap();
                state.store(WRITING, Ordering::SeqCst);
                let wrote = v.chunks(MIB).all(|p| f.write_all(p).is_ok());
                state.store(CLOSING, Ordering::SeqCst);
                let closed = close(f);
                state.store(0, Ordering::SeqCst);
                if !wrote || closed.is_err() {
                    failed.push(format!("cc round {r}: wrote {wrote}, close {closed:?}"));
                }
            }
            failed
        })
    };
    for trial in 0..10u32 {
        write_file(&m.path("aa"), &tagged(30, trial, 4096));
        write_file(&m.path("bb"), &tagged(40, trial, 4096));
        let clock = Arc::new(Clock(AtomicU64::new(0)));
        let stop_a = Arc::new(AtomicBool::new(false));
        let stop_b = Arc::new(AtomicBool::new(false));
        let state_a = Arc::new(AtomicU8::new(0));
        let state_b = Arc::new(AtomicU8::new(0));
        let spawn =
            |name: &str, writer: u16, state: &Arc<AtomicU8>, stop: &Arc<AtomicBool>, extra| {
                let (path, clock, state, stop) =
                    (m.path(name), clock.clone(), state.clone(), stop.clone());
                thread::spawn(move || racing_writer(&path, writer, &clock, &state, &stop, extra))
            };
        let wa = spawn("aa", 1, &state_a, &stop_a, 0);
        // Aim at bb's writer mid-write, at bb's close in flight, at aa's close in flight (with
        // bb's writer busy, and with bb's writer starting only after the rename).
        let kind = [0, 1, 2, 3, 3][trial as usize % 5];
        let wb = (kind != 3).then(|| spawn("bb", 2, &state_b, &stop_b, 3));
        let (state, target) = match kind {
            0 => (&state_b, WRITING),
            1 => (&state_b, CLOSING),
            _ => (&state_a, CLOSING),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        thread::sleep(Duration::from_millis(50 * (trial as u64 + 1)));
        // For aa's close, wait until cc's commit is in flight too: aa's commit then waits
        // behind it, in flight for a while, as the rename comes.
        let aimed = || {
            state.load(Ordering::SeqCst) == target
                && (kind < 2 || busy_state.load(Ordering::SeqCst) == CLOSING)
        };
        while !aimed() && Instant::now() < deadline {
            thread::yield_now();
        }
        if kind >= 2 {
            thread::sleep(Duration::from_millis(1));
        }
        stop_a.store(true, Ordering::SeqCst);
        let rename_start = clock.now();
        let renamed = fs::rename(m.path("bb"), m.path("aa"));
        let rename_end = clock.now();
        stop_b.store(true, Ordering::SeqCst);
        renamed.unwrap_or_else(|e| panic!("trial {trial}: rename bb -> aa: {e}"));
        let wb = wb.unwrap_or_else(|| spawn("bb", 2, &state_b, &stop_b, 3));
        let ra = wa.join().unwrap();
        let rb = wb.join().unwrap();
        let value = |w: u16, r: &Round| racing_value(w, r.round);

        // Rounds that overlap the rename may fail; every other close must succeed.
        for (w, rounds) in [(1u16, &ra), (2, &rb)] {
            for r in rounds.iter().filter(|r| r.open_error.is_some()) {
                bad.push(format!(
                    "trial {trial}: writer {w} round {}: open: {:?}",
                    r.round, r.open_error
                ));
            }
            for r in rounds.iter().filter(|r| !r.ok && r.open_error.is_none()) {
                if r.close_end < rename_start || r.open_start > rename_end {
                    bad.push(format!(
                        "trial {trial}: writer {w} round {} failed away from the rename",
                        r.round
                    ));
                }
            }
        }
        // aa: bb's last value closed before the rename, or that of a bb handle open during it,
        // or a value of aa's writer opened during or after the rename (on bb's old file).
        let last_b = rb.iter().rev().find(|r| r.close_end < rename_start && r.ok);
        let mut allowed: Vec<Vec<u8>> = vec![match last_b {
            Some(r) => value(2, r),
            None => tagged(40, trial, 4096),
        }];
        allowed.extend(
            rb.iter()
                .filter(|r| r.ok && r.open_start < rename_end && r.close_end > rename_start)
                .map(|r| value(2, r)),
        );
        allowed.extend(
            ra.iter()
                .filter(|r| r.ok && r.open_end > rename_start)
                .map(|r| value(1, r)),
        );
        let aa = shown(m, "aa").unwrap_or_default();
        if !allowed.contains(&aa) {
            bad.push(format!(
                "trial {trial}: aa holds {} ; allowed: {}",
                describe(&aa),
                allowed
                    .iter()
                    .map(|v| describe(&v[..16]))
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
        // bb: the last value of bb's writer, whose round opened after the rename (a new file).
        let last = rb.last().unwrap();
        if !(last.open_start > rename_end && last.ok) {
            bad.push(format!(
                "trial {trial}: bb's last round did not succeed after the rename: {last:?}"
            ));
        }
        let bb = shown(m, "bb");
        if bb.as_deref() != Some(&value(2, last)[..]) {
            bad.push(format!(
                "trial {trial}: bb holds {} ; want the last value {}",
                bb.map_or("absent".into(), |v| describe(&v)),
                describe(&value(2, last)[..16])
            ));
        }
        // And the store agrees with the mount (LevelDB: at the end, which needs a remount).
        if m.store == Store::Ceph {
            let (aa2, bb2) = (stored(m, "aa"), stored(m, "bb"));
            if aa2.as_deref() != Some(&aa[..]) || bb2 != shown(m, "bb") {
                bad.push(format!("trial {trial}: the store differs from the mount"));
            }
        }
    }
    stop_busy.store(true, Ordering::SeqCst);
    bad.extend(busy.join().unwrap());
    let (aa, bb) = (shown(m, "aa"), shown(m, "bb"));
    assert_chunk(m, "aa", aa.as_deref(), "at the end");
    assert_chunk(m, "bb", bb.as_deref(), "at the end");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The issue's race, aimed: a long commit of another chunk (cc, 60 MiB) is in flight, aa's
/// writer closes (its commit waits behind cc's), then `rename(bb -> aa)`. aa's writer opened the
/// old aa, before the rename: its value may land before the rename (and be replaced by it) or not
/// at all, never after it. So aa holds bb's value and bb is gone, whatever the timing.
fn rename_behind_a_long_commit(m: &mut TestMount) {
    let mut bad = Vec::new();
    for round in 0..3u32 {
        let (a0, b0) = (tagged(60, round, 100_000), tagged(61, round, 200_000));
        write_file(&m.path("aa"), &a0);
        write_file(&m.path("bb"), &b0);
        let c_closing = Arc::new(AtomicU8::new(0));
        let long = {
            let (path, state) = (m.path("cc"), c_closing.clone());
            let v = tagged(62, round, 60 * MIB);
            thread::spawn(move || {
                let mut f = File::create(&path).unwrap();
                f.write_all(&v).unwrap();
                state.store(CLOSING, Ordering::SeqCst);
                close(f)
            })
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while c_closing.load(Ordering::SeqCst) != CLOSING && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        thread::sleep(Duration::from_millis(2));
        let a_closing = Arc::new(AtomicU8::new(0));
        let writer = {
            let (path, state) = (m.path("aa"), a_closing.clone());
            let v = tagged(63, round, 64 * 1024);
            thread::spawn(move || {
                let mut f = File::create(&path).unwrap();
                f.write_all(&v).unwrap();
                state.store(CLOSING, Ordering::SeqCst);
                close(f)
            })
        };
        while a_closing.load(Ordering::SeqCst) != CLOSING && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        thread::sleep(Duration::from_millis(2));
        fs::rename(m.path("bb"), m.path("aa")).unwrap();
        let a_closed = writer.join().unwrap();
        let c_closed = long.join().unwrap();
        if let Err(e) = c_closed {
            bad.push(format!("round {round}: cc's close failed: {e}"));
        }
        let aa = shown(m, "aa");
        if aa.as_deref() != Some(&b0[..]) {
            bad.push(format!(
                "round {round}: aa holds {} (aa's writer closed: {a_closed:?}); want bb's {}",
                aa.map_or("absent".into(), |v| describe(&v)),
                describe(&b0)
            ));
        }
        if !absent(&m.path("bb")) {
            bad.push(format!("round {round}: bb exists after the rename"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert_chunk(m, "bb", None, "at the end");
}

/// A chunk renamed onto a scratch name leaves the store for a scratch file with its bytes
/// (never lost: kept across the unmount), and renamed back it is the same chunk.
fn rename_onto_a_scratch_name_keeps_the_bytes(m: &mut TestMount) {
    let v = tagged(5, 0, 10_000);
    write_file(&m.path("ee"), &v);
    fs::rename(m.path("ee"), m.path(".ee.swp")).unwrap();
    assert!(absent(&m.path("ee")));
    assert_eq!(read_file(&m.path(".ee.swp")), v);
    m.remount();
    assert!(absent(&m.path("ee")));
    assert_eq!(read_file(&m.path(".ee.swp")), v);
    fs::rename(m.path(".ee.swp"), m.path("ee")).unwrap();
    assert_chunk(m, "ee", Some(&v), "after the rename back");
    m.remount();
    assert_chunk(m, "ee", Some(&v), "after a remount");
    assert!(absent(&m.path(".ee.swp")));
}

// ---------------------------------------------------------------------------------------------
// 5. An unlinked open file keeps its bytes for its handles.

fn unlinked_open_file_reads_its_bytes(m: &mut TestMount) {
    for (i, size) in [(0u16, MIB), (1, 9 * MIB)] {
        let name = format!("f{i}");
        let v = tagged(50 + i, 0, size);
        write_file(&m.path(&name), &v);
        m.remount(); // nothing cached in the kernel or the daemon

        // Opened, not read yet, unlinked: the handle reads all of it.
        let mut f = File::open(m.path(&name)).unwrap();
        fs::remove_file(m.path(&name)).unwrap();
        assert!(absent(&m.path(&name)), "{name} is there after unlink");
        // fstat: its size, no link (not ENOENT: the file is still open).
        let meta = f.metadata().unwrap();
        assert_eq!(
            (meta.len(), meta.nlink()),
            (size as u64, 0),
            "{name}: fstat"
        );
        assert!(!listed(m).contains(&name), "{name} is listed after unlink");
        let mut got = Vec::new();
        f.read_to_end(&mut got).unwrap();
        assert_bytes(
            &got,
            &v,
            &format!("{name} read through the unlinked handle"),
        );
        // Ranged reads too, from the end backwards.
        let mut piece = vec![0u8; 100_000];
        let off = (size - 150_000) as u64;
        f.read_exact_at(&mut piece, off).unwrap();
        assert_bytes(
            &piece,
            &v[off as usize..off as usize + 100_000],
            "a ranged read",
        );
        // A new file of the same name is another file.
        let new = tagged(60 + i, 0, 5000);
        write_file(&m.path(&name), &new);
        f.read_exact_at(&mut piece, 0).unwrap();
        assert_bytes(
            &piece,
            &v[..100_000],
            "the unlinked handle after a new file took the name",
        );
        drop(f);
        assert_chunk(m, &name, Some(&new), "after the unlinked handle closed");
        fs::remove_file(m.path(&name)).unwrap();
        assert_chunk(m, &name, None, "after the second unlink");
    }

    // A writing handle of an unlinked file: its close brings nothing back.
    let v = tagged(70, 0, 2 * MIB);
    write_file(&m.path("f2"), &v);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("f2"))
        .unwrap();
    f.write_all(&tagged(71, 0, MIB)).unwrap();
    fs::remove_file(m.path("f2")).unwrap();
    f.write_all(&tagged(72, 0, MIB)).unwrap();
    let _ = close(f);
    thread::sleep(Duration::from_millis(200));
    assert_chunk(m, "f2", None, "after an unlinked writer closed");
    m.remount();
    assert_chunk(m, "f2", None, "after a remount");
}

// ---------------------------------------------------------------------------------------------
// 6. The memory budget bounds the daemon's real memory.

/// The budget of the memory test, given with --memory-budget.
const BUDGET: u64 = 128 << 20;
/// What the daemon may use beyond the budget, whatever it does: its code and libraries, the
/// allocator's and the threads' fixed memory, fuser's request buffers (one 1 MiB + header per
/// FUSE thread), librados' client, the store's own caches (4 MiB each, see below),
/// and some slack. An idle daemon measured 25 MiB (LevelDB) and 30 MiB (Ceph) here. Chunk data
/// of any kind (write buffers, fetched values, copies handed to the store) is inside the budget.
/// The store's own caches are set to 4 MiB each ([`SMALL_STORE_CACHES`]) to fit in it.
const OVERHEAD: u64 = 64 << 20;
/// LevelDB's own copies of the chunk it is writing, outside the budget but bounded by the
/// largest value, whatever the number of writers: the memtable holds the value written last and
/// the immutable memtable the one before it until its table is written, and building that table
/// holds the value's block and its compressed form. Four copies of the largest value.
const LEVELDB_COPIES: u64 = 4 * BIG as u64;
/// librados' own copy of a value in flight (the bufferlist it sends), outside the budget, bounded
/// by the largest value: the budget admits one such commit at a time. (Measured peaks: 151-157
/// MiB against this limit of 242 MiB, once the daemon pinned glibc's mmap threshold.)
const LIBRADOS_COPIES: u64 = BIG as u64;
const BIG: usize = 50 * MIB;
/// How long the 8 writers of the memory test may take (about 1 GiB through a debug daemon).
const WRITERS_TIMEOUT: Duration = Duration::from_secs(300);

/// A field of /proc/PID/status, in bytes.
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} missing from /proc/{pid}/status"));
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

fn memory_budget_bounds_the_daemon(m: &mut TestMount) {
    let pid = m.daemon_pid().expect("daemon pid");
    // Four chunks hold an old value, four are new.
    let old: Vec<Option<Vec<u8>>> = (0..8u16)
        .map(|i| (i < 4).then(|| tagged(80 + i, 0, 100_000)))
        .collect();
    for (i, v) in old.iter().enumerate() {
        if let Some(v) = v {
            write_file(&m.path(&format!("e{i}")), v);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(Mutex::new(0u64));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let rss = proc_status_bytes(pid, "VmRSS");
                let mut p = peak.lock().unwrap();
                *p = (*p).max(rss);
                drop(p);
                thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..8u16 {
        let (path, tx) = (m.path(&format!("e{i}")), tx.clone());
        thread::spawn(move || {
            let out = write_in_pieces(&path, &tagged(90 + i, 0, BIG), MIB, true);
            let _ = tx.send((i as usize, out));
        });
    }
    // Waiting for the budget is allowed, forever is not (writers that each hold a part of it
    // and all wait for more never finish).
    let deadline = Instant::now() + WRITERS_TIMEOUT;
    let mut outcomes: Vec<Option<WriteOutcome>> = (0..8).map(|_| None).collect();
    for _ in 0..8 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, out)) => outcomes[i] = Some(out),
            Err(_) => panic!(
                "8 writers of {} MiB under a {} MiB budget: still not done after {WRITERS_TIMEOUT:?} \
                 (done: {:?})",
                BIG >> 20,
                BUDGET >> 20,
                outcomes
            ),
        }
    }
    let outcomes: Vec<WriteOutcome> = outcomes.into_iter().map(Option::unwrap).collect();
    stop.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let hwm = proc_status_bytes(pid, "VmHWM");
    let sampled = *peak.lock().unwrap();

    let mut problems = Vec::new();
    for (i, out) in outcomes.iter().enumerate() {
        let name = format!("e{i}");
        if let Some(e) = out.write_errno {
            if e != libc::ENOMEM {
                problems.push(format!("{name}: a write failed with errno {e}, not ENOMEM"));
            }
            if out.close_errno.is_none() {
                problems.push(format!("{name}: a write failed, and close() returned 0"));
            }
        }
        let got = shown(m, &name);
        let want = if out.ok() {
            Some(tagged(90 + i as u16, 0, BIG))
        } else {
            old[i].clone()
        };
        if got != want {
            problems.push(format!(
                "{name} ({out:?}) holds {} ; want {}",
                got.map_or("absent".into(), |v| describe(&v)),
                want.map_or("absent".into(), |v| describe(&v))
            ));
        }
    }
    let ok = outcomes.iter().filter(|o| o.ok()).count();
    if ok == 0 {
        problems.push("no writer succeeded (waiting for the budget is allowed)".into());
    }
    let overhead = match m.store {
        Store::Leveldb => OVERHEAD + LEVELDB_COPIES,
        Store::Ceph => OVERHEAD + LIBRADOS_COPIES,
    };
    eprintln!(
        "memory test ({:?}): peak RSS {} MiB (sampled {} MiB), limit {} MiB; {} of 8 writers \
         succeeded",
        m.store,
        hwm >> 20,
        sampled >> 20,
        (BUDGET + overhead) >> 20,
        outcomes.iter().filter(|o| o.ok()).count()
    );
    if hwm > BUDGET + overhead {
        problems.push(format!(
            "the daemon's peak RSS (VmHWM) was {} MiB (sampled VmRSS peak {} MiB): over the \
             budget of {} MiB + {} MiB overhead",
            hwm >> 20,
            sampled >> 20,
            BUDGET >> 20,
            overhead >> 20
        ));
    }
    assert!(
        problems.is_empty(),
        "{ok} of 8 writers succeeded:\n{}",
        problems.join("\n")
    );

    // The budget came back: each writer that failed succeeds alone now.
    for (i, out) in outcomes.iter().enumerate() {
        if !out.ok() {
            let v = tagged(95, i as u32, BIG);
            let again = write_in_pieces(&m.path(&format!("e{i}")), &v, MIB, true);
            assert!(
                again.ok(),
                "e{i} alone after the others finished: {again:?}"
            );
            assert_bytes(
                &read_file(&m.path(&format!("e{i}"))),
                &v,
                &format!("e{i} rewritten"),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// After a successful close, a new open sees the new value (no stale kernel pages).

fn a_new_open_sees_the_committed_value(m: &mut TestMount) {
    let first = tagged(1, 0, 3 * MIB);
    write_file(&m.path("ff"), &first);
    // A reader holds the file open (its pages cached) across several rewrites.
    let reader = File::open(m.path("ff")).unwrap();
    let mut buf = vec![0u8; first.len()];
    reader.read_exact_at(&mut buf, 0).unwrap();
    for r in 1..6u32 {
        // Shorter and longer values, rewritten in the middle without O_TRUNC too.
        let v = tagged(1, r, MIB * (1 + (r as usize % 3)));
        assert!(write_in_pieces(&m.path("ff"), &v, 128 * 1024, true).ok());
        assert_bytes(
            &read_file(&m.path("ff")),
            &v,
            &format!("round {r}: a new open after close"),
        );
        assert_eq!(
            fs::metadata(m.path("ff")).unwrap().len(),
            v.len() as u64,
            "round {r}: size"
        );
        let mut patch = v.clone();
        patch[4096..8192].copy_from_slice(&tagged(2, r, 4096));
        let f = OpenOptions::new().write(true).open(m.path("ff")).unwrap();
        f.write_all_at(&patch[4096..8192], 4096).unwrap();
        close(f).unwrap();
        assert_bytes(
            &read_file(&m.path("ff")),
            &patch,
            &format!("round {r}: after a patch"),
        );
    }
    drop(reader);
}

// ---------------------------------------------------------------------------------------------
// A writer killed with SIGKILL: the kernel closes its descriptor (a flush, like any close), so
// what it wrote so far is published, as a local filesystem keeps it. Documented in SEMANTICS.md.

fn a_killed_writer_publishes_what_it_wrote(m: &mut TestMount) {
    let name = "c0ffee01";
    write_file(&m.path(name), &tagged(1, 1, 3 * MIB));
    let part = tagged(2, 1, 700 * 1024);
    fs::write(m.outside("part"), &part).unwrap();
    // The shell opens the file (O_TRUNC), writes the part, says so, then becomes a sleep that
    // still holds the descriptor: the SIGKILL lands with the file open and written.
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(r#"exec 3>"$MNT/$1"; cat "$2" >&3; echo written; exec sleep 120"#)
        .arg("bash")
        .arg(name)
        .arg(m.outside("part"))
        .env("MNT", &m.mnt)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    let mut out = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        said.push(byte[0] as char);
    }
    assert_eq!(said, "written", "the writer did not finish its writes");
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    assert_chunk(m, name, Some(&part), "after its writer was killed");
}

// A close() by another thread of the process that opened the file publishes it, as a close by
// the opening thread does (FUSE names the calling thread; a descriptor belongs to the process).
// A dup of the descriptor stays open, so no release can publish it instead.

fn a_close_by_another_thread_publishes(m: &mut TestMount) {
    let name = "c0ffee02";
    write_file(&m.path(name), &tagged(1, 1, 1000));
    let new = tagged(2, 1, 300 * 1024);
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.path(name))
        .unwrap();
    f.write_all(&new).unwrap();
    let keep = f.try_clone().unwrap();
    thread::spawn(move || close(f)).join().unwrap().unwrap();
    assert_bytes(
        &read_file(&m.path(name)),
        &new,
        "after a close by another thread, with a dup still open",
    );
    drop(keep);
    assert_chunk(m, name, Some(&new), "after the last close");
}

mount_suites!([
    efbig_keeps_the_old_value(&["--max-chunk-size", "4M"]),
    parallel_writers_leave_one_whole_value,
    readers_see_only_whole_committed_values,
    rename_after_close_moves_the_closed_value,
    rename_with_writers_open,
    rename_during_commits,
    rename_behind_a_long_commit,
    rename_onto_a_scratch_name_keeps_the_bytes,
    unlinked_open_file_reads_its_bytes,
    a_new_open_sees_the_committed_value,
    a_killed_writer_publishes_what_it_wrote,
    a_close_by_another_thread_publishes,
]);

/// The memory test needs a config file (small store caches), so it mounts by itself.
mod memory {
    use super::*;

    fn run(store: Store, test: &str) {
        let budget = BUDGET.to_string();
        if let Some(mut m) = TestMount::with_config(
            store,
            test,
            SMALL_STORE_CACHES,
            &["--memory-budget", &budget],
        ) {
            memory_budget_bounds_the_daemon(&mut m);
        }
    }

    #[test]
    fn leveldb_memory_budget_bounds_the_daemon() {
        run(
            Store::Leveldb,
            "memory::leveldb_memory_budget_bounds_the_daemon",
        );
    }

    #[test]
    fn ceph_memory_budget_bounds_the_daemon() {
        run(Store::Ceph, "memory::ceph_memory_budget_bounds_the_daemon");
    }
}
