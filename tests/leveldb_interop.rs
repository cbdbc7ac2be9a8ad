//! Interop with the reference C++ LevelDB as other programs use it, through plyvel (Python's
//! binding, LevelDB 1.22 with snappy), both ways: a database plyvel wrote (many versions of each
//! key, a 9 MiB value, snappy tables, compactions) reads right through our store; a database we
//! wrote reads right in plyvel, with exactly our keys. Without python3 + plyvel: SKIPPED (a
//! failure under CI=true; scripts/test.sh installs it with pip).

mod ceph_support;
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use ceph_support::{bytes, skip_or_fail};
use cloudstore_fs::config::{Backend, Config};
use cloudstore_fs::store::{self, RawChunk};
use common::files::files_in;

fn plyvel_available(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import plyvel"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip_or_fail(&format!(
            "{test} needs python3 with plyvel (python3 -m pip install plyvel)"
        ));
    }
    ok
}

fn python(script: &str, args: &[&Path]) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn config(dir: &Path) -> Config {
    Config {
        backend: Backend::Leveldb,
        data_dir: dir.to_path_buf(),
        ..Config::default()
    }
}

/// Writes a database with plyvel (small write buffer: many tables and compactions; snappy, the
/// default), and the final value of every key as EXPECT/<hex key>.
const PLYVEL_WRITES: &str = r#"
import os, random, sys, plyvel
db_dir, expect = sys.argv[1], sys.argv[2]
db = plyvel.DB(db_dir, create_if_missing=True, write_buffer_size=1 << 20)
final = {}
rng = random.Random(9)
for version in range(60):
    for k in range(25):
        key = b"key-%02d" % k
        n = rng.randrange(1, 60_000)
        if k % 2:
            value = (b"version %d of key %d; " % (version, k)) * (n // 24 + 1)  # compressible
        else:
            value = rng.randbytes(n)
        if version % 7 == 3 and k % 5 == 0:
            db.delete(key)
            final.pop(key, None)
        else:
            db.put(key, value)
            final[key] = value
    if version == 30:
        with db.write_batch() as wb:
            for k in range(25, 40):
                key = b"batch-%02d" % k
                wb.put(key, b"b" * k)
                final[key] = b"b" * k
big = rng.randbytes(9 << 20)
db.put(b"big", b"old")
db.put(b"big", big)
final[b"big"] = big
db.put(b"\x00\xffraw", b"")
final[b"\x00\xffraw"] = b""
db.compact_range()
db.put(b"key-01", b"after compaction")
final[b"key-01"] = b"after compaction"
db.close()
for key, value in final.items():
    with open(os.path.join(expect, key.hex()), "wb") as f:
        f.write(value)
"#;

#[test]
fn a_database_written_by_plyvel_reads_right() {
    if !plyvel_available("a_database_written_by_plyvel_reads_right") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (db_dir, expect) = (tmp.path().join("db"), tmp.path().join("expect"));
    std::fs::create_dir(&expect).unwrap();
    python(PLYVEL_WRITES, &[&db_dir, &expect]);
    let want = files_in(&expect);
    assert!(want.contains_key(&hex::encode(b"big")));
    let has_snappy_tables = std::fs::read_dir(&db_dir)
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".ldb"));
    assert!(has_snappy_tables, "plyvel wrote no tables");

    // Twice: the first open builds the size index, the second (after a clean close) uses it.
    for round in 0..2 {
        let s = store::open(&config(&db_dir)).unwrap();
        let listed: BTreeMap<String, u64> = s
            .list(None)
            .unwrap()
            .map(|c| c.unwrap())
            .map(|c| (hex::encode(&c.key), c.size))
            .collect();
        let want_sizes: BTreeMap<String, u64> = want
            .iter()
            .map(|(k, v)| (k.clone(), v.len() as u64))
            .collect();
        assert_eq!(listed, want_sizes, "round {round}: keys and sizes");
        for (k, v) in &want {
            let key = hex::decode(k).unwrap();
            assert_eq!(s.stat(&key).unwrap(), Some(v.len() as u64), "stat {k}");
            assert!(
                s.get_chunk(&key).unwrap().as_deref() == Some(&v[..]),
                "round {round}: value of {k}"
            );
        }
        s.close().unwrap();
    }
}

/// Dumps every key of a database with plyvel as DUMP/<hex key>.
const PLYVEL_DUMPS: &str = r#"
import os, sys, plyvel
db = plyvel.DB(sys.argv[1])
for key, value in db:
    with open(os.path.join(sys.argv[2], key.hex()), "wb") as f:
        f.write(value)
db.close()
"#;

#[test]
fn a_database_we_wrote_reads_right_in_plyvel() {
    if !plyvel_available("a_database_we_wrote_reads_right_in_plyvel") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (db_dir, dump) = (tmp.path().join("db"), tmp.path().join("dump"));
    std::fs::create_dir(&dump).unwrap();
    let mut want: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    {
        let config = Config {
            write_buffer_size: 1 << 20,
            ..config(&db_dir)
        };
        let s = store::open(&config).unwrap();
        for version in 0..40u64 {
            for k in 0..20u64 {
                let key = format!("chunk-{k:02}").into_bytes();
                let value = bytes(
                    version * 100 + k,
                    ((version * 7919 + k * 104_729) % 50_000) as usize,
                );
                s.set_chunk(&key, &value).unwrap();
                want.insert(key, value);
            }
        }
        let mut batch: Vec<_> = (0..30u64)
            .map(|i| RawChunk::for_set(vec![0xba, i as u8], bytes(i, i as usize * 10)))
            .collect();
        s.set_chunk_batch(&mut batch).unwrap();
        for c in batch {
            want.insert(c.key, c.value);
        }
        let big = bytes(99, 9 << 20);
        s.set_chunk(b"big", b"old").unwrap();
        s.set_chunk(b"big", &big).unwrap();
        want.insert(b"big".to_vec(), big);
        s.set_chunk(b"empty", b"").unwrap();
        want.insert(b"empty".to_vec(), Vec::new());
        assert!(s.delete(b"chunk-03").unwrap());
        want.remove(&b"chunk-03"[..]);
        assert!(s.rename(b"chunk-04", b"renamed").unwrap());
        let v = want.remove(&b"chunk-04"[..]).unwrap();
        want.insert(b"renamed".to_vec(), v);
        s.set_mtime(b"renamed", std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        s.close().unwrap();
    }
    python(PLYVEL_DUMPS, &[&db_dir, &dump]);
    let got: BTreeMap<Vec<u8>, Vec<u8>> = files_in(&dump)
        .into_iter()
        .map(|(k, v)| (hex::decode(k).unwrap(), v))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "exactly our keys: no index or mtime keys in the keyspace"
    );
    for (k, v) in &want {
        assert!(got[k] == *v, "value of {}", String::from_utf8_lossy(k));
    }
}
