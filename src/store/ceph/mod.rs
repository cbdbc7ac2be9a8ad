//! The Ceph RADOS backend: each chunk is one object of a pool (and namespace), named by the
//! lowercase hex of its key (as the Go code named them), holding the raw value; an empty value is
//! a 0-byte object. What this backend writes is exactly what `rados get` sees, and the reverse.
//!
//! - set is one write_full (a shorter overwrite leaves no old tail), carrying the mtime xattr;
//! - reads (whole or ranged) read only what is asked, at the offset: first a plain read of up
//!   to 64 KiB, and only for values that fill it a read with a stat in the same op (so a value
//!   is never stitched from two versions);
//! - a versioned read ([`Cloudstore::read_version`]) is one op: a stat, the read, and the
//!   object version it read; later reads of the same open file assert that version, so the OSD
//!   refuses them once another client replaced or deleted the object (ESTALE, never a mix);
//! - a full pool (quota) or cluster (full ratio) fails a write at once with EDQUOT or ENOSPC,
//!   and deletes still go through (the I/O context is in "full try" mode);
//! - a deleted pool is told from a missing object by the cluster map after every operation:
//!   every operation then fails naming the pool, and a pool created again under the same name
//!   is picked up by reconnecting;
//! - batches are pipelined with librados aio, at most `ceph.max_in_flight` outstanding;
//! - the mtime lives beside the keyspace: an xattr `cloudstore.mtime` on the chunk's own object
//!   (nanoseconds), with the object mtime set to the same second; an object written by another
//!   tool (no xattr, or an object mtime that moved on) shows its RADOS mtime;
//! - the listing is in RADOS hash order (deterministic, not sorted); see [`list`].
//!
//! Acknowledged RADOS writes are durable, so `sync` has nothing to do and `close` only drops
//! the connection.

mod aio;
mod list;
mod rados;
mod side;

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aio::{pipeline, ReadOp, WriteOp};
use rados::{errno_text, Cluster, ConnectParams, Errno, PoolState};

use super::{
    check_chunk, clamp_range, Capabilities, ChunkList, Cloudstore, RawChunk, Result, SpaceInfo,
    StoreError, Version, VersionedRange,
};
use crate::config::{CephConfig, Config};

pub(crate) const BACKEND: &str = "ceph";

/// The xattr holding a chunk's mtime as "SECONDS.NANOSECONDS" since the epoch.
const MTIME_XATTR: &CStr = c"cloudstore.mtime";

/// Bytes asked for by the first read of a value of unknown size. Chunks smaller than this take
/// one round trip; larger ones one or two more (a read with the size, then an exact one).
const FIRST_READ: usize = 64 << 10;

/// Longest key: RADOS object names are at most 2048 characters (osd_max_object_name_len).
const MAX_KEY_LEN: usize = 1024;

/// Read rounds before giving up on an object whose size keeps changing under us.
const MAX_READ_ROUNDS: usize = 4;

/// The Ceph RADOS backend.
pub struct CephStore {
    cluster: RwLock<Option<Arc<Cluster>>>,
    /// What the connection was made with, to make it again (a pool created anew).
    params: CephConfig,
    /// Held while reconnecting, so that one thread does it.
    reconnecting: Mutex<()>,
    /// The pool is known to be gone (logged once until it is back).
    pool_gone: AtomicBool,
    /// A call ran into the op timeout and the cluster has not answered since: calls fail at
    /// once (a program's system call waits one timeout, not one per store call it makes),
    /// while a thread asks the cluster until it answers.
    unreachable: Arc<AtomicBool>,
    /// "pool P namespace N", for errors that concern no single key.
    location: String,
    max_chunk_size: u64,
    max_in_flight: usize,
    op_timeout: Duration,
}

/// The object name of a key: its lowercase hex.
fn object_name(key: &[u8]) -> CString {
    CString::new(hex::encode(key)).expect("hex has no NUL byte")
}

