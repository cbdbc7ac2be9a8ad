//! The contract every `Cloudstore` backend must keep, written once and run against each backend
//! (`contract_tests!` in tests/contract_<backend>.rs). The semantics are those of the original Go
//! interface plus the filesystem's needs; see src/store/mod.rs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use cloudstore_fs::store::{Cloudstore, RawChunk, StoreError};

/// Opens the backend under test. Every call opens the same data again (same directory, same
/// pool and namespace), so a test can close a store and reopen it.
pub trait Harness {
    fn open(&self) -> Arc<dyn Cloudstore>;
    /// The largest value the harness configured.
    fn max_chunk_size(&self) -> u64;
}

/// Deterministic pseudo-random bytes (splitmix64), so failures reproduce.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ len as u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A key of 8..=40 bytes derived from `i`.
pub fn key(i: u64) -> Vec<u8> {
    let mut k = bytes(i ^ 0xABCD, 8 + (i % 33) as usize);
    k[..8].copy_from_slice(&i.to_be_bytes());
    k
}

// ---- the original Go tests ----

pub fn set_get(h: &dyn Harness) {
    let s = h.open();
    s.set_chunk(b"test-key", b"test-value").unwrap();
    assert_eq!(
        s.get_chunk(b"test-key").unwrap(),
        Some(b"test-value".to_vec())
    );
}

pub fn empty_value_is_ok_and_empty(h: &dyn Harness) {
    let s = h.open();
    s.set_chunk(b"empty", b"").unwrap();
    assert_eq!(s.get_chunk(b"empty").unwrap(), Some(Vec::new()));
    assert_eq!(s.stat(b"empty").unwrap(), Some(0));
    let mut batch = vec![RawChunk::for_get(b"empty".to_vec())];
    s.get_chunk_batch(&mut batch).unwrap();
    assert!(batch[0].ok, "a stored 0-byte value must be ok");
    assert!(batch[0].value.is_empty());
    assert_eq!(batch[0].error, None);
}

pub fn missing_key_is_not_ok_and_no_error(h: &dyn Harness) {
    let s = h.open();
    assert_eq!(s.get_chunk(b"no-such-key").unwrap(), None);
    assert_eq!(s.get_chunk_with_range(b"no-such-key", 0, 10).unwrap(), None);
    assert_eq!(s.stat(b"no-such-key").unwrap(), None);
    let mut batch = vec![RawChunk::for_get(b"no-such-key".to_vec())];
    s.get_chunk_batch(&mut batch).unwrap();
    assert!(!batch[0].ok);
    assert!(batch[0].value.is_empty());
    assert_eq!(batch[0].error, None, "a missing key is not an error");
}

pub fn batch_set_two_with_one_empty(h: &dyn Harness) {
    let s = h.open();
    let mut batch = vec![
        RawChunk::for_set(b"batch-a".to_vec(), b"value-a".to_vec()),
        RawChunk::for_set(b"batch-b".to_vec(), Vec::new()),
    ];
    s.set_chunk_batch(&mut batch).unwrap();
    for c in &batch {
        assert_eq!(c.error, None, "key {:?}", c.key);
    }
    assert_eq!(s.get_chunk(b"batch-a").unwrap(), Some(b"value-a".to_vec()));
    assert_eq!(s.get_chunk(b"batch-b").unwrap(), Some(Vec::new()));
}

pub fn batch_get_three_one_missing(h: &dyn Harness) {
    let s = h.open();
    s.set_chunk(b"get-1", b"one").unwrap();
    s.set_chunk(b"get-3", b"three").unwrap();
    let mut batch = vec![
        RawChunk::for_get(b"get-1".to_vec()),
        RawChunk::for_get(b"get-2".to_vec()),
        RawChunk::for_get(b"get-3".to_vec()),
    ];
    s.get_chunk_batch(&mut batch).unwrap();
    assert!(batch[0].ok && batch[0].value == b"one" && batch[0].error.is_none());
    assert!(!batch[1].ok && batch[1].value.is_empty() && batch[1].error.is_none());
    assert!(batch[2].ok && batch[2].value == b"three" && batch[2].error.is_none());
}

