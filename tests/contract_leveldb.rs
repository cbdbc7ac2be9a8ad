//! The contract suite on the LevelDB backend, on a real database in a temporary directory, run
//! twice: with a 4 MiB write buffer (LevelDB's own default, so values over it are ordinary in the
//! suite) and with the product's default of 64 MiB.

mod contract;

use std::sync::Arc;

use cloudstore_fs::config::{Backend, Config};
use cloudstore_fs::store::{self, Cloudstore};

struct LevelDb {
    dir: tempfile::TempDir,
    write_buffer_size: u64,
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
            write_buffer_size: self.write_buffer_size,
            ..Config::default()
        }
    }
}

fn leveldb(write_buffer_size: u64) -> Option<LevelDb> {
    Some(LevelDb {
        dir: tempfile::tempdir().unwrap(),
        write_buffer_size,
    })
}

/// LevelDB's own default write buffer.
mod buffer_4_mib {
    use super::contract;
    use crate::contract_tests;
    contract_tests!(|| super::leveldb(4 << 20));
}

/// The product's default write buffer.
mod buffer_64_mib {
    use super::contract;
    use crate::contract_tests;
    contract_tests!(|| super::leveldb(cloudstore_fs::config::Config::default().write_buffer_size));
}
