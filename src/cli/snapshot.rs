//! `snapshot MOUNTPOINT DIR`: only the wiring; the daemon of MOUNTPOINT takes the snapshot and
//! serves it (see `crate::mount`'s `snapshot`).

use std::path::Path;

use super::{CliError, CliResult};

/// Asks the daemon of `mountpoint` to mount a read-only snapshot of its store at `dir`.
pub fn run(mountpoint: &Path, dir: &Path) -> CliResult {
    let text = crate::mount::request_snapshot(mountpoint, dir).map_err(CliError::from)?;
    eprintln!(
        "cloudstore-fs: {text}; `cloudstore-fs unmount {}` lets go of it",
        dir.display()
    );
    Ok(())
}
