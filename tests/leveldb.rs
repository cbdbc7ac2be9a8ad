//! LevelDB-specific guarantees beyond the contract: raw keys (a database written by other LevelDB
//! code reads unchanged), acknowledged writes survive kill -9, and a second opener is refused.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use cloudstore_fs::config::Config;
use cloudstore_fs::store::leveldb::{db, LevelDbStore};
use cloudstore_fs::store::{self, Cloudstore, StoreError};

fn config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    }
}

fn plain_options() -> db::Options {
    db::Options {
        cache_bytes: 8 << 20,
        write_buffer_size: 4 << 20,
        max_open_files: 100,
        compression: true,
        block_size: db::DEFAULT_BLOCK_SIZE,
    }
}

/// Every key and value of a LevelDB database, read with the plain wrapper (no index).
fn plain_contents(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let db = Arc::new(db::Db::open(dir, &plain_options()).unwrap());
    let mut it = db.iter(db.snapshot(), true);
    it.seek_to_first();
    let mut out = Vec::new();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.next();
    }
    it.status().unwrap();
    out
}

#[test]
fn a_database_written_by_plain_leveldb_reads_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = db::Db::open(dir.path(), &plain_options()).unwrap();
        db.put(&[0x00, 0xff, 0x10], b"raw value", false).unwrap();
        db.put(b"go-key", b"", false).unwrap();
        db.put(b"big", &vec![7u8; 5 << 20], true).unwrap();
    }
    let s = store::open(&config(dir.path())).unwrap();
    assert_eq!(
        s.get_chunk(&[0x00, 0xff, 0x10]).unwrap(),
        Some(b"raw value".to_vec())
    );
    assert_eq!(s.get_chunk(b"go-key").unwrap(), Some(Vec::new()));
    assert_eq!(s.stat(b"big").unwrap(), Some(5 << 20));
    let listed: Vec<_> = s.list(None).unwrap().map(|c| c.unwrap()).collect();
    let keys: Vec<_> = listed.iter().map(|c| c.key.clone()).collect();
    assert_eq!(
        keys,
        vec![vec![0x00, 0xff, 0x10], b"big".to_vec(), b"go-key".to_vec()]
    );
    assert_eq!(listed[1].size, 5 << 20);
    s.set_chunk(b"new", b"from cloudstore").unwrap();
    s.close().unwrap();
    // And what we wrote is plain LevelDB again: raw key, raw value, no extra keys.
    let all = plain_contents(dir.path());
    let keys: Vec<_> = all.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(
        keys,
        vec![
            vec![0x00, 0xff, 0x10],
            b"big".to_vec(),
            b"go-key".to_vec(),
            b"new".to_vec()
        ],
        "no metadata keys inside the chunk keyspace"
    );
    assert_eq!(all[3].1, b"from cloudstore");
}

/// After a clean close, stat and listings answer from the index: no value is read.
#[test]
fn sizes_come_from_the_index_without_reading_values() {
    let dir = tempfile::tempdir().unwrap();
    let s = LevelDbStore::open(&config(dir.path())).unwrap();
    s.set_chunk(b"big", &vec![1u8; 16 << 20]).unwrap();
    s.set_chunk(b"small", b"x").unwrap();
    s.rename(b"small", b"moved").unwrap();
    s.close().unwrap();
    drop(s);
    let s = LevelDbStore::open(&config(dir.path())).unwrap();
    assert_eq!(s.stat(b"big").unwrap(), Some(16 << 20));
    assert_eq!(s.stat(b"moved").unwrap(), Some(1));
    assert_eq!(s.stat(b"small").unwrap(), None);
    let listed: Vec<_> = s.list(None).unwrap().map(|c| c.unwrap()).collect();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].size, 16 << 20);
    assert_eq!(
        s.value_reads(),
        1,
        "only the stat of the missing key may look at the data"
    );
}

/// Another program changes a value while we are closed: the index is rebuilt, so the size
/// is right (a stale size would make ls -l and cat disagree).
#[test]
fn a_foreign_write_after_a_clean_close_never_serves_a_stale_size() {
    let dir = tempfile::tempdir().unwrap();
    let s = store::open(&config(dir.path())).unwrap();
    s.set_chunk(b"k", b"short").unwrap();
    s.set_chunk(b"gone", b"soon").unwrap();
    s.close().unwrap();
    drop(s);
    {
        let db = db::Db::open(dir.path(), &plain_options()).unwrap();
        db.put(b"k", &vec![9u8; 5000], false).unwrap();
        let mut b = db::WriteBatch::default();
        b.delete(b"gone");
        db.write(&b, false).unwrap();
    }
    let s = store::open(&config(dir.path())).unwrap();
    assert_eq!(s.stat(b"k").unwrap(), Some(5000));
    assert_eq!(s.stat(b"gone").unwrap(), None);
    let listed: Vec<_> = s.list(None).unwrap().map(|c| c.unwrap()).collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, 5000);
}

