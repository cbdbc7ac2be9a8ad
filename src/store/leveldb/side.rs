//! Side records: files `cloudstore-meta/cloudstore-side-NAME` beside the databases (LevelDB
//! leaves files it does not know alone), never in either database, so no other program sees
//! them as keys.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::index::sync_dir;
use super::{io_err, META_DIR};
use crate::store::{Result, SIDE_DIR_MTIME};

/// Where the side record `name` of the store in `dir` lives.
fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(META_DIR).join(format!("cloudstore-side-{name}"))
}

/// The side record `name`, if there is one.
pub(super) fn get(dir: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let path = path(dir, name);
    match std::fs::read(&path) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read side record", &path, e)),
    }
}

/// Replaces the side record `name` whole (written beside, then renamed over it); an empty
/// value removes it.
pub(super) fn put(dir: &Path, name: &str, value: &[u8]) -> Result<()> {
    let path = path(dir, name);
    let meta_dir = dir.join(META_DIR);
    if value.is_empty() {
        match std::fs::remove_file(&path) {
            Ok(()) => return sync_dir(&meta_dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("remove side record", &path, e)),
        }
    }
    // The directory's mtime changes with every new name: written whole (rename) but not
    // fsynced, a power loss may leave an older one. The scratch files are fsynced.
    let durable = name != SIDE_DIR_MTIME;
    let tmp = path.with_extension("tmp");
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(value)?;
        if durable {
            f.sync_all()?;
        }
        Ok(())
    });
    written.map_err(|e| io_err("write side record", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io_err("write side record", &path, e))?;
    if durable {
        sync_dir(&meta_dir)?;
    }
    Ok(())
}
