//! Ceph batch benchmark: on one cluster in one run, 1,000 sequential get_chunk / set_chunk calls
//! against one get_chunk_batch / set_chunk_batch of the same 1,000 chunks (4 KiB values), and
//! `rados bench` (write, then seq, 16 threads, 4 KiB) on the same pool as the yardstick.
//!
//! ```text
//! conf=$(scripts/ceph-cluster.sh start /tmp/ceph-bench)
//! CLOUDSTORE_TEST_CEPH_CONF=$conf cargo bench --features ceph --bench ceph_batch
//! scripts/ceph-cluster.sh stop /tmp/ceph-bench
//! ```
//! Environment: CLOUDSTORE_TEST_CEPH_CONF (required), CLOUDSTORE_TEST_CEPH_POOL (default
//! cloudstore-test), BENCH_CHUNKS (default 1000), BENCH_ROUNDS (default 3, the median is
//! printed), BENCH_RADOS_SECONDS (default 10).

use std::process::Command;
use std::time::{Duration, Instant};

use cloudstore_fs::config::{Backend, CephConfig, Config};
use cloudstore_fs::store::ceph::CephStore;
use cloudstore_fs::store::{Cloudstore, RawChunk};

const VALUE: usize = 4096;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn value(i: u64) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..VALUE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn key(round: u64, kind: u8, i: u64) -> Vec<u8> {
    let mut k = vec![kind];
    k.extend_from_slice(&round.to_be_bytes());
    k.extend_from_slice(&i.to_be_bytes());
    k
}

