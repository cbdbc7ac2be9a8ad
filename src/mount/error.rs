//! What can go wrong when mounting, serving or unmounting: each kind a variant, its message
//! naming the mountpoint and what to do.

use std::path::PathBuf;

use crate::fs::FsError;
use crate::store::StoreError;

/// A failure of `mount/`. Every variant's message is complete (printed as is by the CLI).
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mountpoint cannot take a mount: missing, not a directory, not empty, already a mount
    /// point, or a dead mount there that cannot be cleared.
    #[error("{0}")]
    Mountpoint(String),
    /// The daemon's own files: the runtime directory, the log, the pid file, the stats socket.
    #[error("{0}")]
    Files(String),
    /// Mounting failed: mount(2), fusermount3, signal handling or the FUSE session.
    #[error("{0}")]
    Mount(String),
    /// A `--daemon` child did not start serving.
    #[error("{0}")]
    Daemon(String),
    /// Nothing, or not a cloudstore-fs mount, is at the path given.
    #[error("{0}")]
    NotOurs(String),
    /// The mount is busy: nothing was unmounted.
    #[error(
        "{} is busy: files are open in it (or a process has its working directory there; \
         `fuser -vm {}` lists them), so nothing was unmounted and nothing was lost; close them \
         and retry, or detach it now with `cloudstore-fs unmount --lazy {}`",
        .0.display(), .0.display(), .0.display()
    )]
    Busy(PathBuf),
    /// Unmounting failed, or the daemon did not exit after it.
    #[error("{0}")]
    Unmount(String),
    /// The daemon does not answer `cloudstore-fs stats`.
    #[error("{0}")]
    Stats(String),
    /// A snapshot could not be taken, mounted, found or released.
    #[error("{0}")]
    Snapshot(String),
    /// What was pending could not be committed at unmount.
    #[error("commit at unmount: {0}")]
    Commit(#[source] FsError),
    /// The store could not be closed before the daemon, which opens it itself, was started.
    #[error("closing the store before starting the daemon: {0}")]
    CloseStore(#[source] StoreError),
}

/// A result of `mount/`.
pub type MountResult<T = ()> = Result<T, MountError>;
