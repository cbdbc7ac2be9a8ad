//! Batched read-ahead for reading many files: `cat *`, `tar c`, `cp -r`, `rsync` from the mount
//! open the files of a directory one after another, and without help every open costs one store
//! round trip (Ceph) or one locked get (LevelDB). When the opens follow the most recent listing,
//! the next chunks are fetched with ONE `get_chunk_batch` per window and kept here until opened.
//!
//! Two orders count as "listing order": the order readdir returned the names in (what `tar`,
//! `cp -r` and `ls | xargs cat` follow), and name order (what a shell glob and rsync follow:
//! they sort). On LevelDB both are the same; on Ceph the listing is in hash order.
//!
//! Rules that keep it correct and cheap:
//! - a prefetched value is served once (the open takes it out of the cache), expires after
//!   `max_age` (the attribute TTL: no staler than the sizes the kernel already holds), and is
//!   dropped by [`ReadAhead::invalidate`], which every mutation of a chunk calls after the store
//!   changed; a batch that raced with a mutation of one of its keys drops that key's value;
//! - a window starts only when an open is the next name in an order (the first name of a fresh
//!   listing, or the successor of the previous open); once streaming, an open anywhere within
//!   the window keeps it going (tools skip large files and reorder a little). A random open
//!   matches by chance with probability ~1/N per order, so random access does not cause storms;
//! - the cache is byte-bounded (`cache_bytes`, at most 1/8 of the memory budget) and every byte
//!   is charged to the budget; when the budget is tight values are simply not kept.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use super::budget::Budget;
use crate::store::{Cloudstore, RawChunk};

mod listing;

use listing::{Key, Listing, Order, Start, ORDERS};

/// The knobs of read-ahead.
#[derive(Debug, Clone)]
pub struct ReadAheadConfig {
    /// Chunks per batch; 0 turns read-ahead off.
    pub window_chunks: usize,
    /// Bytes (by listed size) per batch.
    pub window_bytes: u64,
    /// Chunks listed larger than this are never prefetched (they are read on their own).
    pub max_value: u64,
    /// Bytes the prefetch cache may hold (further capped at 1/8 of the memory budget).
    pub cache_bytes: u64,
    /// How long a prefetched value may wait for its open.
    pub max_age: Duration,
    /// Names of one listing remembered (beyond it, the rest of the listing is not prefetched).
    pub max_listed: usize,
}

impl Default for ReadAheadConfig {
    fn default() -> Self {
        ReadAheadConfig {
            window_chunks: 32,
            window_bytes: 4 << 20,
            max_value: 1 << 20,
            cache_bytes: 16 << 20,
            max_age: Duration::from_secs(1),
            max_listed: 1_000_000,
        }
    }
}

impl ReadAheadConfig {
    /// No read-ahead at all.
    pub fn off() -> Self {
        ReadAheadConfig {
            window_chunks: 0,
            ..Self::default()
        }
    }
}

/// Counters, for tests and the unmount log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadAheadStats {
    /// `get_chunk_batch` calls made.
    pub batches: u64,
    /// Chunks those batches asked for.
    pub fetched: u64,
    /// Opens served from a batch.
    pub served: u64,
}

/// Where the opens stand in one order.
#[derive(Default, Clone)]
struct Cursor {
    /// The previous open that was in the listing.
    last: Option<Key>,
    /// The previous open was the expected one: tolerate a whole window of skips.
    streaming: bool,
}

struct Entry {
    value: Vec<u8>,
    at: Instant,
    seq: u64,
}

#[derive(Default)]
struct State {
    listing: Listing,
    cursors: [Cursor; 2],
    cache: HashMap<Vec<u8>, Entry>,
    /// Insertion order for eviction: (seq, key); stale pairs are skipped.
    fifo: VecDeque<(u64, Vec<u8>)>,
    cached_bytes: u64,
    next_seq: u64,
    /// Bumped by every invalidation.
    generation: u64,
    /// Batches running without the lock.
    in_flight: usize,
    /// Keys invalidated while batches ran, with the generation they got: a batch that started
    /// before drops their values (they may predate the change).
    invalidated: Vec<(u64, Vec<u8>)>,
}

/// The read-ahead state of one filesystem.
pub struct ReadAhead {
    cfg: ReadAheadConfig,
    cache_limit: u64,
    budget: Arc<Budget>,
    state: Mutex<State>,
    batches: AtomicU64,
    fetched: AtomicU64,
    served: AtomicU64,
}

