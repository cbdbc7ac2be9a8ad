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
//!
//! The same exec asks glibc for transparent huge pages on those mappings
//! (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, glibc 2.35 and later; Debian's kernels give them
//! only to memory that asks, `madvise`): a value of hundreds of MiB is faulted in 2 MiB at a time
//! instead of 4 KiB, and each of its copies (LevelDB's block, string and C copy, the daemon's
//! buffer) costs one fault per 2 MiB. Measured, a cold 512 MiB read: page faults 18% of the
//! daemon's CPU before, 0.2% after; 2.4-2.6 s -> 1.5-2.0 s.

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

/// The tunable that gives mapped chunks transparent huge pages.
const HUGE_PAGES: &str = "glibc.malloc.hugetlb";

/// Whether this process's environment already sets glibc's mmap threshold (ours or the user's).
pub fn mmap_threshold_set() -> bool {
    std::env::var_os(MMAP_THRESHOLD_ENV).is_some()
        || std::env::var_os("GLIBC_TUNABLES").is_some_and(|t| t.to_string_lossy().contains(TUNABLE))
}

/// `GLIBC_TUNABLES` with huge pages asked for, from its value `current`; `None` when it already
/// says something of them (ours, or the user's choice, kept).
pub fn tunables_with_huge_pages(current: Option<&str>) -> Option<String> {
    match current {
        Some(t) if t.contains(HUGE_PAGES) => None,
        Some(t) if !t.is_empty() => Some(format!("{t}:{HUGE_PAGES}=1")),
        _ => Some(format!("{HUGE_PAGES}=1")),
    }
}

/// Makes sure glibc's mmap threshold is [`MMAP_THRESHOLD`]: returns at once when the environment
/// sets it (this process started with it), else executes this program again with
/// [`MMAP_THRESHOLD_ENV`] set and does not return. `Err` when that exec failed: the process runs
/// on with glibc's default. Call it first thing in `main`, before any thread is started or
/// descriptor opened without close-on-exec: the exec ends the threads and keeps such descriptors.
pub fn pin_mmap_threshold() -> io::Result<()> {
    let current = std::env::var_os("GLIBC_TUNABLES");
    let tunables =
        tunables_with_huge_pages(current.as_ref().map(|t| t.to_string_lossy()).as_deref());
    if cfg!(not(target_env = "gnu")) || (mmap_threshold_set() && tunables.is_none()) {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| OsString::from(&exe));
    let mut cmd = Command::new(&exe);
    cmd.arg0(arg0).args(args);
    if !mmap_threshold_set() {
        cmd.env(MMAP_THRESHOLD_ENV, MMAP_THRESHOLD.to_string());
    }
    if let Some(t) = tunables {
        cmd.env("GLIBC_TUNABLES", t);
    }
    Err(cmd.exec())
}

#[cfg(test)]
mod tests {
    use super::tunables_with_huge_pages as huge;

    #[test]
    fn huge_pages_are_added_to_the_tunables_unless_they_say_something_of_them() {
        assert_eq!(huge(None).as_deref(), Some("glibc.malloc.hugetlb=1"));
        assert_eq!(huge(Some("")).as_deref(), Some("glibc.malloc.hugetlb=1"));
        assert_eq!(
            huge(Some("glibc.malloc.arena_max=2")).as_deref(),
            Some("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1")
        );
        assert_eq!(huge(Some("glibc.malloc.hugetlb=0")), None);
        assert_eq!(huge(Some("glibc.malloc.hugetlb=1")), None);
    }
}
