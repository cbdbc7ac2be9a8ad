//! Integrity through a real FUSE mount, over LevelDB and over Ceph, for renames:
//! rename is ordered with the commits of both names (a close() that returned is what a rename
//! after it moves; no older commit lands later), handles open across a rename follow their files,
//! and a chunk renamed onto a scratch name keeps its bytes. Needs root and /dev/fuse (SKIPPED
//! otherwise; a failure under CI=true); the Ceph variants need CLOUDSTORE_TEST_CEPH_CONF (see scripts/test.sh).

mod ceph_support;
mod common;

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::chunks::{assert_chunk, shown, stored};
use common::files::{
    absent, assert_bytes, close, describe, read_file, tagged, write_file, write_in_pieces,
};
use common::mount::{Store, TestMount};

const MIB: usize = 1 << 20;

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

/// The race, aimed: a long commit of another chunk (cc, 60 MiB) is in flight, aa's
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

mount_suites!([
    rename_after_close_moves_the_closed_value,
    rename_with_writers_open,
    rename_during_commits,
    rename_behind_a_long_commit,
    rename_onto_a_scratch_name_keeps_the_bytes,
]);