impl ReadAhead {
    /// Read-ahead under `cfg`, charging what it holds to `budget`.
    pub fn new(cfg: ReadAheadConfig, budget: Arc<Budget>) -> Self {
        // Never let prefetched data crowd out write buffers: 1/8 of the budget at most.
        let cache_limit = cfg.cache_bytes.min(budget.limit() / 8);
        ReadAhead {
            cfg,
            cache_limit,
            budget,
            state: Mutex::default(),
            batches: AtomicU64::new(0),
            fetched: AtomicU64::new(0),
            served: AtomicU64::new(0),
        }
    }

    fn enabled(&self) -> bool {
        self.cfg.window_chunks > 0
    }

    /// The counters so far.
    pub fn stats(&self) -> ReadAheadStats {
        ReadAheadStats {
            batches: self.batches.load(Ordering::Relaxed),
            fetched: self.fetched.load(Ordering::Relaxed),
            served: self.served.load(Ordering::Relaxed),
        }
    }

    /// Bytes held in the prefetch cache now.
    pub fn cached_bytes(&self) -> u64 {
        self.state.lock().cached_bytes
    }

    /// A listing starts from the beginning: it becomes "the most recent listing" (returns its id
    /// for [`ReadAhead::listed`]) and the open cursors restart.
    pub fn begin_listing(&self) -> u64 {
        if !self.enabled() {
            return 0;
        }
        let mut st = self.state.lock();
        let id = st.listing.id + 1;
        st.listing = Listing {
            id,
            ..Listing::default()
        };
        st.cursors = Default::default();
        id
    }

    /// Names (key, listed size) that listing `id` returned next; ignored when a newer listing
    /// started since (the most recent one is what the opens follow).
    pub fn listed(&self, id: u64, page: Vec<(Vec<u8>, u64)>) {
        if !self.enabled() || page.is_empty() {
            return;
        }
        let mut st = self.state.lock();
        let l = &mut st.listing;
        if l.id != id {
            return;
        }
        for (key, size) in page {
            if l.order.len() >= self.cfg.max_listed {
                break;
            }
            let key: Key = key.into();
            if l.index.contains_key(&key) {
                continue;
            }
            l.index.insert(key.clone(), l.order.len());
            l.by_name.insert(key.clone(), size);
            l.order.push((key, size));
        }
    }

    /// `key` is being opened for reading and nothing of it is loaded: returns its value when a
    /// batch brought it (now or earlier). When the open continues a walk through the listing and
    /// the value is not here yet, fetches it together with the rest of the window in one batch.
    /// `None`: read it the usual way.
    pub fn open(&self, store: &dyn Cloudstore, key: &[u8]) -> Option<Vec<u8>> {
        if !self.enabled() {
            return None;
        }
        let mut st = self.state.lock();
        let order = self.advance(&mut st, key);
        if let Some(value) = self.take(&mut st, key) {
            self.served.fetch_add(1, Ordering::Relaxed);
            return Some(value);
        }
        let order = order?;
        let (window, bytes) = self.window(&st, order, key);
        // A window of this one chunk is just a get: leave it to the usual path.
        if window.len() < 2 {
            return None;
        }
        // What the batch brings, and the store's copies of it, is reserved before it is
        // fetched; without room, no read-ahead.
        let transient = bytes.saturating_mul(2);
        if !self.budget.try_reserve(transient) {
            return None;
        }
        let started = st.generation;
        st.in_flight += 1;
        drop(st);

        let mut chunks: Vec<RawChunk> = window.iter().map(|k| RawChunk::for_get(&**k)).collect();
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.fetched
            .fetch_add(chunks.len() as u64, Ordering::Relaxed);
        let result = store.get_chunk_batch(&mut chunks);
        self.budget.release(transient);

        let mut st = self.state.lock();
        st.in_flight -= 1;
        let mut mine = None;
        match result {
            Err(e) => log::debug!("read-ahead: batch of {} failed: {e}", chunks.len()),
            Ok(()) => {
                for chunk in chunks {
                    if !chunk.ok || chunk.error.is_some() {
                        continue;
                    }
                    let stale = st
                        .invalidated
                        .iter()
                        .any(|(g, k)| *g > started && *k == chunk.key);
                    if stale {
                        continue;
                    }
                    if chunk.key == key {
                        mine = Some(chunk.value);
                    } else {
                        self.insert(&mut st, chunk.key, chunk.value);
                    }
                }
            }
        }
        if st.in_flight == 0 {
            st.invalidated.clear();
        }
        if mine.is_some() {
            self.served.fetch_add(1, Ordering::Relaxed);
        }
        mine
    }

