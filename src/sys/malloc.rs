//! glibc's mmap threshold, set through its environment: chunk values of MiBs come and go (write
//! buffers, fetched values, the store's copies), and each should get its own mapping, returned to
//! the system when freed. glibc otherwise raises its threshold after the first such free (up to
//! 32 MiB) and serves the next ones from its heap, which keeps the memory after they are freed:
//! the daemon's RSS then grows past its budget.
//!
//! glibc reads `MALLOC_MMAP_THRESHOLD_` once, when the process starts, and a threshold set that
//! way stays fixed (as with `mallopt(M_MMAP_THRESHOLD)`, which has no safe wrapper). So a
//! process that needs it and lacks the variable executes itself again with it set: the same
//! program, arguments (argv[0] included) and environment, in the same process (same pid, so
//! systemd and the pid file see no change, and `ps` shows the same command line).

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The variable glibc reads the threshold from.
pub const MMAP_THRESHOLD_ENV: &str = "MALLOC_MMAP_THRESHOLD_";
/// The threshold: allocations of this size or more get their own mapping.
pub const MMAP_THRESHOLD: usize = 1 << 20;
/// The tunable that sets the same threshold through `GLIBC_TUNABLES`.
const TUNABLE: &str = "glibc.malloc.mmap_threshold";

/// Whether this process's environment already sets glibc's mmap threshold (ours or the user's).
pub fn mmap_threshold_set() -> bool {
    std::env::var_os(MMAP_THRESHOLD_ENV).is_some()
        || std::env::var_os("GLIBC_TUNABLES").is_some_and(|t| t.to_string_lossy().contains(TUNABLE))
}

/// Makes sure glibc's mmap threshold is [`MMAP_THRESHOLD`]: returns at once when the environment
/// sets it (this process started with it), else executes this program again with
/// [`MMAP_THRESHOLD_ENV`] set and does not return. `Err` when that exec failed: the process runs
/// on with glibc's default. Call it first thing in `main`, before any thread is started or
/// descriptor opened without close-on-exec: the exec ends the threads and keeps such descriptors.
pub fn pin_mmap_threshold() -> io::Result<()> {
    if cfg!(not(target_env = "gnu")) || mmap_threshold_set() {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| OsString::from(&exe));
    Err(Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env(MMAP_THRESHOLD_ENV, MMAP_THRESHOLD.to_string())
        .exec())
}
