//! File attributes as the core reports them, and the short-lived cache of sizes and mtimes learned
//! from the store (listings, stats), so that `ls -l` does not stat every chunk twice.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// What kind of node an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// The one directory (the mount's root).
    Directory,
    /// A chunk or a scratch file.
    File,
}

/// The attributes of an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: FileKind,
    pub size: u64,
    pub mtime: SystemTime,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    /// The file has writers open: what it shows may differ by caller (a writer sees its own
    /// size) and change at any moment, so the kernel must not cache it. (A create's answer
    /// for a new file is the exception: see `ChunkFs::create`.)
    pub volatile: bool,
}

/// A time given to setattr: a moment, or "now" (touch without -d).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTime {
    Now,
    At(SystemTime),
}

impl SetTime {
    /// The moment this stands for.
    pub fn resolve(self) -> SystemTime {
        match self {
            SetTime::Now => SystemTime::now(),
            SetTime::At(t) => t,
        }
    }
}

/// Filesystem figures for statfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
}

#[derive(Default)]
struct Cached {
    /// The size, or None for "known missing" (a negative lookup, like the kernel's).
    size: Option<(Option<u64>, Instant)>,
    mtime: Option<(SystemTime, Instant)>,
}

/// Sizes and mtimes by key, each valid for `ttl`.
pub struct AttrCache {
    ttl: Duration,
    map: Mutex<HashMap<Vec<u8>, Cached>>,
    /// The size at which the next sweep runs: at least [`SWEEP_AT`], and twice what the last
    /// sweep left, so that a listing of more fresh names than that does not sweep the whole
    /// map on every new key (each sweep's cost is paid for by as many inserts).
    next_sweep: std::sync::atomic::AtomicUsize,
    /// Bumped by every forget: what was read from the store before a change must not be cached
    /// after it (a stat racing a rename would otherwise make the old name look alive).
    generation: AtomicU64,
}

/// Above this many keys, stale entries are swept.
const SWEEP_AT: usize = 100_000;

impl AttrCache {
    /// An empty cache whose entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        AttrCache {
            ttl,
            map: Mutex::default(),
            next_sweep: std::sync::atomic::AtomicUsize::new(SWEEP_AT),
            generation: AtomicU64::new(0),
        }
    }

    fn fresh(&self, at: Instant) -> bool {
        at.elapsed() < self.ttl
    }

    /// The cached size of `key`, if fresh: `Some(None)` when it is known not to exist.
    pub fn size(&self, key: &[u8]) -> Option<Option<u64>> {
        let map = self.map.lock();
        map.get(key)?
            .size
            .filter(|(_, at)| self.fresh(*at))
            .map(|(s, _)| s)
    }

    /// The last size learned for `key`, however old: what the kernel may still hold.
    pub fn last_size(&self, key: &[u8]) -> Option<Option<u64>> {
        let map = self.map.lock();
        map.get(key)?.size.map(|(s, _)| s)
    }

    /// The cached mtime of `key`, if fresh.
    pub fn mtime(&self, key: &[u8]) -> Option<SystemTime> {
        let map = self.map.lock();
        map.get(key)?
            .mtime
            .filter(|(_, at)| self.fresh(*at))
            .map(|(t, _)| t)
    }

    fn with(&self, key: &[u8], f: impl FnOnce(&mut Cached)) {
        let mut map = self.map.lock();
        self.entry(&mut map, key, f);
    }

    /// Applies `f` to `key`'s entry of the locked `map`, sweeping expired entries first when the
    /// map has grown large.
    fn entry(&self, map: &mut HashMap<Vec<u8>, Cached>, key: &[u8], f: impl FnOnce(&mut Cached)) {
        use std::sync::atomic::Ordering::Relaxed;
        if map.len() >= self.next_sweep.load(Relaxed) && !map.contains_key(key) {
            let ttl = self.ttl;
            map.retain(|_, c| {
                c.size.is_some_and(|(_, at)| at.elapsed() < ttl)
                    || c.mtime.is_some_and(|(_, at)| at.elapsed() < ttl)
            });
            self.next_sweep.store(SWEEP_AT.max(2 * map.len()), Relaxed);
        }
        f(map.entry(key.to_vec()).or_default());
    }

    /// Remembers the size of `key`.
    pub fn set_size(&self, key: &[u8], size: u64) {
        self.with(key, |c| c.size = Some((Some(size), Instant::now())));
    }

    /// Remembers the mtime of `key`.
    pub fn set_mtime(&self, key: &[u8], mtime: SystemTime) {
        self.with(key, |c| c.mtime = Some((mtime, Instant::now())));
    }

    /// The current generation: take it before reading from the store, give it to `learn_*`.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Caches a size (`None`: missing) read from the store, unless something was forgotten
    /// since `since` (the read may predate that change).
    pub fn learn_size(&self, key: &[u8], size: Option<u64>, since: u64) {
        let mut map = self.map.lock();
        if self.generation.load(Ordering::SeqCst) == since {
            self.entry(&mut map, key, |c| c.size = Some((size, Instant::now())));
        }
    }

    /// Caches an mtime read from the store, unless something was forgotten since `since`.
    pub fn learn_mtime(&self, key: &[u8], mtime: SystemTime, since: u64) {
        let mut map = self.map.lock();
        if self.generation.load(Ordering::SeqCst) == since {
            self.entry(&mut map, key, |c| c.mtime = Some((mtime, Instant::now())));
        }
    }

    /// Forgets the mtime of `key` (the store set a new one).
    pub fn forget_mtime(&self, key: &[u8]) {
        let mut map = self.map.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(c) = map.get_mut(key) {
            c.mtime = None;
        }
    }

    /// Forgets everything about `key`.
    pub fn forget(&self, key: &[u8]) {
        let mut map = self.map.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        map.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More fresh keys than the sweep threshold: sweeps run once per doubling, not per key
    /// (each sweep walks the whole map: once per key made a big listing quadratic).
    #[test]
    fn sweeps_are_amortized_when_every_key_is_fresh() {
        let cache = AttrCache::new(Duration::from_secs(3600));
        let started = std::time::Instant::now();
        for i in 0..(3 * SWEEP_AT as u64) {
            cache.set_size(&i.to_be_bytes(), i);
        }
        assert_eq!(cache.map.lock().len(), 3 * SWEEP_AT, "fresh entries stay");
        assert_eq!(
            cache.next_sweep.load(std::sync::atomic::Ordering::Relaxed),
            4 * SWEEP_AT,
            "sweeps at 100k and 200k keys, next at twice what the last one left"
        );
        eprintln!("{} keys in {:?}", 3 * SWEEP_AT, started.elapsed());
    }

    #[test]
    fn a_read_from_before_a_change_is_not_cached_after_it() {
        let cache = AttrCache::new(Duration::from_secs(60));
        let since = cache.generation();
        cache.learn_size(b"k", Some(5), since);
        assert_eq!(cache.size(b"k"), Some(Some(5)));
        // A stat began, then a rename forgot the key, then the stat's answer came back.
        let since = cache.generation();
        cache.forget(b"k");
        cache.learn_size(b"k", Some(7), since);
        cache.learn_mtime(b"k", SystemTime::UNIX_EPOCH, since);
        assert_eq!(cache.size(b"k"), None);
        assert_eq!(cache.mtime(b"k"), None);
        // Reads that began after the change are cached again.
        let since = cache.generation();
        cache.learn_size(b"k", None, since);
        assert_eq!(cache.size(b"k"), Some(None));
    }
}
