//! Group commit: every commit becomes a SetChunk, and commits that queue up together are sent as
//! one SetChunkBatch (one LevelDB write batch, one pipelined Ceph round). A caller whose commit
//! can go leads: it takes every queued commit whose key is not being written by another batch,
//! writes them, and hands each waiter its own result.
//!
//! Commits of one key stay in order: a key in flight holds back its later commits until that
//! batch is answered. Commits of other keys do not wait for it, so one slow or failing batch
//! (a Ceph op running into its timeout) delays no other key's commit: each fails or succeeds
//! within one operation timeout.

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::stats::CommitCounts;
use crate::store::{Cloudstore, RawChunk, Result, StoreError};

/// A commit's outcome: the value handed back, and the store's answer.
type Outcome = (Vec<u8>, Result<()>);

struct Job {
    id: u64,
    key: Vec<u8>,
    value: Vec<u8>,
    /// The committer gives the value back with the result (else the store may take it).
    hand_back: bool,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Job>,
    /// Keys of the batches being written now.
    in_flight: HashSet<Vec<u8>>,
    done: HashMap<u64, Outcome>,
    next_id: u64,
}

impl Queue {
    /// Takes the waiting jobs whose key no batch is writing now, in order (several of one key
    /// go together: a batch applies them in order), and marks their keys in flight.
    fn take_batch(&mut self) -> (Vec<Job>, HashSet<Vec<u8>>) {
        let mut batch = Vec::new();
        let mut keys = HashSet::new();
        for job in std::mem::take(&mut self.waiting) {
            if self.in_flight.contains(&job.key) {
                self.waiting.push(job);
            } else {
                keys.insert(job.key.clone());
                batch.push(job);
            }
        }
        self.in_flight.extend(keys.iter().cloned());
        (batch, keys)
    }
}

/// Writes committed values to the store, batching concurrent commits.
pub struct Committer {
    store: Arc<dyn Cloudstore>,
    queue: Mutex<Queue>,
    cv: Condvar,
    pending: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
}

/// The message a panic carried (a `&str` or a `String`), for the log.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs a store call; a panic in it becomes an EIO error for that call (logged), so that one
/// bad call can neither hang the commits queued behind it nor take the daemon down.
fn guarded<T>(backend: &'static str, key: &[u8], f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let why = panic_message(&*panic);
        let e = StoreError::backend(backend, "commit", key, libc::EIO, format!("panic: {why}"));
        log::error!("{e}");
        Err(e)
    })
}

