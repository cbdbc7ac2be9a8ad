//! Mounting: checks the mountpoint (clearing the stale mount of a dead daemon), starts the FUSE
//! session over the filesystem core, and shuts down cleanly on SIGINT/SIGTERM or `unmount`
//! (everything pending is committed before the store is closed).
//!
//! One file a job: `mountpoint` (checks and stale-mount takeover), `mountinfo` (our mounts in
//! mountinfo, absolute paths), `error` (`MountError`), `options` (fuser settings), `signals` (clean stop), `daemon` (`--daemon`), `files`
//! (runtime directory, log and pid files), `unmount` (unmount and wait for the daemon), `stats`
//! (the socket `cloudstore-fs stats` and `snapshot` ask), `snapshot` (read-only point-in-time
//! views served beside the mount), `systemd` (readiness notifications).

mod control;
mod daemon;
mod error;
mod files;
mod fusermount;
mod mountinfo;
mod mountpoint;
mod options;
mod signals;
mod snapshot;
pub mod systemd;
mod teardown;
mod unmount;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{BackgroundSession, Session};

pub use error::{MountError, MountResult};
pub use files::{default_log_path, pid_file, LOG_ENV};
pub use mountpoint::check_mountpoint;
pub use snapshot::request as request_snapshot;
pub use unmount::{daemon_pid, unmount, unmount_with, wait_for_exit, UnmountOptions};

use crate::config::Config;
use crate::fs::{ChunkFs, FsConfig};
use crate::fuse::FuseAdapter;
use crate::store::Cloudstore;
use daemon::{daemonize, notify_pipe_from_env, report, report_ready};
use files::PidFile;
use mountinfo::Ours;
use options::{fuse_config, mount_error, raise_read_ahead};
use signals::StopSignals;
use teardown::{detach, umount2};

use crate::sys::mounts::Unmount;

