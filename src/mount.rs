//! Mounting the store with FUSE (placeholder while the filesystem is written).

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::store::Cloudstore;

/// How to mount.
#[derive(Debug, Clone, Default)]
pub struct MountOptions {
    pub mountpoint: PathBuf,
    pub read_only: bool,
    pub allow_other: bool,
    pub daemon: bool,
}

/// Mounts `store` at `opts.mountpoint` and serves it until unmounted (or, with `daemon`, until
/// the mount is ready). Returns a message that says what failed.
pub fn run(_store: Arc<dyn Cloudstore>, _config: &Config, _opts: &MountOptions) -> Result<(), String> {
    Err("mount: not yet written".into())
}

/// Unmounts a cloudstore-fs mount.
pub fn unmount(_mountpoint: &std::path::Path) -> Result<(), String> {
    Err("unmount: not yet written".into())
}
