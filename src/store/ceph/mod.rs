//! The Ceph RADOS backend: each chunk is one object of a pool (and namespace), named by the
//! lowercase hex of its key (as the Go code named them), holding the raw value; an empty value is
//! a 0-byte object. What this backend writes is exactly what `rados get` sees, and the reverse.
//!
//! - set is one write_full (a shorter overwrite leaves no old tail), carrying the mtime xattr;
//! - reads (whole or ranged) read only what is asked, at the offset: a range with an end in one
//!   plain read (up to 4 MiB), a value to its end first up to 64 KiB, and only for values that
//!   fill it a read with a stat in the same op (so a value is never stitched from two versions);
//! - a versioned read ([`Cloudstore::read_version`]) is one op: a stat, the read, and the
//!   object version it read (a range to the end of a value longer than 64 KiB: a second op
//!   asserting that version); later reads of the same open file assert that version, so the OSD
//!   refuses them once another client replaced or deleted the object (ESTALE, never a mix);
//! - a full pool (quota) or cluster (full ratio) fails a write at once with EDQUOT or ENOSPC,
//!   and deletes still go through (the I/O context is in "full try" mode);
//! - a deleted pool is told from a missing object by the cluster map after every operation:
//!   every operation then fails naming the pool, and a pool created again under the same name
//!   is picked up by reconnecting;
//! - batches are pipelined with librados aio, at most `ceph.max_in_flight` outstanding; every
//!   operation sent is counted (`Cloudstore::round_trips`, shown by `cloudstore-fs stats`);
//! - a getattr is one op (stat + xattrs), and so is every name of a listing page (one
//!   pipelined batch per page of 256 names gives their sizes and mtimes);
//! - the mtime lives beside the keyspace: an xattr `cloudstore.mtime` on the chunk's own object
//!   (nanoseconds), with the object mtime set to the same second; an object written by another
//!   tool (no xattr, or an object mtime that moved on) shows its RADOS mtime;
//! - the listing is in RADOS hash order (deterministic, not sorted); see [`list`].
//!
//! Acknowledged RADOS writes are durable, so `sync` has nothing to do and `close` only drops
//! the connection.
//!
//! One file a job: `rados` (the librados handle and connect), `connection` (reconnect, the
//! unreachable and deleted-pool guards), `read` (pipelined reads), `attrs` (size and mtime in
//! one op), `aio` (the pipeline and the count of operations sent),
//! `list`, `names` (object names, mtime text), `errors` (errno meanings), `side` (side records).

mod aio;
mod attrs;
mod connection;
mod errors;
mod list;
mod names;
mod rados;
mod read;
mod side;
mod snapshot;
mod trips;

use std::ffi::{CStr, CString};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use aio::{pipeline, WriteOp};
pub(crate) use errors::describe;
pub(crate) use names::key_of_object_name;
use names::{encode_mtime, object_name};
use rados::{Cluster, ConnectParams, Errno};
use read::ReadRequest;
use trips::TripCounter;

use super::{
    check_chunk, clamp_range, Capabilities, ChunkList, Cloudstore, RawChunk, Result, RoundTrips,
    SpaceInfo, StoreError, Version, VersionedRange,
};
use crate::config::{CephConfig, Config};

pub(crate) const BACKEND: &str = "ceph";

/// The xattr holding a chunk's mtime as "SECONDS.NANOSECONDS" since the epoch.
const MTIME_XATTR: &CStr = c"cloudstore.mtime";

/// Longest key: RADOS object names are at most 2048 characters (osd_max_object_name_len).
const MAX_KEY_LEN: usize = 1024;

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
    /// The operations sent to the OSDs, over every connection this store made.
    trips: Arc<TripCounter>,
}

impl CephStore {
    /// Connects to the cluster that `config.ceph` names and opens its pool and namespace.
    pub fn open(config: &Config) -> Result<Self> {
        let c = &config.ceph;
        let trips = Arc::new(TripCounter::default());
        let params = ConnectParams::of(c, c.probe_access, &trips);
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
            trips,
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
            snapshots: true,
        }
    }

    /// A RADOS pool snapshot, read through a connection of its own (see [`snapshot`]).
    fn snapshot(&self) -> Result<Arc<dyn Cloudstore>> {
        Ok(snapshot::shared(self.take_snapshot()?))
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

    fn round_trips(&self) -> Option<RoundTrips> {
        Some(self.trips.get())
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