/// How to mount.
#[derive(Debug, Clone, Default)]
pub struct MountOptions {
    pub mountpoint: PathBuf,
    pub read_only: bool,
    pub allow_other: bool,
    pub daemon: bool,
    /// Mount over a directory that holds files (hiding them while mounted).
    pub nonempty: bool,
    /// Owner, group and permission bits the files show (default: the mounting user, 0644).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub file_mode: Option<u32>,
    /// Serve Prometheus metrics at this address (`--metrics-addr`).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Mounts `store` at `opts.mountpoint` and serves it until unmounted (or, with `daemon`, until
/// the mount is ready: see `daemon`; the store passed in is closed in that case).
/// Returns a message that says what failed.
pub fn run(
    store: Arc<dyn Cloudstore>,
    config: &Config,
    opts: &MountOptions,
) -> Result<(), MountError> {
    let notify = notify_pipe_from_env();
    let mountpoint = match check_mountpoint(&opts.mountpoint, opts.nonempty) {
        Ok(m) => m,
        Err(e) => return Err(report(notify, e)),
    };
    if opts.daemon && notify.is_none() {
        // The daemon opens the store itself.
        store.close().map_err(MountError::CloseStore)?;
        drop(store);
        return daemonize(&backend_name(config), &mountpoint);
    }
    serve(store, config, opts, &mountpoint, notify)
}

/// `--daemon` without a store opened here: starts the daemon (this command line again, detached),
/// which opens the store and mounts, and returns once it serves or says why it cannot.
pub fn start_daemon(config: &Config, mountpoint: &Path, nonempty: bool) -> Result<(), MountError> {
    let mountpoint = check_mountpoint(mountpoint, nonempty)?;
    daemonize(&backend_name(config), &mountpoint)
}

/// Whether this process is a `--daemon` child (its parent waits for its readiness report).
pub fn is_daemon_child() -> bool {
    daemon::is_child()
}

/// In a `--daemon` child, tells the waiting parent that the mount failed with `msg`.
pub fn report_failure(msg: &str) {
    if let Some(notify) = notify_pipe_from_env() {
        report(Some(notify), MountError::Mount(msg.to_string()));
    }
}

fn backend_name(config: &Config) -> String {
    format!("{:?}", config.backend).to_lowercase()
}

fn new_core(store: Arc<dyn Cloudstore>, config: &Config, opts: &MountOptions) -> Arc<ChunkFs> {
    let mut fs_config = FsConfig::new(config, &*store, opts.read_only);
    fs_config.allow_other = opts.allow_other;
    fs_config.uid = opts.uid.unwrap_or(fs_config.uid);
    fs_config.gid = opts.gid.unwrap_or(fs_config.gid);
    fs_config.file_mode = opts.file_mode.unwrap_or(fs_config.file_mode);
    Arc::new(ChunkFs::new(store, fs_config))
}

/// Starts answering `cloudstore-fs stats` (and the requests of `control`) for the mount at
/// `mountpoint`; a failure is logged and does not stop the mount.
fn start_stats(
    core: &Arc<ChunkFs>,
    mountpoint: &Path,
    control: Option<control::Control>,
) -> Option<control::StatsServer> {
    let Some(m) = mountinfo::find_mount(mountpoint) else {
        log::warn!("stats: {} not found in mountinfo", mountpoint.display());
        return None;
    };
    let served = files::stats_socket_path(&m.dev).and_then(|path| {
        control::serve_with(core.clone(), &path, control)
            .map_err(|e| MountError::Files(format!("{}: {e}", path.display())))
    });
    match served {
        Ok(server) => Some(server),
        Err(e) => {
            log::warn!("stats socket: {e}; `cloudstore-fs stats` cannot reach this daemon");
            None
        }
    }
}

/// What the daemon serving the cloudstore-fs mount at `mountpoint` reports about itself:
/// commits pending and done, errors by kind, the last error, memory against the budget.
pub fn stats(mountpoint: &Path) -> Result<String, MountError> {
    let shown = mountpoint.display();
    let socket = control_socket(mountpoint)?;
    control::request(&socket).map_err(|e| {
        MountError::Stats(format!(
            "cannot reach the daemon of {shown} at {}: {e} (is it run by another user, or did \
             it die?)",
            socket.display()
        ))
    })
}

/// The socket of the daemon serving the cloudstore-fs mount at `mountpoint`.
fn control_socket(mountpoint: &Path) -> Result<PathBuf, MountError> {
    let shown = mountpoint.display();
    let path = mountinfo::absolute(mountpoint)?;
    let m = mountinfo::find_mount(&path)
        .ok_or_else(|| MountError::NotOurs(format!("{shown} is not a mount point")))?;
    if !m.is_ours() {
        return Err(MountError::NotOurs(format!(
            "{shown} is not a cloudstore-fs mount ({} from {})",
            m.fstype, m.source
        )));
    }
    files::stats_socket_path(&m.dev)
}

/// Mounts at `mountpoint` (root: mount(2); another user: through fusermount3).
fn new_session(
    core: &Arc<ChunkFs>,
    mountpoint: &Path,
    opts: &MountOptions,
    backend: &str,
) -> Result<Session<FuseAdapter>, MountError> {
    let config = fuse_config(opts, backend);
    if fusermount::needed() {
        let fd = fusermount::mount(mountpoint, &config.mount_options, opts.allow_other)?;
        let acl = config.acl;
        return Session::from_fd(FuseAdapter::new(core.clone()), fd, acl, config)
            .map_err(|e| mount_error(mountpoint, e));
    }
    Session::new(FuseAdapter::new(core.clone()), mountpoint, &config)
        .map_err(|e| mount_error(mountpoint, e))
}

/// Serves the mount in this process until it is unmounted.
fn serve(
    store: Arc<dyn Cloudstore>,
    config: &Config,
    opts: &MountOptions,
    mountpoint: &Path,
    notify: Option<File>,
) -> Result<(), MountError> {
    let backend = store.backend();
    // Bound before the mount: a port in use fails the mount, not later.
    let metrics = match opts.metrics_addr.map(crate::metrics::bind).transpose() {
        Ok(m) => m,
        Err(e) => return Err(report(notify, MountError::Mount(e.to_string()))),
    };
    let (store, timings) = match &metrics {
        Some(_) => {
            let (timed, timings) = crate::metrics::timed(store);
            (timed, Some(timings))
        }
        None => (store, None),
    };
    let snapshots = Arc::new(snapshot::Snapshots::new(store.clone(), config, opts));
    let core = new_core(store, config, opts);
    // Signals first: the FUSE threads spawned below inherit the blocked mask (see `signals`).
    let signals = match StopSignals::install() {
        Ok(s) => s,
        Err(e) => {
            return Err(report(
                notify,
                MountError::Mount(format!("cannot set up signal handling: {e}")),
            ))
        }
    };
    let session = match new_session(&core, mountpoint, opts, backend) {
        Ok(s) => s,
        Err(e) => return Err(report(notify, e)),
    };
    crate::fuse::wire_invalidation(&core, session.notifier());
    raise_read_ahead(mountpoint);
    let pid_file = PidFile::create(mountpoint);
    let stats_server = start_stats(&core, mountpoint, Some(snapshots.control()));
    let metrics_server = metrics.and_then(|m| {
        let held = snapshots.clone();
        crate::metrics::serve(m, core.clone(), timings, Arc::new(move || held.ages()))
            .inspect_err(|e| log::warn!("metrics: cannot start its thread: {e}"))
            .ok()
    });
    let dev = mountinfo::find_mount(mountpoint).map(|m| m.dev);
    let waiter = match signals.spawn_waiter(core.clone(), mountpoint, dev) {
        Ok(w) => w,
        Err(e) => {
            let _ = umount2(mountpoint, Unmount::Detach);
            return Err(report(
                notify,
                MountError::Mount(format!("cannot start the signal thread: {e}")),
            ));
        }
    };
    let daemon = notify.is_some();
    let shown = mountpoint.display();
    // In a thread of its own (which inherits the blocked signals), so that its end is joined
    // without fuser's second unmount (see `join_session`).
    let session = match session.spawn() {
        Ok(s) => s,
        Err(e) => {
            let _ = umount2(mountpoint, Unmount::Detach);
            waiter.stop();
            return Err(report(
                notify,
                MountError::Mount(format!("FUSE session at {shown}: {e}")),
            ));
        }
    };
    // Ready once the mount answers: this stat of its root goes through the kernel to the
    // session just started (and waits for the FUSE handshake).
    if let Err(e) = std::fs::metadata(mountpoint) {
        log::warn!("{shown}: the new mount does not answer a stat: {e}");
    }
    report_ready(notify);
    systemd::ready(&format!("serving the {backend} store at {shown}"));
    log::info!("{backend}: mounted at {shown}");
    if !daemon {
        eprintln!(
            "cloudstore-fs: serving the {backend} store at {shown}; stop with Ctrl-C or \
             `cloudstore-fs unmount {shown}`"
        );
    }
    let result = join_session(session);
    systemd::stopping(&format!(
        "{shown} unmounted: committing what is pending, then closing the {backend} store"
    ));
    // destroy() committed and saved the scratch files; anything a lost connection left behind
    // is committed here, and a failed save of the scratch files fails the exit status. The
    // caller closes the store; `unmount` waits for this process to exit.
    let late = core.finish_unmount();
    waiter.stop();
    drop(stats_server);
    drop(metrics_server);
    // Before the caller closes the store they read.
    snapshots.drop_all();
    drop(pid_file);
    log::info!("{backend}: unmounted {}", mountpoint.display());
    result
        .map_err(|e| MountError::Mount(format!("FUSE session at {}: {e}", mountpoint.display())))?;
    late.map_err(MountError::Commit)
}

/// Waits for a FUSE session to end (it ends when the kernel has unmounted the filesystem, or
/// on a lost connection). fuser would then unmount the mountpoint once more, which fails
/// ("Unmount failed: Invalid argument" in the log of every clean unmount) or, worse, unmounts a
/// newer mount made at the same path meanwhile. Its mount record is let go without that: it only
/// holds the dead connection's descriptor, which the process's exit (or the kernel) closes.
fn join_session(mut session: BackgroundSession) -> std::io::Result<()> {
    let thread = std::mem::replace(&mut session.guard, std::thread::spawn(|| Ok(())));
    std::mem::forget(session);
    thread
        .join()
        .map_err(|_| std::io::Error::other("the FUSE session thread panicked"))?
}

/// A mount served by threads of this process (for tests and programs that embed the
/// filesystem); unmounted when dropped.
pub struct BackgroundMount {
    session: Option<BackgroundSession>,
    core: Arc<ChunkFs>,
    mountpoint: PathBuf,
}

/// Mounts `store` at `opts.mountpoint` in this process (`opts.daemon` is ignored; no signal
/// handling is installed).
pub fn spawn(
    store: Arc<dyn Cloudstore>,
    config: &Config,
    opts: &MountOptions,
) -> Result<BackgroundMount, MountError> {
    let mountpoint = check_mountpoint(&opts.mountpoint, opts.nonempty)?;
    let backend = store.backend();
    let core = new_core(store, config, opts);
    let session = new_session(&core, &mountpoint, opts, backend)?;
    crate::fuse::wire_invalidation(&core, session.notifier());
    raise_read_ahead(&mountpoint);
    let session = session
        .spawn()
        .map_err(|e| MountError::Mount(format!("FUSE session at {}: {e}", mountpoint.display())))?;
    Ok(BackgroundMount {
        session: Some(session),
        core,
        mountpoint,
    })
}

impl BackgroundMount {
    /// The filesystem core being served.
    pub fn core(&self) -> &Arc<ChunkFs> {
        &self.core
    }

    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Commits, unmounts (lazily when busy) and waits for the session to end.
    pub fn unmount(mut self) -> Result<(), MountError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), MountError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let committed = self.core.commit_all();
        match umount2(&self.mountpoint, Unmount::Normal) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => detach(&self.mountpoint),
            // Already unmounted from outside.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => {
                return Err(MountError::Mount(format!(
                    "unmount {}: {e}",
                    self.mountpoint.display()
                )))
            }
        }
        join_session(session).map_err(|e| {
            MountError::Mount(format!(
                "FUSE session at {}: {e}",
                self.mountpoint.display()
            ))
        })?;
        committed.map_err(MountError::Commit)
    }
}

impl Drop for BackgroundMount {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            log::error!("{e}");
        }
    }
}