pub fn batch_of_ten_32_byte_chunks(h: &dyn Harness) {
    let s = h.open();
    let mut set: Vec<_> = (0..10)
        .map(|i| RawChunk::for_set(key(i), bytes(i, 32)))
        .collect();
    s.set_chunk_batch(&mut set).unwrap();
    let mut get: Vec<_> = (0..10).map(|i| RawChunk::for_get(key(i))).collect();
    s.get_chunk_batch(&mut get).unwrap();
    for (i, c) in get.iter().enumerate() {
        assert!(c.ok, "chunk {i} missing");
        assert_eq!(c.error, None);
        assert_eq!(c.value, bytes(i as u64, 32), "chunk {i}");
    }
}

// ---- ranges ----

pub fn ranges_are_half_open_and_clamped(h: &dyn Harness) {
    let s = h.open();
    let v = bytes(7, 1000);
    s.set_chunk(b"range", &v).unwrap();
    let get = |a, b| s.get_chunk_with_range(b"range", a, b).unwrap().unwrap();
    assert_eq!(get(100, 200), v[100..200], "middle");
    assert_eq!(get(0, 1), v[0..1], "first byte");
    assert_eq!(get(900, 0), v[900..], "end 0 means to the end");
    assert_eq!(get(0, 0), v, "0..0 is the whole value");
    assert_eq!(
        get(990, 5000),
        v[990..],
        "past the end is clamped, never padded"
    );
    assert_eq!(get(1000, 2000), b"", "starting at the end is empty");
    assert_eq!(get(5000, 6000), b"", "starting past the end is empty");
    assert_eq!(get(5000, 0), b"", "past the end to the end is empty");
    assert_eq!(get(300, 300), b"", "an empty range is empty");
}

pub fn range_start_after_end_is_an_error(h: &dyn Harness) {
    let s = h.open();
    s.set_chunk(b"range", b"0123456789").unwrap();
    let err = s.get_chunk_with_range(b"range", 5, 2).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidRange {
                start: 5,
                end: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.errno(), libc::EINVAL);
    assert!(err.to_string().contains(&hex::encode(b"range")), "{err}");
}

pub fn empty_value_ranges(h: &dyn Harness) {
    let s = h.open();
    s.set_chunk(b"empty-range", b"").unwrap();
    assert_eq!(
        s.get_chunk_with_range(b"empty-range", 0, 0).unwrap(),
        Some(Vec::new())
    );
    assert_eq!(
        s.get_chunk_with_range(b"empty-range", 3, 10).unwrap(),
        Some(Vec::new())
    );
}

// ---- whole-value replacement, sizes ----

pub fn shorter_overwrite_leaves_no_old_tail(h: &dyn Harness) {
    let s = h.open();
    s.set_chunk(b"shrink", &bytes(1, 4096)).unwrap();
    s.set_chunk(b"shrink", b"short").unwrap();
    assert_eq!(s.get_chunk(b"shrink").unwrap(), Some(b"short".to_vec()));
    assert_eq!(s.stat(b"shrink").unwrap(), Some(5));
    assert_eq!(
        s.get_chunk_with_range(b"shrink", 0, 0).unwrap(),
        Some(b"short".to_vec())
    );
    // And through a batch.
    let mut batch = vec![RawChunk::for_set(b"shrink".to_vec(), b"x".to_vec())];
    s.set_chunk_batch(&mut batch).unwrap();
    assert_eq!(s.get_chunk(b"shrink").unwrap(), Some(b"x".to_vec()));
    assert_eq!(s.stat(b"shrink").unwrap(), Some(1));
}

