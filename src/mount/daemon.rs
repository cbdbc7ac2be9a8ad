//! `--daemon`: re-executes the same command line in a new session (setsid) instead of forking:
//! forking a process that may already run threads (librados starts several when the Ceph store
//! is opened) can deadlock the child, and a re-executed child opens its own store. The parent
//! therefore closes its store first (which releases the LevelDB lock), waits until the child
//! reports the mount ready (or failed) through an inherited pipe, and returns. The child logs to
//! `$CLOUDSTORE_FS_LOG`, by default a file in the runtime directory (see `files`).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::error::MountError;
use super::files::{log_tail, open_log};

/// The environment variable through which a `--daemon` child learns its readiness pipe.
const NOTIFY_ENV: &str = "CLOUDSTORE_FS_NOTIFY_FD";
/// Its value: the pipe is the child's standard input.
const NOTIFY_STDIN: &str = "stdin";
/// How long `--daemon` waits for the child's mount.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The readiness pipe, in a `--daemon` child: its standard input, taken the first time (and
/// /dev/null put in its place); each call gives a descriptor of it.
pub(super) fn notify_pipe_from_env() -> Option<File> {
    static PIPE: std::sync::OnceLock<Option<File>> = std::sync::OnceLock::new();
    if std::env::var(NOTIFY_ENV).ok()? != NOTIFY_STDIN {
        return None;
    }
    PIPE.get_or_init(|| crate::sys::fd::take_stdin().ok().map(File::from))
        .as_ref()?
        .try_clone()
        .ok()
}

/// Tells a waiting `--daemon` parent about a failure, and gives the message back.
pub(super) fn report(notify: Option<File>, err: MountError) -> MountError {
    super::systemd::status(&format!("mount failed: {err}"));
    if let Some(mut f) = notify {
        let _ = writeln!(f, "ERR {err}");
    }
    err
}

/// Tells a waiting `--daemon` parent that the mount is up.
pub(super) fn report_ready(notify: Option<File>) {
    if let Some(mut f) = notify {
        let _ = writeln!(f, "READY {}", std::process::id());
    }
}

/// Whether this process is a `--daemon` child (started by [`daemonize`]).
pub(super) fn is_child() -> bool {
    std::env::var_os(NOTIFY_ENV).is_some()
}

/// Re-executes this command line detached, waits for its mount, returns. The store must not be
/// open in this process: the child opens it (LevelDB allows one opener).
pub(super) fn daemonize(backend: &str, mountpoint: &Path) -> Result<(), MountError> {
    let (log, log_path) = open_log(mountpoint)?;
    let (read_end, write_end) =
        crate::sys::fd::pipe().map_err(|e| MountError::Daemon(format!("pipe: {e}")))?;
    let read_end = File::from(read_end);
    let exe = std::env::current_exe()
        .map_err(|e| MountError::Daemon(format!("cannot find this program: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .env(NOTIFY_ENV, NOTIFY_STDIN)
        .stdin(Stdio::from(write_end))
        // A process group of its own: the terminal's Ctrl-C and hangup do not reach it.
        .process_group(0)
        .stdout(
            log.try_clone()
                .map_err(|e| MountError::Daemon(format!("daemon log: {e}")))?,
        )
        .stderr(log);
    let mut child = cmd
        .spawn()
        .map_err(|e| MountError::Daemon(format!("cannot start the daemon: {e}")))?;
    drop(cmd);
    let msg = read_line_with_timeout(read_end, READY_TIMEOUT);
    let shown = mountpoint.display();
    match msg.as_deref().map(str::trim_end) {
        Some(line) if line.starts_with("READY") => {
            let pid = line.trim_start_matches("READY").trim();
            println!(
                "cloudstore-fs: mounted the {backend} store at {shown} (daemon pid {pid}, log {}); \
                 unmount with: cloudstore-fs unmount {shown}",
                log_path.display()
            );
            Ok(())
        }
        Some(line) if line.starts_with("ERR ") => Err(MountError::Daemon(line[4..].to_string())),
        _ => {
            let status = match child.try_wait() {
                Ok(Some(status)) => format!("exited ({status})"),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    format!(
                        "was not ready within {}s and was stopped",
                        READY_TIMEOUT.as_secs()
                    )
                }
            };
            Err(MountError::Daemon(format!(
                "the daemon {status} before the mount was ready; its log {}:\n{}",
                log_path.display(),
                log_tail(&log_path)
            )))
        }
    }
}

fn read_line_with_timeout(mut f: File, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        match crate::sys::fd::wait_readable(f.as_fd(), left) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(_) => return None,
        }
        let mut chunk = [0u8; 512];
        match f.read(&mut chunk) {
            Ok(0) | Err(_) => {
                return (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into_owned())
            }
            Ok(k) => {
                buf.extend_from_slice(&chunk[..k]);
                if buf.contains(&b'\n') {
                    return Some(String::from_utf8_lossy(&buf).into_owned());
                }
            }
        }
    }
}
