//! `mount` and `unmount`: only the wiring; the filesystem lives in `crate::mount`.

use std::path::Path;
use std::sync::Arc;

use super::{CliError, CliResult};
use crate::config::Config;
use crate::mount::{MountOptions, UnmountOptions};
use crate::store::Cloudstore;

/// Mounts `store` and serves it until it is unmounted.
pub fn mount(store: Arc<dyn Cloudstore>, config: &Config, opts: &MountOptions) -> CliResult {
    crate::mount::run(store, config, opts).map_err(CliError::from)
}

/// `mount --daemon`: starts the daemon, which opens the store, and returns once it serves.
pub fn start_daemon(config: &Config, mountpoint: &Path, nonempty: bool) -> CliResult {
    crate::mount::start_daemon(config, mountpoint, nonempty).map_err(|e| {
        log::error!("mount at {}: {e}", mountpoint.display());
        CliError::from(e)
    })
}

/// Prints what the daemon of the mount at `mountpoint` reports about itself.
pub fn stats(mountpoint: &Path) -> CliResult {
    let text = crate::mount::stats(mountpoint).map_err(CliError::from)?;
    print!("{text}");
    Ok(())
}

/// Unmounts the cloudstore-fs mount at `mountpoint`.
pub fn unmount(mountpoint: &Path, opts: &UnmountOptions) -> CliResult {
    crate::mount::unmount_with(mountpoint, opts).map_err(CliError::from)
}
