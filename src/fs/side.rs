//! What the mount keeps beside the chunk keyspace (the store's side records, never chunks):
//! the scratch files, saved at unmount and shown again by the next mount, and the directory's
//! mtime (the last change to the set of names, or what utimes set).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::error::{FsError, FsResult};
use super::name::{self, Name};
use super::node::Node;
use super::value::Value;
use super::{ChunkFs, NodeEntry};
use parking_lot::Mutex;

use crate::store::{Cloudstore, SIDE_DIR_MTIME, SIDE_SCRATCH};

/// The first bytes of the saved scratch files.
const SCRATCH_MAGIC: &[u8] = b"cloudstore-fs scratch 1\n";
/// The directory's mtime is written to the store at most this often while names change (and
/// at once when set by utimes; always at unmount and fsyncdir).
const DIR_MTIME_EVERY: Duration = Duration::from_secs(1);

/// A scratch file as saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedScratch {
    pub name: OsString,
    pub mtime: SystemTime,
    pub value: Vec<u8>,
}

fn encode_time(t: SystemTime) -> (u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs(), d.subsec_nanos())
}

fn decode_time(secs: u64, nanos: u32) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::new(secs, nanos.min(999_999_999)))
        .unwrap_or(UNIX_EPOCH)
}

/// The saved form of scratch files: the magic, then per file the name's length (u32), the
/// name, the mtime (u64 seconds, u32 nanoseconds) and the value's length (u64) and bytes, all
/// little-endian.
pub fn encode_scratch<'a>(
    files: impl IntoIterator<Item = (&'a OsStr, SystemTime, &'a [u8])>,
) -> Vec<u8> {
    let mut out = SCRATCH_MAGIC.to_vec();
    for (name, mtime, value) in files {
        let (secs, nanos) = encode_time(mtime);
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&secs.to_le_bytes());
        out.extend_from_slice(&nanos.to_le_bytes());
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        out.extend_from_slice(value);
    }
    out
}

/// What is wrong with a saved-scratch record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("not a saved-scratch record (bad header)")]
    BadHeader,
    #[error("record cut short")]
    CutShort,
    #[error("value length out of range")]
    LengthOutOfRange,
}

/// Reads saved scratch files back; an error says what is wrong with the record.
pub fn decode_scratch(mut b: &[u8]) -> Result<Vec<SavedScratch>, RecordError> {
    b = b
        .strip_prefix(SCRATCH_MAGIC)
        .ok_or(RecordError::BadHeader)?;
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], RecordError> {
        if b.len() < n {
            return Err(RecordError::CutShort);
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let len = u32::from_le_bytes(take(&mut b, 4)?.try_into().unwrap()) as usize;
        let name = OsString::from_vec(take(&mut b, len)?.to_vec());
        let secs = u64::from_le_bytes(take(&mut b, 8)?.try_into().unwrap());
        let nanos = u32::from_le_bytes(take(&mut b, 4)?.try_into().unwrap());
        let len = u64::from_le_bytes(take(&mut b, 8)?.try_into().unwrap());
        let len = usize::try_from(len).map_err(|_| RecordError::LengthOutOfRange)?;
        let value = take(&mut b, len)?.to_vec();
        out.push(SavedScratch {
            name,
            mtime: decode_time(secs, nanos),
            value,
        });
    }
    Ok(out)
}

/// The directory's mtime and whether the store has it.
pub struct DirMtime {
    pub mtime: SystemTime,
    /// Changed since it was last written to the store.
    pub dirty: bool,
    /// When a write last began.
    pub written: Option<Instant>,
    /// A background write is running.
    pub in_flight: bool,
    /// The last write failed (the store is unreachable): an unmount does not wait on another.
    pub failed: bool,
}

/// The directory's mtime, shared with the background writer.
pub struct DirState {
    pub state: Mutex<DirMtime>,
    /// Held while the mtime is written to the store, so writes land in order.
    write: Mutex<()>,
}

