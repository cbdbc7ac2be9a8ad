//! What a RADOS errno means to the filesystem, and the store's errors built from it (logged once,
//! where they are made).

use std::time::Duration;

use super::rados::{errno_text, Errno};

use super::{CephStore, BACKEND};
use crate::store::StoreError;

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

impl CephStore {
    /// The error for a failed RADOS call, logged once here.
    pub(super) fn error(
        &self,
        op: &'static str,
        key: &[u8],
        errno: Errno,
        size: Option<usize>,
    ) -> StoreError {
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
    pub(super) fn error_without_key(
        &self,
        op: &'static str,
        what: String,
        errno: Errno,
    ) -> StoreError {
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
}
