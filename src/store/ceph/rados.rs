//! A small safe layer over librados, through the raw FFI of the `ceph` crate (`ceph::rados`).
//!
//! Why not the crate's `Rados`/`IoCtx`: its `connect_to_ceph` connects before any client option
//! can be set (so the timeouts that keep a dead cluster from hanging us cannot be applied), its
//! `IoCtx` does not keep the `Rados` alive (dropping them in the wrong order segfaults), and
//! `disconnect_from_ceph`, `destroy_rados_ioctx` and `rados_stat_pool` crash. [`Cluster`] owns
//! both handles in one value and releases them once, I/O context first.
//!
//! Every call returns a positive errno on failure; the backend turns it into a `StoreError`
//! naming the key and the operation.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int};
use std::path::Path;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use ceph::rados as ffi;

use super::trips::TripCounter;

/// The object the access probe stats: not a chunk name (not hex), so never a chunk.
const ACCESS_PROBE: &CStr = c"cloudstore-fs.access-probe";

/// A positive errno returned by librados.
pub type Errno = i32;

// Two librados calls the `ceph` crate does not declare (librados 16 has both).
#[link(name = "rados", kind = "dylib")]
extern "C" {
    fn rados_aio_get_version(c: ffi::rados_completion_t) -> u64;
    fn rados_set_pool_full_try(io: ffi::rados_ioctx_t);
}

/// The version of the object an aio operation read or wrote (0 when it failed early).
///
/// # Safety
/// `c` must be a live completion whose operation has completed.
pub unsafe fn aio_version(c: ffi::rados_completion_t) -> u64 {
    rados_aio_get_version(c)
}

/// What became of the pool an I/O context was opened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolState {
    /// Still there.
    Same,
    /// Deleted: no pool of that name.
    Gone,
    /// Deleted and created again under the same name (a new pool id): the context still
    /// points at the old one.
    Recreated,
}

/// Turns a librados return code into the value or a positive errno.
pub fn check(ret: c_int) -> Result<c_int, Errno> {
    if ret < 0 {
        Err(-ret)
    } else {
        Ok(ret)
    }
}

/// A human-readable name for an errno ("No such file or directory (os error 2)").
pub fn errno_text(errno: Errno) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

/// What [`Cluster::connect`] needs.
pub struct ConnectParams<'a> {
    pub conf: &'a Path,
    pub user: &'a str,
    pub pool: &'a str,
    pub namespace: &'a str,
    pub connect_timeout: Duration,
    pub op_timeout: Duration,
    /// Stat the probe object after connecting (see [`Cluster::probe_access`]).
    pub probe_access: bool,
    /// Where the connection counts the operations it sends.
    pub trips: Arc<TripCounter>,
}

impl<'a> ConnectParams<'a> {
    /// The connection `c` configures, with the access probe or without.
    pub fn of(
        c: &'a crate::config::CephConfig,
        probe_access: bool,
        trips: &Arc<TripCounter>,
    ) -> Self {
        ConnectParams {
            conf: &c.conf,
            user: &c.user,
            pool: &c.pool,
            namespace: &c.namespace,
            connect_timeout: c.connect_timeout(),
            op_timeout: c.op_timeout(),
            probe_access,
            trips: trips.clone(),
        }
    }
}

/// Cluster-wide space figures in bytes (from `rados_cluster_stat`).
#[derive(Debug, Clone, Copy)]
pub struct ClusterStat {
    pub total: u64,
    pub avail: u64,
}

/// A connected cluster and the I/O context of one pool (and namespace), owned together.
pub struct Cluster {
    rados: ffi::rados_t,
    ioctx: ffi::rados_ioctx_t,
    pool: CString,
    pool_id: i64,
    /// The access probe at connect ran into the op timeout: the OSDs did not answer.
    pub probe_timed_out: bool,
    /// The operations sent (shared with the store, which outlives a reconnect).
    pub trips: Arc<TripCounter>,
}

