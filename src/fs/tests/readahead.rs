//! Read-ahead: batched prefetch when opens walk a listing, and what keeps it correct.

use super::*;

const WINDOW: usize = 32;

/// `count` files of `size` bytes named 4 hex digits (0000, 0001, ...), each its own pattern.
fn many(store: &dyn Cloudstore, count: usize, size: usize) -> Vec<(String, Vec<u8>)> {
    (0..count)
        .map(|i| {
            let name = format!("{i:04x}");
            let data: Vec<u8> = (0..size).map(|j| (i * 7 + j) as u8).collect();
            store
                .set_chunk(&hex::decode(&name).unwrap(), &data)
                .unwrap();
            (name, data)
        })
        .collect()
}

/// The file names of a listing (no dots).
fn listed(fs: &ChunkFs) -> Vec<String> {
    ls(fs, true)
        .into_iter()
        .map(|e| e.name.into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

fn counting_fs(counting: &Arc<CountingStore>, whole_value_reads: bool) -> ChunkFs {
    ChunkFs::new(
        counting.clone(),
        FsConfig {
            whole_value_reads,
            ..cfg()
        },
    )
}

#[test]
fn reading_in_listing_order_batches_one_call_per_window() {
    // Ranged backends are shared with other clients: every open reads its chunk's version
    // (close-to-open), so read-ahead only serves whole-value backends.
    let counting = Arc::new(CountingStore::new(mem()));
    let files = many(&*counting, 100, 4096);
    let fs = counting_fs(&counting, false);
    for name in &listed(&fs) {
        let want = &files.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(&cat(&fs, name).unwrap(), want, "{name}");
    }
    assert_eq!(
        counting.counts(),
        (0, 100, 0, 0),
        "one versioned read per open"
    );
    // Whole-value backends: one batch per window of opens in listing order.
    let counting = Arc::new(CountingStore::new(mem()));
    let files = many(&*counting, 100, 4096);
    let fs = counting_fs(&counting, true);
    let names = listed(&fs);
    assert_eq!(names.len(), 100);
    for name in &names {
        let want = &files.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(&cat(&fs, name).unwrap(), want, "{name}");
    }
    let (gets, ranged, batches, batched) = counting.counts();
    assert_eq!((gets, ranged), (0, 0), "no per-file read");
    assert_eq!(batches, 100usize.div_ceil(WINDOW), "one batch per window");
    assert_eq!(batched, 100);
    assert_eq!(fs.readahead_stats().served, 100);
    assert_eq!(fs.memory_in_use(), 0, "every prefetched value was used");
}

#[test]
fn name_order_and_listing_order_both_batch_when_they_differ() {
    // Like Ceph: the listing is in hash order; a shell glob and rsync open in name order.
    let counting = Arc::new(CountingStore::shuffled(mem()));
    let files = many(&*counting, 200, 1000);
    let fs = counting_fs(&counting, true);
    let listing = listed(&fs);
    let mut sorted = listing.clone();
    sorted.sort();
    assert_ne!(listing, sorted, "the wrapper lists out of name order");
    for name in &sorted {
        let i = usize::from_str_radix(name, 16).unwrap();
        assert_eq!(cat(&fs, name).unwrap(), files[i].1);
    }
    let (gets, ranged, batches, _) = counting.counts();
    assert_eq!((gets, ranged), (0, 0));
    assert_eq!(batches, 200usize.div_ceil(WINDOW));
    // And again in listing order (a fresh listing, like tar).
    let listing = listed(&fs);
    for name in &listing {
        let i = usize::from_str_radix(name, 16).unwrap();
        assert_eq!(cat(&fs, name).unwrap(), files[i].1);
    }
    let (gets, ranged, batches2, _) = counting.counts();
    assert_eq!((gets, ranged), (0, 0));
    assert_eq!(batches2 - batches, 200usize.div_ceil(WINDOW));
}

#[test]
fn skipped_and_large_files_keep_the_walk_going() {
    let counting = Arc::new(CountingStore::new(mem()));
    let mut files = many(&*counting, 100, 100);
    // Every tenth file is too large to prefetch; it is read on its own.
    for i in (5..100).step_by(10) {
        let big = vec![i as u8; (MAX as usize) / 2 + 3];
        counting
            .set_chunk(&hex::decode(&files[i].0).unwrap(), &big)
            .unwrap();
        files[i].1 = big;
    }
    let fs = ChunkFs::new(
        counting.clone(),
        FsConfig {
            readahead: ReadAheadConfig {
                max_value: 64 << 10,
                ..ReadAheadConfig::default()
            },
            ..cfg()
        },
    );
    let names = listed(&fs);
    // tar skips nothing, but a tool may skip some: open every file but the 3rd of each 7.
    for (i, name) in names.iter().enumerate() {
        if i % 7 == 3 {
            continue;
        }
        assert_eq!(cat(&fs, name).unwrap(), files[i].1, "{name}");
    }
    let (gets, ranged, batches, _) = counting.counts();
    assert_eq!(gets, 0);
    // The large ones are read with ranges (not prefetched); the rest came in a few batches.
    assert!(ranged > 0);
    assert!(batches <= 6, "{batches} batches");
}

#[test]
fn mutations_between_prefetch_and_open_are_never_served_stale() {
    let counting = Arc::new(CountingStore::new(mem()));
    let files = many(&*counting, 40, 3000);
    let fs = counting_fs(&counting, true);
    let names = listed(&fs);
    // Opening the first file prefetches the next 31.
    assert_eq!(cat(&fs, &names[0]).unwrap(), files[0].1);
    assert_eq!(counting.counts().2, 1);
    assert!(fs.readahead_bytes() > 0);

    put(&fs, &names[1], b"rewritten").unwrap();
    fs.rename(ROOT_INO, n(&names[7]), ROOT_INO, n(&names[2]), 0)
        .unwrap();
    fs.unlink(ROOT_INO, n(&names[3])).unwrap();
    fs.rename(ROOT_INO, n(&names[4]), ROOT_INO, n("ff00"), 0)
        .unwrap();
    // Truncate by path (setattr without a handle) commits at once.
    let ino5 = fs.lookup(ROOT_INO, n(&names[5]), 0).unwrap().ino;
    fs.setattr(ino5, None, Some(10), None).unwrap();
    // A scratch file renamed over a prefetched chunk (rsync's temp file).
    put(&fs, ".tmp", b"from scratch").unwrap();
    fs.rename(ROOT_INO, n(".tmp"), ROOT_INO, n(&names[6]), 0)
        .unwrap();

    assert_eq!(cat(&fs, &names[1]).unwrap(), b"rewritten");
    assert_eq!(cat(&fs, &names[2]).unwrap(), files[7].1);
    assert_eq!(
        fs.lookup(ROOT_INO, n(&names[3]), 0).unwrap_err().errno,
        libc::ENOENT
    );
    assert_eq!(
        fs.lookup(ROOT_INO, n(&names[4]), 0).unwrap_err().errno,
        libc::ENOENT
    );
    assert_eq!(cat(&fs, "ff00").unwrap(), files[4].1);
    assert_eq!(cat(&fs, &names[5]).unwrap(), files[5].1[..10].to_vec());
    assert_eq!(cat(&fs, &names[6]).unwrap(), b"from scratch");
    // The untouched ones still come from the batch.
    let before = counting.counts();
    for i in 8..32 {
        assert_eq!(cat(&fs, &names[i]).unwrap(), files[i].1);
    }
    assert_eq!(counting.counts().0, before.0, "no per-file get");
}

/// Runs a hook once, right after a batch read its values and before read-ahead keeps them.
struct RacingStore {
    inner: Arc<dyn Cloudstore>,
    hook: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Cloudstore for RacingStore {
    fn backend(&self) -> &'static str {
        "racing"
    }
    fn get_chunk(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        self.inner.get_chunk(key)
    }
    fn get_chunk_batch(&self, chunks: &mut [RawChunk]) -> StoreResult<()> {
        let result = self.inner.get_chunk_batch(chunks);
        let hook = self.hook.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        result
    }
    fn get_chunk_with_range(&self, key: &[u8], s: u64, e: u64) -> StoreResult<Option<Vec<u8>>> {
        self.inner.get_chunk_with_range(key, s, e)
    }
    fn set_chunk(&self, key: &[u8], value: &[u8]) -> StoreResult<()> {
        self.inner.set_chunk(key, value)
    }
    fn set_chunk_batch(&self, chunks: &mut [RawChunk]) -> StoreResult<()> {
        self.inner.set_chunk_batch(chunks)
    }
    fn close(&self) -> StoreResult<()> {
        self.inner.close()
    }
    fn stat(&self, key: &[u8]) -> StoreResult<Option<u64>> {
        self.inner.stat(key)
    }
    fn delete(&self, key: &[u8]) -> StoreResult<bool> {
        self.inner.delete(key)
    }
    fn list(&self, after: Option<&[u8]>) -> StoreResult<ChunkList> {
        self.inner.list(after)
    }
    fn sync(&self) -> StoreResult<()> {
        self.inner.sync()
    }
}

#[test]
fn a_write_during_a_batch_drops_that_value() {
    let inner = mem();
    let files = many(&*inner, 10, 500);
    let racing = Arc::new(RacingStore {
        inner,
        hook: std::sync::Mutex::new(None),
    });
    let fs = Arc::new(ChunkFs::new(
        racing.clone(),
        FsConfig {
            whole_value_reads: true,
            ..cfg()
        },
    ));
    let names = listed(&fs);
    let (fs2, name2) = (fs.clone(), names[2].clone());
    // The batch has read the old value of file 2 when this write lands.
    *racing.hook.lock().unwrap() = Some(Box::new(move || {
        put(&fs2, &name2, b"new").unwrap();
    }));
    assert_eq!(cat(&fs, &names[0]).unwrap(), files[0].1);
    assert!(racing.hook.lock().unwrap().is_none(), "the batch ran");
    assert_eq!(cat(&fs, &names[1]).unwrap(), files[1].1);
    assert_eq!(cat(&fs, &names[2]).unwrap(), b"new");
    assert_eq!(cat(&fs, &names[3]).unwrap(), files[3].1);
}

#[test]
fn random_opens_do_not_prefetch_beyond_a_bound() {
    let counting = Arc::new(CountingStore::new(mem()));
    let files = many(&*counting, 512, 2000);
    let fs = counting_fs(&counting, true);
    let names = listed(&fs);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..400 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x % 512) as usize;
        assert_eq!(cat(&fs, &names[i]).unwrap(), files[i].1);
    }
    let (gets, _, batches, batched) = counting.counts();
    // A random open is the next name by chance (~1/512 per order and open): at most a window
    // or two of waste, nothing like one per open.
    assert!(batches <= 2, "{batches} batches");
    assert!(batched <= 2 * WINDOW, "{batched} chunks prefetched");
    assert!(gets >= 400 - batches * WINDOW);
}

