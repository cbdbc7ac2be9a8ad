//! A point-in-time, read-only view of the pool (`cloudstore-fs snapshot`): a RADOS pool
//! snapshot, read through a connection of its own whose I/O context reads at that snapshot
//! (`rados_ioctx_snap_set_read`).
//!
//! Why a pool snapshot: it is one monitor command, covers every object of the pool at once
//! (other clients' writes included), and needs no cooperation from the writers: the OSDs apply
//! the pool's snapshot context to every write. Self-managed snapshots would need every writer
//! to send the snapshot context with its writes. The price: a pool that has pool snapshots
//! cannot use self-managed ones (RBD images), and the reverse.
//!
//! What it reads: an object overwritten or deleted since the snapshot is read from the clone
//! the OSD made at the first change after it; an object created since is missing at the
//! snapshot (ENOENT) and the listing, which stats every name it lists, leaves it out. An object
//! deleted since stays in the pool's listing (a "whiteout" head) for as long as a snapshot
//! needs its clone, and is shown from the clone.
//!
//! What it costs: every object changed or deleted while the snapshot is held keeps a clone of
//! its old value (whole-object copy-on-write in the OSD's object store; RADOS counts them as
//! the pool's CLONES), until the snapshot is removed and the OSDs have trimmed it. Removing it
//! is this view's `close`.
//!
//! A daemon killed while it held a snapshot cannot remove it, and its clones would be kept for
//! ever: snapshot names carry the host and the daemon's pid (`cloudstore-fs-HOST-PID-NANOS`),
//! and taking a snapshot first removes those of this host whose daemon is gone.

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ceph::rados as ffi;

use super::rados::{check, errno_text, Cluster, Errno};
use super::{CephStore, BACKEND};
use crate::config::Config;
use crate::store::{
    read_only_view, Capabilities, ChunkList, Cloudstore, RawChunk, Result, SpaceInfo, StoreError,
    Version, VersionedRange,
};

/// The prefix of the pool snapshots this program makes (`rados lssnap` shows them):
/// `cloudstore-fs-HOST-PID-NANOS`.
pub const SNAP_PREFIX: &str = "cloudstore-fs-";

/// This host's name: a pid in a snapshot's name means something on its host only.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The prefix of the snapshots made on this host.
fn host_prefix() -> String {
    format!("{SNAP_PREFIX}{}-", host())
}

/// The names of the pool's snapshots.
fn snap_names(cluster: &Cluster) -> std::result::Result<Vec<String>, Errno> {
    let mut ids: Vec<ffi::rados_snap_t> = vec![0; 64];
    let n = loop {
        // SAFETY: a live ioctx and a buffer of ids.len() entries.
        let ret = unsafe {
            ffi::rados_ioctx_snap_list(cluster.ioctx(), ids.as_mut_ptr(), ids.len() as i32)
        };
        match check(ret) {
            Ok(n) => break n as usize,
            Err(libc::ERANGE) if ids.len() < 1 << 20 => ids.resize(ids.len() * 4, 0),
            Err(e) => return Err(e),
        }
    };
    let mut names = Vec::with_capacity(n);
    for &id in &ids[..n] {
        let mut buf = vec![0u8; 512];
        // SAFETY: a live ioctx and a buffer of buf.len() bytes, NUL-terminated on success.
        let ret = unsafe {
            ffi::rados_ioctx_snap_get_name(
                cluster.ioctx(),
                id,
                buf.as_mut_ptr().cast(),
                buf.len() as i32,
            )
        };
        if check(ret).is_ok() {
            if let Ok(name) = CStr::from_bytes_until_nul(&buf) {
                names.push(name.to_string_lossy().into_owned());
            }
        }
    }
    Ok(names)
}

/// Whether process `pid` of this host is a running cloudstore-fs.
fn daemon_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|comm| comm.starts_with("cloudstore-fs"))
}

/// Removes the snapshots of this host left by daemons that are gone (killed while they held
/// them); each is logged.
fn remove_stale(cluster: &Cluster, location: &str) {
    let names = match snap_names(cluster) {
        Ok(n) => n,
        Err(e) => {
            log::warn!(
                "{BACKEND}: listing the pool snapshots of {location}: {}",
                errno_text(e)
            );
            return;
        }
    };
    let prefix = host_prefix();
    for name in names {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_none_or(daemon_alive) {
            continue;
        }
        let cname = CString::new(name.clone()).expect("no NUL in a snapshot name");
        match remove(cluster, &cname) {
            Ok(()) => log::warn!(
                "{BACKEND}: removed pool snapshot {name} of {location}: its daemon is gone \
                 (killed while it held the snapshot), and the snapshot kept clones of every \
                 object changed since"
            ),
            Err(e) => log::warn!(
                "{BACKEND}: pool snapshot {name} of {location} was left by a daemon that is \
                 gone; removing it failed: {} (remove it with `rados rmsnap`)",
                errno_text(e)
            ),
        }
    }
}

/// Creates the pool snapshot `name` and returns its id.
fn create(cluster: &Cluster, name: &CStr) -> std::result::Result<u64, Errno> {
    // SAFETY: a live ioctx and a NUL-terminated name; the id is written to a local.
    check(unsafe { ffi::rados_ioctx_snap_create(cluster.ioctx(), name.as_ptr()) })?;
    let mut id: ffi::rados_snap_t = 0;
    check(unsafe { ffi::rados_ioctx_snap_lookup(cluster.ioctx(), name.as_ptr(), &mut id) })?;
    Ok(id)
}