    /// `key` changed in the store (written, renamed from or to, deleted): forget its value.
    /// Called after the store call, so that no batch can bring the old value back afterwards.
    pub fn invalidate(&self, key: &[u8]) {
        if !self.enabled() {
            return;
        }
        let mut st = self.state.lock();
        st.generation += 1;
        if st.in_flight > 0 {
            let g = st.generation;
            st.invalidated.push((g, key.to_vec()));
        }
        if let Some(e) = st.cache.remove(key) {
            st.cached_bytes -= e.value.len() as u64;
            self.budget.release(e.value.len() as u64);
        }
    }

    /// Moves the cursors past `key`; returns the order whose window should be fetched when the
    /// open is the expected next name of that order (listing order first).
    fn advance(&self, st: &mut State, key: &[u8]) -> Option<Order> {
        let Some((known, _)) = st.listing.index.get_key_value(key) else {
            // Not in the listing: says nothing about where a walk stands.
            return None;
        };
        let known = known.clone();
        let mut found = None;
        for (i, order) in ORDERS.into_iter().enumerate() {
            let cursor = &st.cursors[i];
            let span = if cursor.streaming {
                self.cfg.window_chunks
            } else {
                1
            };
            let start = match &cursor.last {
                Some(last) => Start::After(last),
                None => Start::Beginning,
            };
            let hit = st.listing.within(order, start, span, key);
            st.cursors[i] = Cursor {
                last: Some(known.clone()),
                streaming: hit,
            };
            if hit && found.is_none() {
                found = Some(order);
            }
        }
        found
    }

    /// The keys to fetch for an open of `key` in `order`: `key` and the names after it that are
    /// small enough and not cached, up to a window's count and bytes.
    fn window(&self, st: &State, order: Order, key: &[u8]) -> (Vec<Key>, u64) {
        let mut out = Vec::new();
        let mut bytes = 0u64;
        // Look a little past the window so that skipped (large or cached) names do not end it.
        let scan = self.cfg.window_chunks * 4;
        for (k, size) in st.listing.walk(order, Start::At(key), scan) {
            if out.len() >= self.cfg.window_chunks {
                break;
            }
            if size > self.cfg.max_value || st.cache.contains_key(&*k) {
                continue;
            }
            // Never more than the cache holds, or the batch would evict its own front.
            let limit = self.cfg.window_bytes.min(self.cache_limit);
            if bytes + size > limit && !out.is_empty() {
                break;
            }
            bytes += size;
            out.push(k);
        }
        (out, bytes)
    }

    /// Takes the cached value of `key` if it is fresh.
    fn take(&self, st: &mut State, key: &[u8]) -> Option<Vec<u8>> {
        let e = st.cache.remove(key)?;
        st.cached_bytes -= e.value.len() as u64;
        self.budget.release(e.value.len() as u64);
        (e.at.elapsed() < self.cfg.max_age).then_some(e.value)
    }

    /// Keeps a prefetched value if the cache and the budget have room (evicting the oldest).
    fn insert(&self, st: &mut State, key: Vec<u8>, value: Vec<u8>) {
        let len = value.len() as u64;
        if len > self.cfg.max_value || len > self.cache_limit {
            return;
        }
        if let Some(old) = st.cache.remove(&key) {
            st.cached_bytes -= old.value.len() as u64;
            self.budget.release(old.value.len() as u64);
        }
        while st.cached_bytes + len > self.cache_limit {
            if !self.evict_oldest(st) {
                return;
            }
        }
        if !self.budget.try_reserve(len) {
            return;
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        st.cached_bytes += len;
        st.fifo.push_back((seq, key.clone()));
        st.cache.insert(
            key,
            Entry {
                value,
                at: Instant::now(),
                seq,
            },
        );
        // Taken and invalidated entries leave pairs behind: compact now and then.
        if st.fifo.len() > 4 * st.cache.len() + 64 {
            let cache = &st.cache;
            let fifo = std::mem::take(&mut st.fifo);
            st.fifo = fifo
                .into_iter()
                .filter(|(s, k)| cache.get(k).is_some_and(|e| e.seq == *s))
                .collect();
        }
    }

    fn evict_oldest(&self, st: &mut State) -> bool {
        while let Some((seq, key)) = st.fifo.pop_front() {
            if st.cache.get(&key).is_some_and(|e| e.seq == seq) {
                let e = st.cache.remove(&key).expect("checked above");
                st.cached_bytes -= e.value.len() as u64;
                self.budget.release(e.value.len() as u64);
                return true;
            }
        }
        false
    }

    /// Drops everything cached (unmount), giving the bytes back to the budget.
    pub fn clear(&self) {
        let mut st = self.state.lock();
        for (_, e) in st.cache.drain() {
            self.budget.release(e.value.len() as u64);
        }
        st.fifo.clear();
        st.cached_bytes = 0;
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.clear();
    }
}