/// The key of an object name, when the name is a chunk name (non-empty, even-length,
/// lowercase hex); `None` for any other object sharing the namespace.
pub(crate) fn key_of_object_name(name: &[u8]) -> Option<Vec<u8>> {
    let hex_lower = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if name.is_empty() || !name.len().is_multiple_of(2) || !name.iter().all(hex_lower) {
        return None;
    }
    hex::decode(name).ok()
}

/// An mtime as the xattr text and the whole second (floor) to give the object.
fn encode_mtime(t: SystemTime) -> (Vec<u8>, i64) {
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let (s, n) = (d.as_secs() as i64, d.subsec_nanos());
            if n == 0 {
                (-s, 0)
            } else {
                (-s - 1, 1_000_000_000 - n)
            }
        }
    };
    (format!("{secs}.{nanos:09}").into_bytes(), secs)
}

/// The inverse of [`encode_mtime`]'s text: (whole second, time).
fn decode_mtime(text: &[u8]) -> Option<(i64, SystemTime)> {
    let text = std::str::from_utf8(text).ok()?;
    let (secs, nanos) = text.split_once('.')?;
    if nanos.len() != 9 {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let nanos: u32 = nanos.parse().ok().filter(|n| *n < 1_000_000_000)?;
    Some((secs, from_secs_nanos(secs, nanos)))
}

fn from_secs_nanos(secs: i64, nanos: u32) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos.into())
    }
}

/// The errno the filesystem should see for a RADOS errno, and a message saying what it means
/// (`location`: the pool, and namespace if any).
pub(crate) fn describe(
    errno: Errno,
    op_timeout: Duration,
    size: Option<usize>,
    location: &str,
) -> (i32, String) {
    match errno {
        libc::EDQUOT => (
            libc::EDQUOT,
            format!(
                "{location} is over its quota (see: ceph osd pool get-quota); the chunk keeps \
                 its previous value; delete chunks or raise the quota: {}",
                errno_text(errno)
            ),
        ),
        libc::ENOSPC => (
            libc::ENOSPC,
            format!(
                "the cluster is full (an OSD is past its full ratio; see: ceph health detail); \
                 the chunk keeps its previous value; delete chunks or add capacity: {}",
                errno_text(errno)
            ),
        ),
        libc::EFBIG | libc::EMSGSIZE => (
            libc::EFBIG,
            format!(
                "the cluster refused a value of {} bytes as too large \
                 (osd_max_object_size / osd_max_write_size): {}",
                size.unwrap_or(0),
                errno_text(errno)
            ),
        ),
        libc::ETIMEDOUT => (
            libc::EIO,
            format!(
                "no answer from the cluster within {}s (is it down, or full?): {}",
                op_timeout.as_secs(),
                errno_text(errno)
            ),
        ),
        // cephx caps that do not cover the pool, or this kind of operation
        libc::EPERM | libc::EACCES => (
            libc::EACCES,
            format!(
                "the cluster refused this client (its cephx caps do not allow it): {}",
                errno_text(errno)
            ),
        ),
        libc::ENOTCONN | libc::ESHUTDOWN | libc::ECONNREFUSED => (
            libc::EIO,
            format!("cluster unreachable: {}", errno_text(errno)),
        ),
        _ => (errno, errno_text(errno)),
    }
}

/// One item of a read: which object, which range, and the outcome.
struct ReadRequest {
    oid: CString,
    start: u64,
    /// Exclusive end; `None` = to the end of the object.
    end: Option<u64>,
    result: Option<std::result::Result<Option<Vec<u8>>, Errno>>,
}

