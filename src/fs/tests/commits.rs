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
