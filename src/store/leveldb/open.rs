//! Opening: the data directory inspected (new, empty, ours or refused), LevelDB's lock and who
//! holds it (a dying holder is waited for), the databases opened.

use std::path::Path;
use std::time::{Duration, Instant};

use super::db::{self, Db};
use super::lock::{HolderState, LOCK_WAIT};

use super::{lock, BACKEND};
use crate::store::{Result, StoreError};

/// Opens one database. LevelDB's lock held by a process that is exiting (a daemon just killed)
/// is waited for, up to [`LOCK_WAIT`]; held by a live process it is an error at once, naming it.
pub(super) fn open_db(path: &Path, opts: &db::Options) -> Result<Db> {
    let lock = path.join("LOCK");
    let start = Instant::now();
    let mut waited_for = None;
    loop {
        let e = match Db::open(path, opts) {
            Ok(db) => {
                if let Some(pid) = waited_for {
                    log::warn!(
                        "{BACKEND}: {}: process {pid} let go of the lock after {:.1} s",
                        path.display(),
                        start.elapsed().as_secs_f64()
                    );
                }
                return Ok(db);
            }
            Err(e) => e,
        };
        if e.is_read_only() {
            return Err(read_only(path, &e.0));
        }
        if !e.is_lock() {
            return Err(StoreError::Config(format!(
                "{BACKEND}: cannot open database {}: {e}",
                path.display()
            )));
        }
        let holder = lock::find_holder(&lock);
        let locked = |holder: String| StoreError::Locked {
            backend: BACKEND,
            dir: path.display().to_string(),
            holder: Some(holder),
        };
        match holder {
            Some(h) if h.state == HolderState::Alive => return Err(locked(h.describe())),
            Some(h) if start.elapsed() >= LOCK_WAIT => {
                return Err(locked(format!(
                    "{}, which has been exiting for over {} s and still holds it",
                    h.describe(),
                    LOCK_WAIT.as_secs()
                )))
            }
            // Released between LevelDB's try and our look (or held from outside our view).
            None if start.elapsed() >= LOCK_WAIT => {
                return Err(StoreError::Locked {
                    backend: BACKEND,
                    dir: path.display().to_string(),
                    holder: None,
                })
            }
            Some(h) => {
                if waited_for.is_none() {
                    log::warn!(
                        "{BACKEND}: {} is locked by {}, which is exiting (killed?): waiting up \
                         to {} s for it to let go",
                        path.display(),
                        h.describe(),
                        LOCK_WAIT.as_secs()
                    );
                }
                waited_for = Some(h.pid);
            }
            None => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The error for a data directory LevelDB cannot write to.
pub(super) fn read_only(dir: &Path, why: &str) -> StoreError {
    StoreError::Config(format!(
        "{BACKEND}: the data directory {} is read-only ({why}): LevelDB writes its lock file \
         and log even to read, so it cannot open a store there; remount it read-write or copy \
         the store to a writable directory",
        dir.display()
    ))
}

/// What a data directory holds before it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDir {
    /// Nothing at that path.
    Missing,
    /// An empty directory (or one with only the files LevelDB writes before its first
    /// CURRENT: LOCK, LOG, LOG.old).
    Empty,
    /// A LevelDB database (it has a CURRENT file).
    Store,
}

/// Looks at the data directory `dir` before opening it. A path that is not a directory, a
/// non-empty directory without a LevelDB database, and a directory this process cannot write to
/// (LevelDB writes even to read) are errors naming the path.
pub fn inspect_data_dir(dir: &Path) -> Result<DataDir> {
    let shown = dir.display();
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DataDir::Missing),
        Err(e) => {
            return Err(StoreError::Config(format!(
                "{BACKEND}: data directory {shown}: {e}"
            )))
        }
    };
    if !meta.is_dir() {
        return Err(StoreError::Config(format!(
            "{BACKEND}: data directory {shown} is not a directory"
        )));
    }
    let state = if dir.join("CURRENT").exists() {
        DataDir::Store
    } else {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| StoreError::Config(format!("{BACKEND}: data directory {shown}: {e}")))?;
        let other = entries
            .flatten()
            .map(|e| e.file_name())
            .find(|name| !matches!(name.to_str(), Some("LOCK" | "LOG" | "LOG.old")));
        if let Some(name) = other {
            return Err(StoreError::Config(format!(
                "{BACKEND}: {shown} is not empty and holds no LevelDB store (no CURRENT file; \
                 it holds {name:?}): refusing to write a store into it; give the store's \
                 directory, or a new or empty one"
            )));
        }
        DataDir::Empty
    };
    // As this process's effective user (AT_EACCESS), as LevelDB's writes will be.
    if let Err(e) = crate::sys::fd::check_writable(dir) {
        if matches!(
            e.raw_os_error(),
            Some(libc::EROFS | libc::EACCES | libc::EPERM)
        ) {
            return Err(read_only(dir, &e.to_string()));
        }
    }
    Ok(state)
}
