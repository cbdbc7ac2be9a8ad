//! Streaming listing of a pool namespace: object names from `rados_nobjects_list_*`, filtered to
//! chunk keys, with sizes and mtimes fetched a page at a time: one pipelined batch of compound
//! ops (stat + xattrs), one op per name.
//!
//! RADOS lists in hash order: deterministic for a given pool layout, but not sorted, so a
//! resume point (`after`) can only be found by listing up to it.

use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use ceph::rados as ffi;

use super::aio::pipeline;
use super::attrs::AttrOp;
use super::rados::{check, Cluster, Errno};
use super::{describe, key_of_object_name, BACKEND};
use crate::store::{ChunkInfo, Result, StoreError};

/// Object names per page: the attributes of a page are fetched with one pipelined batch.
const PAGE: usize = 256;

/// An open librados listing; keeps its cluster alive and closes the listing on drop.
struct ObjectNames {
    ctx: ffi::rados_list_ctx_t,
    // Declared after ctx and dropped after the context is closed (Drop below runs first).
    cluster: Arc<Cluster>,
}

// A list context has no thread affinity; it is used by one thread at a time (&mut self).
unsafe impl Send for ObjectNames {}

impl ObjectNames {
    fn open(cluster: Arc<Cluster>) -> std::result::Result<ObjectNames, Errno> {
        let mut ctx: ffi::rados_list_ctx_t = ptr::null_mut();
        // SAFETY: a live ioctx (kept alive by the Arc stored next to the context).
        check(unsafe { ffi::rados_nobjects_list_open(cluster.ioctx(), &mut ctx) })?;
        Ok(ObjectNames { ctx, cluster })
    }

    /// The next object name, `None` at the end.
    fn next_name(&mut self) -> std::result::Result<Option<Vec<u8>>, Errno> {
        let mut entry: *const c_char = ptr::null();
        // SAFETY: a live context; the crate declares the out-parameters one pointer level too
        // deep (`char ***`), the C ABI is the same pointer. The name stays valid until the
        // next call, so it is copied at once.
        let ret = unsafe {
            ffi::rados_nobjects_list_next(
                self.ctx,
                &mut entry as *mut *const c_char as *mut *mut *const c_char,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        match check(ret) {
            Ok(_) if entry.is_null() => Ok(None),
            // SAFETY: a NUL-terminated name from librados.
            Ok(_) => Ok(Some(unsafe { CStr::from_ptr(entry) }.to_bytes().to_vec())),
            Err(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for ObjectNames {
    fn drop(&mut self) {
        // SAFETY: opened in `open`, closed once, while `cluster` (and its ioctx) is still alive.
        unsafe { ffi::rados_nobjects_list_close(self.ctx) };
    }
}

/// The listing handed out by `CephStore::list`.
pub struct ChunkListing {
    names: Option<ObjectNames>,
    max_in_flight: usize,
    /// Skip everything up to and including this object name.
    after: Option<Vec<u8>>,
    ready: VecDeque<Result<ChunkInfo>>,
    skipped: u64,
    /// "pool P namespace N", for errors.
    location: String,
    op_timeout: Duration,
}

impl ChunkListing {
    /// Opens a listing of the cluster's namespace (`location` names it in errors).
    pub fn open(
        cluster: Arc<Cluster>,
        after: Option<&[u8]>,
        max_in_flight: usize,
        location: String,
        op_timeout: Duration,
    ) -> std::result::Result<Self, Errno> {
        Ok(ChunkListing {
            names: Some(ObjectNames::open(cluster)?),
            max_in_flight,
            after: after.map(|k| hex::encode(k).into_bytes()),
            ready: VecDeque::new(),
            skipped: 0,
            location,
            op_timeout,
        })
    }

    /// The error for a failure of the listing (for one key when `key` is given), logged.
    fn error(&self, op: &'static str, key: Option<&[u8]>, errno: Errno) -> StoreError {
        let (errno, message) = describe(errno, self.op_timeout, None, &self.location);
        let err = StoreError::Backend {
            backend: BACKEND,
            op,
            key: key.map_or_else(|| self.location.clone(), hex::encode),
            errno,
            message,
        };
        log::warn!("{err}");
        err
    }

    /// Reads the first page now: whether the listing is empty. (An empty listing is also what a
    /// deleted pool gives; its operations meanwhile brought the client's cluster map up to
    /// date, so the caller can tell the two apart.)
    pub(super) fn is_empty(&mut self) -> bool {
        while self.ready.is_empty() && self.fill() {}
        self.ready.is_empty()
    }

    /// Reads up to one page of names and stats them; false at the end of the listing.
    fn fill(&mut self) -> bool {
        let Some(names) = self.names.as_mut() else {
            return false;
        };
        let mut ops = Vec::with_capacity(PAGE);
        let mut end = false;
        let mut list_error = None;
        while ops.len() < PAGE {
            match names.next_name() {
                Ok(Some(name)) => {
                    if let Some(after) = &self.after {
                        if *after == name {
                            self.after = None;
                        }
                        continue;
                    }
                    if key_of_object_name(&name).is_none() {
                        self.skipped += 1;
                        log::debug!(
                            "{BACKEND}: listing skips object {:?}: not a lowercase even-length hex chunk name",
                            String::from_utf8_lossy(&name)
                        );
                        continue;
                    }
                    // Names from librados never contain NUL.
                    ops.push(AttrOp::new(
                        CString::new(name).expect("no NUL in a C string"),
                    ));
                }
                Ok(None) => {
                    end = true;
                    break;
                }
                Err(e) => {
                    list_error = Some(e);
                    end = true;
                    break;
                }
            }
        }
        pipeline(&names.cluster, &mut ops, self.max_in_flight);
        for op in ops {
            let key = key_of_object_name(op.oid.as_bytes()).expect("checked above");
            let item = match op.result.expect("pipeline finishes every op") {
                Ok((size, mtime)) => Ok(ChunkInfo {
                    key,
                    size,
                    mtime: Some(mtime),
                }),
                // Deleted between the listing and the stat: not there any more.
                Err(libc::ENOENT) => continue,
                Err(e) => Err(self.error("stat", Some(&key), e)),
            };
            self.ready.push_back(item);
        }
        // An error of the listing itself comes after the names read before it.
        if let Some(e) = list_error {
            let err = self.error("list", None, e);
            self.ready.push_back(Err(err));
        }
        if end {
            if self.skipped > 0 {
                log::debug!(
                    "{BACKEND}: listing skipped {} objects whose names are not chunk keys",
                    self.skipped
                );
            }
            if let Some(after) = self.after.take() {
                log::debug!(
                    "{BACKEND}: listing never reached the resume key {}: it no longer exists",
                    String::from_utf8_lossy(&after)
                );
            }
            self.names = None;
        }
        true
    }
}

impl Iterator for ChunkListing {
    type Item = Result<ChunkInfo>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            if !self.fill() {
                return None;
            }
        }
    }
}
