//! A get of a small LevelDB value reads about its own bytes from the table files, whatever big
//! values sit beside it or in other tables (issue 14: after a restic restore into the mount,
//! every open of a small chunk took 120-165 ms, the CPU in crc32c: each get read, checksummed
//! and copied whole multi-MiB blocks of unrelated values, one per table whose key range covered
//! the key). Counted in bytes read by the calling thread (LevelDB reads a get's blocks with
//! pread on the caller's thread), not in time.

use cloudstore_fs::config::Config;
use cloudstore_fs::store::{self, RawChunk};

const MIB: usize = 1 << 20;
/// Bytes a get of a value of a few KiB may read: its block, and the index and filter blocks of
/// tables opened for it (small: a few entries each here).
const SMALL_GET_READ: u64 = 256 << 10;

/// Bytes this thread has read with read(2) and pread(2) so far.
fn thread_rchar() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("rchar in /proc/thread-self/io")
}

/// `len` incompressible bytes (snappy stores them as they are, as with real chunks).
fn noise(seed: u8, len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ seed as u64;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

#[test]
fn small_gets_do_not_read_the_big_values_beside_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().join("db"),
        // A small write buffer: each round below becomes a table of its own.
        write_buffer_size: 4 << 20,
        max_chunk_size: 16 << 20,
        ..Config::default()
    };
    let big = |r: u8| noise(r, 8 * MIB);
    let rounds = 6u8;
    {
        let s = store::open(&config).unwrap();
        // Each round: tables spanning the whole key space (restic's content-addressed names),
        // a small value right before a big one in key order (one LevelDB block with 4 KiB
        // blocks), and another big one after a gap where no key is.
        for r in 0..rounds {
            let mut batch = vec![
                RawChunk::for_set(vec![0x00, r], vec![r; 100]),
                RawChunk::for_set(vec![0x80, r], vec![r; 2000]),
                RawChunk::for_set(vec![0x80, r, 0], big(r)),
                RawChunk::for_set(vec![0x90, r], big(r)),
                RawChunk::for_set(vec![0xff, r], vec![r; 100]),
            ];
            s.set_chunk_batch(&mut batch).unwrap();
            assert!(batch.iter().all(|c| c.ok));
        }
        s.close().unwrap();
    }
    // Reopened: everything is in table files (the open writes the log out as a table).
    let s = store::open(&config).unwrap();
    let mut problems = Vec::new();
    for r in 0..rounds {
        for (key, want) in [
            (vec![0x80, r], Some(vec![r; 2000])),
            (vec![0x88, r], None),
            (vec![0x00, r], Some(vec![r; 100])),
        ] {
            let before = thread_rchar();
            let got = s.get_chunk(&key).unwrap();
            let read = thread_rchar() - before;
            assert_eq!(got, want, "get {}", hex::encode(&key));
            if read > SMALL_GET_READ {
                problems.push(format!(
                    "get of {} ({}) read {read} bytes of table files",
                    hex::encode(&key),
                    want.map_or("absent".into(), |v| format!("{} bytes", v.len()))
                ));
            }
        }
    }
    // The big values still read whole.
    assert_eq!(s.get_chunk(&[0x90, 3]).unwrap(), Some(big(3)));
    s.close().unwrap();
    assert!(
        problems.is_empty(),
        "small gets read unrelated blocks (limit {SMALL_GET_READ} bytes each):\n{}",
        problems.join("\n")
    );
}
