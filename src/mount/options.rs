//! The fuser settings of a mount, the kernel read-ahead raised after it, and what a failed
//! mount(2) means.

use std::io;
use std::path::Path;

use fuser::{MountOption, SessionACL};

use super::error::MountError;
use super::mountinfo::find_mount;
use super::MountOptions;

/// FUSE worker threads: requests wait on the store, so more than the cores.
const FUSE_THREADS: usize = 8;
/// What read_ahead_kb is raised to: the kernel reads ahead of a sequential reader up to 8 MiB,
/// in requests of up to 1 MiB (max_write) sent in parallel, so that a cold read of a big Ceph
/// object has 8 RADOS reads in flight instead of 1 or 2 (issue 14: a 64 MiB read took 0.13-0.155
/// s instead of 0.15-0.20 s). The default 128 KiB caps every read.
const READ_AHEAD_KB: u32 = 8 << 10;

/// The fuser settings for a mount.
pub(super) fn fuse_config(opts: &MountOptions, backend: &str) -> fuser::Config {
    let mut cfg = fuser::Config::default();
    cfg.mount_options = vec![
        MountOption::FSName(format!("cloudstore-fs:{backend}")),
        // Makes the type "fuse.cloudstore-fs" in mountinfo: how stale mounts are recognized.
        MountOption::CUSTOM("subtype=cloudstore-fs".into()),
        // The kernel enforces the 0644/0755 modes (matters with --allow-other).
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if opts.read_only {
        cfg.mount_options.push(MountOption::RO);
    }
    cfg.acl = if opts.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    cfg.n_threads = Some(FUSE_THREADS);
    cfg.clone_fd = true;
    cfg
}

/// What a failed mount(2) at `mountpoint` means.
pub(super) fn mount_error(mountpoint: &Path, e: io::Error) -> MountError {
    let shown = mountpoint.display();
    MountError::Mount(match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => format!(
            "cannot mount at {shown}: permission denied (mounting needs root, or fusermount3 \
             from the fuse3 package): {e}"
        ),
        Some(libc::ENOENT) => format!("cannot mount at {shown}: {e} (is /dev/fuse present?)"),
        _ => format!("cannot mount at {shown}: {e}"),
    })
}

/// Raises the kernel read-ahead of the new mount to [`READ_AHEAD_KB`].
pub(super) fn raise_read_ahead(mountpoint: &Path) {
    let Some(m) = find_mount(mountpoint) else {
        log::info!(
            "read-ahead: {} not found in mountinfo",
            mountpoint.display()
        );
        return;
    };
    let path = format!("/sys/class/bdi/{}/read_ahead_kb", m.dev);
    match std::fs::write(&path, READ_AHEAD_KB.to_string()) {
        Ok(()) => log::debug!("read-ahead: {path} = {READ_AHEAD_KB}"),
        Err(e) => log::info!("read-ahead: cannot write {path}: {e}"),
    }
}
