//! Reads, pipelined: whole values, ranges and versioned reads.

use std::ffi::CString;

use super::aio::{pipeline, ReadOp};
use super::rados::{Cluster, Errno};
use super::{CephStore, BACKEND};
use crate::store::{Result, StoreError, Version, VersionedRange};

/// Bytes asked for by the first read of a value of unknown size. Chunks smaller than this take
/// one round trip; larger ones one or two more (a read with the size, then an exact one).
const FIRST_READ: usize = 64 << 10;

/// Most bytes asked for at once of a range whose end the caller gave (a FUSE read is at most
/// 1 MiB): such a range takes one op. Only a range to the end of a value of unknown size starts
/// with [`FIRST_READ`] (a buffer of the whole range would be allocated before the size is known).
const MAX_RANGE_READ: u64 = 4 << 20;

/// Read rounds before giving up on an object whose size keeps changing under us.
const MAX_READ_ROUNDS: usize = 4;

/// One item of a read: which object, which range, and the outcome.
pub(super) struct ReadRequest {
    pub oid: CString,
    pub start: u64,
    /// Exclusive end; `None` = to the end of the object.
    pub end: Option<u64>,
    pub result: Option<std::result::Result<Option<Vec<u8>>, Errno>>,
}

/// Bytes the first read of a range asks for: the range itself when its length is known
/// (`Some`), up to [`MAX_RANGE_READ`]; otherwise [`FIRST_READ`].
fn first_len(want: Option<u64>) -> u64 {
    match want {
        Some(n) => n.min(MAX_RANGE_READ),
        None => FIRST_READ as u64,
    }
}

impl CephStore {
    /// Reads every request, pipelined; the values come back into `result`.
    ///
    /// The first round is a plain read of the range (see [`first_len`]): a shorter answer is
    /// the whole value (or range). Values that filled it are read again from the start together
    /// with a stat in the same operation, so a value is never stitched from two versions.
    pub(super) fn read_all(&self, cluster: &Cluster, requests: &mut [ReadRequest]) {
        let want = |r: &ReadRequest| r.end.map_or(u64::MAX, |e| e.saturating_sub(r.start));
        // (request, bytes to ask for, with a stat)
        let mut todo: Vec<(usize, usize, bool)> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| (i, first_len(r.end.map(|_| want(r))) as usize, false))
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
    pub(super) fn read_one(
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
    /// (stat, read, version) for a range with an end (up to [`MAX_RANGE_READ`]) or a value
    /// that fits the first read, and for a longer one a second op for the rest that asserts
    /// the version the first one read.
    pub(super) fn read_versioned(
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
        let mut len = first_len((end != 0).then_some(want));
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
}