pub fn value_of_16_mib(h: &dyn Harness) {
    let s = h.open();
    let v = bytes(16, 16 << 20);
    s.set_chunk(b"big", &v).unwrap();
    assert_eq!(s.stat(b"big").unwrap(), Some(16 << 20));
    assert!(s.get_chunk(b"big").unwrap().unwrap() == v);
    let tail = s
        .get_chunk_with_range(b"big", (16 << 20) - 100, 0)
        .unwrap()
        .unwrap();
    assert!(tail == v[(16 << 20) - 100..]);
}

pub fn value_over_max_chunk_size_is_efbig_and_not_stored(h: &dyn Harness) {
    let s = h.open();
    let max = h.max_chunk_size() as usize;
    let err = s.set_chunk(b"too-big", &vec![1u8; max + 1]).unwrap_err();
    assert_eq!(err.errno(), libc::EFBIG, "{err}");
    assert!(err.to_string().contains(&hex::encode(b"too-big")), "{err}");
    assert_eq!(s.get_chunk(b"too-big").unwrap(), None);
    let mut batch = vec![
        RawChunk::for_set(b"fits".to_vec(), b"ok".to_vec()),
        RawChunk::for_set(b"too-big".to_vec(), vec![1u8; max + 1]),
    ];
    let _ = s.set_chunk_batch(&mut batch);
    let err = batch[1]
        .error
        .as_ref()
        .expect("per-chunk error for the large value");
    assert_eq!(err.errno(), libc::EFBIG);
    assert_eq!(s.get_chunk(b"too-big").unwrap(), None);
}

pub fn batch_of_10000(h: &dyn Harness) {
    let s = h.open();
    let mut set: Vec<_> = (0..10_000)
        .map(|i| RawChunk::for_set(key(i), bytes(i, (i % 200) as usize)))
        .collect();
    s.set_chunk_batch(&mut set).unwrap();
    assert!(set.iter().all(|c| c.error.is_none()));
    let mut get: Vec<_> = (0..10_000).map(|i| RawChunk::for_get(key(i))).collect();
    s.get_chunk_batch(&mut get).unwrap();
    for (i, c) in get.iter().enumerate() {
        assert!(c.ok && c.error.is_none(), "chunk {i}");
        assert_eq!(c.value, bytes(i as u64, i % 200), "chunk {i}");
    }
}

// ---- the filesystem's operations ----

pub fn stat_reports_sizes(h: &dyn Harness) {
    let s = h.open();
    s.set_chunk(b"sized", &bytes(3, 12345)).unwrap();
    assert_eq!(s.stat(b"sized").unwrap(), Some(12345));
}

pub fn delete_removes_and_reports(h: &dyn Harness) {
    let s = h.open();
    s.set_chunk(b"doomed", b"bye").unwrap();
    assert!(s.delete(b"doomed").unwrap());
    assert_eq!(s.get_chunk(b"doomed").unwrap(), None);
    assert_eq!(s.stat(b"doomed").unwrap(), None);
    assert!(
        !s.delete(b"doomed").unwrap(),
        "deleting a missing key is Ok(false)"
    );
    s.set_chunk(b"doomed", b"again").unwrap();
    assert_eq!(s.get_chunk(b"doomed").unwrap(), Some(b"again".to_vec()));
}

pub fn listing_streams_every_chunk_and_resumes(h: &dyn Harness) {
    let s = h.open();
    let n = 2500u64;
    let mut set: Vec<_> = (0..n)
        .map(|i| RawChunk::for_set(key(i), bytes(i, (i % 50) as usize)))
        .collect();
    s.set_chunk_batch(&mut set).unwrap();
    let listed: Vec<_> = s.list(None).unwrap().map(|r| r.unwrap()).collect();
    let expected: BTreeMap<_, _> = (0..n).map(|i| (key(i), i % 50)).collect();
    let got: BTreeMap<_, _> = listed.iter().map(|c| (c.key.clone(), c.size)).collect();
    assert_eq!(listed.len(), n as usize, "each chunk listed once");
    assert_eq!(got, expected, "keys and sizes");
    // Resume after a key in the middle: exactly the rest, in the same order.
    for cut in [0usize, 1, 1023, 1024, 1500, 2498] {
        let after = &listed[cut].key;
        let rest: Vec<_> = s
            .list(Some(after))
            .unwrap()
            .map(|r| r.unwrap().key)
            .collect();
        let want: Vec<_> = listed[cut + 1..].iter().map(|c| c.key.clone()).collect();
        assert_eq!(rest, want, "resume after entry {cut}");
    }
    // The listing reflects a delete.
    s.delete(&key(5)).unwrap();
    assert_eq!(s.list(None).unwrap().count(), n as usize - 1);
}

