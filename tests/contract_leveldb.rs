//! The contract suite on the LevelDB backend, on a real database in a temporary directory.

mod contract;

use std::sync::Arc;

use cloudstore_fs::config::{Backend, Config};
use cloudstore_fs::store::{self, Cloudstore};

struct LevelDb {
    dir: tempfile::TempDir,
}

impl contract::Harness for LevelDb {
    fn open(&self) -> Arc<dyn Cloudstore> {
        store::open(&self.config()).expect("open leveldb")
    }

    fn max_chunk_size(&self) -> u64 {
        self.config().max_chunk_size
    }
}

impl LevelDb {
    fn config(&self) -> Config {
        Config {
            backend: Backend::Leveldb,
            data_dir: self.dir.path().join("db"),
            max_chunk_size: 17 << 20,
            ..Config::default()
        }
    }
}

fn leveldb() -> Option<LevelDb> {
    Some(LevelDb {
        dir: tempfile::tempdir().unwrap(),
    })
}

contract_tests!(leveldb);
