//! Bad input in the store itself: a damaged LevelDB directory (the open fails with a clear error,
//! nothing panics, nothing is repaired; a damaged block is EIO on read) and Ceph settings that
//! cannot work (a clear message and a non-zero exit, within the timeout). The Ceph cases need
//! CLOUDSTORE_TEST_CEPH_CONF, the mount case root and /dev/fuse.

mod ceph_support;
mod common;

use std::collections::BTreeMap;
use std::fs::{self};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ceph_support::bytes;
use common::files::{errno, read_file, write_file};
use common::mount::{fuse_available, TestMount};
use common::refusals::{assert_fails, is_mounted, run_bin};

// ---------------------------------------------------------------------------------------------
// A damaged LevelDB directory: the open fails with a clear error, nothing panics, no repair
// runs, and the files are left as they were (putting the damaged file back gives every chunk).

/// The files under `dir` and their bytes, without LevelDB's diagnostic log (LOG, LOG.old: every
/// open rotates it) and its LOCK file.
fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
                continue;
            }
            let name = p.file_name().unwrap().to_str().unwrap();
            if !matches!(name, "LOG" | "LOG.old" | "LOCK") {
                let rel = p.strip_prefix(dir).unwrap().to_str().unwrap().to_string();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A LevelDB directory with chunks aa (300 KB), bb and cc (30 KB each), each in its own table
/// (every CLI command opens and closes the store; an open turns the log into a table).
fn damaged_db_setup(dir: &Path) -> (PathBuf, BTreeMap<&'static str, Vec<u8>>) {
    let data = dir.join("data");
    let mut chunks = BTreeMap::new();
    for (i, (key, len)) in [("aa", 300_000), ("bb", 30_000), ("cc", 30_000)]
        .iter()
        .enumerate()
    {
        let value = bytes(20 + i as u64, *len);
        let file = dir.join(key);
        fs::write(&file, &value).unwrap();
        let (out, _) = run_bin(
            &[
                "put".as_ref(),
                key.as_ref(),
                file.as_os_str(),
                "--data-dir".as_ref(),
                data.as_os_str(),
            ],
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "put {key}: {out:?}");
        chunks.insert(*key, value);
    }
    assert_ls(&data, &chunks);
    (data, chunks)
}

/// `cloudstore-fs ls` succeeds and every chunk reads back whole.
fn assert_ls(data: &Path, chunks: &BTreeMap<&'static str, Vec<u8>>) {
    let (out, _) = run_bin(
        &["ls".as_ref(), "--data-dir".as_ref(), data.as_os_str()],
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "ls: {out:?}");
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    for (key, value) in chunks {
        assert!(
            listed.contains(&format!("{key} {}", value.len())),
            "{listed}"
        );
        let (out, _) = run_bin(
            &[
                "get".as_ref(),
                key.as_ref(),
                "--data-dir".as_ref(),
                data.as_os_str(),
            ],
            Duration::from_secs(30),
        );
        assert!(out.status.success() && out.stdout == *value, "get {key}");
    }
}

/// `ls`, `get` and `mount` of the damaged directory fail (exit 3) with `needles` in the message.
fn assert_open_fails(dir: &Path, data: &Path, needles: &[&str]) {
    for cmd in [&["ls"][..], &["get", "bb"], &["mount", "--daemon"]] {
        let mut args: Vec<&std::ffi::OsStr> = cmd.iter().map(|a| a.as_ref()).collect();
        args.extend(["--data-dir".as_ref(), data.as_os_str()]);
        let mnt = dir.join("mnt");
        fs::create_dir_all(&mnt).unwrap();
        if cmd[0] == "mount" {
            if !fuse_available("bad_input::damaged LevelDB mount") {
                continue;
            }
            args.push(mnt.as_os_str());
        }
        let (out, _) = run_bin(&args, Duration::from_secs(60));
        if cmd[0] == "mount" && out.status.success() {
            let _ = cloudstore_fs::mount::unmount(&mnt);
            panic!("mount of a damaged LevelDB directory succeeded");
        }
        let mut want = vec!["cannot open the store"];
        want.extend(needles);
        assert_fails(&out, 3, &want, &format!("{cmd:?} of a damaged directory"));
        assert!(!is_mounted(&mnt), "{cmd:?} left a mount");
    }
}

#[test]
fn leveldb_truncated_table_is_an_error_and_nothing_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let (data, chunks) = damaged_db_setup(dir.path());
    // The table holding aa: the largest one.
    let before = files_of(&data);
    let (table, whole) = before
        .iter()
        .filter(|(n, _)| n.ends_with(".ldb") && !n.contains('/'))
        .max_by_key(|(_, b)| b.len())
        .map(|(n, b)| (data.join(n), b.clone()))
        .expect("a table file");
    let tables: Vec<String> = before
        .keys()
        .filter(|n| n.ends_with(".ldb"))
        .cloned()
        .collect();
    fs::write(&table, &whole[..whole.len() / 2]).unwrap();
    let damaged = files_of(&data);

    // LevelDB opens (tables are read lazily); the scan that checks our size index meets the
    // damage and the open fails, naming the file.
    assert_open_fails(
        dir.path(),
        &data,
        &[
            "leveldb: rebuild index: Corruption",
            &format!("damaged table files: {}", table.display()),
        ],
    );

    // Every table is still there, byte for byte (the damaged one still damaged: no repair).
    // LevelDB's open itself rewrites its MANIFEST and log (it replays the log into a table
    // before our index scan meets the damage), so those are not compared.
    let after = files_of(&data);
    for t in &tables {
        assert!(after.get(t) == damaged.get(t), "table {t} changed");
    }
    assert!(
        !data.join("lost").exists(),
        "a LevelDB repair ran (lost/ exists)"
    );
    // Put back, the table gives every chunk whole: the failed opens lost nothing.
    fs::write(&table, &whole).unwrap();
    assert_ls(&data, &chunks);
}

