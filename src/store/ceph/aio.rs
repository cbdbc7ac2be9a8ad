//! Pipelined librados operations: a batch of N objects costs about one round trip of wall time
//! instead of N, with at most `max_in_flight` operations outstanding.
//!
//! Each operation type keeps its buffers and out-values inside itself; [`pipeline`] submits the
//! operations of a slice in order and waits for the oldest whenever the window is full. The
//! slice is borrowed for the whole call and every completion is waited for before `pipeline`
//! returns, also when unwinding, so librados never writes into freed memory.

use std::collections::VecDeque;
use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use std::ptr;

use ceph::rados as ffi;

use super::rados::{aio_version, check, Cluster, Errno};

/// One librados aio completion, released on drop (after waiting for it if still in flight).
struct Completion {
    raw: ffi::rados_completion_t,
    waited: bool,
}

impl Completion {
    fn new() -> Result<Completion, Errno> {
        let mut raw: ffi::rados_completion_t = ptr::null_mut();
        // SAFETY: no callbacks; out-pointer to a local.
        check(unsafe { ffi::rados_aio_create_completion(ptr::null_mut(), None, None, &mut raw) })?;
        Ok(Completion { raw, waited: false })
    }

    /// Waits for the operation and returns its return value (negative errno on failure) and
    /// the version of the object it read or wrote.
    fn wait(&mut self) -> (c_int, u64) {
        // SAFETY: a live completion; wait_for_complete is also the durability point for writes
        // (since Luminous "complete" and "safe" are the same ack).
        unsafe {
            ffi::rados_aio_wait_for_complete(self.raw);
            self.waited = true;
            (
                ffi::rados_aio_get_return_value(self.raw),
                aio_version(self.raw),
            )
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        // SAFETY: the completion is released once, after its operation finished (an
        // unfinished one would still write into the buffers its owner is about to free).
        unsafe {
            if !self.waited {
                ffi::rados_aio_wait_for_complete(self.raw);
            }
            ffi::rados_aio_release(self.raw);
        }
    }
}

/// An operation [`pipeline`] can run.
pub trait AioOp {
    /// Starts the operation on `completion`; returns librados's return code (negative errno
    /// when it could not even be queued).
    ///
    /// # Safety
    /// Everything the operation writes to must stay at its address until `finish` is called.
    unsafe fn submit(
        &mut self,
        ioctx: ffi::rados_ioctx_t,
        completion: ffi::rados_completion_t,
    ) -> c_int;