// librados handles are thread-safe; the one ioctx setting that is not (the namespace) is set
// once, in `connect`, before the value can be shared.
unsafe impl Send for Cluster {}
unsafe impl Sync for Cluster {}

/// A created but not yet (or not successfully) connected cluster handle: shut down on drop.
struct Handle(ffi::rados_t);

impl Drop for Handle {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: a handle from rados_create, shut down once; no ioctx was made from it
            // (Cluster takes the pointer out before making one).
            unsafe { ffi::rados_shutdown(self.0) }
        }
    }
}

/// Why connecting to the cluster failed: a complete sentence naming the conf file, monitor or
/// pool.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(pub String);

fn cstring(what: &str, s: &str) -> Result<CString, ConnectError> {
    CString::new(s).map_err(|_| ConnectError(format!("ceph: {what} {s:?} contains a NUL byte")))
}

impl Cluster {
    /// Reads the conf, applies the client timeouts, connects to the monitors and opens the pool
    /// and namespace. Errors are complete sentences naming the conf file, monitor or pool.
    pub fn connect(p: &ConnectParams) -> Result<Cluster, ConnectError> {
        let conf_shown = p.conf.display();
        match std::fs::metadata(p.conf) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(ConnectError(format!(
                    "ceph: conf file {conf_shown} is not a regular file"
                )))
            }
            Err(e) => {
                return Err(ConnectError(format!(
                    "ceph: cannot read conf file {conf_shown}: {e}"
                )))
            }
        }
        let user = cstring("user", p.user)?;
        let conf = cstring("conf path", &p.conf.to_string_lossy())?;
        let pool = cstring("pool", p.pool)?;
        let namespace = cstring("namespace", p.namespace)?;

        let mut raw: ffi::rados_t = ptr::null_mut();
        // SAFETY: out-pointer to a local; user is a valid C string.
        let ret = unsafe { ffi::rados_create(&mut raw, user.as_ptr()) };
        check(ret).map_err(|e| {
            ConnectError(format!(
                "ceph: cannot create a cluster handle for user {:?}: {}",
                p.user,
                errno_text(e)
            ))
        })?;
        let handle = Handle(raw);
        // SAFETY: valid handle and C string.
        let ret = unsafe { ffi::rados_conf_read_file(handle.0, conf.as_ptr()) };
        check(ret).map_err(|e| {
            ConnectError(format!(
                "ceph: cannot load conf file {conf_shown}: {}",
                errno_text(e)
            ))
        })?;
        // Set before connecting: librados ignores most client options changed afterwards, and
        // without them a dead monitor or a full cluster blocks a call forever.
        let connect_secs = p.connect_timeout.as_secs().max(1).to_string();
        let op_secs = p.op_timeout.as_secs().max(1).to_string();
        for (name, value) in [
            ("client_mount_timeout", &connect_secs),
            ("rados_osd_op_timeout", &op_secs),
            ("rados_mon_op_timeout", &op_secs),
        ] {
            set_conf(handle.0, name, value)?;
        }
        let mon_host = get_conf(handle.0, "mon_host").unwrap_or_default();
        // SAFETY: valid, configured, unconnected handle.
        let ret = unsafe { ffi::rados_connect(handle.0) };
        check(ret)
            .map_err(|e| {
                let mons = if mon_host.is_empty() {
                    "no `mon host` set".to_string()
                } else {
                    format!("mon host {mon_host}")
                };
                if e == libc::EACCES || e == libc::EPERM {
                    // cephx said no: an unknown client, or a key that is not the cluster's.
                    let keyring = get_conf(handle.0, "keyring").unwrap_or_default();
                    format!(
                        "ceph: the monitors ({mons}, from {conf_shown}) refused client.{}: {} \
                     (is its key in keyring {keyring} the one the cluster issued? \
                     see: ceph auth get client.{})",
                        p.user,
                        errno_text(e),
                        p.user
                    )
                } else if let Some(keyring) = (e == libc::ENOENT)
                    .then(|| missing_keyring(handle.0))
                    .flatten()
                {
                    // cephx without a key file: librados says only "No such file or directory".
                    format!(
                        "ceph: cannot connect as client.{}: keyring {keyring} (from {conf_shown}) \
                     does not exist: {}",
                        p.user,
                        errno_text(e)
                    )
                } else {
                    format!(
                        "ceph: cannot connect to the monitors ({mons}, from {conf_shown}) as \
                     client.{} within {}s: {}",
                        p.user,
                        p.connect_timeout.as_secs(),
                        errno_text(e)
                    )
                }
            })
            .map_err(ConnectError)?;

        let mut ioctx: ffi::rados_ioctx_t = ptr::null_mut();
        // SAFETY: connected handle, C string, out-pointer to a local.
        let ret = unsafe { ffi::rados_ioctx_create(handle.0, pool.as_ptr(), &mut ioctx) };
        if let Err(e) = check(ret) {
            return Err(ConnectError(if e == libc::ENOENT {
                format!(
                    "ceph: pool {:?} does not exist in the cluster of {conf_shown} \
                     (create it with: ceph osd pool create {} 32)",
                    p.pool, p.pool
                )
            } else {
                format!(
                    "ceph: cannot open pool {:?} (conf {conf_shown}): {}",
                    p.pool,
                    errno_text(e)
                )
            }));
        }
        // SAFETY: fresh ioctx, not yet shared; the string is copied by librados.
        unsafe { ffi::rados_ioctx_set_namespace(ioctx, namespace.as_ptr()) };
        // A full pool or cluster then fails a write at once with EDQUOT (quota) or ENOSPC
        // (full ratio) instead of blocking it until the op timeout, and deletes go through,
        // so that space can be freed through the mount.
        // SAFETY: fresh ioctx, not yet shared.
        unsafe { rados_set_pool_full_try(ioctx) };
        // SAFETY: a valid ioctx.
        let pool_id = unsafe { ffi::rados_ioctx_get_id(ioctx) };
        let mut handle = handle;
        let rados = std::mem::replace(&mut handle.0, ptr::null_mut());
        let cluster = Cluster {
            rados,
            ioctx,
            pool,
            pool_id,
            probe_timed_out: false,
            trips: p.trips.clone(),
        };
        let mut cluster = cluster;
        if p.probe_access {
            cluster.probe_timed_out = !cluster.probe_access(p)?;
        }
        Ok(cluster)
    }

    /// Opening a pool asks the monitors only; whether this client's caps allow the pool (and
    /// namespace) only the OSDs say, per operation. One stat of an object that is never a chunk
    /// asks them at once, so that a refused pool fails the mount with a message naming the
    /// client and the pool instead of failing every later operation.
    /// `Ok(false)`: the OSDs did not answer in time (the mount goes on).
    fn probe_access(&self, p: &ConnectParams) -> Result<bool, ConnectError> {
        match self.stat(ACCESS_PROBE) {
            Ok(_) | Err(libc::ENOENT) => Ok(true),
            Err(e @ (libc::EPERM | libc::EACCES)) => Err(ConnectError(format!(
                "ceph: client.{} may not use pool {:?}{} (conf {}): {}; its caps must allow \
                 it, e.g. osd 'allow rw pool={}' (see: ceph auth get client.{})",
                p.user,
                p.pool,
                if p.namespace.is_empty() {
                    String::new()
                } else {
                    format!(" namespace {:?}", p.namespace)
                },
                p.conf.display(),
                errno_text(e),
                p.pool,
                p.user
            ))),
            // The OSDs may be down while the monitors answer: mount, and let each operation
            // fail (or work once they are back).
            Err(e) => {
                log::warn!(
                    "ceph: could not check client.{}'s access to pool {:?}: {} (operations \
                     time out after {}s); going on",
                    p.user,
                    p.pool,
                    errno_text(e),
                    p.op_timeout.as_secs()
                );
                Ok(e != libc::ETIMEDOUT)
            }
        }
    }

    /// Whether the pool is still the one this context was opened on, from the cluster map
    /// the client holds (no round trip).
    pub fn pool_state(&self) -> PoolState {
        // SAFETY: connected handle and C string.
        match unsafe { ffi::rados_pool_lookup(self.rados, self.pool.as_ptr()) } {
            id if id == self.pool_id => PoolState::Same,
            id if id >= 0 => PoolState::Recreated,
            _ => PoolState::Gone,
        }
    }

    /// Whether the OSDs answer: one stat of an object that is never a chunk (waits up to the
    /// op timeout).
    pub fn answers(&self) -> bool {
        matches!(self.stat(ACCESS_PROBE), Ok(_) | Err(libc::ENOENT))
    }

    /// The raw I/O context, for the aio and listing code of this module's siblings.
    pub(crate) fn ioctx(&self) -> ffi::rados_ioctx_t {
        self.ioctx
    }

    /// Size in bytes and mtime (whole seconds) of an object.
    pub fn stat(&self, oid: &CStr) -> Result<(u64, i64), Errno> {
        let mut size = 0u64;
        let mut mtime: libc::time_t = 0;
        self.trips.sent(1);
        // SAFETY: valid ioctx and C string, out-pointers to locals.
        check(unsafe { ffi::rados_stat(self.ioctx, oid.as_ptr(), &mut size, &mut mtime) })?;
        Ok((size, mtime))
    }

    /// Deletes an object.
    pub fn remove(&self, oid: &CStr) -> Result<(), Errno> {
        self.trips.sent(1);
        // SAFETY: valid ioctx and C string.
        check(unsafe { ffi::rados_remove(self.ioctx, oid.as_ptr()) }).map(drop)
    }

    /// Space figures of the whole cluster (a pool has no size of its own in RADOS).
    pub fn cluster_stat(&self) -> Result<ClusterStat, Errno> {
        let mut st = ffi::Struct_rados_cluster_stat_t {
            kb: 0,
            kb_used: 0,
            kb_avail: 0,
            num_objects: 0,
        };
        // SAFETY: connected handle; the struct matches librados 16's rados_cluster_stat_t
        // (four uint64_t), unlike the pool stat struct the crate's rados_stat_pool uses.
        check(unsafe { ffi::rados_cluster_stat(self.rados, &mut st) })?;
        Ok(ClusterStat {
            total: st.kb.saturating_mul(1024),
            avail: st.kb_avail.saturating_mul(1024),
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SAFETY: both handles were created in `connect` and are released exactly once, the
        // I/O context before the cluster it belongs to. Nothing borrows them any more: list
        // iterators and batches hold an `Arc<Cluster>` or a borrow.
        unsafe {
            ffi::rados_ioctx_destroy(self.ioctx);
            ffi::rados_shutdown(self.rados);
        }
    }
}

fn set_conf(rados: ffi::rados_t, name: &str, value: &str) -> Result<(), ConnectError> {
    let n = cstring("option", name)?;
    let v = cstring("value", value)?;
    // SAFETY: valid handle and C strings.
    check(unsafe { ffi::rados_conf_set(rados, n.as_ptr(), v.as_ptr()) })
        .map(drop)
        .map_err(|e| {
            ConnectError(format!(
                "ceph: cannot set {name} = {value}: {}",
                errno_text(e)
            ))
        })
}

/// The `keyring` setting when none of the files it names exists (cephx cannot authenticate).
fn missing_keyring(rados: ffi::rados_t) -> Option<String> {
    let keyring = get_conf(rados, "keyring")?;
    let mut files = keyring.split(',').map(str::trim).filter(|f| !f.is_empty());
    let none_exists = files.clone().count() > 0 && files.all(|f| !Path::new(f).exists());
    none_exists.then_some(keyring)
}

fn get_conf(rados: ffi::rados_t, name: &str) -> Option<String> {
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid handle, C string, buffer of the length given.
    let ret = unsafe {
        ffi::rados_conf_get(
            rados,
            n.as_ptr(),
            buf.as_mut_ptr() as *mut c_char,
            buf.len(),
        )
    };
    check(ret).ok()?;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    buf.truncate(end);
    String::from_utf8(buf).ok()
}
