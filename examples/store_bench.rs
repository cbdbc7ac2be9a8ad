//! Store micro-benchmark through the `Cloudstore` trait (so the same file measures any backend
//! and any commit): sequential and batched set and get of 4 KiB and 1 MiB values on a fresh
//! LevelDB store with the default configuration, one run, figures on stdout.
//!
//! `cargo run --release --example store_bench [DIR] [KEYS_4K] [KEYS_1M]`
//! (DIR: parent of the temporary database, default /var/tmp; keys default 100000 and 1000.)

use std::time::Instant;

use cloudstore_fs::config::{Backend, Config};
use cloudstore_fs::store::{self, Cloudstore, RawChunk};

/// Keys per batch call.
const BATCH: usize = 1000;

fn value(i: u64, len: usize) -> Vec<u8> {
    // Incompressible enough (a xorshift stream), cheap to make.
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
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

fn key(prefix: u8, i: u64) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(&i.to_be_bytes());
    k
}

fn report(what: &str, n: usize, bytes: u64, secs: f64) {
    println!(
        "{what:<28} {n:>7} ops {secs:>8.2} s {:>10.0} ops/s {:>8.1} MiB/s",
        n as f64 / secs,
        bytes as f64 / secs / (1 << 20) as f64
    );
}

/// A pseudo-random permutation of 0..n, so gets do not just walk the file in order.
fn shuffled(n: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).collect();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

fn run(s: &dyn Cloudstore, label: &str, n: u64, len: usize) {
    let vals: Vec<Vec<u8>> = (0..n.min(64)).map(|i| value(i, len)).collect();
    let pick = |i: u64| &vals[(i % vals.len() as u64) as usize];
    let bytes = n * len as u64;

    let t = Instant::now();
    for i in 0..n {
        s.set_chunk(&key(1, i), pick(i)).unwrap();
    }
    report(
        &format!("{label} set sequential"),
        n as usize,
        bytes,
        t.elapsed().as_secs_f64(),
    );

    let t = Instant::now();
    let mut i = 0;
    while i < n {
        let mut batch: Vec<_> = (i..(i + BATCH as u64).min(n))
            .map(|j| RawChunk::for_set(key(2, j), pick(j).clone()))
            .collect();
        s.set_chunk_batch(&mut batch).unwrap();
        i += batch.len() as u64;
    }
    report(
        &format!("{label} set batched"),
        n as usize,
        bytes,
        t.elapsed().as_secs_f64(),
    );

    let order = shuffled(n);
    let t = Instant::now();
    for &i in &order {
        let v = s.get_chunk(&key(1, i)).unwrap().unwrap();
        assert_eq!(v.len(), len);
    }
    report(
        &format!("{label} get random"),
        n as usize,
        bytes,
        t.elapsed().as_secs_f64(),
    );

    let t = Instant::now();
    for part in order.chunks(BATCH) {
        let mut batch: Vec<_> = part.iter().map(|&j| RawChunk::for_get(key(2, j))).collect();
        s.get_chunk_batch(&mut batch).unwrap();
        assert!(batch.iter().all(|c| c.ok && c.value.len() == len));
    }
    report(
        &format!("{label} get batched"),
        n as usize,
        bytes,
        t.elapsed().as_secs_f64(),
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let parent = args.next().unwrap_or_else(|| "/var/tmp".into());
    let n4k: u64 = args.next().map_or(100_000, |a| a.parse().unwrap());
    let n1m: u64 = args.next().map_or(1_000, |a| a.parse().unwrap());
    let tmp = tempfile::Builder::new()
        .prefix("store-bench.")
        .tempdir_in(parent)
        .unwrap();
    let config = Config {
        backend: Backend::Leveldb,
        data_dir: tmp.path().join("db"),
        ..Config::default()
    };
    println!(
        "store_bench: leveldb in {} (write buffer {} MiB, cache {} MiB), batches of {BATCH}",
        config.data_dir.display(),
        config.write_buffer_size >> 20,
        config.cache_size >> 20
    );
    let s = store::open(&config).unwrap();
    run(&*s, "4 KiB", n4k, 4096);
    run(&*s, "1 MiB", n1m, 1 << 20);
    let t = Instant::now();
    s.sync().unwrap();
    s.close().unwrap();
    println!("sync + close {:.2} s", t.elapsed().as_secs_f64());
}