    /// Records the outcome: `ret` is the completion's return value (or the submit error), and
    /// `version` the object's version after the operation (0 when it did not run).
    fn finish(&mut self, ret: c_int, version: u64);
}

/// Runs every operation of `ops`, at most `max_in_flight` at once.
pub fn pipeline<T: AioOp>(cluster: &Cluster, ops: &mut [T], max_in_flight: usize) {
    let ioctx = cluster.ioctx();
    let mut sent = 0;
    let window = max_in_flight.max(1);
    let mut in_flight: VecDeque<(usize, Completion)> = VecDeque::with_capacity(window);
    for i in 0..ops.len() {
        if in_flight.len() >= window {
            let (j, mut c) = in_flight.pop_front().expect("window is not empty");
            let (ret, version) = c.wait();
            ops[j].finish(ret, version);
        }
        let completion = match Completion::new() {
            Ok(c) => c,
            Err(errno) => {
                ops[i].finish(-errno, 0);
                continue;
            }
        };
        // SAFETY: `ops` is borrowed until this function returns and every completion is waited
        // for before that (below, or by Completion's drop when unwinding).
        let ret = unsafe { ops[i].submit(ioctx, completion.raw) };
        if ret < 0 {
            // Never queued: the completion will not fire, release it without waiting.
            let mut c = completion;
            c.waited = true;
            drop(c);
            ops[i].finish(ret, 0);
        } else {
            sent += 1;
            in_flight.push_back((i, completion));
        }
    }
    cluster.trips.sent(sent);
    while let Some((j, mut c)) = in_flight.pop_front() {
        let (ret, version) = c.wait();
        ops[j].finish(ret, version);
    }
}

/// Reads `[offset, offset + len)` of an object, optionally with a stat in the same operation:
/// a read shorter than asked means the object ended, a full one needs the size to know whether
/// more follows (a stat costs the OSD more, so the first read of a batch goes without). With an
/// expected version the OSD reads only that version of the object: a changed object fails the
/// read (ERANGE or EOVERFLOW, ENOENT when deleted) instead of returning other bytes.
pub struct ReadOp {
    pub oid: CString,
    pub offset: u64,
    pub buf: Vec<u8>,
    with_stat: bool,
    expect: Option<u64>,
    /// After `finish`: the version of the object that was read.
    pub version: u64,
    op: ffi::rados_read_op_t,
    size: u64,
    mtime: libc::time_t,
    stat_rval: c_int,
    bytes_read: libc::size_t,
    read_rval: c_int,
    /// After `finish`: the bytes read are in `buf`; the object size when it was statted; or
    /// the errno.
    pub result: Option<Result<Option<u64>, Errno>>,
}

// The raw op pointer is only touched by the thread running the pipeline.
unsafe impl Send for ReadOp {}

impl ReadOp {
    /// A read of up to `len` bytes at `offset`, with the object's size when `with_stat` (always
    /// for `len == 0`: that is a stat alone, since a RADOS read of length 0 reads everything).
    pub fn new(oid: CString, offset: u64, len: usize, with_stat: bool) -> ReadOp {
        ReadOp {
            oid,
            offset,
            buf: Vec::with_capacity(len),
            with_stat: with_stat || len == 0,
            expect: None,
            version: 0,
            op: ptr::null_mut(),
            size: 0,
            mtime: 0,
            stat_rval: 0,
            bytes_read: 0,
            read_rval: 0,
            result: None,
        }
    }

    /// A read with a stat that reads only version `expect` of the object, when given.
    pub fn versioned(oid: CString, offset: u64, len: usize, expect: Option<u64>) -> ReadOp {
        let mut op = ReadOp::new(oid, offset, len, true);
        op.expect = expect;
        op
    }

    fn release(&mut self) {
        if !self.op.is_null() {
            // SAFETY: the op was created by submit and its completion has finished.
            unsafe { ffi::rados_release_read_op(self.op) };
            self.op = ptr::null_mut();
        }
    }
}

impl AioOp for ReadOp {
    unsafe fn submit(
        &mut self,
        ioctx: ffi::rados_ioctx_t,
        completion: ffi::rados_completion_t,
    ) -> c_int {
        let len = self.buf.capacity();
        let buf = self.buf.as_mut_ptr() as *mut c_char;
        if !self.with_stat {
            return ffi::rados_aio_read(
                ioctx,
                self.oid.as_ptr(),
                completion,
                buf,
                len,
                self.offset,
            );
        }
        self.op = ffi::rados_create_read_op();
        if self.op.is_null() {
            return -libc::ENOMEM;
        }
        if let Some(version) = self.expect {
            ffi::rados_read_op_assert_version(self.op, version);
        }
        ffi::rados_read_op_stat(
            self.op,
            &mut self.size,
            &mut self.mtime,
            &mut self.stat_rval,
        );
        if len > 0 {
            ffi::rados_read_op_read(
                self.op,
                self.offset,
                len,
                buf,
                &mut self.bytes_read,
                &mut self.read_rval,
            );
        }
        ffi::rados_aio_read_op_operate(self.op, ioctx, completion, self.oid.as_ptr(), 0)
    }

