//! Attributes (size and mtime) of objects: one compound read op each (stat + the xattrs),
//! pipelined, for a getattr and for every name a listing page shows.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int};
use std::ptr;
use std::time::SystemTime;

use ceph::rados as ffi;

use super::aio::{pipeline, AioOp};
use super::names::{decode_mtime, from_secs_nanos};
use super::rados::{check, Cluster, Errno};
use super::{CephStore, MTIME_XATTR};

/// Size, mtime (see [`Cloudstore::mtime`](crate::store::Cloudstore::mtime) for which one) of
/// one object.
pub type Attributes = (u64, SystemTime);

/// A stat and a read of the object's xattrs in one operation.
pub struct AttrOp {
    pub oid: CString,
    op: ffi::rados_read_op_t,
    size: u64,
    mtime: libc::time_t,
    stat_rval: c_int,
    iter: ffi::rados_xattrs_iter_t,
    xattrs_rval: c_int,
    /// After `finish`: the attributes, or the errno (ENOENT: no such object).
    pub result: Option<Result<Attributes, Errno>>,
}

// The raw pointers are only touched by the thread running the pipeline.
unsafe impl Send for AttrOp {}

impl AttrOp {
    pub fn new(oid: CString) -> AttrOp {
        AttrOp {
            oid,
            op: ptr::null_mut(),
            size: 0,
            mtime: 0,
            stat_rval: 0,
            iter: ptr::null_mut(),
            xattrs_rval: 0,
            result: None,
        }
    }

    fn release(&mut self) {
        // SAFETY: each was handed out by librados for this op, whose completion has finished
        // (or which never ran); each is released once.
        unsafe {
            if !self.iter.is_null() {
                ffi::rados_getxattrs_end(self.iter);
                self.iter = ptr::null_mut();
            }
            if !self.op.is_null() {
                ffi::rados_release_read_op(self.op);
                self.op = ptr::null_mut();
            }
        }
    }

    /// The mtime xattr's value among the object's xattrs (`None` when unset).
    fn mtime_xattr(&mut self) -> Result<Option<Vec<u8>>, Errno> {
        while !self.iter.is_null() {
            let mut name: *const c_char = ptr::null();
            let mut val: *const c_char = ptr::null();
            let mut len: libc::size_t = 0;
            // SAFETY: a live iterator; name/val stay valid until the next call.
            check(unsafe { ffi::rados_getxattrs_next(self.iter, &mut name, &mut val, &mut len) })?;
            if name.is_null() {
                break;
            }
            // SAFETY: librados gives a NUL-terminated name and `len` bytes of value.
            if unsafe { CStr::from_ptr(name) } == MTIME_XATTR {
                if len == 0 || val.is_null() {
                    return Ok(Some(Vec::new()));
                }
                return Ok(Some(
                    unsafe { std::slice::from_raw_parts(val as *const u8, len) }.to_vec(),
                ));
            }
        }
        Ok(None)
    }
}

impl AioOp for AttrOp {
    unsafe fn submit(
        &mut self,
        ioctx: ffi::rados_ioctx_t,
        completion: ffi::rados_completion_t,
    ) -> c_int {
        self.op = ffi::rados_create_read_op();
        if self.op.is_null() {
            return -libc::ENOMEM;
        }
        ffi::rados_read_op_stat(
            self.op,
            &mut self.size,
            &mut self.mtime,
            &mut self.stat_rval,
        );
        ffi::rados_read_op_getxattrs(self.op, &mut self.iter, &mut self.xattrs_rval);
        ffi::rados_aio_read_op_operate(self.op, ioctx, completion, self.oid.as_ptr(), 0)
    }

    fn finish(&mut self, ret: c_int, _version: u64) {
        let outcome = check(ret)
            .and_then(|_| check(self.stat_rval))
            .and_then(|_| check(self.xattrs_rval))
            .and_then(|_| self.mtime_xattr())
            .map(|xattr| (self.size, mtime_of(self.mtime, xattr.as_deref())));
        self.release();
        self.result = Some(outcome);
    }
}

impl Drop for AttrOp {
    fn drop(&mut self) {
        self.release();
    }
}

/// Which mtime an object shows: the xattr is ours only while the object's mtime is still the
/// second we gave it (a write by another tool moves the object mtime on and leaves the xattr).
fn mtime_of(object_secs: i64, xattr: Option<&[u8]>) -> SystemTime {
    match xattr
        .and_then(decode_mtime)
        .filter(|(secs, _)| *secs == object_secs)
    {
        Some((_, t)) => t,
        None => from_secs_nanos(object_secs, 0),
    }
}

impl CephStore {
    /// Size and mtime of an object in one round trip; `None` when missing.
    pub(super) fn attributes(
        &self,
        cluster: &Cluster,
        oid: &CStr,
    ) -> Result<Option<Attributes>, Errno> {
        let mut op = [AttrOp::new(oid.to_owned())];
        pipeline(cluster, &mut op, 1);
        match op[0].result.take().expect("pipeline finishes every op") {
            Ok(found) => Ok(Some(found)),
            Err(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