/// Removes the pool snapshot `name`.
fn remove(cluster: &Cluster, name: &CStr) -> std::result::Result<(), Errno> {
    // SAFETY: a live ioctx and a NUL-terminated name.
    check(unsafe { ffi::rados_ioctx_snap_remove(cluster.ioctx(), name.as_ptr()) }).map(drop)
}

/// The read-only view; see the module comment.
pub struct CephSnapshot {
    inner: CephStore,
    name: CString,
    removed: AtomicBool,
}

impl CephStore {
    /// Takes a pool snapshot and opens a view that reads at it.
    pub(super) fn take_snapshot(&self) -> Result<CephSnapshot> {
        let live = self.cluster()?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        remove_stale(&live, &self.location);
        let name = format!("{}{}-{nanos}", host_prefix(), std::process::id());
        let cname = CString::new(name.clone()).expect("no NUL in the name");
        let id = create(&live, &cname).map_err(|e| match e {
            // The pool has self-managed snapshots (RBD images use them): pool snapshots and
            // those exclude each other.
            libc::EINVAL => StoreError::backend(
                BACKEND,
                "snapshot",
                b"",
                libc::EINVAL,
                format!(
                    "{}: the cluster refused a pool snapshot ({}): a pool that has \
                     self-managed snapshots (RBD images) cannot have pool snapshots; keep the \
                     chunks in a pool of their own",
                    self.location,
                    errno_text(e)
                ),
            ),
            e => self.error_without_key("snapshot", self.location.clone(), e),
        })?;
        let mut config = Config {
            max_chunk_size: self.max_chunk_size,
            ..Config::default()
        };
        config.ceph = self.params.clone();
        config.ceph.probe_access = false;
        let inner = match CephStore::open(&config) {
            Ok(s) => s,
            Err(e) => {
                let _ = remove(&live, &cname);
                return Err(e);
            }
        };
        let view = inner.cluster()?;
        // SAFETY: the view's connection is not shared yet (no call can run on its ioctx
        // while the read snapshot is set).
        unsafe { ffi::rados_ioctx_snap_set_read(view.ioctx(), id) };
        log::info!(
            "{BACKEND}: took pool snapshot {name} (id {id}) of {}",
            self.location
        );
        Ok(CephSnapshot {
            inner,
            name: cname,
            removed: AtomicBool::new(false),
        })
    }
}

impl CephSnapshot {
    /// The pool snapshot's name.
    pub fn name(&self) -> &str {
        self.name.to_str().unwrap_or("?")
    }
}

impl Cloudstore for CephSnapshot {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            versioned_ranges: true,
            snapshots: false,
        }
    }

    fn get_chunk(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get_chunk(key)
    }

    fn get_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()> {
        self.inner.get_chunk_batch(chunks)
    }

    fn get_chunk_with_range(&self, key: &[u8], start: u64, end: u64) -> Result<Option<Vec<u8>>> {
        self.inner.get_chunk_with_range(key, start, end)
    }

    fn set_chunk(&self, key: &[u8], _value: &[u8]) -> Result<()> {
        Err(read_only_view(BACKEND, "write", key))
    }

    fn set_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()> {
        let key = chunks.first().map(|c| c.key.clone()).unwrap_or_default();
        Err(read_only_view(BACKEND, "write batch", &key))
    }

    /// Removes the pool snapshot (the OSDs then trim its clones) and disconnects.
    fn close(&self) -> Result<()> {
        if self.removed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let removed = match self.inner.cluster() {
            Ok(c) => remove(&c, &self.name).map_err(|e| {
                let err = StoreError::backend(
                    BACKEND,
                    "remove snapshot",
                    b"",
                    libc::EIO,
                    format!(
                        "pool snapshot {}: {} (remove it with `rados rmsnap`: it keeps \
                         clones of every object changed since)",
                        self.name(),
                        errno_text(e)
                    ),
                );
                log::error!("{err}");
                err
            }),
            Err(e) => Err(e),
        };
        if removed.is_ok() {
            log::info!("{BACKEND}: removed pool snapshot {}", self.name());
        }
        self.inner.close()?;
        removed
    }

    fn stat(&self, key: &[u8]) -> Result<Option<u64>> {
        self.inner.stat(key)
    }

    fn stat_with_mtime(&self, key: &[u8]) -> Result<Option<(u64, Option<SystemTime>)>> {
        self.inner.stat_with_mtime(key)
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        Err(read_only_view(BACKEND, "delete", key))
    }

    fn list(&self, after: Option<&[u8]>) -> Result<ChunkList> {
        self.inner.list(after)
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn rename(&self, from: &[u8], _to: &[u8]) -> Result<bool> {
        Err(read_only_view(BACKEND, "rename", from))
    }

    fn read_version(
        &self,
        key: &[u8],
        start: u64,
        end: u64,
        expect: Option<Version>,
    ) -> Result<Option<VersionedRange>> {
        self.inner.read_version(key, start, end, expect)
    }

    fn mtime(&self, key: &[u8]) -> Result<Option<SystemTime>> {
        self.inner.mtime(key)
    }

    fn set_mtime(&self, key: &[u8], _mtime: SystemTime) -> Result<()> {
        Err(read_only_view(BACKEND, "set mtime", key))
    }

    fn space(&self) -> Result<Option<SpaceInfo>> {
        self.inner.space()
    }
}

impl Drop for CephSnapshot {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// A shared view, for `Cloudstore::snapshot`.
pub(super) fn shared(view: CephSnapshot) -> Arc<dyn Cloudstore> {
    Arc::new(view)
}