impl DirState {
    pub fn new(mtime: SystemTime) -> Self {
        DirState {
            state: Mutex::new(DirMtime {
                mtime,
                dirty: false,
                written: None,
                in_flight: false,
                failed: false,
            }),
            write: Mutex::new(()),
        }
    }

    /// Writes the mtime to `store` if it changed since last written. The value is read under
    /// the write lock, so a later write never stores an older value.
    fn write_to(&self, store: &dyn Cloudstore) -> FsResult<()> {
        let _write = self.write.lock();
        self.write_locked(store)
    }

    fn write_locked(&self, store: &dyn Cloudstore) -> FsResult<()> {
        let t = {
            let mut d = self.state.lock();
            if !d.dirty {
                return Ok(());
            }
            d.dirty = false;
            d.written = Some(Instant::now());
            d.mtime
        };
        let (secs, nanos) = encode_time(t);
        let mut b = secs.to_le_bytes().to_vec();
        b.extend_from_slice(&nanos.to_le_bytes());
        let result = store.side_put(SIDE_DIR_MTIME, &b);
        let mut d = self.state.lock();
        d.failed = result.is_err();
        result.map_err(|e| {
            d.dirty = true;
            FsError::store("set the directory's mtime", store.backend(), e)
        })
    }
}

impl ChunkFs {
    /// At mount: the scratch files saved by the last unmount, and the directory's mtime. A
    /// failure is logged; saved scratch files that could not be loaded are then left in the
    /// store untouched (never overwritten by this mount's unmount).
    pub(super) fn load_side(&self) {
        match self.store.side_get(SIDE_DIR_MTIME) {
            Ok(Some(b)) if b.len() == 12 => {
                let secs = u64::from_le_bytes(b[..8].try_into().unwrap());
                let nanos = u32::from_le_bytes(b[8..].try_into().unwrap());
                let mut d = self.dir_mtime.state.lock();
                d.mtime = decode_time(secs, nanos);
                d.dirty = false;
            }
            Ok(Some(b)) => log::warn!(
                "the directory's saved mtime is {} bytes, not 12: using the mount time",
                b.len()
            ),
            // First mount of this store: the mount time, kept from now on.
            Ok(None) => self.dir_mtime.state.lock().dirty = true,
            Err(e) => log::warn!("the directory's saved mtime: {e}; using the mount time"),
        }
        let saved = match self.store.side_get(SIDE_SCRATCH) {
            Ok(None) => return,
            Ok(Some(b)) => decode_scratch(&b).map_err(|e| format!("{e} ({} bytes)", b.len())),
            Err(e) => Err(e.to_string()),
        };
        let saved = match saved {
            Ok(files) => files,
            Err(e) => {
                self.scratch_unloaded
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                log::error!(
                    "cannot load the scratch files saved by the last unmount: {e}; they stay \
                     in the store as they are and this mount does not replace them"
                );
                return;
            }
        };
        let mut names = Vec::new();
        for f in saved {
            if name::classify(&f.name) != Name::Scratch {
                log::warn!(
                    "saved scratch file {:?}: not a scratch name, skipped",
                    f.name
                );
                continue;
            }
            let len = f.value.capacity() as u64;
            if !self.budget.try_reserve(len) {
                // Left in the store as saved (never replaced by this mount's unmount).
                self.scratch_unloaded
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                log::error!(
                    "saved scratch file {:?} ({len} bytes) does not fit in the memory budget: \
                     not loaded; the saved scratch files stay in the store as they are",
                    f.name
                );
                continue;
            }
            let value = match Value::adopt(f.value, len, &self.budget, &"saved scratch file") {
                Ok(v) => v,
                Err(e) => {
                    self.scratch_unloaded
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                    log::error!("cannot load saved scratch file {:?}: {e}", f.name);
                    continue;
                }
            };
            let mut t = self.tables();
            let ino = t.inodes.get_or_assign(&f.name);
            let node = Node::created(ino, false);
            {
                let mut st = node.state.lock();
                st.value = Some(Arc::new(value));
                st.mtime = Some(f.mtime);
                st.mtime_explicit = true;
            }
            t.nodes.insert(
                ino,
                NodeEntry {
                    node: Arc::new(node),
                    open: 0,
                },
            );
            self.scratch_loaded.lock().insert(f.name.clone());
            names.push(f.name);
        }
        log::info!(
            "{} scratch file(s) saved by the last unmount are back: {names:?}",
            names.len()
        );
    }

