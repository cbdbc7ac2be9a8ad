//! Through real mounts: the Prometheus endpoint (`mount --metrics-addr`) scraped with `curl`,
//! and point-in-time snapshots (`cloudstore-fs snapshot MOUNTPOINT DIR`) on LevelDB and Ceph
//! while the live mount changes, with what a held snapshot costs. Needs root and /dev/fuse
//! (SKIPPED otherwise; a failure under CI=true); the Ceph tests need the test cluster.

mod ceph_support;
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use ceph_support::{bytes, TestCluster};
use common::files::{errno, files_in, read_file, write_file};
use common::mount::{Store, TestMount, BIN, SMALL_STORE_CACHES};

/// A TCP port free on loopback now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `curl` of `url`: (HTTP status, body).
fn curl(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}", url])
        .output()
        .expect("run curl (package curl)");
    assert!(out.status.success(), "curl {url}: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

/// The samples of a scrape: "name{labels}" -> value.
fn scrape(port: u16) -> BTreeMap<String, f64> {
    let (code, body) = curl(&format!("http://127.0.0.1:{port}/metrics"));
    assert_eq!(code, 200, "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect()
}

fn value(s: &BTreeMap<String, f64>, name: &str) -> f64 {
    *s.get(name)
        .unwrap_or_else(|| panic!("no sample {name} in the scrape: {s:?}"))
}

/// Whether a socket listens on `port` at the IPv4 address `hex_addr` (as /proc/net/tcp
/// spells it: 0100007F is 127.0.0.1), and on no other address.
fn listening_only_at(port: u16, hex_addr: &str) -> bool {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let text6 = std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    let want = format!(":{port:04X}");
    let listeners: Vec<String> = text
        .lines()
        .chain(text6.lines())
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(3) == Some(&"0A") && f[1].ends_with(&want)).then(|| f[1].to_string())
        })
        .collect();
    listeners == vec![format!("{hex_addr}{want}")]
}