impl Committer {
    /// A committer writing to `store`.
    pub fn new(store: Arc<dyn Cloudstore>) -> Self {
        Committer {
            store,
            queue: Mutex::default(),
            cv: Condvar::new(),
            pending: AtomicU64::new(0),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// Commits accepted and not answered yet, done and failed so far.
    pub fn counts(&self) -> CommitCounts {
        CommitCounts {
            pending: self.pending.load(Ordering::Relaxed),
            done: self.done.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    /// Counts a commit made outside the queue (a scratch file renamed onto a chunk name).
    pub fn record(&self, ok: bool) {
        let counter = if ok { &self.done } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Stores `value` under `key`; gives the value back (it is moved, not copied) with the result.
    pub fn commit(&self, key: Vec<u8>, value: Vec<u8>) -> Outcome {
        self.commit_job(key, value, true)
    }

    /// Stores `value` under `key`, which the caller gives up: a commit on its own lets the store
    /// free the bytes as soon as it holds its copy (`Cloudstore::set_chunk_owned`).
    pub fn commit_owned(&self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.commit_job(key, value, false).1
    }

    fn commit_job(&self, key: Vec<u8>, value: Vec<u8>, hand_back: bool) -> Outcome {
        self.pending.fetch_add(1, Ordering::Relaxed);
        let outcome = self.commit_queued(key, value, hand_back);
        let counter = if outcome.1.is_ok() {
            &self.done
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.pending.fetch_sub(1, Ordering::Relaxed);
        outcome
    }

    fn commit_queued(&self, key: Vec<u8>, value: Vec<u8>, hand_back: bool) -> Outcome {
        let mut q = self.queue.lock();
        let id = q.next_id;
        q.next_id += 1;
        let mine = key.clone();
        q.waiting.push(Job {
            id,
            key,
            value,
            hand_back,
        });
        loop {
            if let Some(done) = q.done.remove(&id) {
                return done;
            }
            let queued = q.waiting.iter().any(|j| j.id == id);
            if queued && !q.in_flight.contains(&mine) {
                let (jobs, keys) = q.take_batch();
                drop(q);
                let results = self.write(jobs);
                q = self.queue.lock();
                q.done.extend(results);
                q.in_flight.retain(|k| !keys.contains(k));
                self.cv.notify_all();
                continue;
            }
            self.cv.wait(&mut q);
        }
    }

    /// Writes the jobs; never panics (store panics are caught), so their keys always leave
    /// `in_flight`.
    fn write(&self, mut jobs: Vec<Job>) -> Vec<(u64, Outcome)> {
        let backend = self.store.backend();
        if jobs.len() == 1 {
            let job = jobs.pop().expect("one job");
            if !job.hand_back {
                let Job { id, key, value, .. } = job;
                let res = guarded(backend, &key, || self.store.set_chunk_owned(&key, value));
                return vec![(id, (Vec::new(), res))];
            }
            let res = guarded(backend, &job.key, || {
                self.store.set_chunk(&job.key, &job.value)
            });
            return vec![(job.id, (job.value, res))];
        }
        let ids: Vec<u64> = jobs.iter().map(|j| j.id).collect();
        let mut chunks: Vec<RawChunk> = jobs
            .into_iter()
            .map(|j| RawChunk::for_set(j.key, j.value))
            .collect();
        let first = chunks[0].key.clone();
        let overall = guarded(backend, &first, || self.store.set_chunk_batch(&mut chunks));
        ids.into_iter()
            .zip(chunks)
            .map(|(id, mut chunk)| {
                let res = match (&overall, chunk.error.take()) {
                    // One bad value must not fail its neighbours: retry each on its own.
                    (Err(_), _) => guarded(backend, &chunk.key, || {
                        self.store.set_chunk(&chunk.key, &chunk.value)
                    }),
                    (Ok(()), Some(e)) => Err(e),
                    (Ok(()), None) => Ok(()),
                };
                (id, (std::mem::take(&mut chunk.value), res))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[test]
    fn concurrent_commits_all_land() {
        let store: Arc<dyn Cloudstore> = Arc::new(MemoryStore::new(1 << 20));
        let c = Arc::new(Committer::new(store.clone()));
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..50u8 {
                        let (v, r) = c.commit(vec![t, i], vec![t ^ i; 100]);
                        r.unwrap();
                        assert_eq!(v, vec![t ^ i; 100]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for t in 0..8u8 {
            for i in 0..50u8 {
                assert_eq!(store.get_chunk(&[t, i]).unwrap().unwrap(), vec![t ^ i; 100]);
            }
        }
    }

    #[test]
    fn a_stalled_key_delays_only_its_own_later_commits() {
        use crate::fs::testing::FailingStore;
        use std::time::Duration;
        let failing = Arc::new(FailingStore::new(Arc::new(MemoryStore::new(1 << 20))));
        let store: Arc<dyn Cloudstore> = failing.clone();
        let c = Arc::new(Committer::new(store.clone()));
        failing.stall_writes_of(Some(&[1]));
        let first = {
            let c = c.clone();
            std::thread::spawn(move || c.commit(vec![1], b"first".to_vec()).1)
        };
        while c.counts().pending == 0 {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(50));
        // The same key waits for the stalled commit (order) ...
        let second = {
            let c = c.clone();
            std::thread::spawn(move || c.commit(vec![1], b"second".to_vec()).1)
        };
        // ... another key does not.
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let c = c.clone();
            std::thread::spawn(move || tx.send(c.commit(vec![2], b"other".to_vec()).1));
        }
        let Ok(other) = rx.recv_timeout(Duration::from_secs(10)) else {
            failing.stall_writes_of(None);
            panic!("a commit of another key waited for the stalled one");
        };
        other.unwrap();
        assert_eq!(store.get_chunk(&[1]).unwrap(), None);
        std::thread::sleep(Duration::from_millis(50));
        let overtook = second.is_finished();
        failing.stall_writes_of(None);
        assert!(
            !overtook,
            "a later commit of the key overtook the stalled one"
        );
        first.join().unwrap().unwrap();
        second.join().unwrap().unwrap();
        assert_eq!(store.get_chunk(&[1]).unwrap().unwrap(), b"second");
        assert_eq!(c.counts().pending, 0);
    }

    #[test]
    fn one_bad_value_fails_alone() {
        let store: Arc<dyn Cloudstore> = Arc::new(MemoryStore::new(10));
        let c = Committer::new(store.clone());
        let (_, r) = c.commit(vec![1], vec![0; 11]);
        assert_eq!(r.unwrap_err().errno(), libc::EFBIG);
        c.commit(vec![2], vec![0; 10]).1.unwrap();
        let counts = c.counts();
        assert_eq!((counts.pending, counts.done, counts.failed), (0, 1, 1));
    }
}
