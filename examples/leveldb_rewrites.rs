//! Reproduces issue 14's "slow opens after a restic restore" on the LevelDB store, without a
//! mount: a content-addressed set (random 32-byte keys, sizes from 0 B to MAX_MIB MiB, most of
//! them small) is written the way restic restores it (a value above 1 MiB is rewritten whole once
//! per STEP_MIB MiB it grows, as every reopen of the file commits the whole value), then every
//! value is read once in key order (what `rsync --checksum` of the mount does: one get per open).
//! Prints the time per get (mean, p50, p99, max) and the table files on disk.
//!
//! `cargo run --release --example leveldb_rewrites [DIR] [FILES] [MAX_MIB] [STEP_MIB]`
//! (DIR: parent of the temporary database, default /var/tmp; defaults 2000 files, 64, 4.)

use std::time::Instant;

use cloudstore_fs::config::{Backend, Config};
use cloudstore_fs::store;

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&xorshift(&mut x).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Bytes this thread has read with read(2) and pread(2) so far (not counting the reads of
/// LevelDB's compaction thread).
fn rchar() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .unwrap()
        .parse()
        .unwrap()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let parent = args.next().unwrap_or_else(|| "/var/tmp".into());
    let files: u64 = args.next().map_or(2000, |a| a.parse().unwrap());
    let max_mib: u64 = args.next().map_or(64, |a| a.parse().unwrap());
    let step_mib: u64 = args.next().map_or(4, |a| a.parse().unwrap());
    let tmp = tempfile::Builder::new()
        .prefix("leveldb-rewrites.")
        .tempdir_in(parent)
        .unwrap();
    let config = Config {
        backend: Backend::Leveldb,
        data_dir: tmp.path().join("db"),
        max_chunk_size: (max_mib << 20).max(1 << 20),
        ..Config::default()
    };
    let s = store::open(&config).unwrap();

    // Sizes: 1 in 40 is big (1..MAX_MIB MiB), the rest 0..256 KiB, as in a restic data set.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let set: Vec<(Vec<u8>, usize)> = (0..files)
        .map(|i| {
            let key = bytes(i + 1_000_003, 32);
            let r = xorshift(&mut x);
            let len = if r.is_multiple_of(40) {
                ((1 << 20) + (xorshift(&mut x) % (max_mib << 20).max(1))) as usize
            } else {
                (xorshift(&mut x) % (256 << 10)) as usize
            };
            (key, len)
        })
        .collect();
    let total: usize = set.iter().map(|(_, l)| l).sum();

    let t = Instant::now();
    let mut written = 0usize;
    let step = (step_mib << 20) as usize;
    for (i, (key, len)) in set.iter().enumerate() {
        let value = bytes(i as u64, *len);
        let mut have = 0;
        loop {
            have = (have + step).min(*len);
            s.set_chunk(key, &value[..have]).unwrap();
            written += have;
            if have == *len {
                break;
            }
        }
    }
    println!(
        "wrote {files} values, {:.0} MiB ({:.0} MiB with rewrites) in {:.1} s",
        total as f64 / 1048576.0,
        written as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    let tables = || {
        let mut n = 0;
        let mut bytes = 0;
        for e in std::fs::read_dir(&config.data_dir).unwrap().flatten() {
            if e.file_name().to_string_lossy().ends_with(".ldb") {
                n += 1;
                bytes += e.metadata().unwrap().len();
            }
        }
        // LevelDB logs the tables per level after each compaction: "... files[ 6 2 9 0 ... ]".
        let log = std::fs::read_to_string(config.data_dir.join("LOG")).unwrap_or_default();
        let levels = log
            .lines()
            .rev()
            .find_map(|l| l.find("files[").map(|i| l[i..].to_string()))
            .unwrap_or_default();
        format!(
            "{n} tables, {:.0} MiB, last compaction: {levels}",
            bytes as f64 / 1048576.0
        )
    };
    println!("on disk: {}", tables());

    let mut keys: Vec<&(Vec<u8>, usize)> = set.iter().collect();
    keys.sort();
    for pass in 1..=2 {
        // Times of the gets of small values (under 256 KiB): a big value's own read is not
        // what the issue is about.
        // And the bytes LevelDB read from its files for each (rchar of /proc/self/io).
        let mut times = Vec::with_capacity(keys.len());
        let (mut read, mut read_max) = (0u64, 0u64);
        let t = Instant::now();
        for (key, len) in &keys {
            let r = rchar();
            let t = Instant::now();
            let v = s.get_chunk(key).unwrap().unwrap();
            if *len < 256 << 10 {
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                let got = rchar() - r;
                read += got;
                read_max = read_max.max(got);
                if got > 4 << 20 {
                    println!(
                        "  a get of a {len} B value read {:.1} MiB in {:.1} ms",
                        got as f64 / 1048576.0,
                        times.last().unwrap()
                    );
                }
            }
            assert_eq!(v.len(), *len);
        }
        let all = t.elapsed().as_secs_f64();
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
        println!(
            "get pass {pass}: {} gets in {all:.2} s; small values: {} gets, mean {mean:.2} ms, p50 {:.2} ms, p99 {:.2} ms, \
             max {:.2} ms, read from the tables {:.2} MiB per get (max {:.1} MiB); on disk: {}",
            keys.len(),
            times.len(),
            at(0.5),
            at(0.99),
            at(1.0),
            read as f64 / times.len() as f64 / 1048576.0,
            read_max as f64 / 1048576.0,
            tables()
        );
    }
    s.close().unwrap();
}
