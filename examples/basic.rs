//! The library API in a few lines: open a LevelDB store, write and read chunks one at a time and
//! in batches, read a range, list, close.
//!
//! `cargo run --example basic [DATA_DIR]` (without DATA_DIR: a fresh temporary directory).

use cloudstore_fs::config::{Backend, Config};
use cloudstore_fs::store::{self, RawChunk};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A temporary directory unless one is given; it is removed when `_tmp` drops.
    let (_tmp, data_dir) = match std::env::args_os().nth(1) {
        Some(dir) => (None, dir.into()),
        None => {
            let tmp = tempfile::tempdir()?;
            let dir = tmp.path().join("db");
            (Some(tmp), dir)
        }
    };
    let config = Config {
        backend: Backend::Leveldb,
        data_dir,
        ..Config::default()
    };
    config.validate()?;
    let store = store::open(&config)?;

    // One chunk: set, get, a half-open range [7, 12), and a missing key (None, not an error).
    store.set_chunk(b"greeting", b"hello, world")?;
    let value = store.get_chunk(b"greeting")?.expect("just stored");
    println!("get greeting: {:?}", String::from_utf8_lossy(&value));
    let part = store
        .get_chunk_with_range(b"greeting", 7, 12)?
        .unwrap_or_default();
    println!("range 7..12: {:?}", String::from_utf8_lossy(&part));
    assert_eq!(store.get_chunk(b"no such key")?, None);

    // A batch: one call, a result per chunk (an empty value is a real, found value).
    let mut batch = vec![
        RawChunk::for_set(vec![1u8, 2], b"first".to_vec()),
        RawChunk::for_set(vec![3u8, 4], Vec::new()),
    ];
    store.set_chunk_batch(&mut batch)?;
    let mut reads = vec![
        RawChunk::for_get(vec![1u8, 2]),
        RawChunk::for_get(vec![3u8, 4]),
        RawChunk::for_get(vec![5u8, 6]),
    ];
    store.get_chunk_batch(&mut reads)?;
    for chunk in &reads {
        println!(
            "batch get {}: ok={} {} bytes",
            hex::encode(&chunk.key),
            chunk.ok,
            chunk.value.len()
        );
    }

    // The listing streams (key, size) in the backend's order.
    for info in store.list(None)? {
        let info = info?;
        println!("list: {} {}", hex::encode(&info.key), info.size);
    }

    // Close flushes everything pending.
    store.close()?;
    Ok(())
}