#[test]
fn leveldb_garbage_manifest_is_an_error_and_the_files_stay() {
    let dir = tempfile::tempdir().unwrap();
    let (data, chunks) = damaged_db_setup(dir.path());
    let manifest = fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("MANIFEST-")
        })
        .expect("a MANIFEST");
    let good = fs::read(&manifest).unwrap();
    fs::write(&manifest, bytes(77, good.len())).unwrap();
    let before = files_of(dir.path());

    assert_open_fails(dir.path(), &data, &["Corruption", "cannot open database"]);

    // Nothing under the directory changed (besides LevelDB's own LOG).
    let after = files_of(dir.path());
    let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&after), names(&before), "files added or removed");
    for (name, b) in &before {
        assert!(after[name] == *b, "{name} changed");
    }
    fs::write(&manifest, &good).unwrap();
    assert_ls(&data, &chunks);
}

// ---------------------------------------------------------------------------------------------
// Ceph settings that cannot work: a clear message and a non-zero exit, within the timeout.

/// The Ceph store options for `conf` and `pool`, for `cmd` (ls or mount).
fn ceph_args<'a>(
    cmd: &'a str,
    conf: &'a Path,
    pool: &'a str,
    extra: &[&'a std::ffi::OsStr],
) -> Vec<&'a std::ffi::OsStr> {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        cmd.as_ref(),
        "--backend".as_ref(),
        "ceph".as_ref(),
        "--ceph-conf".as_ref(),
        conf.as_os_str(),
        "--pool".as_ref(),
        pool.as_ref(),
    ];
    args.extend(extra);
    args
}

/// Runs `ls` and `mount --daemon` with these settings; both must fail with `needles`.
fn assert_ceph_fails(
    conf: &Path,
    pool: &str,
    config: Option<&Path>,
    needles: &[&str],
    limit: Duration,
) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let mut slowest = Duration::ZERO;
    for cmd in ["ls", "mount"] {
        let mut extra: Vec<&std::ffi::OsStr> = Vec::new();
        if let Some(c) = config {
            extra.extend(["--config".as_ref(), c.as_os_str()]);
        }
        if cmd == "mount" {
            if !fuse_available("bad_input::ceph mount") {
                continue;
            }
            extra.extend(["--daemon".as_ref(), mnt.as_os_str()]);
        }
        let (out, took) = run_bin(&ceph_args(cmd, conf, pool, &extra), limit);
        if cmd == "mount" && out.status.success() {
            let _ = cloudstore_fs::mount::unmount(&mnt);
            panic!("mount succeeded with conf {} pool {pool}", conf.display());
        }
        assert_fails(
            &out,
            3,
            needles,
            &format!("{cmd} (conf {}, pool {pool})", conf.display()),
        );
        assert!(!is_mounted(&mnt));
        slowest = slowest.max(took);
    }
    slowest
}

#[test]
fn ceph_missing_pool_is_a_clear_error() {
    if !cfg!(feature = "ceph") {
        return ceph_support::skip_or_fail("ceph_missing_pool: built without the `ceph` feature");
    }
    let Some(cluster) = ceph_support::cluster("bad_input::ceph_missing_pool") else {
        return;
    };
    assert_ceph_fails(
        &cluster.conf,
        "no-such-pool-here",
        None,
        &["pool \"no-such-pool-here\" does not exist"],
        Duration::from_secs(60),
    );
}