    /// The scratch files now, with their mtimes and contents.
    fn scratch_files(&self) -> Vec<(OsString, SystemTime, Arc<Value>)> {
        let nodes: Vec<(OsString, Arc<Node>)> = {
            let t = self.tables();
            t.nodes
                .iter()
                .filter_map(|(&ino, e)| Some((t.inodes.name_of(ino)?.to_owned(), e.node.clone())))
                .filter(|(n, _)| name::classify(n) == Name::Scratch)
                .collect()
        };
        let mut out: Vec<_> = nodes
            .into_iter()
            .map(|(n, node)| {
                let st = node.state.lock();
                let value = st
                    .value
                    .clone()
                    .unwrap_or_else(|| Arc::new(Value::empty(&self.budget)));
                (n, st.mtime.unwrap_or(self.started), value)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Saves every scratch file beside the keyspace (unmount, SIGTERM), replacing what the last
    /// unmount saved; returns their names. A failure is an error naming them: the caller
    /// reports it (the daemon's exit status).
    pub(super) fn save_scratch(&self) -> FsResult<Vec<OsString>> {
        let files = self.scratch_files();
        let names: Vec<OsString> = files.iter().map(|f| f.0.clone()).collect();
        if self.cfg.read_only {
            // Nothing changed them (every change was refused): the store keeps what it has.
            return Ok(names);
        }
        if self
            .scratch_unloaded
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            if names.is_empty() {
                return Ok(names);
            }
            let e = FsError::new(
                libc::EIO,
                format!(
                    "unmount: {} scratch file(s) {names:?} are not saved: the store still holds \
                     scratch files of an earlier mount that could not be loaded",
                    names.len()
                ),
            );
            log::error!("{}", e.message);
            return Err(e.logged());
        }
        let loaded = self.scratch_loaded.lock().clone();
        if files.is_empty() && loaded.is_empty() {
            // Nothing to save and nothing of ours saved: no store call (an unmount with the
            // store unreachable stays quick).
            return Ok(names);
        }
        let fail = |why: String| {
            let e = FsError::new(
                libc::EIO,
                format!(
                    "unmount: cannot save {} scratch file(s) {names:?} beside the chunks: {why}",
                    names.len()
                ),
            );
            log::error!("{}", e.message);
            e.logged()
        };
        // Another mount of the same store (two mounts of one Ceph pool) may have saved its
        // own since this one loaded: those are kept. The ones this mount loaded are its own,
        // replaced by what it has now (gone if they were removed or renamed).
        let stored = match self.store.side_get(SIDE_SCRATCH) {
            Ok(None) => Vec::new(),
            Ok(Some(b)) => decode_scratch(&b)
                .map_err(|e| fail(format!("the saved record is unreadable ({e})")))?,
            Err(e) => return Err(fail(e.to_string())),
        };
        let ours: std::collections::BTreeSet<&OsStr> =
            names.iter().map(OsString::as_os_str).collect();
        let others: Vec<&SavedScratch> = stored
            .iter()
            .filter(|f| !loaded.contains(&f.name) && !ours.contains(f.name.as_os_str()))
            .collect();
        let record = if files.is_empty() && others.is_empty() {
            Vec::new()
        } else {
            encode_scratch(
                files
                    .iter()
                    .map(|(n, t, v)| (n.as_os_str(), *t, &v[..]))
                    .chain(
                        others
                            .iter()
                            .map(|f| (f.name.as_os_str(), f.mtime, &f.value[..])),
                    ),
            )
        };
        drop(files);
        self.store
            .side_put(SIDE_SCRATCH, &record)
            .map_err(|e| fail(e.to_string()))?;
        *self.scratch_loaded.lock() = names.iter().cloned().collect();
        Ok(names)
    }

    /// The set of names changed (a create, unlink or rename): the directory's mtime is now,
    /// written to the store at most once a second by a background thread (never in the way of
    /// the request, also when the store hangs), and at unmount.
    pub(super) fn names_changed(&self) {
        let spawn = {
            let mut d = self.dir_mtime.state.lock();
            d.mtime = SystemTime::now();
            d.dirty = true;
            let due = d.written.is_none_or(|w| w.elapsed() >= DIR_MTIME_EVERY);
            let spawn = due && !d.in_flight && !self.cfg.read_only;
            d.in_flight |= spawn;
            spawn
        };
        if !spawn {
            return;
        }
        let (store, dir) = (self.store.clone(), self.dir_mtime.clone());
        let spawned = std::thread::Builder::new()
            .name("dir-mtime".into())
            .spawn(move || {
                if let Err(e) = dir.write_to(&*store) {
                    log::warn!("{e}");
                }
                dir.state.lock().in_flight = false;
            });
        if let Err(e) = spawned {
            log::warn!("the directory's mtime: cannot start its writer ({e}); kept at unmount");
            self.dir_mtime.state.lock().in_flight = false;
        }
    }

    /// utimes on the directory: kept, and written to the store at once.
    pub(super) fn set_dir_mtime(&self, t: SystemTime) -> FsResult<()> {
        {
            let mut d = self.dir_mtime.state.lock();
            d.mtime = t;
            d.dirty = true;
        }
        self.write_dir_mtime()
    }

    /// Writes the directory's mtime to the store if it changed since last written (fsyncdir,
    /// utimes).
    pub(super) fn write_dir_mtime(&self) -> FsResult<()> {
        if self.cfg.read_only {
            return Ok(());
        }
        self.dir_mtime.write_to(&*self.store)
    }

    /// At unmount: like [`Self::write_dir_mtime`], but it never waits behind a write in flight,
    /// nor tries again when the last write failed (the store does not answer): an unmount stays
    /// within one operation timeout.
    pub(super) fn write_dir_mtime_at_unmount(&self) -> FsResult<()> {
        if self.cfg.read_only || self.dir_mtime.state.lock().failed {
            return Ok(());
        }
        match self.dir_mtime.write.try_lock() {
            Some(_write) => self.dir_mtime.write_locked(&*self.store),
            None => {
                log::info!("unmount: the directory's mtime is being written already");
                Ok(())
            }
        }
    }

    /// The directory's mtime.
    pub(super) fn dir_mtime(&self) -> SystemTime {
        self.dir_mtime.state.lock().mtime
    }

    /// Logs a scratch file made under a name that looks like a mistyped chunk name.
    pub(super) fn note_scratch(&self, op: &str, name: &OsStr) {
        if let Some(why) = name::near_miss(name) {
            log::warn!(
                "{op} {name:?}: not a chunk name ({why}): kept as a scratch file, which never \
                 reaches the chunk store until renamed onto a chunk name (2 to 254 lowercase hex \
                 characters, an even count)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::budget::Budget;

    #[test]
    fn scratch_files_round_trip() {
        let budget = Arc::new(Budget::new(1 << 20, Duration::from_secs(1)));
        let v = |b: &[u8]| Arc::new(Value::copy_of(b, &budget, 0, &"t").unwrap());
        let t = UNIX_EPOCH + Duration::new(1_600_000_000, 123);
        let files = [
            (OsString::from("sed0aB1c"), t, v(b"hello")),
            (OsString::from(".x"), UNIX_EPOCH, v(b"")),
        ];
        let enc = encode_scratch(files.iter().map(|(n, t, v)| (n.as_os_str(), *t, &v[..])));
        let back = decode_scratch(&enc).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].name, "sed0aB1c");
        assert_eq!(back[0].mtime, t);
        assert_eq!(back[0].value, b"hello");
        assert_eq!(back[1].value, b"");
        assert!(decode_scratch(&enc[..enc.len() - 1]).is_err());
        assert!(decode_scratch(b"junk").is_err());
    }
}