impl CephStore {
    /// Connects to the cluster that `config.ceph` names and opens its pool and namespace.
    pub fn open(config: &Config) -> Result<Self> {
        let c = &config.ceph;
        let params = ConnectParams::of(c, c.probe_access);
        // Not logged here: the caller reports the error once.
        let cluster = Arc::new(Cluster::connect(&params).map_err(|e| StoreError::Config(e.0))?);
        let store = CephStore {
            cluster: RwLock::new(Some(cluster.clone())),
            params: c.clone(),
            reconnecting: Mutex::new(()),
            pool_gone: AtomicBool::new(false),
            unreachable: Arc::new(AtomicBool::new(false)),
            location: if c.namespace.is_empty() {
                format!("pool {}", c.pool)
            } else {
                format!("pool {} namespace {}", c.pool, c.namespace)
            },
            max_chunk_size: config.max_chunk_size,
            max_in_flight: c.max_in_flight.max(1),
            op_timeout: c.op_timeout(),
        };
        log::info!(
            "{BACKEND}: connected as client.{} to {} ({})",
            c.user,
            store.location,
            c.conf.display()
        );
        if cluster.probe_timed_out {
            // The next calls would wait one op timeout each.
            store.watch_until_it_answers(&cluster);
        }
        Ok(store)
    }

    fn cluster(&self) -> Result<Arc<Cluster>> {
        self.cluster
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(StoreError::Closed { backend: BACKEND })
    }

    /// Runs `f` on the cluster, then makes sure its answer is not the pool's absence in
    /// disguise: librados answers an operation on a deleted pool like one on a missing object
    /// (ENOENT, an empty listing). The cluster map, which the client keeps up to date without a
    /// round trip, tells them apart: a deleted pool fails the operation naming the pool, and a
    /// pool created again under the same name is picked up by reconnecting, and `f` runs again.
    fn guarded<T>(&self, op: &'static str, f: impl Fn(&Cluster) -> Result<T>) -> Result<T> {
        let cluster = self.cluster()?;
        if self.unreachable.load(Ordering::Acquire) {
            return Err(StoreError::Backend {
                backend: BACKEND,
                op,
                key: self.location.clone(),
                errno: libc::EIO,
                message: format!(
                    "the cluster gave no answer within {}s to an earlier call and has not \
                     answered since: failing at once (nothing was sent) until it does",
                    self.op_timeout.as_secs()
                ),
            });
        }
        let out = f(&cluster);
        if matches!(out, Err(StoreError::TimedOut { .. })) {
            self.watch_until_it_answers(&cluster);
        }
        match cluster.pool_state() {
            PoolState::Same => {
                if self.pool_gone.swap(false, Ordering::Relaxed) {
                    log::warn!("{BACKEND}: {} is back", self.location);
                }
                out
            }
            PoolState::Gone => Err(self.gone(op)),
            PoolState::Recreated => {
                drop(cluster);
                let cluster = self.reconnect(op)?;
                f(&cluster)
            }
        }
    }

    /// After a timeout: calls fail at once until the cluster answers a probe again (a thread
    /// asks it, one timeout at a time, then every 250 ms).
    fn watch_until_it_answers(&self, cluster: &Arc<Cluster>) {
        if self.unreachable.swap(true, Ordering::AcqRel) {
            return;
        }
        log::warn!(
            "{BACKEND}: no answer within {}s: operations fail at once until the cluster \
             answers again",
            self.op_timeout.as_secs()
        );
        let (cluster, flag) = (cluster.clone(), self.unreachable.clone());
        let spawned = std::thread::Builder::new()
            .name("ceph-probe".into())
            .spawn(move || {
                while !cluster.answers() {
                    std::thread::sleep(Duration::from_millis(250));
                }
                flag.store(false, Ordering::Release);
                log::warn!("{BACKEND}: the cluster answers again");
            });
        if spawned.is_err() {
            self.unreachable.store(false, Ordering::Release);
        }
    }

    /// The error for any operation while the pool does not exist; logged once.
    fn gone(&self, op: &'static str) -> StoreError {
        let err = StoreError::Backend {
            backend: BACKEND,
            op,
            key: self.location.clone(),
            errno: libc::EIO,
            message: format!(
                "the pool no longer exists (deleted?); every operation fails until a pool \
                 named {:?} is created again, which the mount then picks up",
                self.params.pool
            ),
        };
        if !self.pool_gone.swap(true, Ordering::Relaxed) {
            log::error!("{err}");
        }
        err
    }