#[test]
fn ceph_wrong_conf_path_is_a_clear_error() {
    if !cfg!(feature = "ceph") {
        return ceph_support::skip_or_fail(
            "ceph_wrong_conf_path: built without the `ceph` feature",
        );
    }
    let missing = Path::new("/nonexistent/cloudstore/ceph.conf");
    assert_ceph_fails(
        missing,
        "p",
        None,
        &[
            "cannot read conf file /nonexistent/cloudstore/ceph.conf",
            "No such file",
        ],
        Duration::from_secs(30),
    );
    // A directory is not a conf file either.
    assert_ceph_fails(
        Path::new("/tmp"),
        "p",
        None,
        &["/tmp is not a regular file"],
        Duration::from_secs(30),
    );
}

/// The connect timeout of the unreachable-monitor test, and the slack allowed on top of it.
const CONNECT_TIMEOUT: u64 = 3;
const CONNECT_SLACK: Duration = Duration::from_secs(10);

#[test]
fn ceph_unreachable_monitor_fails_within_the_connect_timeout() {
    if !cfg!(feature = "ceph") {
        return ceph_support::skip_or_fail(
            "ceph_unreachable_monitor: built without the `ceph` feature",
        );
    }
    // No cluster needed: a conf naming a monitor on a port where nothing listens.
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("ceph.conf");
    fs::write(
        &conf,
        format!(
            "[global]\nmon host = 127.0.0.1:{port}\nauth cluster required = none\n\
             auth service required = none\nauth client required = none\n\
             log file = {0}/client.log\nadmin socket = {0}/client.asok\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let config = dir.path().join("c.toml");
    fs::write(
        &config,
        format!("[ceph]\nconnect_timeout_secs = {CONNECT_TIMEOUT}\n"),
    )
    .unwrap();
    let limit = Duration::from_secs(CONNECT_TIMEOUT) + CONNECT_SLACK;
    let took = assert_ceph_fails(
        &conf,
        "p",
        Some(&config),
        &[
            "cannot connect to the monitors",
            &format!("127.0.0.1:{port}"),
            &format!("within {CONNECT_TIMEOUT}s"),
        ],
        limit,
    );
    println!("unreachable monitor: failed after {took:?} (connect timeout {CONNECT_TIMEOUT} s, bound {limit:?})");
}

/// Bit rot inside a table (same length, so the store opens without a scan): reading the chunk
/// in the damaged block fails with EIO and a log line naming it, every other chunk still reads,
/// and nothing is rewritten.
fn leveldb_damaged_block_is_eio_on_read(m: &mut TestMount) {
    let chunks: Vec<(&str, Vec<u8>)> = vec![
        ("aa", bytes(30, 300_000)),
        ("bb", bytes(31, 30_000)),
        ("cc", bytes(32, 30_000)),
    ];
    for (key, value) in &chunks {
        write_file(&m.path(key), value);
        // Each in a table of its own: a remount turns LevelDB's log into a table.
        m.remount();
    }
    m.unmount();
    let data = m.outside("data");
    let (table, mut rotten) = files_of(&data)
        .into_iter()
        .filter(|(n, _)| n.ends_with(".ldb") && !n.contains('/'))
        .max_by_key(|(_, b)| b.len())
        .map(|(n, b)| (data.join(n), b))
        .expect("a table file");
    let middle = rotten.len() / 2;
    for b in &mut rotten[middle..middle + 64] {
        *b ^= 0x5a;
    }
    fs::write(&table, &rotten).unwrap();
    let tables_before: BTreeMap<String, Vec<u8>> = files_of(&data)
        .into_iter()
        .filter(|(n, _)| n.ends_with(".ldb"))
        .collect();
    m.mount();
    let e = match fs::read(m.path("aa")) {
        Ok(v) => panic!(
            "read of the damaged chunk succeeded ({} bytes, {})",
            v.len(),
            if v == chunks[0].1 {
                "the right ones"
            } else {
                "WRONG BYTES"
            }
        ),
        Err(e) => e,
    };
    assert_eq!(errno(&e), libc::EIO, "read of the damaged chunk: {e}");
    m.assert_logged(&["get aa", "Corruption: block checksum mismatch"]);
    for (key, value) in &chunks[1..] {
        assert!(read_file(&m.path(key)) == *value, "{key} after the damage");
    }
    m.unmount();
    let tables_after: BTreeMap<String, Vec<u8>> = files_of(&data)
        .into_iter()
        .filter(|(n, _)| n.ends_with(".ldb"))
        .collect();
    assert!(tables_after == tables_before, "the tables changed");
    m.mount();
}

mount_suite!(
    leveldb_only,
    common::mount::Store::Leveldb,
    [leveldb_damaged_block_is_eio_on_read]
);