/// `sync` is a synced LevelDB write on both databases; plain writes are not.
#[test]
fn sync_is_a_synced_write() {
    let dir = tempfile::tempdir().unwrap();
    let s = LevelDbStore::open(&config(dir.path())).unwrap();
    let before = s.synced_writes();
    s.set_chunk(b"a", b"1").unwrap();
    assert_eq!(s.synced_writes(), before, "plain writes are not synced");
    s.sync().unwrap();
    assert_eq!(s.synced_writes(), before + 2, "data and index logs");
}

#[test]
fn a_second_opener_gets_an_error_naming_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _first = LevelDbStore::open(&config(dir.path())).unwrap();
    let err = match LevelDbStore::open(&config(dir.path())) {
        Err(e) => e,
        Ok(_) => panic!("a second opener must be refused"),
    };
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

const CHILD_ENV: &str = "CLOUDSTORE_TEST_KILL_CHILD_DIR";

/// Runs in a child process: writes, says so, then waits to be killed without closing.
#[test]
fn kill_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // only meaningful as the child of the test below
    };
    let s = store::open(&config(std::path::Path::new(&dir))).unwrap();
    for i in 0..500u32 {
        s.set_chunk(&i.to_be_bytes(), &vec![i as u8; 1000 + i as usize])
            .unwrap();
    }
    let mut batch: Vec<_> = (500..1000u32)
        .map(|i| store::RawChunk::for_set(i.to_be_bytes().to_vec(), vec![i as u8; 10]))
        .collect();
    s.set_chunk_batch(&mut batch).unwrap();
    // Sizes change too: the index after the kill must not keep the old ones.
    for i in 0..10u32 {
        s.set_chunk(&i.to_be_bytes(), &[i as u8; 3]).unwrap();
    }
    s.delete(&7u32.to_be_bytes()).unwrap();
    println!("WRITTEN");
    std::thread::sleep(std::time::Duration::from_secs(120));
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "kill_child_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let written = BufReader::new(stdout)
        .lines()
        .map_while(|l| l.ok())
        .any(|l| l.contains("WRITTEN"));
    // SIGKILL: no destructor, no close, no flush runs in the child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    assert!(written, "the child did not finish writing");
    let s = store::open(&config(dir.path())).unwrap();
    for i in 0..500u32 {
        let want = match i {
            7 => None,
            0..10 => Some(vec![i as u8; 3]),
            _ => Some(vec![i as u8; 1000 + i as usize]),
        };
        assert_eq!(
            s.stat(&i.to_be_bytes()).unwrap(),
            want.as_ref().map(|v| v.len() as u64)
        );
        assert_eq!(s.get_chunk(&i.to_be_bytes()).unwrap(), want, "chunk {i}");
    }
    for i in 500..1000u32 {
        assert_eq!(
            s.get_chunk(&i.to_be_bytes()).unwrap(),
            Some(vec![i as u8; 10]),
            "chunk {i}"
        );
    }
}

/// A value the caller gives up (a close) lands whole like any other; one as big as the write
/// buffer is left in the memtable for `write_out` to write out as a table (which the daemon
/// runs in the background, its memory reserved: the memtable would otherwise hold it outside
/// the memory budget until a later write), and what a commit holds is what the daemon reserves
/// for it: three times a value as big as the write buffer (and
/// snappy's buffer), twice a smaller one, one copy less when the caller's is freed early.
#[test]
fn a_value_given_up_lands_whole_and_a_big_one_is_written_out() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        write_buffer_size: 1 << 20,
        ..config(dir.path())
    };
    let s = store::open(&cfg).unwrap();
    let tables = || -> u64 {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".ldb"))
            .map(|e| e.metadata().unwrap().len())
            .sum()
    };
    let small: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    s.set_chunk_owned(b"small", small.clone()).unwrap();
    assert_eq!(s.get_chunk(b"small").unwrap(), Some(small.clone()));
    assert_eq!(tables(), 0, "a small value stays in the memtable");
    // Incompressible (xorshift), so that the table holds all of it.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let big: Vec<u8> = (0..3 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    s.set_chunk_owned(b"big", big.clone()).unwrap();
    assert!(s.holds_after_write(3 << 20) && !s.holds_after_write(100_000));
    s.write_out();
    assert!(
        tables() >= 3 << 20,
        "the big value is in a table: {} bytes",
        tables()
    );
    assert_eq!(s.get_chunk(b"big").unwrap(), Some(big));
    assert_eq!(s.stat(b"big").unwrap(), Some(3 << 20));
    assert_eq!(s.get_chunk(b"small").unwrap(), Some(small));

    let mib = 1u64 << 20;
    assert_eq!(s.write_cost(mib / 2, false), mib);
    assert_eq!(s.write_cost(mib / 2, true), mib / 2);
    assert_eq!(s.write_cost(6 * mib, false), 18 * mib + mib + 32);
    assert_eq!(s.write_cost(6 * mib, true), 12 * mib + mib + 32);
    s.close().unwrap();
}