pub fn rename_moves_and_replaces(h: &dyn Harness) {
    let s = h.open();
    s.set_chunk(b"from", b"payload").unwrap();
    s.set_chunk(b"to", b"old target value that is longer")
        .unwrap();
    assert!(s.rename(b"from", b"to").unwrap());
    assert_eq!(s.get_chunk(b"from").unwrap(), None);
    assert_eq!(s.get_chunk(b"to").unwrap(), Some(b"payload".to_vec()));
    assert_eq!(s.stat(b"to").unwrap(), Some(7));
    assert_eq!(s.stat(b"from").unwrap(), None);
    assert!(!s.rename(b"from", b"elsewhere").unwrap(), "missing source");
    assert_eq!(s.get_chunk(b"elsewhere").unwrap(), None);
}

pub fn mtime_is_kept_and_settable(h: &dyn Harness) {
    let s = h.open();
    s.set_chunk(b"timed", b"v").unwrap();
    let t = UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    s.set_mtime(b"timed", t).unwrap();
    let got = s.mtime(b"timed").unwrap().expect("mtime after set_mtime");
    let secs = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(secs(got), 1_500_000_000);
    s.close().unwrap();
    let s = h.open();
    let got = s.mtime(b"timed").unwrap().expect("mtime after reopen");
    assert_eq!(secs(got), 1_500_000_000);
    // A write changes it.
    s.set_chunk(b"timed", b"w").unwrap();
    let got = s.mtime(b"timed").unwrap().expect("mtime after write");
    assert!(secs(got) > 1_600_000_000, "a write sets the mtime to now");
    // Mtimes never show up as chunks.
    let keys: Vec<_> = s.list(None).unwrap().map(|r| r.unwrap().key).collect();
    assert_eq!(keys, vec![b"timed".to_vec()]);
}

pub fn eight_threads_at_once(h: &dyn Harness) {
    let s = h.open();
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let s = Arc::clone(&s);
            scope.spawn(move || {
                for i in 0..200u64 {
                    let id = t * 1000 + i;
                    let v = bytes(id, (id % 3000) as usize);
                    s.set_chunk(&key(id), &v).unwrap();
                    assert_eq!(s.get_chunk(&key(id)).unwrap(), Some(v.clone()));
                    if i % 10 == 0 {
                        let mut b: Vec<_> = (0..5)
                            .map(|j| RawChunk::for_get(key(id - j.min(i))))
                            .collect();
                        s.get_chunk_batch(&mut b).unwrap();
                        assert!(b.iter().all(|c| c.ok && c.error.is_none()));
                    }
                }
            });
        }
    });
    for t in 0..8u64 {
        for i in 0..200u64 {
            let id = t * 1000 + i;
            assert_eq!(
                s.get_chunk(&key(id)).unwrap(),
                Some(bytes(id, (id % 3000) as usize)),
                "chunk {id}"
            );
        }
    }
}

