//! `cloudstore-fs stats MOUNTPOINT`, through real mounts over LevelDB and Ceph: what the daemon
//! reports about trouble (commits pending and done, errors by kind, the last error naming the
//! chunk, memory in use against the budget), and who may ask. Needs root and /dev/fuse
//! (SKIPPED otherwise; a failure under CI=true); the Ceph variant needs the test cluster.

mod ceph_support;
mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::process::Command;

use common::files::{close, errno, read_file, write_file};
use common::mount::{TestMount, BIN};

const MIB: usize = 1 << 20;

/// `cloudstore-fs stats` of the mount, as name -> value.
fn stats(m: &TestMount) -> BTreeMap<String, String> {
    let out = Command::new(BIN).arg("stats").arg(&m.mnt).output().unwrap();
    assert!(
        out.status.success(),
        "stats failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        m.log_tail()
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn number(s: &BTreeMap<String, String>, key: &str) -> u64 {
    s.get(key)
        .unwrap_or_else(|| panic!("no {key} in {s:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {s:?}"))
}

/// Requests of `kind` answered between two stats.
fn requests(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    kind: &str,
) -> u64 {
    let key = format!("requests_{kind}");
    let n = |s: &BTreeMap<String, String>| s.get(&key).map_or(0, |v| v.parse::<u64>().unwrap());
    n(after) - n(before)
}

/// `stats` once the RELEASEs of the `files` closed since `before` have all arrived (the kernel
/// sends a file's RELEASE after its close() returned: the last ones may still be on their way
/// when the program exits, on a loaded machine), and how many times it asked (each `stats`
/// costs the mountpoint a getattr).
fn stats_once_released(
    m: &TestMount,
    before: &BTreeMap<String, String>,
    files: u64,
) -> (BTreeMap<String, String>, u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut asked = 0;
    loop {
        let after = stats(m);
        asked += 1;
        if requests(before, &after, "release") >= files || std::time::Instant::now() >= deadline {
            return (after, asked);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `n` files of 4 KiB of random bytes, named `prefix` and a 3-digit hex number from 001, in a
/// new directory `name` beside the mount.
fn random_files(m: &TestMount, name: &str, prefix: char, n: u64) -> std::path::PathBuf {
    let dir = m.outside(name);
    m.sh(&format!(
        "mkdir -p {dir} && cd {dir} && for i in $(seq 1 {n}); do head -c 4096 /dev/urandom > $(printf '{prefix}%03x' $i); done",
        dir = dir.display()
    ));
    dir
}

fn stats_show_commits_errors_and_memory(m: &mut TestMount) {
    let s = stats(m);
    let backend = match m.store {
        common::mount::Store::Leveldb => "leveldb",
        common::mount::Store::Ceph => "ceph",
    };
    assert_eq!(s["backend"], backend);
    assert_eq!(number(&s, "commits_pending"), 0);
    assert_eq!(number(&s, "errors_total"), 0);
    assert_eq!(s["last_error"], "none");
    assert_eq!(number(&s, "memory_budget_bytes"), 64 * MIB as u64);
    assert_eq!(number(&s, "memory_used_bytes"), 0);

    // Commits are counted.
    for i in 0..5 {
        write_file(&m.path(&format!("aa0{i}")), &vec![i as u8; 1000]);
    }
    let s = stats(m);
    assert_eq!(number(&s, "commits_done"), 5, "{s:?}");
    assert_eq!(number(&s, "commits_failed"), 0);

    // A writer holding 3 MiB: the memory it holds and the open writer show.
    let mut f = fs::File::create(m.path("bb01")).unwrap();
    f.write_all(&vec![7u8; 3 * MIB]).unwrap();
    let s = stats(m);
    assert_eq!(number(&s, "open_writers"), 1, "{s:?}");
    assert!(
        number(&s, "memory_used_bytes") >= 3 * MIB as u64,
        "a 3 MiB buffer is held: {s:?}"
    );
    close(f).unwrap();
    let s = stats(m);
    assert_eq!(number(&s, "open_writers"), 0, "{s:?}");
    assert_eq!(number(&s, "commits_done"), 6, "{s:?}");

    // A write past --max-chunk-size: EFBIG, counted by kind, and the last error names the chunk.
    let mut f = fs::File::create(m.path("cc01")).unwrap();
    let e = f.write_all(&vec![1u8; 5 * MIB]).unwrap_err();
    assert_eq!(errno(&e), libc::EFBIG);
    drop(f);
    // A directory: EPERM, and the last error names it.
    let e = fs::create_dir(m.path("subdir")).unwrap_err();
    assert_eq!(errno(&e), libc::EPERM);
    let s = stats(m);
    assert!(number(&s, "errors_EFBIG") >= 1, "{s:?}");
    assert_eq!(number(&s, "errors_EPERM"), 1, "{s:?}");
    assert!(number(&s, "errors_total") >= 2, "{s:?}");
    assert!(
        s["last_error"].starts_with("EPERM mkdir") && s["last_error"].contains("subdir"),
        "{s:?}"
    );
    // The EFBIG poisoned its handle: nothing of it was committed.
    assert_eq!(number(&s, "commits_done"), 6, "{s:?}");
    assert_eq!(number(&s, "commits_pending"), 0, "{s:?}");
    // Lookups of missing names are answers, not trouble.
    assert!(fs::metadata(m.path("dddd")).is_err());
    assert_eq!(
        number(&stats(m), "errors_total"),
        number(&s, "errors_total")
    );
}

fn stats_are_for_the_owner_and_for_our_mounts_only(m: &mut TestMount) {
    // Another user cannot ask (the socket is owner-only, in an owner-only directory).
    let out = m.sh_as_nobody(&format!("{BIN} stats \"$MNT\""));
    assert!(!out.status.success(), "nobody got stats: {out:?}");
    // Not a mount, or not ours: a clear message and a failure exit.
    for (dir, want) in [
        (m.outside("plain"), "is not a mount point"),
        ("/".into(), "is not a cloudstore-fs mount"),
    ] {
        fs::create_dir_all(&dir).unwrap();
        let out = Command::new(BIN).arg("stats").arg(&dir).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{err}");
        assert!(err.contains(want), "{err}");
    }
    // The socket goes with the daemon.
    m.unmount();
    let out = Command::new(BIN).arg("stats").arg(&m.mnt).output().unwrap();
    assert!(!out.status.success());
}

/// The FUSE requests a `cat` costs per file, from the stats counters (issue 14's measure), and
/// the bytes it moved. Cold (after a remount): open, one read, release; no flush (read-only
/// opens are cached and skip it), no second read (the kernel answers EOF from the page cache),
/// no lookup (readdirplus gave the entries). Warm (the same files again): open and release,
/// the bytes from the kernel's page cache (but for the few pages the kernel reclaimed in
/// between). Both read back exactly what was written.
fn requests_per_file_of_a_cold_cat(m: &mut TestMount) {
    const FILES: u64 = 1000;
    let src = random_files(m, "cat-src", 'c', FILES);
    m.sh(&format!("cp {}/c* \"$MNT\"/", src.display()));
    let want = m.sh(&format!("cat {}/c* | md5sum", src.display()));
    m.remount();
    let kinds = ["lookup", "getattr", "open", "read", "flush", "release"];
    let mut runs = Vec::new();
    for run in ["cold", "warm"] {
        let before = stats(m);
        let got = m.sh("cat \"$MNT\"/c* | md5sum");
        let (after, _) = stats_once_released(m, &before, FILES);
        assert_eq!(got, want, "{run} cat read other bytes than were written");
        let delta = |kind: &str| requests(&before, &after, kind);
        let per_file = |kind: &str| delta(kind) as f64 / FILES as f64;
        let report: Vec<String> = kinds
            .iter()
            .map(|k| format!("{k} {:.2}", per_file(k)))
            .collect();
        eprintln!("{run} cat, requests per file: {}", report.join(", "));
        // Every request but the directory's (opendir, readdir, releasedir of the glob).
        let dir: u64 = ["opendir", "readdir", "readdirplus", "releasedir"]
            .iter()
            .map(|k| delta(k))
            .sum();
        // Less the mountpoint's getattr that asking `stats` costs, and the revalidations
        // (lookup, getattr) of entries whose 1 s TTL ran out during the run: how many depends
        // on how long the run took on a loaded machine, not on what a file costs. They are
        // bounded on their own below.
        let revalidations = delta("lookup") + delta("getattr");
        assert!(
            revalidations <= FILES / 2,
            "{run}: {revalidations} lookups and getattrs for {FILES} files"
        );
        let total = (delta("total") - dir - revalidations) as f64 / FILES as f64;
        let (reads, most) = if run == "cold" {
            (1.0, 3.0)
        } else {
            (0.0, 2.0)
        };
        // The kernel may reclaim a clean page of the page cache at any time, and then reads it
        // again (one READ) although the open kept the cache. On this kind of VM it does, with
        // no memory pressure: the proactive reclaim of DAMON (kdamond, a `pageout` scheme on
        // physical memory) pages out now and then a page the cold cat cached (traced: one file
        // of 1,000 in 2 runs of 100 on Ceph and in 2 of 60 on LevelDB; up to 16 files seen).
        // Allowed for up to 2% of the files on both backends; opens and releases stay exact.
        let reread = if run == "warm" { 0.02 } else { 0.0 };
        for (kind, want) in [("open", 1.0), ("flush", 0.0), ("release", 1.0)] {
            assert_eq!(
                per_file(kind),
                want,
                "{run}: {kind} per file: {}",
                report.join(", ")
            );
        }
        assert!(
            per_file("read") >= reads && per_file("read") <= reads + reread,
            "{run}: read per file: {}",
            report.join(", ")
        );
        let most = most + reread;
        // What the daemon controls is exact: every open went through the page cache, the cold
        // ones (after a remount) told to drop what the kernel might hold, every warm one to keep
        // it (the cache hits).
        let opens = |k: &str| number(&after, k) - number(&before, k);
        let kept = if run == "warm" { FILES } else { 0 };
        assert_eq!(
            (opens("opens_page_cache"), opens("opens_page_cache_kept")),
            (FILES, kept),
            "{run}: opens through the page cache, and kept"
        );
        let moved: Vec<String> = after
            .iter()
            .filter(|(k, v)| k.starts_with("requests_") && before.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k} {} -> {v}", before.get(k).map_or("0", |b| b.as_str())))
            .collect();
        assert!(total <= most, "{run}: {total} requests per file: {moved:?}");
        let bytes = number(&after, "bytes_read") - number(&before, "bytes_read");
        runs.push((run, bytes));
    }
    assert_eq!(runs[0].1, FILES * 4096, "cold cat: bytes the daemon served");
    // Less the pages the kernel reclaimed in between (see `reread` above).
    assert!(
        runs[1].1 <= FILES * 4096 / 50,
        "warm cat: {} bytes the daemon served",
        runs[1].1
    );
}

/// The FUSE requests a create of a 4 KiB file costs, from the stats counters (issue 14: a `cp`
/// cost 10 on LevelDB and 11 on Ceph). Every request left is one the kernel sends on its own:
/// - open(O_CREAT) + write + close (with O_TRUNC, and with O_EXCL): LOOKUP (the kernel's
///   atomic_open looks a name it does not know up before it creates), CREATE, WRITE, FLUSH
///   (close() returns the commit's result), RELEASE; no GETATTR of the file (a create's answer
///   is cached: its writer's permission check and fstat are answered by the kernel). One
///   GETATTR of the directory per create besides: every create makes the kernel drop the
///   directory's attributes (fuse_dir_changed), and under default_permissions the next path
///   walk through it asks for them again (fuse_permission).
/// - `cp` adds its own system calls: stat and lstat of the new name before the open (one
///   LOOKUP, answered with a negative entry the kernel keeps; on Ceph none is kept, for
///   close-to-open across mounts, so two), an O_EXCL open whose lookup the kernel always sends
///   again for a negative entry (fuse_dentry_revalidate with LOOKUP_EXCL), fstat (answered by
///   the kernel), and lstat after close (a GETATTR: the kernel drops a file's size at every
///   write, fuse_write_update_attr).
fn requests_per_file_of_a_create(m: &mut TestMount) {
    const FILES: u64 = 200;
    let src = random_files(m, "create-src", 'd', FILES);
    let value = vec![5u8; 4096];
    let ceph = m.store == common::mount::Store::Ceph;
    let cp_lookups = if ceph { 3 } else { 2 };
    // (workload, lookups per file, getattrs per file at most)
    for (run, lookups, getattrs) in [("cp", cp_lookups, 2), ("O_TRUNC", 1, 1), ("O_EXCL", 1, 1)] {
        let before = stats(m);
        match run {
            "cp" => {
                m.sh(&format!("cp {}/d* \"$MNT\"/", src.display()));
            }
            _ => {
                for i in 0..FILES {
                    let path = m.path(&format!(
                        "{}{i:03x}",
                        if run == "O_TRUNC" { "e" } else { "f" }
                    ));
                    let mut f = if run == "O_TRUNC" {
                        fs::File::create(&path)
                    } else {
                        fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(&path)
                    }
                    .unwrap();
                    f.write_all(&value).unwrap();
                    close(f).unwrap();
                }
            }
        }
        let (after, asked) = stats_once_released(m, &before, FILES);
        let delta = |kind: &str| requests(&before, &after, kind);
        let moved: Vec<String> = after
            .iter()
            .filter(|(k, v)| k.starts_with("requests_") && before.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k} {} -> {v}", before.get(k).map_or("0", |b| b.as_str())))
            .collect();
        eprintln!("{run}: requests for {FILES} creates: {moved:?}");
        for kind in ["create", "write", "release"] {
            assert_eq!(delta(kind), FILES, "{run}: {kind}: {moved:?}");
        }
        // One flush per close, and a few more: another test of this binary that forks (to run
        // `sh` or `cloudstore-fs stats`) while this one has a file open gives the child a copy
        // of the descriptor, which the child's exec closes (O_CLOEXEC): a FLUSH the kernel
        // sends for a close that is not this file's (the daemon leaves it to the opener).
        assert!(
            (FILES..=FILES + FILES / 20).contains(&delta("flush")),
            "{run}: flush: {moved:?}"
        );
        assert!(
            delta("lookup") >= lookups * FILES,
            "{run}: lookup: {moved:?}"
        );
        // Less the mountpoint's getattr that asking `stats` costs, and a few revalidations
        // (lookup, getattr) of entries and attributes whose 1 s TTL ran out between two system
        // calls of one file on a loaded machine (a create's own GETATTR would be one more per
        // file).
        let slack = FILES / 4;
        let revalidations = delta("lookup") + delta("getattr") - asked;
        assert!(
            revalidations <= (lookups + getattrs) * FILES + slack,
            "{run}: lookups and getattrs: {moved:?}"
        );
        let total = delta("total") - asked;
        assert!(
            total <= (lookups + 4 + getattrs) * FILES + slack,
            "{run}: {total} requests for {FILES} creates: {moved:?}"
        );
    }
    // Every file holds its bytes, also read after a remount.
    m.remount();
    let got = m.sh(&format!(
        "cd {} && for f in d*; do cmp $f \"$MNT\"/$f || echo $f; done",
        src.display()
    ));
    assert_eq!(got, "", "files that differ after cp");
    for i in 0..FILES {
        for prefix in ["e", "f"] {
            assert_eq!(read_file(&m.path(&format!("{prefix}{i:03x}"))), value);
        }
    }
}

/// How long the kernel keeps names and attributes, counted: on LevelDB, whose chunks change
/// only through this mount, a `stat` of 200 files 1.5 s after the last (past the 1 s attribute
/// TTL of a shared store) costs no request, and a commit or truncate is still seen at once;
/// on Ceph, where other mounts change chunks, each revalidates (one LOOKUP or GETATTR a file).
fn names_and_attributes_stay_cached_where_only_this_mount_changes_them(m: &mut TestMount) {
    const FILES: u64 = 200;
    let src = random_files(m, "ttl-src", 'e', FILES);
    m.sh(&format!("cp {}/e* \"$MNT\"/", src.display()));
    // By name, not by a glob: a listing (readdirplus) would bring fresh entries and attributes.
    let stat_all = format!(
        "for i in $(seq 1 {FILES}); do printf 'e%03x\\n' $i; done | (cd \"$MNT\" && xargs stat -c %s) | sort | uniq -c"
    );
    let stat_all = stat_all.as_str();
    assert_eq!(m.sh(stat_all).trim(), format!("{FILES} 4096"));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let before = stats(m);
    assert_eq!(m.sh(stat_all).trim(), format!("{FILES} 4096"));
    let after = stats(m);
    let revalidations = requests(&before, &after, "lookup") + requests(&before, &after, "getattr");
    // The directory's own getattr (the glob's path walk, `stats` asking the mountpoint) aside.
    match m.store {
        common::mount::Store::Leveldb => assert!(
            revalidations <= 4,
            "{revalidations} lookups and getattrs for {FILES} cached files"
        ),
        common::mount::Store::Ceph => assert!(
            revalidations >= FILES,
            "{revalidations} lookups and getattrs: a shared store's attributes must revalidate"
        ),
    }
    // Changes through the mount are seen at once: a commit, a truncate, an unlink.
    m.sh("head -c 5000 /dev/zero > \"$MNT\"/e001; truncate -s 7 \"$MNT\"/e002; rm \"$MNT\"/e003");
    assert_eq!(
        m.sh("stat -c %s \"$MNT\"/e001 \"$MNT\"/e002; ls \"$MNT\" | grep -c '^e'")
            .trim(),
        format!("5000\n7\n{}", FILES - 1)
    );
}

mount_suites!([
    names_and_attributes_stay_cached_where_only_this_mount_changes_them,
    stats_show_commits_errors_and_memory(&["--max-chunk-size", "4M", "--memory-budget", "64M"]),
    stats_are_for_the_owner_and_for_our_mounts_only,
    requests_per_file_of_a_cold_cat,
    requests_per_file_of_a_create,
]);

/// Round trips to the OSDs (`store_round_trips`, one per RADOS operation sent) per request on
/// a Ceph mount (issue 14): a listing page's sizes and mtimes come from one pipelined batch of
/// compound ops (stat + xattrs), one per name, and no per-entry call follows; a lookup is one op;
/// an open of a small chunk is one versioned read that also serves its reads; a ranged read is
/// one op, however long; a rewrite of part of a small chunk reads it in one op and commits it
/// in one. Revalidations after a TTL ran out (a loaded machine) only add ops, so each figure is
/// the fewest of three tries.
fn round_trips_per_request(m: &mut TestMount) {
    const FILES: u64 = 300;
    const BIG: &str = "b16b";
    let src = random_files(m, "trips-src", 'd', FILES);
    m.sh(&format!(
        "cd {src} && head -c $((2 << 20)) /dev/urandom > {BIG} && cp {src}/* \"$MNT\"/",
        src = src.display()
    ));
    let n = |s: &BTreeMap<String, String>, key: &str| {
        s.get(key).map_or(0, |v| v.parse::<u64>().unwrap())
    };
    // (round trips, batches, ops in batches, FUSE reads, lookups + getattrs) of `script`.
    let measure = |m: &TestMount, script: &str| {
        let before = stats(m);
        m.sh(script);
        let after = stats(m);
        let d = |key: &str| n(&after, key) - n(&before, key);
        (
            d("store_round_trips"),
            d("store_batches"),
            d("store_batched_round_trips"),
            d("requests_read"),
            d("requests_lookup") + d("requests_getattr"),
        )
    };
    let objects = FILES + 1;
    let mut fewest = BTreeMap::new();
    for _ in 0..3 {
        m.remount();
        let (trips, batches, batched, _, revalidations) = measure(m, "ls -l \"$MNT\" > /dev/null");
        assert_eq!(batched, objects, "ls -l: one op per name, in batches");
        assert_eq!(
            batches,
            objects.div_ceil(256),
            "ls -l: one batch per page of 256 names"
        );
        assert!(
            trips <= objects + revalidations,
            "ls -l: {trips} round trips for {objects} names ({revalidations} revalidations)"
        );
        m.remount();
        let mut keep = |what: &'static str, trips: u64| {
            let e = fewest.entry(what).or_insert(u64::MAX);
            *e = (*e).min(trips);
        };
        keep("lookup", measure(m, "stat \"$MNT\"/d001 > /dev/null").0);
        keep(
            "open and read a 4 KiB chunk",
            measure(m, "cat \"$MNT\"/d001 > /dev/null").0,
        );
        measure(m, &format!("stat \"$MNT\"/{BIG} > /dev/null"));
        let (trips, _, _, reads, _) = measure(
            m,
            &format!("dd if=\"$MNT\"/{BIG} bs=1M of=/dev/null 2>/dev/null"),
        );
        assert!(reads >= 2, "{reads} FUSE reads of a 2 MiB chunk");
        keep("ranged reads less one per read", trips - reads);
        measure(m, "stat \"$MNT\"/d002 > /dev/null");
        keep(
            "rewrite 10 bytes of a 4 KiB chunk",
            measure(
                m,
                "printf 0123456789 | dd of=\"$MNT\"/d002 bs=1 seek=100 conv=notrunc 2>/dev/null",
            )
            .0,
        );
    }
    let want = BTreeMap::from([
        ("lookup", 1),
        ("open and read a 4 KiB chunk", 1),
        ("ranged reads less one per read", 1),
        ("rewrite 10 bytes of a 4 KiB chunk", 2),
    ]);
    assert_eq!(
        fewest, want,
        "round trips per request (the fewest of three tries)"
    );
    // What was read and written is what the files hold.
    let got = m.sh(&format!(
        "cmp {}/{BIG} \"$MNT\"/{BIG} && echo same",
        src.display()
    ));
    assert_eq!(got.trim(), "same");
    let d002 = m.sh("dd if=\"$MNT\"/d002 bs=1 skip=100 count=10 2>/dev/null");
    assert_eq!(d002, "0123456789");
}

mount_suite!(
    ceph_only,
    common::mount::Store::Ceph,
    [round_trips_per_request]
);

/// A field of /proc/PID/status (VmRSS, RssFile, ...), in bytes.
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} missing from /proc/{pid}/status"));
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Reading many distinct small chunks leaves the daemon's RSS where it was, give or take the
/// inode table and attribute cache for names the kernel still holds (issue 14: LevelDB mapped
/// its table files, so every value read stayed resident, ~4 KiB of RSS per distinct 4 KiB
/// chunk, 490 MB after 100,000 of them, while `stats` said memory_used_bytes: 0).
fn reading_many_small_chunks_keeps_rss_flat(m: &mut TestMount) {
    const CHUNKS: u64 = 4000;
    const SIZE: usize = 4096;
    // Measured (debug daemon): 56-181 bytes per chunk with the fix, 4,135 before it (LevelDB's
    // mapped table pages). The warm-up's listing already gave every name its inode and
    // attributes, so this is what reading the values leaves behind.
    const MAX_GROWTH_PER_CHUNK: u64 = 2048;
    // Incompressible values (xorshift), stored in tables by an import, as a backup tool's are.
    let src = m.outside("import");
    fs::create_dir(&src).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..CHUNKS {
        let value: Vec<u8> = (0..SIZE / 8)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()
            })
            .collect();
        fs::write(src.join(format!("{i:06x}")), value).unwrap();
    }
    let out = m.cli(&["import", src.to_str().unwrap()]);
    assert!(out.status.success(), "import: {out:?}");
    let pid = m.daemon_pid().expect("daemon pid");
    // Warm up the daemon's threads and buffers on a few chunks first (the glob lists the
    // whole directory: every name gets its inode and attributes now).
    m.sh("cat \"$MNT\"/0000* > /dev/null");
    let before = proc_status_bytes(pid, "VmRSS");
    m.sh("cd \"$MNT\" && ls | xargs cat | wc -c > /dev/null");
    let after = proc_status_bytes(pid, "VmRSS");
    let growth = after.saturating_sub(before);
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mapped_tables = maps.lines().filter(|l| l.ends_with(".ldb")).count();
    eprintln!(
        "{CHUNKS} distinct {SIZE}-byte chunks read: VmRSS {} -> {} KiB ({} bytes per chunk; \
         RssFile {} KiB, RssAnon {} KiB); {mapped_tables} table files mapped",
        before >> 10,
        after >> 10,
        growth / CHUNKS,
        proc_status_bytes(pid, "RssFile") >> 10,
        proc_status_bytes(pid, "RssAnon") >> 10,
    );
    assert_eq!(
        mapped_tables, 0,
        "the daemon maps LevelDB table files (their pages count in its RSS):\n{maps}"
    );
    assert!(
        growth <= CHUNKS * MAX_GROWTH_PER_CHUNK,
        "reading {CHUNKS} distinct chunks grew the daemon's RSS by {} KiB: {} bytes per chunk, \
         over {MAX_GROWTH_PER_CHUNK}",
        growth >> 10,
        growth / CHUNKS
    );
}

mount_suite!(
    leveldb_only,
    common::mount::Store::Leveldb,
    [reading_many_small_chunks_keeps_rss_flat]
);