    /// Connects again (the pool was created anew under its name): later operations use the new
    /// pool. Several threads may find it at once; one reconnects.
    fn reconnect(&self, op: &'static str) -> Result<Arc<Cluster>> {
        let _one = self.reconnecting.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.cluster()?;
        match current.pool_state() {
            PoolState::Same => return Ok(current),
            PoolState::Gone => return Err(self.gone(op)),
            PoolState::Recreated => {}
        }
        // The access was probed at mount: a reconnect only has to reach the new pool.
        let params = ConnectParams::of(&self.params, false);
        let cluster = Arc::new(Cluster::connect(&params).map_err(|message| {
            let err = StoreError::Backend {
                backend: BACKEND,
                op,
                key: self.location.clone(),
                errno: libc::EIO,
                message: format!(
                    "the pool was created again and reconnecting to it failed: {message}"
                ),
            };
            log::error!("{err}");
            err
        })?);
        let mut slot = self.cluster.write().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            return Err(StoreError::Closed { backend: BACKEND });
        }
        *slot = Some(cluster.clone());
        self.pool_gone.store(false, Ordering::Relaxed);
        log::warn!(
            "{BACKEND}: {} was deleted and created again: reconnected to the new pool",
            self.location
        );
        Ok(cluster)
    }

    fn check_key(&self, key: &[u8]) -> Result<CString> {
        let reason = if key.is_empty() {
            "empty key".to_string()
        } else if key.len() > MAX_KEY_LEN {
            format!(
                "{} bytes; RADOS object names (the key in hex) allow keys of at most \
                 {MAX_KEY_LEN} bytes",
                key.len()
            )
        } else {
            return Ok(object_name(key));
        };
        Err(StoreError::InvalidKey {
            backend: BACKEND,
            key: hex::encode(key),
            reason,
        })
    }

    fn check_value(&self, key: &[u8], value: &[u8]) -> Result<CString> {
        let oid = self.check_key(key)?;
        check_chunk(BACKEND, key, value, self.max_chunk_size)?;
        Ok(oid)
    }

    /// The error for a failed RADOS call, logged once here.
    fn error(&self, op: &'static str, key: &[u8], errno: Errno, size: Option<usize>) -> StoreError {
        let err = if errno == libc::ETIMEDOUT {
            StoreError::TimedOut {
                backend: BACKEND,
                op,
                key: hex::encode(key),
                secs: self.op_timeout.as_secs(),
                write: matches!(op, "write" | "delete" | "set-mtime" | "rename"),
            }
        } else {
            let (errno, message) = describe(errno, self.op_timeout, size, &self.location);
            StoreError::backend(BACKEND, op, key, errno, message)
        };
        log::warn!("{err}");
        err
    }

    /// The error for a failure that concerns no single key (`what` says what it concerns).
    fn error_without_key(&self, op: &'static str, what: String, errno: Errno) -> StoreError {
        let (errno, message) = describe(errno, self.op_timeout, None, &self.location);
        let err = StoreError::Backend {
            backend: BACKEND,
            op,
            key: what,
            errno,
            message,
        };
        log::warn!("{err}");
        err
    }

    /// Reads every request, pipelined; the values come back into `result`.
    ///
    /// The first round is a plain read of up to [`FIRST_READ`] bytes: a shorter answer is the
    /// whole value (or range). Values that filled it are read again from the start together
    /// with a stat in the same operation, so a value is never stitched from two versions.
    fn read_all(&self, cluster: &Cluster, requests: &mut [ReadRequest]) {
        let want = |r: &ReadRequest| r.end.map_or(u64::MAX, |e| e.saturating_sub(r.start));
        // (request, bytes to ask for, with a stat)
        let mut todo: Vec<(usize, usize, bool)> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| (i, want(r).min(FIRST_READ as u64) as usize, false))
            .collect();
        for _round in 0..MAX_READ_ROUNDS {
            if todo.is_empty() {
                return;
            }
            let mut ops: Vec<ReadOp> = todo
                .iter()
                .map(|&(i, len, with_stat)| {
                    let r = &requests[i];
                    ReadOp::new(r.oid.clone(), r.start, len, with_stat)
                })
                .collect();
            pipeline(cluster, &mut ops, self.max_in_flight);
            let mut again = Vec::new();
            for (&(i, len, _), op) in todo.iter().zip(ops.iter_mut()) {
                let r = &mut requests[i];
                let got = op.buf.len();
                let complete = match op.result.take().expect("pipeline finishes every op") {
                    Err(libc::ENOENT) => {
                        r.result = Some(Ok(None));
                        continue;
                    }
                    Err(e) => {
                        r.result = Some(Err(e));
                        continue;
                    }
                    Ok(Some(size)) => {
                        let end = r.end.map_or(size, |e| e.min(size));
                        let target = end.saturating_sub(r.start) as usize;
                        if got < target {
                            again.push((i, target, true));
                            continue;
                        }
                        target
                    }
                    // A plain read: short means the object ended; full means maybe more.
                    Ok(None) if got < len || got as u64 >= want(r) => got,
                    Ok(None) => {
                        let next = want(r).min(16 * FIRST_READ as u64) as usize;
                        again.push((i, next, true));
                        continue;
                    }
                };
                let mut value = std::mem::take(&mut op.buf);
                value.truncate(complete);
                if value.capacity() > 2 * value.len() + 4096 {
                    value.shrink_to_fit();
                }
                r.result = Some(Ok(Some(value)));
            }
            todo = again;
        }
        for (i, _, _) in todo {
            requests[i].result = Some(Err(libc::EAGAIN));
        }
    }

    /// One read through [`Self::read_all`].
    fn read_one(
        &self,
        cluster: &Cluster,
        op: &'static str,
        key: &[u8],
        start: u64,
        end: Option<u64>,
    ) -> Result<Option<Vec<u8>>> {
        let oid = self.check_key(key)?;
        let mut req = [ReadRequest {
            oid,
            start,
            end,
            result: None,
        }];
        self.read_all(cluster, &mut req);
        match req[0].result.take().expect("read_all fills every result") {
            Ok(v) => Ok(v),
            Err(e) => Err(self.error(op, key, e, None)),
        }
    }

    /// `[start, end)` of one version of an object (see [`Cloudstore::read_version`]): one op
    /// (stat, read, version) for a value that fits the first read, and for a longer one a
    /// second op for the rest that asserts the version the first one read.
    fn read_versioned(
        &self,
        cluster: &Cluster,
        key: &[u8],
        oid: &CString,
        start: u64,
        end: u64,
        expect: Option<Version>,
    ) -> Result<Option<VersionedRange>> {
        let want = if end == 0 { u64::MAX } else { end - start };
        let mut bytes: Vec<u8> = Vec::new();
        let mut expect = expect;
        let mut len = want.min(FIRST_READ as u64);
        loop {
            let offset = start + bytes.len() as u64;
            let mut op = [ReadOp::versioned(oid.clone(), offset, len as usize, expect)];
            pipeline(cluster, &mut op, 1);
            let op = &mut op[0];
            let size = match op.result.take().expect("pipeline finishes every op") {
                Ok(size) => size.expect("a versioned read has a stat"),
                // Replaced (the OSD's version is not the one asserted) or deleted since.
                Err(libc::ERANGE | libc::EOVERFLOW | libc::ENOENT) if expect.is_some() => {
                    let err = StoreError::Changed {
                        backend: BACKEND,
                        key: hex::encode(key),
                    };
                    log::info!("{err}");
                    return Err(err);
                }
                Err(libc::ENOENT) => return Ok(None),
                Err(e) => return Err(self.error("read", key, e, None)),
            };
            let version = op.version;
            if bytes.is_empty() {
                bytes = std::mem::take(&mut op.buf);
            } else {
                bytes.extend_from_slice(&op.buf);
            }
            let target = size.min(start.saturating_add(want)).saturating_sub(start);
            if bytes.len() as u64 >= target || len == 0 {
                bytes.truncate(target as usize);
                return Ok(Some(VersionedRange {
                    bytes,
                    size,
                    version,
                }));
            }
            // A value longer than the first read: the rest, of this version only.
            expect = Some(version);
            len = target - bytes.len() as u64;
            bytes.reserve_exact(len as usize);
        }
    }

    /// Size and mtime of an object in one round trip (see [`Cloudstore::mtime`] for which
    /// mtime); `None` when missing.
    fn attributes(
        &self,
        cluster: &Cluster,
        oid: &CStr,
    ) -> std::result::Result<Option<(u64, SystemTime)>, Errno> {
        match cluster.stat_with_xattr(oid, MTIME_XATTR.to_str().expect("ASCII")) {
            Ok((size, object_secs, xattr)) => {
                // The xattr is ours only while the object's mtime is still the second we gave
                // it; a write by another tool moves the object mtime on.
                let ours = xattr
                    .as_deref()
                    .and_then(decode_mtime)
                    .filter(|(secs, _)| *secs == object_secs);
                Ok(Some((
                    size,
                    match ours {
                        Some((_, t)) => t,
                        None => from_secs_nanos(object_secs, 0),
                    },
                )))
            }
            Err(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes values (write_full + mtime xattr), pipelined; one result per item.
    fn write_all(
        &self,
        cluster: &Cluster,
        items: &[(CString, &[u8])],
        mtime: SystemTime,
    ) -> Vec<std::result::Result<(), Errno>> {
        let (text, secs) = encode_mtime(mtime);
        let mut ops: Vec<WriteOp> = items
            .iter()
            .map(|(oid, data)| {
                WriteOp::write_full(oid.clone(), data, MTIME_XATTR, text.clone(), secs)
            })
            .collect();
        pipeline(cluster, &mut ops, self.max_in_flight);
        ops.iter_mut()
            .map(|op| op.result.take().expect("pipeline finishes every op"))
            .collect()
    }
}

impl Cloudstore for CephStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            versioned_ranges: true,
        }
    }

    fn get_chunk(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.guarded("get", |c| self.read_one(c, "get", key, 0, None))
    }

    fn get_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()> {
        let cluster = self.cluster()?;
        let mut requests = Vec::with_capacity(chunks.len());
        let mut index = Vec::with_capacity(chunks.len());
        for (i, chunk) in chunks.iter_mut().enumerate() {
            chunk.ok = false;
            chunk.value.clear();
            chunk.error = None;
            match self.check_key(&chunk.key) {
                Ok(oid) => {
                    requests.push(ReadRequest {
                        oid,
                        start: 0,
                        end: None,
                        result: None,
                    });
                    index.push(i);
                }
                Err(e) => chunk.error = Some(e),
            }
        }
        self.read_all(&cluster, &mut requests);
        // Missing objects in a deleted pool: the batch fails as a whole.
        self.guarded("get", |_| Ok(()))?;
        for (req, i) in requests.iter_mut().zip(index) {
            let chunk = &mut chunks[i];
            match req.result.take().expect("read_all fills every result") {
                Ok(Some(value)) => {
                    chunk.value = value;
                    chunk.ok = true;
                }
                Ok(None) => {}
                Err(e) => chunk.error = Some(self.error("get", &chunk.key, e, None)),
            }
        }
        Ok(())
    }

    fn get_chunk_with_range(&self, key: &[u8], start: u64, end: u64) -> Result<Option<Vec<u8>>> {
        // A bad range is an error whether or not the key exists.
        clamp_range(key, start, end, u64::MAX)?;
        self.guarded("read", |c| {
            self.read_one(c, "read", key, start, (end != 0).then_some(end))
        })
    }

    fn read_version(
        &self,
        key: &[u8],
        start: u64,
        end: u64,
        expect: Option<Version>,
    ) -> Result<Option<VersionedRange>> {
        clamp_range(key, start, end, u64::MAX)?;
        let oid = self.check_key(key)?;
        self.guarded("read", |c| {
            self.read_versioned(c, key, &oid, start, end, expect)
        })
    }

    fn set_chunk(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let oid = self.check_value(key, value)?;
        self.guarded("write", |c| {
            let results = self.write_all(c, &[(oid.clone(), value)], SystemTime::now());
            results[0].map_err(|e| self.error("write", key, e, Some(value.len())))
        })
    }

    fn set_chunk_batch(&self, chunks: &mut [RawChunk]) -> Result<()> {
        let mut items = Vec::with_capacity(chunks.len());
        let mut index = Vec::with_capacity(chunks.len());
        for (i, chunk) in chunks.iter_mut().enumerate() {
            chunk.error = None;
            chunk.ok = false;
            match self.check_value(&chunk.key, &chunk.value) {
                Ok(oid) => {
                    items.push((oid, chunk.value.as_slice()));
                    index.push(i);
                }
                Err(e) => {
                    log::warn!("{e}");
                    chunk.error = Some(e);
                }
            }
        }
        let results = self.guarded("write", |c| {
            Ok(self.write_all(c, &items, SystemTime::now()))
        })?;
        drop(items);
        let mut timed_out = false;
        for (result, i) in results.into_iter().zip(index) {
            let chunk = &mut chunks[i];
            match result {
                Ok(()) => chunk.ok = true,
                Err(e) => {
                    timed_out |= e == libc::ETIMEDOUT;
                    chunk.error = Some(self.error("write", &chunk.key, e, Some(chunk.value.len())))
                }
            }
        }
        if timed_out {
            self.watch_until_it_answers(&self.cluster()?);
        }
        Ok(())
    }

    fn close(&self) -> Result<()> {
        // Every operation waits for its acknowledgement, so nothing is pending; the connection
        // closes when the last listing that still uses it is dropped.
        self.cluster
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        Ok(())
    }

    fn stat(&self, key: &[u8]) -> Result<Option<u64>> {
        let oid = self.check_key(key)?;
        self.guarded("stat", |c| match c.stat(&oid) {
            Ok((size, _)) => Ok(Some(size)),
            Err(libc::ENOENT) => Ok(None),
            Err(e) => Err(self.error("stat", key, e, None)),
        })
    }

    fn stat_with_mtime(&self, key: &[u8]) -> Result<Option<(u64, Option<SystemTime>)>> {
        let oid = self.check_key(key)?;
        self.guarded("stat", |c| match self.attributes(c, &oid) {
            Ok(found) => Ok(found.map(|(size, t)| (size, Some(t)))),
            Err(e) => Err(self.error("stat", key, e, None)),
        })
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        let oid = self.check_key(key)?;
        self.guarded("delete", |c| match c.remove(&oid) {
            Ok(()) => Ok(true),
            Err(libc::ENOENT) => Ok(false),
            Err(e) => Err(self.error("delete", key, e, None)),
        })
    }

    /// Lists in RADOS hash order. `after` skips every object up to and including that key, so
    /// resuming costs a listing of what came before it; when `after` no longer exists the
    /// listing is empty (RADOS has no order in which to place a missing name).
    fn list(&self, after: Option<&[u8]>) -> Result<ChunkList> {
        self.guarded("list", |_| Ok(()))?;
        let cluster = self.cluster()?;
        let mut listing = list::ChunkListing::open(
            cluster,
            after,
            self.max_in_flight,
            self.location.clone(),
            self.op_timeout,
        )
        .map_err(|e| self.error_without_key("list", self.location.clone(), e))?;
        // A deleted pool lists as empty, and an idle client may not know of the deletion yet:
        // the listing's own operations bring its cluster map up to date, so an empty listing
        // asks the map again.
        if listing.is_empty() {
            self.guarded("list", |_| Ok(()))?;
        }
        Ok(Box::new(listing))
    }

    fn sync(&self) -> Result<()> {
        // RADOS acknowledges a write once it is durable on every replica.
        self.cluster().map(drop)
    }

    /// Write the new name (keeping the mtime), then delete the old one: RADOS has no rename.
    fn rename(&self, from: &[u8], to: &[u8]) -> Result<bool> {
        let Some(value) = self.get_chunk(from)? else {
            return Ok(false);
        };
        if from == to {
            return Ok(true);
        }
        let mtime = self.mtime(from)?.unwrap_or_else(SystemTime::now);
        let oid = self.check_value(to, &value)?;
        self.guarded("write", |c| {
            let results = self.write_all(c, &[(oid.clone(), &value)], mtime);
            results[0].map_err(|e| self.error("write", to, e, Some(value.len())))
        })?;
        self.delete(from)?;
        Ok(true)
    }

    fn mtime(&self, key: &[u8]) -> Result<Option<SystemTime>> {
        let oid = self.check_key(key)?;
        self.guarded("mtime", |c| match self.attributes(c, &oid) {
            Ok(found) => Ok(found.map(|(_, t)| t)),
            Err(e) => Err(self.error("mtime", key, e, None)),
        })
    }

    fn set_mtime(&self, key: &[u8], mtime: SystemTime) -> Result<()> {
        let oid = self.check_key(key)?;
        let (text, secs) = encode_mtime(mtime);
        self.guarded("set-mtime", |c| {
            let mut op = [WriteOp::set_xattr(
                oid.clone(),
                MTIME_XATTR,
                text.clone(),
                secs,
            )];
            pipeline(c, &mut op, 1);
            match op[0].result.take().expect("pipeline finishes every op") {
                // Like the other backends: setting the mtime of a missing key does nothing.
                Ok(()) | Err(libc::ENOENT) => Ok(()),
                Err(e) => Err(self.error("set-mtime", key, e, None)),
            }
        })
    }

    fn side_get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.side_read(name)
    }

    fn side_put(&self, name: &str, value: &[u8]) -> Result<()> {
        self.side_write(name, value)
    }

    /// Cluster-wide figures (RADOS pools have no size of their own, only quotas); `None` when
    /// the cluster reports none (no ceph-mgr running).
    fn space(&self) -> Result<Option<SpaceInfo>> {
        let cluster = self.cluster()?;
        match cluster.cluster_stat() {
            // Usage reaches the monitors through ceph-mgr: without one they are all zero.
            Ok(st) if st.total == 0 => Ok(None),
            Ok(st) => Ok(Some(SpaceInfo {
                total: st.total,
                free: st.avail,
                available: st.avail,
            })),
            Err(e) => Err(self.error_without_key("statfs", self.location.clone(), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_lowercase_hex_and_back() {
        assert_eq!(object_name(b"\x01\xab").to_bytes(), b"01ab");
        assert_eq!(key_of_object_name(b"01ab"), Some(vec![1, 0xab]));
        for bad in [&b""[..], b"0", b"01AB", b"xy", b"01a", b"rbd_directory"] {
            assert_eq!(key_of_object_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn mtimes_round_trip_with_nanoseconds() {
        for t in [
            UNIX_EPOCH + Duration::new(1_500_000_000, 123_456_789),
            UNIX_EPOCH,
            UNIX_EPOCH - Duration::new(10, 250_000_000),
        ] {
            let (text, secs) = encode_mtime(t);
            let (s, back) = decode_mtime(&text).unwrap();
            assert_eq!((s, back), (secs, t), "{}", String::from_utf8_lossy(&text));
        }
        assert_eq!(
            encode_mtime(UNIX_EPOCH - Duration::new(10, 250_000_000)).1,
            -11
        );
        assert_eq!(decode_mtime(b"12"), None);
        assert_eq!(decode_mtime(b"12.1234567890"), None);
    }
}