pub fn data_survives_close_and_reopen(h: &dyn Harness) {
    let s = h.open();
    s.set_chunk(b"durable", b"still here").unwrap();
    s.set_chunk(b"durable-empty", b"").unwrap();
    let mut batch: Vec<_> = (0..100)
        .map(|i| RawChunk::for_set(key(i), bytes(i, 100)))
        .collect();
    s.set_chunk_batch(&mut batch).unwrap();
    s.close().unwrap();
    let err = s.get_chunk(b"durable").unwrap_err();
    assert!(
        matches!(err, StoreError::Closed { .. }),
        "use after close: {err:?}"
    );
    drop(s);
    let s = h.open();
    assert_eq!(
        s.get_chunk(b"durable").unwrap(),
        Some(b"still here".to_vec())
    );
    assert_eq!(s.get_chunk(b"durable-empty").unwrap(), Some(Vec::new()));
    for i in 0..100 {
        assert_eq!(s.get_chunk(&key(i)).unwrap(), Some(bytes(i, 100)));
    }
}

/// Side records (the mount's saved scratch files and directory mtime) live beside the keyspace:
/// never listed as chunks, kept across a reopen, removed by an empty value.
pub fn side_records_are_kept_beside_the_chunks(h: &dyn Harness) {
    use cloudstore_fs::store::{SIDE_DIR_MTIME, SIDE_SCRATCH};
    let s = h.open();
    assert_eq!(s.side_get(SIDE_SCRATCH).unwrap(), None);
    s.set_chunk(b"\x01", b"chunk").unwrap();
    let big = bytes(7, 300_000);
    s.side_put(SIDE_SCRATCH, &big).unwrap();
    s.side_put(SIDE_DIR_MTIME, b"twelve bytes").unwrap();
    s.side_put(SIDE_DIR_MTIME, b"other bytes!").unwrap();
    let listed: Vec<Vec<u8>> = s.list(None).unwrap().map(|c| c.unwrap().key).collect();
    assert_eq!(
        listed,
        vec![b"\x01".to_vec()],
        "side records are not chunks"
    );
    s.close().unwrap();
    drop(s);
    let s = h.open();
    assert_eq!(s.side_get(SIDE_SCRATCH).unwrap(), Some(big));
    assert_eq!(
        s.side_get(SIDE_DIR_MTIME).unwrap(),
        Some(b"other bytes!".to_vec())
    );
    s.side_put(SIDE_SCRATCH, b"").unwrap();
    assert_eq!(s.side_get(SIDE_SCRATCH).unwrap(), None);
    s.side_put(SIDE_SCRATCH, b"").unwrap();
}

// ---- long histories (rusty-leveldb 4.0.2 lost data in both; see FACTS.md) ----

/// Bytes of a version of a value: a slice of one shared random pool, stamped with `version` at
/// the start and the end, so building hundreds of 256 KiB values costs a memcpy each.
pub fn versioned(version: u64, len: usize) -> Vec<u8> {
    static POOL: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| bytes(0x5EED, 2 << 20));
    let mut v = Vec::with_capacity(len);
    let mut at = (version as usize).wrapping_mul(7919) % pool.len();
    while v.len() < len {
        let n = (len - v.len()).min(pool.len() - at);
        v.extend_from_slice(&pool[at..at + n]);
        at = 0;
    }
    let stamp = version.to_le_bytes();
    if len >= 16 {
        v[..8].copy_from_slice(&stamp);
        v[len - 8..].copy_from_slice(&stamp);
    }
    v
}

/// A value larger than the write buffer (the LevelDB harnesses run with 4 MiB as well as the
/// product's 64 MiB) written over an older version, then the store closed and opened again:
/// the new value must come back. rusty-leveldb 4.0.2 returned None here.
pub fn big_value_over_an_old_version_survives_reopen(h: &dyn Harness) {
    let s = h.open();
    let big = versioned(1, (5 << 20) + 1);
    let bigger = versioned(2, 16 << 20);
    s.set_chunk(b"grows", b"old").unwrap();
    s.set_chunk(b"grows", &big).unwrap();
    s.set_chunk(b"grows-more", &versioned(3, 10_000)).unwrap();
    s.set_chunk(b"grows-more", &bigger).unwrap();
    assert!(
        s.get_chunk(b"grows").unwrap().unwrap() == big,
        "before reopen"
    );
    s.close().unwrap();
    drop(s);
    for round in 0..2 {
        let s = h.open();
        let got = s.get_chunk(b"grows").unwrap();
        assert!(
            got.as_deref() == Some(&big[..]),
            "round {round}: got {:?} bytes, want {}",
            got.map(|v| v.len()),
            big.len()
        );
        assert_eq!(s.stat(b"grows").unwrap(), Some(big.len() as u64));
        assert!(s.get_chunk(b"grows-more").unwrap().unwrap() == bigger);
        assert_eq!(s.stat(b"grows-more").unwrap(), Some(bigger.len() as u64));
        s.close().unwrap();
    }
}

