//! Our mounts in /proc/self/mountinfo (read through `sys::mounts`): their type, and paths made
//! absolute the way mountinfo lists them.

use super::error::MountError;
use std::path::{Path, PathBuf};

pub(crate) use crate::sys::mounts::{find_mount, MountInfo};

/// The filesystem type of our mounts in mountinfo ("fuse" + the `subtype` mount option).
pub(crate) const FSTYPE: &str = "fuse.cloudstore-fs";

/// Whether a mount is a cloudstore-fs one.
pub(crate) trait Ours {
    fn is_ours(&self) -> bool;
}

impl Ours for MountInfo {
    fn is_ours(&self) -> bool {
        self.fstype == FSTYPE
    }
}

/// `path` made absolute without touching its last component (a dead mount fails every stat).
pub(crate) fn absolute(path: &Path) -> Result<PathBuf, MountError> {
    crate::sys::mounts::absolute(path)
        .map_err(|e| MountError::Mountpoint(format!("{}: {e}", path.display())))
}