#[test]
fn read_ahead_stays_within_the_memory_budget() {
    let counting = Arc::new(CountingStore::new(mem()));
    let files = many(&*counting, 300, 4096);
    let budget = 256 << 10;
    let fs = ChunkFs::new(
        counting.clone(),
        FsConfig {
            memory_budget: budget,
            whole_value_reads: true,
            ..cfg()
        },
    );
    let names = listed(&fs);
    // A writer holds much of the budget meanwhile.
    let (_, w) = fs.create(ROOT_INO, n("ffff"), CREATE, 0).unwrap();
    fs.write(w, 0, &vec![1; 52 << 10]).unwrap();
    for (i, name) in names.iter().enumerate().filter(|(_, n)| *n != "ffff") {
        assert_eq!(cat(&fs, name).unwrap(), files[i].1);
        assert!(fs.readahead_bytes() <= budget / 8, "cache within 1/8");
        assert!(fs.memory_in_use() <= budget);
    }
    // The writer can still grow, read-ahead did not take the rest: to the most it can commit
    // (its value and the store's copy of it).
    let left = budget - fs.memory_in_use();
    assert!(left >= budget - (52 << 10) - budget / 8);
    fs.write(w, 52 << 10, &vec![2; 52 << 10]).unwrap();
    fs.flush(w, 0).unwrap();
    fs.release(w).unwrap();
    let (gets, _, batches, _) = counting.counts();
    assert!(batches > 0);
    assert!(gets < 300, "{gets} gets: most opens came from batches");
    drop(fs);
    // Nothing leaked: the cache gave its bytes back (checked by Budget's debug assertion too).
}

// Lookup counting: the kernel's forgets shrink the inode table.
