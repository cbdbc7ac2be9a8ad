//! Commits of many handles at once (fsyncdir, shutdown): several in flight.

use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use super::*;
use crate::store::passthrough::{Call, Hook, PassThrough};

/// Holds each store write until a second value is being written (or a bound passed): only
/// values in flight together get through at once.
#[derive(Default)]
struct Overlap {
    arrived: AtomicUsize,
    alone: AtomicUsize,
}

impl Hook for Overlap {
    fn before(&self, _inner: &dyn Cloudstore, call: Call<'_>) -> StoreResult<()> {
        let values = match call {
            Call::Set(_) => 1,
            // A batch is written pipelined: its values are in flight together.
            Call::SetBatch(chunks) => chunks.len(),
            _ => 0,
        };
        if values > 0 {
            self.arrived.fetch_add(values, Ordering::SeqCst);
            let bound = Instant::now() + Duration::from_secs(2);
            while self.arrived.load(Ordering::SeqCst) < 2 {
                if Instant::now() >= bound {
                    self.alone.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    }
}

#[test]
fn commit_all_has_several_commits_in_flight() {
    let store = Arc::new(PassThrough::wrap(mem(), Overlap::default()));
    let fs = fs_over(store.clone());
    let handles: Vec<u64> = (0..8)
        .map(|i| {
            let (_, fh) = fs.create(ROOT_INO, n(&format!("c{i}")), CREATE, 0).unwrap();
            fs.write(fh, 0, &[i as u8; 100]).unwrap();
            fh
        })
        .collect();
    let started = Instant::now();
    fs.commit_all().unwrap();
    assert_eq!(
        store.alone.load(Ordering::SeqCst),
        0,
        "a commit waited alone: commit_all sent them one at a time ({:?})",
        started.elapsed()
    );
    for (i, fh) in handles.into_iter().enumerate() {
        fs.release(fh).unwrap();
        assert_eq!(cat(&fs, &format!("c{i}")).unwrap(), vec![i as u8; 100]);
    }
}

/// Makes a store act like LevelDB with a value as big as its write buffer: it holds copies of a
/// value after its commit until `write_out`, which waits here until the test lets it go.
#[derive(Default)]
struct HoldsAfterWrite {
    gate: parking_lot::Mutex<bool>,
    opened: parking_lot::Condvar,
    writes_out: AtomicUsize,
}

impl HoldsAfterWrite {
    fn open_gate(&self) {
        *self.gate.lock() = true;
        self.opened.notify_all();
    }
}

impl Hook for HoldsAfterWrite {
    fn write_cost(&self, _inner: &dyn Cloudstore, len: u64, _owned: bool) -> u64 {
        3 * len
    }
    fn holds_after_write(&self, _inner: &dyn Cloudstore, len: u64) -> bool {
        len >= 1000
    }
    fn write_out(&self, _inner: &dyn Cloudstore) {
        self.writes_out.fetch_add(1, Ordering::SeqCst);
        let mut open = self.gate.lock();
        while !*open {
            self.opened.wait(&mut open);
        }
    }
}

/// What the store holds of a big value after its commit stays counted in the memory budget
/// until the store has written it out, which runs in the background (the close does not wait
/// for it; commits made meanwhile share the next write-out), and the unmount waits for it.
#[test]
fn a_write_out_holds_its_budget_until_done_and_the_unmount_waits_for_it() {
    let store = Arc::new(PassThrough::wrap(mem(), HoldsAfterWrite::default()));
    let fs = Arc::new(fs_over(store.clone()));
    let (_, small) = fs.create(ROOT_INO, n("01"), CREATE, 0).unwrap();
    fs.write(small, 0, &[1; 999]).unwrap();
    fs.flush(small, 0).unwrap();
    fs.release(small).unwrap();
    assert_eq!(store.writes_out.load(Ordering::SeqCst), 0, "nothing held");
    let base = fs.memory_in_use();

    let (_, big) = fs.create(ROOT_INO, n("02"), CREATE, 0).unwrap();
    fs.write(big, 0, &[2; 4000]).unwrap();
    fs.flush(big, 0).unwrap();
    fs.release(big).unwrap();
    assert_eq!(store.get_chunk(&[2]).unwrap().unwrap(), vec![2; 4000]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.writes_out.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        store.writes_out.load(Ordering::SeqCst),
        1,
        "written out once"
    );
    assert!(
        fs.memory_in_use() >= base + 3 * 4000,
        "the store's copies stay counted while it holds them: {} of the budget in use",
        fs.memory_in_use()
    );
    // Commits made while a write-out runs share the next one (no backlog holding the budget).
    for name in ["03", "04"] {
        let (_, fh) = fs.create(ROOT_INO, n(name), CREATE, 0).unwrap();
        fs.write(fh, 0, &[3; 2000]).unwrap();
        fs.flush(fh, 0).unwrap();
        fs.release(fh).unwrap();
    }
    let unmount = {
        let fs = fs.clone();
        std::thread::spawn(move || fs.shutdown())
    };
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !unmount.is_finished(),
        "the unmount waits for the write-out"
    );
    store.open_gate();
    unmount.join().unwrap().unwrap();
    assert_eq!(
        store.writes_out.load(Ordering::SeqCst),
        2,
        "one write-out for the commits made during the first"
    );
    assert_eq!(fs.memory_in_use(), base, "given back once written out");
}
