//! statfs, and the end of a mount: every pending commit, the scratch files saved, the store
//! closed.

use std::ffi::OsStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::attr::StatFs;
use super::error::{FsError, FsResult};
use super::handle::Handle;
use super::ChunkFs;

impl ChunkFs {
    /// statfs: the store's space figures, or generous defaults when it has none.
    pub fn statfs(&self) -> FsResult<StatFs> {
        const BSIZE: u64 = 4096;
        let space = self
            .store
            .space()
            .map_err(|e| FsError::store("statfs", self.store.backend(), e))?;
        // Without figures, say 1 PiB free rather than 0 so that tools that check space proceed.
        let (total, free, available) = space.map_or((1 << 50, 1 << 50, 1 << 50), |s| {
            (s.total, s.free, s.available)
        });
        Ok(StatFs {
            blocks: total / BSIZE,
            bfree: free / BSIZE,
            bavail: available / BSIZE,
            // Used inodes (files - ffree, `df -i`) are the numbers live in the daemon.
            files: u32::MAX as u64,
            ffree: (u32::MAX as u64).saturating_sub(self.inode_count() as u64),
            bsize: BSIZE as u32,
            namelen: 255,
        })
    }

    /// Publishes every handle with uncommitted writes (fsync on the directory, shutdown).
    /// Returns the first failure after trying them all.
    pub fn commit_all(&self) -> FsResult<()> {
        let writers: Vec<Arc<Handle>> = self
            .tables()
            .handles
            .values()
            .filter(|h| h.write)
            .cloned()
            .collect();
        // Several commits in flight (on a remote store each is a round trip): as many workers
        // as metadata calls may run at once; the committer batches what they queue together.
        let next = AtomicUsize::new(0);
        let first = parking_lot::Mutex::new(None);
        let work = || {
            while let Some(h) = writers.get(next.fetch_add(1, Ordering::Relaxed)) {
                let mut hs = h.st.lock();
                if hs.is_poisoned() {
                    // Already reported to the program by its write or close.
                    continue;
                }
                if let Err(e) = self.publish(h, &mut hs, false) {
                    first.lock().get_or_insert(e.logged());
                }
            }
        };
        let workers = self.cfg.metadata_parallelism.min(writers.len());
        if workers <= 1 {
            work();
        } else {
            std::thread::scope(|scope| {
                for _ in 0..workers {
                    scope.spawn(work);
                }
            });
        }
        first.into_inner().map_or(Ok(()), Err)
    }

    /// fsyncdir: a barrier for every pending commit, then durable.
    pub fn fsyncdir(&self) -> FsResult<()> {
        self.commit_all()?;
        self.write_dir_mtime()?;
        self.store
            .sync()
            .map_err(|e| FsError::store("sync", self.store.backend(), e))
    }

    /// At unmount: commits what is pending and drops the scratch files, saying which.
    pub fn shutdown(&self) -> FsResult<()> {
        let result = self.commit_all();
        self.write_outs.wait();
        self.readahead.clear();
        let ra = self.readahead.stats();
        if ra.batches > 0 {
            log::info!(
                "read-ahead: {} batch(es) fetched {} chunk(s), {} open(s) served from them",
                ra.batches,
                ra.fetched,
                ra.served
            );
        }
        // Scratch files are kept for the next mount; a failure to save them fails the unmount
        // (the daemon's exit status) and names them.
        let saved = self.save_scratch();
        *self.scratch_saved.lock() = Some(saved.as_ref().map(drop).map_err(Clone::clone));
        if let Ok(names) = &saved {
            if !names.is_empty() {
                log::warn!(
                    "unmount: kept {} scratch file(s) for the next mount, beside the chunks \
                     ({}): {names:?}",
                    names.len(),
                    self.scratch_location()
                );
            }
        }
        let dir_mtime = self.write_dir_mtime_at_unmount();
        log::info!(
            "unmount: {} inode(s) live, {} byte(s) of the memory budget in use",
            self.inode_count(),
            self.budget.used()
        );
        if let Err(e) = self.store.sync() {
            log::error!("unmount: sync of {} failed: {e}", self.store.backend());
        }
        if let Err(e) = &dir_mtime {
            log::warn!("unmount: {e}");
        }
        result.and(saved.map(drop))
    }

    /// After the FUSE session ended (however it ended): commits what a lost connection left
    /// behind and saves the scratch files if `shutdown` did not run (an unmount that never
    /// reached destroy); returns the first failure, a failed save included, so that the
    /// daemon's exit status tells.
    pub fn finish_unmount(&self) -> FsResult<()> {
        let late = self.commit_all();
        self.write_outs.wait();
        let saved = self.scratch_saved.lock().clone();
        let saved = match saved {
            Some(result) => result,
            None => {
                if let Err(e) = self.write_dir_mtime_at_unmount() {
                    log::warn!("unmount: {e}");
                }
                let result = self.save_scratch().map(drop);
                *self.scratch_saved.lock() = Some(result.clone());
                result
            }
        };
        late.and(saved)
    }

    /// Where the store keeps saved scratch files, for the log.
    pub(super) fn scratch_location(&self) -> String {
        match self.store.backend() {
            "leveldb" => "LevelDB: the file cloudstore-meta/cloudstore-side-scratch of the data \
                          directory"
                .into(),
            "ceph" => "Ceph: the object cloudstore-fs.side.scratch of the pool".into(),
            other => format!("the {other} store's side record \"scratch\""),
        }
    }

    /// mkdir, symlink, link, mknod: refused, this is one flat directory of chunks.
    pub fn refuse(&self, op: &str, name: &OsStr) -> FsError {
        log::warn!("{op} {name:?}: refused (EPERM): the mount is one flat directory of chunks");
        FsError::new(libc::EPERM, format!("{op} {name:?}: not supported")).logged()
    }
}
