//! LevelDB-specific guarantees beyond the contract: raw keys (a database written by other LevelDB
//! code reads unchanged), acknowledged writes survive kill -9, and a second opener is refused.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use cloudstore_fs::config::Config;
use cloudstore_fs::store::{self, leveldb::LevelDbStore, StoreError};

fn config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    }
}

#[test]
fn a_database_written_by_plain_leveldb_reads_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut db =
            rusty_leveldb::DB::open(dir.path(), rusty_leveldb::Options::default()).unwrap();
        db.put(&[0x00, 0xff, 0x10], b"raw value").unwrap();
        db.put(b"go-key", b"").unwrap();
        db.close().unwrap();
    }
    let s = store::open(&config(dir.path())).unwrap();
    assert_eq!(
        s.get_chunk(&[0x00, 0xff, 0x10]).unwrap(),
        Some(b"raw value".to_vec())
    );
    assert_eq!(s.get_chunk(b"go-key").unwrap(), Some(Vec::new()));
    let keys: Vec<_> = s.list(None).unwrap().map(|c| c.unwrap().key).collect();
    assert_eq!(keys, vec![vec![0x00, 0xff, 0x10], b"go-key".to_vec()]);
    s.set_chunk(b"new", b"from cloudstore").unwrap();
    s.close().unwrap();
    // And what we wrote is plain LevelDB again: raw key, raw value, no extra keys.
    let mut db = rusty_leveldb::DB::open(dir.path(), rusty_leveldb::Options::default()).unwrap();
    assert_eq!(db.get(b"new").unwrap().to_vec(), b"from cloudstore");
    let mut it = db.new_iter().unwrap();
    let mut n = 0;
    while let Some((_k, _v)) = rusty_leveldb::LdbIterator::next(&mut it) {
        n += 1;
    }
    assert_eq!(n, 3, "no metadata keys inside the chunk keyspace");
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
        let want = (i != 7).then(|| vec![i as u8; 1000 + i as usize]);
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