fn ops_per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Runs `rados bench` and returns its "Average IOPS".
fn rados_bench(conf: &str, pool: &str, args: &[&str]) -> f64 {
    let mut cmd = Command::new("rados");
    cmd.args(["-c", conf, "-p", pool, "bench"]).args(args);
    eprintln!(
        "running: rados -c {conf} -p {pool} bench {}",
        args.join(" ")
    );
    let out = cmd.output().expect("run rados bench (package ceph-common)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "rados bench {args:?} failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .find_map(|l| l.strip_prefix("Average IOPS:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no 'Average IOPS' in rados bench output:\n{text}"))
}

struct Figures {
    sequential: f64,
    batch: f64,
    batch_16: f64,
}

/// CPU seconds used so far by this process and by the OSD (when its PID file is found beside
/// the conf, as scripts/ceph-cluster.sh leaves it).
#[derive(Clone, Copy, Default)]
struct Cpu {
    client: f64,
    osd: f64,
}

impl Cpu {
    fn now(osd_pid: Option<u32>) -> Cpu {
        let ticks = |path: String| -> f64 {
            let Ok(stat) = std::fs::read_to_string(path) else {
                return 0.0;
            };
            // utime and stime are fields 14 and 15, counted after the ")" that ends the name.
            let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
            let f: Vec<&str> = rest.split(' ').collect();
            let t: f64 = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
            // SAFETY: sysconf has no preconditions.
            t / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
        };
        Cpu {
            client: ticks("/proc/self/stat".into()),
            osd: osd_pid.map_or(0.0, |p| ticks(format!("/proc/{p}/stat"))),
        }
    }

    fn since(self, start: Cpu) -> Cpu {
        Cpu {
            client: self.client - start.client,
            osd: self.osd - start.osd,
        }
    }
}

fn main() {
    // `cargo bench` passes --bench; a filter argument selects nothing here.
    let Some(conf) = std::env::var("CLOUDSTORE_TEST_CEPH_CONF")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        eprintln!(
            "*** SKIPPED: CLOUDSTORE_TEST_CEPH_CONF is not set; start a cluster with \
             scripts/ceph-cluster.sh start DIR and export its conf path ***"
        );
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            std::process::exit(1);
        }
        return;
    };
    let pool = std::env::var("CLOUDSTORE_TEST_CEPH_POOL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "cloudstore-test".into());
    let n: usize = env_or("BENCH_CHUNKS", 1000);
    let rounds: u64 = env_or("BENCH_ROUNDS", 3);
    let rados_secs: u64 = env_or("BENCH_RADOS_SECONDS", 10);

    let open = |max_in_flight: usize| {
        let config = Config {
            backend: Backend::Ceph,
            ceph: CephConfig {
                conf: conf.clone().into(),
                pool: pool.clone(),
                namespace: format!("bench-{}", std::process::id()),
                max_in_flight,
                ..CephConfig::default()
            },
            ..Config::default()
        };
        CephStore::open(&config).expect("open ceph")
    };
    let store = open(CephConfig::default().max_in_flight);
    let store_16 = open(16);
    let values: Vec<Vec<u8>> = (0..n as u64).map(value).collect();
    let osd_pid: Option<u32> = std::path::Path::new(&conf)
        .parent()
        .and_then(|d| std::fs::read_to_string(d.join("pids/osd.0.pid")).ok())
        .and_then(|p| p.trim().parse().ok());
    // CPU per chunk of the 128-deep batches, summed over rounds: (get, set).
    let mut batch_cpu = (Cpu::default(), Cpu::default());

    let mut set = (Vec::new(), Vec::new(), Vec::new());
    let mut get = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // set: each variant writes fresh objects (creating costs the same for all three).
        let t = Instant::now();
        for (i, v) in values.iter().enumerate() {
            store.set_chunk(&key(round, 0, i as u64), v).unwrap();
        }
        set.0.push(ops_per_sec(n, t.elapsed()));
        for (kind, s, out) in [(1u8, &store, &mut set.1), (2, &store_16, &mut set.2)] {
            let mut batch: Vec<_> = values
                .iter()
                .enumerate()
                .map(|(i, v)| RawChunk::for_set(key(round, kind, i as u64), v.clone()))
                .collect();
            let (t, cpu) = (Instant::now(), Cpu::now(osd_pid));
            s.set_chunk_batch(&mut batch).unwrap();
            out.push(ops_per_sec(n, t.elapsed()));
            if kind == 1 {
                let used = Cpu::now(osd_pid).since(cpu);
                batch_cpu.1.client += used.client;
                batch_cpu.1.osd += used.osd;
            }
            assert!(batch.iter().all(|c| c.ok), "a batch write failed");
        }

        // get: the chunks the sequential round wrote.
        let t = Instant::now();
        for i in 0..n as u64 {
            let v = store.get_chunk(&key(round, 0, i)).unwrap().unwrap();
            assert_eq!(v.len(), VALUE);
        }
        get.0.push(ops_per_sec(n, t.elapsed()));
        for (deep, s, out) in [(true, &store, &mut get.1), (false, &store_16, &mut get.2)] {
            let mut batch: Vec<_> = (0..n as u64)
                .map(|i| RawChunk::for_get(key(round, 0, i)))
                .collect();
            let (t, cpu) = (Instant::now(), Cpu::now(osd_pid));
            s.get_chunk_batch(&mut batch).unwrap();
            out.push(ops_per_sec(n, t.elapsed()));
            if deep {
                let used = Cpu::now(osd_pid).since(cpu);
                batch_cpu.0.client += used.client;
                batch_cpu.0.osd += used.osd;
            }
            assert!(batch.iter().all(|c| c.ok && c.value.len() == VALUE));
        }
    }
    let set = Figures {
        sequential: median(set.0),
        batch: median(set.1),
        batch_16: median(set.2),
    };
    let get = Figures {
        sequential: median(get.0),
        batch: median(get.1),
        batch_16: median(get.2),
    };
    // Leave the cluster as found.
    for round in 0..rounds {
        for kind in 0..3u8 {
            for i in 0..n as u64 {
                store.delete(&key(round, kind, i)).unwrap();
            }
        }
    }
    drop((store, store_16));

    let secs = rados_secs.to_string();
    let rados_write = rados_bench(
        &conf,
        &pool,
        &[&secs, "write", "--no-cleanup", "-t", "16", "-b", "4096"],
    );
    let rados_seq = rados_bench(&conf, &pool, &[&secs, "seq", "-t", "16"]);
    let _ = Command::new("rados")
        .args(["-c", &conf, "-p", &pool, "cleanup"])
        .output();

    let in_flight = CephConfig::default().max_in_flight;
    println!();
    println!("Ceph batch benchmark: {n} chunks of {VALUE} bytes, median of {rounds} rounds");
    println!(
        "{:<6} {:>14} {:>14} {:>14} {:>14} {:>10} {:>12}",
        "op",
        "sequential/s",
        format!("batch({in_flight})/s"),
        "batch(16)/s",
        "rados bench/s",
        "batch/seq",
        "batch/rados"
    );
    for (name, f, rados) in [("get", &get, rados_seq), ("set", &set, rados_write)] {
        println!(
            "{:<6} {:>14.0} {:>14.0} {:>14.0} {:>14.0} {:>9.1}x {:>11.2}x",
            name,
            f.sequential,
            f.batch,
            f.batch_16,
            rados,
            f.batch / f.sequential,
            f.batch / rados
        );
    }
    println!(
        "(rados bench: `rados bench -p {pool} {rados_secs} write --no-cleanup -t 16 -b 4096` \
         for set, then `... {rados_secs} seq -t 16` for get)"
    );
    let per_op = |c: f64| c * 1e6 / (n as f64 * rounds as f64);
    for (name, cpu) in [("get", batch_cpu.0), ("set", batch_cpu.1)] {
        println!(
            "CPU per chunk in batch({in_flight}) {name}: client {:.0} us, OSD {} \
             (on {} cores, with the monitor and the client sharing them)",
            per_op(cpu.client),
            if osd_pid.is_some() {
                format!("{:.0} us", per_op(cpu.osd))
            } else {
                "unknown (no pids/osd.0.pid beside the conf)".into()
            },
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
    }
}
