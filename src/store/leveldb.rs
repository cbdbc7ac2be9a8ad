//! The LevelDB backend (placeholder while it is written).

use std::sync::Mutex;

use super::{ChunkList, Cloudstore, RawChunk, Result, StoreError};
use crate::config::Config;

/// The embedded LevelDB backend.
pub struct LevelDbStore {
    _db: Mutex<()>,
}

impl LevelDbStore {
    /// Opens (creating if needed) the database in `config.data_dir`.
    pub fn open(_config: &Config) -> Result<Self> {
        Err(StoreError::Config("leveldb: not yet written".into()))
    }
}

impl Cloudstore for LevelDbStore {
    fn backend(&self) -> &'static str { "leveldb" }
    fn get_chunk(&self, _key: &[u8]) -> Result<Option<Vec<u8>>> { unimplemented!() }
    fn get_chunk_batch(&self, _chunks: &mut [RawChunk]) -> Result<()> { unimplemented!() }
    fn get_chunk_with_range(&self, _key: &[u8], _s: u64, _e: u64) -> Result<Option<Vec<u8>>> { unimplemented!() }
    fn set_chunk(&self, _key: &[u8], _value: &[u8]) -> Result<()> { unimplemented!() }
    fn set_chunk_batch(&self, _chunks: &mut [RawChunk]) -> Result<()> { unimplemented!() }
    fn close(&self) -> Result<()> { unimplemented!() }
    fn stat(&self, _key: &[u8]) -> Result<Option<u64>> { unimplemented!() }
    fn delete(&self, _key: &[u8]) -> Result<bool> { unimplemented!() }
    fn list(&self, _after: Option<&[u8]>) -> Result<ChunkList> { unimplemented!() }
    fn sync(&self) -> Result<()> { unimplemented!() }
}