    fn finish(&mut self, ret: c_int, version: u64) {
        self.release();
        self.version = version;
        let outcome = if self.with_stat {
            check(ret)
                .and_then(|_| check(self.stat_rval))
                .and_then(|_| check(self.read_rval))
                .map(|_| (self.bytes_read, Some(self.size)))
        } else {
            // A plain aio read completes with the number of bytes read.
            check(ret).map(|n| (n as usize, None))
        };
        self.result = Some(outcome.map(|(n, size)| {
            // SAFETY: librados wrote `n` bytes into the buffer, never more than its capacity
            // (the length asked for); min() guards against a misreport all the same.
            unsafe { self.buf.set_len(n.min(self.buf.capacity())) };
            size
        }));
    }
}

impl Drop for ReadOp {
    fn drop(&mut self) {
        self.release();
    }
}

/// Replaces an object's data whole (write_full) and sets one xattr, in one operation, with the
/// object's mtime set to `mtime_secs`. Without data it only sets the xattr, and only on an
/// object that exists (no object is created).
pub struct WriteOp<'a> {
    pub oid: CString,
    data: Option<&'a [u8]>,
    xattr_name: &'a std::ffi::CStr,
    xattr_value: Vec<u8>,
    mtime_secs: libc::time_t,
    op: ffi::rados_write_op_t,
    /// After `finish`: the version of the object written.
    pub version: u64,
    /// After `finish`: success or the errno.
    pub result: Option<Result<(), Errno>>,
}

unsafe impl Send for WriteOp<'_> {}

impl<'a> WriteOp<'a> {
    /// write_full of `data` plus the xattr.
    pub fn write_full(
        oid: CString,
        data: &'a [u8],
        xattr_name: &'a std::ffi::CStr,
        xattr_value: Vec<u8>,
        mtime_secs: i64,
    ) -> Self {
        WriteOp {
            oid,
            data: Some(data),
            xattr_name,
            xattr_value,
            mtime_secs,
            op: ptr::null_mut(),
            version: 0,
            result: None,
        }
    }

    /// Only the xattr, on an existing object (ENOENT otherwise).
    pub fn set_xattr(
        oid: CString,
        xattr_name: &'a std::ffi::CStr,
        xattr_value: Vec<u8>,
        mtime_secs: i64,
    ) -> Self {
        WriteOp {
            oid,
            data: None,
            xattr_name,
            xattr_value,
            mtime_secs,
            op: ptr::null_mut(),
            version: 0,
            result: None,
        }
    }

    fn release(&mut self) {
        if !self.op.is_null() {
            // SAFETY: created by submit, its completion has finished.
            unsafe { ffi::rados_release_write_op(self.op) };
            self.op = ptr::null_mut();
        }
    }
}

impl AioOp for WriteOp<'_> {
    unsafe fn submit(
        &mut self,
        ioctx: ffi::rados_ioctx_t,
        completion: ffi::rados_completion_t,
    ) -> c_int {
        self.op = ffi::rados_create_write_op();
        if self.op.is_null() {
            return -libc::ENOMEM;
        }
        match self.data {
            // An empty buffer makes a 0-byte object: an empty value is not a missing one.
            Some(data) => {
                ffi::rados_write_op_write_full(self.op, data.as_ptr() as *const c_char, data.len())
            }
            None => ffi::rados_write_op_assert_exists(self.op),
        }
        ffi::rados_write_op_setxattr(
            self.op,
            self.xattr_name.as_ptr(),
            self.xattr_value.as_ptr() as *const c_char,
            self.xattr_value.len(),
        );
        ffi::rados_aio_write_op_operate(
            self.op,
            ioctx,
            completion,
            self.oid.as_ptr(),
            &mut self.mtime_secs,
            0,
        )
    }

    fn finish(&mut self, ret: c_int, version: u64) {
        self.release();
        self.version = version;
        self.result = Some(check(ret).map(drop));
    }
}

impl Drop for WriteOp<'_> {
    fn drop(&mut self) {
        self.release();
    }
}