/// 600 versions of one key (150-250 KB each), then churn on four other keys (2,000 x 256 KiB):
/// the newest version must be read at the end and after a reopen. rusty-leveldb 4.0.2 served
/// version ~556, and another old one after the reopen.
pub fn newest_of_600_versions_survives_churn(h: &dyn Harness) {
    // The hot key sorts before the churn keys: the layout that made rusty-leveldb serve v555.
    const HOT: &[u8] = b"a-hot";
    let s = h.open();
    let size = |v: u64| 150_000 + (v * 7_717 % 100_000) as usize;
    for v in 0..600u64 {
        s.set_chunk(HOT, &versioned(v, size(v))).unwrap();
        // Reading back now and then, as a filesystem does (rusty-leveldb needed a snapshot or
        // an iterator to have existed to lose versions).
        if v % 100 == 0 {
            assert!(s.get_chunk(HOT).unwrap().unwrap() == versioned(v, size(v)));
            assert_eq!(s.list(None).unwrap().count(), 1);
        }
    }
    let newest = versioned(599, size(599));
    let churn_keys: [&[u8]; 4] = [b"churn-0", b"churn-1", b"churn-2", b"churn-3"];
    for i in 0..2_000u64 {
        s.set_chunk(
            churn_keys[(i % 4) as usize],
            &versioned(1_000 + i, 256 << 10),
        )
        .unwrap();
    }
    let check = |s: &dyn Cloudstore, when: &str| {
        let got = s.get_chunk(HOT).unwrap().expect("hot chunk missing");
        let version = u64::from_le_bytes(got[..8].try_into().unwrap());
        assert!(
            got == newest,
            "{when}: got version {version} ({} bytes), want 599",
            got.len()
        );
        assert_eq!(s.stat(HOT).unwrap(), Some(newest.len() as u64), "{when}");
        for (j, k) in churn_keys.iter().enumerate() {
            let last = 1_000 + 1_996 + j as u64;
            assert!(
                s.get_chunk(k).unwrap().unwrap() == versioned(last, 256 << 10),
                "{when}: churn key {j}"
            );
        }
    };
    check(&*s, "at the end");
    s.close().unwrap();
    drop(s);
    let s = h.open();
    check(&*s, "after a reopen");
}