#[test]
fn metrics_count_the_writes_and_reads_and_listen_on_loopback_only() {
    let test = "metrics_count_the_writes_and_reads_and_listen_on_loopback_only";
    let Some(mut m) = TestMount::new(Store::Leveldb, test) else {
        return;
    };
    m.unmount();
    // Anything but loopback is refused (exit 2) unless asked for by name.
    let out = m.try_mount(&m.mnt, &["--metrics-addr", "0.0.0.0:9"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--metrics-allow-remote"));
    let port = free_port();
    m.mount_with_flags(&["--metrics-addr", &port.to_string()]);
    assert!(
        listening_only_at(port, "0100007F"),
        "the endpoint must listen on 127.0.0.1 only"
    );
    let before = scrape(port);
    let data: Vec<Vec<u8>> = (0..3).map(|i| bytes(i, 10_000)).collect();
    for (i, d) in data.iter().enumerate() {
        write_file(&m.path(&format!("ab{i:02}")), d);
    }
    for (i, d) in data.iter().enumerate() {
        assert_eq!(read_file(&m.path(&format!("ab{i:02}"))), *d);
    }
    let after = scrape(port);
    let grew = |name: &str| value(&after, name) - before.get(name).copied().unwrap_or(0.0);
    assert!(grew("cloudstore_written_bytes_total") >= 30_000.0);
    assert!(grew("cloudstore_read_bytes_total") >= 30_000.0);
    assert!(grew("cloudstore_commits_total") >= 3.0);
    assert!(grew("cloudstore_fuse_requests_total{kind=\"write\"}") >= 3.0);
    assert!(grew("cloudstore_commit_duration_seconds_count") >= 1.0);
    assert!(grew("cloudstore_store_call_duration_seconds_count{op=\"get_chunk\"}") >= 3.0);
    assert_eq!(value(&after, "cloudstore_commit_failures_total"), 0.0);
    assert_eq!(value(&after, "cloudstore_commits_pending"), 0.0);
    assert!(value(&after, "cloudstore_memory_budget_bytes") > 0.0);
    // The histogram's buckets are cumulative and end in +Inf = _count.
    let inf = value(
        &after,
        "cloudstore_store_call_duration_seconds_bucket{le=\"+Inf\",op=\"get_chunk\"}",
    );
    assert_eq!(
        inf,
        value(
            &after,
            "cloudstore_store_call_duration_seconds_count{op=\"get_chunk\"}"
        )
    );
    assert_eq!(curl(&format!("http://127.0.0.1:{port}/other")).0, 404);
    // Held snapshots are counted, for an alert on one forgotten (it costs space).
    assert_eq!(value(&after, "cloudstore_snapshots"), 0.0);
    let snap = m.outside("snap");
    std::fs::create_dir(&snap).unwrap();
    assert!(take_snapshot(&m, &snap).status.success());
    assert_eq!(value(&scrape(port), "cloudstore_snapshots"), 1.0);
    cli_ok(&["unmount".as_ref(), snap.as_os_str()]);
    assert_eq!(value(&scrape(port), "cloudstore_snapshots"), 0.0);
    m.unmount();
    // The endpoint goes with the mount.
    let out = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the endpoint outlived its mount");
}

/// `cloudstore-fs snapshot MNT DIR`.
fn take_snapshot(m: &TestMount, dir: &Path) -> Output {
    Command::new(BIN)
        .arg("snapshot")
        .arg(&m.mnt)
        .arg(dir)
        .output()
        .unwrap()
}

fn cli_ok(args: &[&std::ffi::OsStr]) {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_mount_point(dir: &Path) -> bool {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = dir.to_str().unwrap();
    text.lines().any(|l| l.split(' ').nth(4) == Some(want))
}

/// The snapshot scenario on one mount: old values and names stay while the live mount
/// overwrites, deletes and creates; writes are EROFS; `tar c` reads it whole; it unmounts
/// while the live mount goes on.
fn snapshot_keeps_the_old_values(m: &mut TestMount) {
    let old: BTreeMap<String, Vec<u8>> = [
        ("aa01", bytes(1, 70_000)),
        ("aa02", bytes(2, 200_000)),
        ("aa03", b"small".to_vec()),
        ("aa04", Vec::new()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (name, data) in &old {
        write_file(&m.path(name), data);
    }
    let snap = m.outside("snap");
    std::fs::create_dir(&snap).unwrap();
    let out = take_snapshot(m, &snap);
    assert!(
        out.status.success(),
        "snapshot: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        m.log_tail()
    );
    assert!(is_mount_point(&snap));
    let out = Command::new(BIN).arg("stats").arg(&snap).output().unwrap();
    assert!(out.status.success(), "stats of the snapshot: {out:?}");
    // Only the mounting user (root here) may take one.
    let other = m.outside("snap-by-nobody");
    std::fs::create_dir(&other).unwrap();
    let out = m.sh_as_nobody(&format!("{BIN} snapshot \"$MNT\" {}", other.display()));
    assert!(!out.status.success(), "nobody took a snapshot: {out:?}");
    assert!(!is_mount_point(&other));
    // The live mount changes: an overwrite (shorter), a delete, a new chunk.
    write_file(&m.path("aa01"), b"new value");
    std::fs::remove_file(m.path("aa02")).unwrap();
    write_file(&m.path("bb05"), b"created after the snapshot");
    assert_eq!(files_in(&snap), old, "the snapshot after the changes");
    // Changes are refused: EROFS.
    let e = std::fs::write(snap.join("aa03"), b"x").unwrap_err();
    assert_eq!(errno(&e), libc::EROFS, "{e}");
    let e = std::fs::write(snap.join("cc06"), b"x").unwrap_err();
    assert_eq!(errno(&e), libc::EROFS, "{e}");
    let e = std::fs::remove_file(snap.join("aa03")).unwrap_err();
    assert_eq!(errno(&e), libc::EROFS, "{e}");
    // tar reads it whole while the live mount keeps overwriting.
    let writer = {
        let path = m.path("aa01");
        std::thread::spawn(move || {
            for i in 0..20u64 {
                write_file(&path, &bytes(100 + i, 50_000));
                std::fs::remove_file(path.with_file_name("aa03")).ok();
            }
        })
    };
    let tar = m.outside("snap.tar");
    let out = Command::new("tar")
        .arg("cf")
        .arg(&tar)
        .arg("-C")
        .arg(&snap)
        .arg(".")
        .output()
        .unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "tar c: {out:?}");
    let unpacked = m.outside("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let out = Command::new("tar")
        .arg("xf")
        .arg(&tar)
        .arg("-C")
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(out.status.success(), "tar x: {out:?}");
    assert_eq!(files_in(&unpacked), old, "what tar read from the snapshot");
    assert_eq!(files_in(&snap), old, "the snapshot after more changes");
    // Let go of it; the live mount goes on.
    cli_ok(&["unmount".as_ref(), snap.as_os_str()]);
    assert!(!is_mount_point(&snap));
    write_file(&m.path("bb06"), b"after the snapshot went");
    assert_eq!(read_file(&m.path("bb06")), b"after the snapshot went");
    assert_eq!(read_file(&m.path("bb05")), b"created after the snapshot");
    assert!(!m.path("aa02").exists());
    m.assert_logged(&["unmounted and let go of"]);
}

#[test]
fn leveldb_snapshot_keeps_the_old_values_while_the_mount_changes() {
    let test = "leveldb_snapshot_keeps_the_old_values_while_the_mount_changes";
    let Some(mut m) = TestMount::new(Store::Leveldb, test) else {
        return;
    };
    snapshot_keeps_the_old_values(&mut m);
    // A snapshot still mounted when the live mount is unmounted goes with it.
    let snap = m.outside("snap2");
    std::fs::create_dir(&snap).unwrap();
    assert!(take_snapshot(&m, &snap).status.success());
    assert_eq!(read_file(&snap.join("bb06")), b"after the snapshot went");
    // Not on a directory that is not empty, nor on a path that is not a mount of ours.
    let out = take_snapshot(&m, &m.outside("unpacked"));
    assert!(!out.status.success());
    let out = Command::new(BIN)
        .arg("snapshot")
        .arg(m.outside("unpacked"))
        .arg(m.outside("snap"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a mount point"));
    m.unmount();
    assert!(
        !is_mount_point(&snap),
        "the snapshot outlived its live mount"
    );
}

#[test]
fn a_snapshot_of_a_killed_daemon_unmounts() {
    let test = "a_snapshot_of_a_killed_daemon_unmounts";
    let Some(mut m) = TestMount::new(Store::Leveldb, test) else {
        return;
    };
    write_file(&m.path("ab"), b"value");
    let snap = m.outside("snap");
    std::fs::create_dir(&snap).unwrap();
    assert!(take_snapshot(&m, &snap).status.success());
    m.signal_daemon(libc::SIGKILL);
    // A stale mount ("Transport endpoint is not connected"); unmount clears it at once.
    let e = std::fs::read(snap.join("ab")).unwrap_err();
    assert_eq!(errno(&e), libc::ENOTCONN, "{e}");
    cli_ok(&["unmount".as_ref(), snap.as_os_str()]);
    assert!(!is_mount_point(&snap));
    // The store is whole: a new mount serves it, and snapshots of it.
    m.mount();
    assert_eq!(read_file(&m.path("ab")), b"value");
    assert!(take_snapshot(&m, &snap).status.success());
    assert_eq!(read_file(&snap.join("ab")), b"value");
    cli_ok(&["unmount".as_ref(), snap.as_os_str()]);
}

/// Bytes the files under `dir` take on disk.
fn disk_usage(dir: &Path) -> u64 {
    let out = Command::new("du").arg("-sb").arg(dir).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
}

/// Writes 16 x 1 MiB chunks, then overwrites each 4 times (64 MiB), with or without a
/// snapshot held: the data directory's size at the end, and the chunks' total.
fn leveldb_overwrites(m: &mut TestMount, hold: bool) -> (u64, u64) {
    const CHUNKS: u64 = 16;
    const ROUNDS: u64 = 4;
    for i in 0..CHUNKS {
        write_file(&m.path(&format!("cc{i:02}")), &bytes(i, 1 << 20));
    }
    let snap = m.outside(&format!("snap-cost-{hold}"));
    if hold {
        std::fs::create_dir(&snap).unwrap();
        assert!(take_snapshot(m, &snap).status.success());
    }
    for r in 1..=ROUNDS {
        for i in 0..CHUNKS {
            write_file(&m.path(&format!("cc{i:02}")), &bytes(r * 1000 + i, 1 << 20));
        }
    }
    let size = disk_usage(&m.outside("data"));
    if hold {
        // Every old value is still there to read.
        for i in 0..CHUNKS {
            assert_eq!(
                read_file(&snap.join(format!("cc{i:02}"))),
                bytes(i, 1 << 20)
            );
        }
        cli_ok(&["unmount".as_ref(), snap.as_os_str()]);
    }
    (size, CHUNKS << 20)
}

#[test]
fn a_held_leveldb_snapshot_keeps_overwritten_values_on_disk() {
    let test = "a_held_leveldb_snapshot_keeps_overwritten_values_on_disk";
    // Small write buffer: the overwrites go through compactions, as on a store in use.
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let mut sizes = Vec::new();
    for hold in [false, true] {
        let Some(mut m) = TestMount::with_config(Store::Leveldb, test, SMALL_STORE_CACHES, &[])
        else {
            return;
        };
        let (size, live) = leveldb_overwrites(&mut m, hold);
        if hold {
            // LevelDB's compaction drops a version only when a newer one is itself older
            // than the oldest snapshot: every version written while it is held stays on
            // disk, the snapshot's and all 4 rounds of overwrites.
            assert!(size >= 5 * live, "{size} bytes on disk, {live} live");
        }
        sizes.push(size);
        eprintln!(
            "leveldb: 16 MiB of chunks overwritten 4 times, snapshot held: {hold}: data \
             directory {:.1} MiB",
            mib(size)
        );
    }
}

/// The `ceph` tool on `conf`.
fn ceph(conf: &Path, args: &[&str]) -> Output {
    Command::new("ceph")
        .arg("-c")
        .arg(conf)
        .args(args)
        .output()
        .expect("run ceph (package ceph-common)")
}

/// A pool of this test's own (pool snapshots are pool-wide: other tests' pools stay free of
/// clones and whiteouts), deleted when dropped.
struct OwnPool {
    conf: PathBuf,
    name: String,
}

impl OwnPool {
    fn create(conf: &Path) -> OwnPool {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("cloudstore-snap-{}-{nanos}", std::process::id());
        for args in [
            vec!["osd", "pool", "create", &name, "8", "8"],
            vec!["osd", "pool", "application", "enable", &name, "rados"],
        ] {
            let out = ceph(conf, &args);
            assert!(out.status.success(), "ceph {args:?}: {out:?}");
        }
        OwnPool {
            conf: conf.to_path_buf(),
            name,
        }
    }
}

impl Drop for OwnPool {
    fn drop(&mut self) {
        let n = self.name.clone();
        let _ = ceph(
            &self.conf,
            &[
                "osd",
                "pool",
                "delete",
                &n,
                &n,
                "--yes-i-really-really-mean-it",
            ],
        );
    }
}

/// Clones RADOS keeps of `object` for snapshots: (how many, their bytes), from `rados
/// listsnaps`.
fn clones(cluster: &TestCluster, object: &str) -> (u64, u64) {
    let out = cluster
        .rados_command()
        .args(["listsnaps", object])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // "cloneid snaps size overlap" lines: a numeric clone id, then the size.
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first()?.parse::<u64>().ok()?;
            f.get(2)?.parse::<u64>().ok()
        })
        .fold((0, 0), |(n, b), size| (n + 1, b + size))
}

/// The pool snapshots of the pool (`rados lssnap`), by name.
fn pool_snapshots(cluster: &TestCluster) -> Vec<String> {
    let out = Command::new("rados")
        .arg("-c")
        .arg(&cluster.conf)
        .args(["-p", &cluster.pool, "lssnap"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .filter(|n| n.starts_with("cloudstore-fs-"))
        .collect()
}

/// The store's view, without a mount: a RADOS snap read through our connection returns the old
/// bytes after an overwrite and a delete (whole, ranged and versioned reads, stat, mtime),
/// lists the objects of the snapshot (a deleted one too, none created later), refuses
/// changes, and its close removes the pool snapshot.
#[test]
fn ceph_store_snapshot_reads_the_old_bytes() {
    let test = "ceph_store_snapshot_reads_the_old_bytes";
    if !cfg!(feature = "ceph") {
        ceph_support::skip_or_fail(&format!(
            "{test}: built without the `ceph` feature (cargo test --all-features)"
        ));
        return;
    }
    let Some(env) = ceph_support::cluster(test) else {
        return;
    };
    let pool = OwnPool::create(&env.conf);
    let cluster = TestCluster {
        pool: pool.name.clone(),
        ..env
    };
    let store = cloudstore_fs::store::open(&cluster.config(64 << 20)).unwrap();
    assert!(store.capabilities().snapshots);
    let (a, b) = (bytes(1, 300_000), bytes(2, 1000));
    store.set_chunk(b"\xaa", &a).unwrap();
    store.set_chunk(b"\xbb", &b).unwrap();
    let mtime = store.mtime(b"\xaa").unwrap();
    let snap = store.snapshot().unwrap();
    store.set_chunk(b"\xaa", b"short").unwrap();
    assert!(store.delete(b"\xbb").unwrap());
    store.set_chunk(b"\xcc", b"created later").unwrap();
    assert_eq!(snap.get_chunk(b"\xaa").unwrap().unwrap(), a);
    assert_eq!(snap.get_chunk(b"\xbb").unwrap().unwrap(), b);
    assert_eq!(snap.get_chunk(b"\xcc").unwrap(), None);
    assert_eq!(
        snap.get_chunk_with_range(b"\xaa", 1000, 2000)
            .unwrap()
            .unwrap(),
        a[1000..2000]
    );
    let v = snap.read_version(b"\xaa", 0, 10, None).unwrap().unwrap();
    assert_eq!((v.bytes.as_slice(), v.size), (&a[..10], a.len() as u64));
    let again = snap
        .read_version(b"\xaa", 200_000, 0, Some(v.version))
        .unwrap()
        .unwrap();
    assert_eq!(again.bytes, a[200_000..]);
    assert_eq!(snap.stat(b"\xaa").unwrap(), Some(a.len() as u64));
    assert_eq!(snap.mtime(b"\xaa").unwrap(), mtime);
    let mut listed: Vec<(Vec<u8>, u64)> = snap
        .list(None)
        .unwrap()
        .map(|c| c.map(|c| (c.key, c.size)).unwrap())
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        vec![
            (b"\xaa".to_vec(), a.len() as u64),
            (b"\xbb".to_vec(), b.len() as u64)
        ]
    );
    // The live store lists what it holds now (the deleted object's head is a whiteout).
    let mut live: Vec<Vec<u8>> = store.list(None).unwrap().map(|c| c.unwrap().key).collect();
    live.sort();
    assert_eq!(live, vec![b"\xaa".to_vec(), b"\xcc".to_vec()]);
    let e = snap.set_chunk(b"\xaa", b"x").unwrap_err();
    assert_eq!(e.errno(), libc::EROFS, "{e}");
    assert_eq!(snap.delete(b"\xaa").unwrap_err().errno(), libc::EROFS);
    assert_eq!(pool_snapshots(&cluster).len(), 1);
    snap.close().unwrap();
    assert!(pool_snapshots(&cluster).is_empty());
    store.close().unwrap();
}

#[test]
fn ceph_snapshot_keeps_the_old_values_while_the_mount_changes() {
    let test = "ceph_snapshot_keeps_the_old_values_while_the_mount_changes";
    if !common::mount::fuse_available(test) {
        return;
    }
    let Some(env) = ceph_support::cluster(test) else {
        return;
    };
    let pool = OwnPool::create(&env.conf);
    let cluster = TestCluster {
        conf: env.conf.clone(),
        pool: pool.name.clone(),
        namespace: env.namespace.clone(),
    };
    let Some(mut m) = TestMount::on_ceph_cluster(test, cluster.clone(), "", &[]) else {
        return;
    };
    // The promise first, through the `rados` tool alone: a pool snapshot read returns the
    // bytes of before an overwrite and a delete, and nothing created after it.
    cluster.rados(&["put", "probe1", "/etc/hostname"]);
    let rados_pool = |args: &[&str]| {
        let out = Command::new("rados")
            .arg("-c")
            .arg(&cluster.conf)
            .args(["-p", &cluster.pool])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "rados {args:?}: {out:?}");
    };
    rados_pool(&["mksnap", "probe-snap"]);
    cluster.rados(&["put", "probe1", "/etc/os-release"]);
    cluster.rados(&["put", "probe2", "/etc/os-release"]);
    let got = m.outside("probe.out");
    let at_snap = |obj: &str| {
        let _ = std::fs::remove_file(&got);
        let out = cluster
            .rados_command()
            .args(["-s", "probe-snap", "get", obj])
            .arg(&got)
            .output()
            .unwrap();
        out.status.success().then(|| std::fs::read(&got).unwrap())
    };
    let hostname = std::fs::read("/etc/hostname").unwrap();
    assert_eq!(at_snap("probe1"), Some(hostname.clone()));
    assert_eq!(at_snap("probe2"), None, "created after the snap");
    cluster.rados(&["rm", "probe1"]);
    assert_eq!(at_snap("probe1"), Some(hostname));
    rados_pool(&["rmsnap", "probe-snap"]);
    cluster.rados(&["rm", "probe2"]);

    // A snapshot left by a daemon of this host that was killed while it held it: removed
    // when the next one is taken (pid 999999999 is above any pid_max).
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let stale = format!("cloudstore-fs-{}-999999999-1", host.trim());
    rados_pool(&["mksnap", &stale]);
    snapshot_keeps_the_old_values(&mut m);
    assert!(
        pool_snapshots(&cluster).is_empty(),
        "the pool snapshots were not removed"
    );
    m.assert_logged(&["removed pool snapshot", &stale, "its daemon is gone"]);

    // The cost: one clone per object changed while a snapshot is held, of its old size.
    let snap = m.outside("snap-cost");
    std::fs::create_dir(&snap).unwrap();
    for i in 0..8 {
        write_file(&m.path(&format!("dd{i:02}")), &bytes(i, 256 << 10));
    }
    assert!(take_snapshot(&m, &snap).status.success());
    assert_eq!(pool_snapshots(&cluster).len(), 1);
    for i in 0..4 {
        write_file(&m.path(&format!("dd{i:02}")), &bytes(50 + i, 256 << 10));
    }
    std::fs::remove_file(m.path("dd04")).unwrap();
    let mut kept = (0, 0);
    for i in 0..8 {
        let (n, b) = clones(&cluster, &format!("dd{i:02}"));
        assert_eq!(n, u64::from(i <= 4), "clones of dd{i:02}");
        kept = (kept.0 + n, kept.1 + b);
    }
    assert_eq!(kept, (5, 5 * (256 << 10)));
    eprintln!(
        "ceph: 5 of 8 objects of 256 KiB changed while a pool snapshot was held: RADOS keeps \
         {} clones, {} KiB",
        kept.0,
        kept.1 >> 10
    );
    cli_ok(&["unmount".as_ref(), snap.as_os_str()]);
    assert!(pool_snapshots(&cluster).is_empty());
    // The OSDs trim the clones in the background once the snapshot is gone (measured: all
    // 5 gone within 14 s on the test cluster; not waited for here).
    m.unmount();
    drop(m);
    drop(pool);
}