/// A store with versioned ranged reads ties every read to one version of the value: a read
/// that asserts a version fails (ESTALE) once anyone replaced, deleted or recreated the value,
/// never returning another version's bytes. Stores without them refuse such reads.
pub fn versioned_reads_are_of_one_version(h: &dyn Harness) {
    let s = h.open();
    let k = b"versioned".to_vec();
    if !s.capabilities().versioned_ranges {
        s.set_chunk(&k, b"v").unwrap();
        assert!(s.read_version(&k, 0, 0, None).is_err());
        return;
    }
    let changed = |r: Result<Option<_>, StoreError>| match r {
        Err(e @ StoreError::Changed { .. }) => assert_eq!(e.errno(), libc::ESTALE),
        other => panic!("expected Changed, got {other:?}"),
    };
    assert_eq!(s.read_version(b"no-such-key", 0, 0, None).unwrap(), None);
    let v1 = bytes(1, 200 << 10);
    s.set_chunk(&k, &v1).unwrap();
    let whole = s.read_version(&k, 0, 0, None).unwrap().unwrap();
    assert_eq!(whole.bytes, v1, "a value longer than one read, read whole");
    assert_eq!(whole.size, v1.len() as u64);
    let first = whole.version;
    let head = s.read_version(&k, 0, 10, None).unwrap().unwrap();
    assert_eq!(
        (head.bytes.as_slice(), head.size, head.version),
        (&v1[..10], v1.len() as u64, first),
        "the version stays while nobody writes"
    );
    let mid = s
        .read_version(&k, 100_000, 150_000, Some(first))
        .unwrap()
        .unwrap();
    assert_eq!(mid.bytes, v1[100_000..150_000]);
    let tail = s
        .read_version(&k, v1.len() as u64 - 5, v1.len() as u64 + 100, Some(first))
        .unwrap()
        .unwrap();
    assert_eq!(tail.bytes, v1[v1.len() - 5..], "clamped at the end");
    assert!(matches!(
        s.read_version(&k, 10, 5, None),
        Err(StoreError::InvalidRange { .. })
    ));
    // Another key's write leaves this version alone.
    s.set_chunk(b"versioned-other", b"x").unwrap();
    assert_eq!(
        s.read_version(&k, 0, 1, Some(first))
            .unwrap()
            .unwrap()
            .bytes,
        &v1[..1]
    );
    // Replaced: even by the same bytes.
    s.set_chunk(&k, &v1).unwrap();
    changed(s.read_version(&k, 0, 10, Some(first)));
    let second = s.read_version(&k, 0, 10, None).unwrap().unwrap().version;
    assert_ne!(second, first);
    let v2 = bytes(2, 1000);
    s.set_chunk(&k, &v2).unwrap();
    changed(s.read_version(&k, 0, 10, Some(second)));
    let third = s.read_version(&k, 0, 0, None).unwrap().unwrap();
    assert_eq!(third.bytes, v2);
    // Deleted, then created again.
    assert!(s.delete(&k).unwrap());
    changed(s.read_version(&k, 0, 10, Some(third.version)));
    assert_eq!(s.read_version(&k, 0, 10, None).unwrap(), None);
    s.set_chunk(&k, &v2).unwrap();
    changed(s.read_version(&k, 0, 10, Some(third.version)));
    // An empty value is a version too.
    s.set_chunk(&k, b"").unwrap();
    let empty = s.read_version(&k, 0, 0, None).unwrap().unwrap();
    assert_eq!((empty.bytes.len(), empty.size), (0, 0));
    assert_eq!(
        s.read_version(&k, 0, 0, Some(empty.version))
            .unwrap()
            .unwrap()
            .size,
        0
    );
}

/// Defines one `#[test]` per contract check. `$make` is an expression of type
/// `fn() -> Option<H>` with `H: Harness`; `None` means the backend is absent and the harness has
/// already said SKIPPED (or panicked, under CI=true).
#[macro_export]
macro_rules! contract_tests {
    ($make:expr) => {
        $crate::contract_tests!(@each $make;
            set_get,
            empty_value_is_ok_and_empty,
            missing_key_is_not_ok_and_no_error,
            batch_set_two_with_one_empty,
            batch_get_three_one_missing,
            batch_of_ten_32_byte_chunks,
            ranges_are_half_open_and_clamped,
            range_start_after_end_is_an_error,
            empty_value_ranges,
            shorter_overwrite_leaves_no_old_tail,
            value_of_16_mib,
            value_over_max_chunk_size_is_efbig_and_not_stored,
            batch_of_10000,
            stat_reports_sizes,
            delete_removes_and_reports,
            listing_streams_every_chunk_and_resumes,
            rename_moves_and_replaces,
            mtime_is_kept_and_settable,
            eight_threads_at_once,
            data_survives_close_and_reopen,
            side_records_are_kept_beside_the_chunks,
            big_value_over_an_old_version_survives_reopen,
            newest_of_600_versions_survives_churn,
            versioned_reads_are_of_one_version
        );
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                if let Some(harness) = ($make)() {
                    contract::$name(&harness);
                }
            }
        )*
    };
}
