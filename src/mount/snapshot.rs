//! `cloudstore-fs snapshot MOUNTPOINT DIR`: the daemon of MOUNTPOINT takes a point-in-time
//! view of its store ([`Cloudstore::snapshot`]) and serves it, read-only, at DIR, while
//! MOUNTPOINT goes on changing; `cloudstore-fs unmount DIR` lets go of it.
//!
//! The same daemon serves the view: a LevelDB store is locked to one process, and a snapshot is
//! a handle of the open database (a Ceph pool snapshot could be read by any client, but one
//! daemon per mountpoint keeps one way of doing it). The request reaches the daemon on its
//! stats socket (owner-only, peer uid checked: see `stats`). The view's mount gets its own
//! stats socket, and a marker file `<dev>.snapshot` in the runtime directory, removed once the
//! view is let go of, which `unmount` waits for (it cannot wait for the daemon to exit: the
//! daemon goes on serving MOUNTPOINT).
//!
//! When MOUNTPOINT is unmounted, its snapshots are unmounted (lazily when busy) and let go of
//! before the store is closed.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::error::{MountError, MountResult};
use super::files::runtime_dir;
use super::mountinfo::find_mount;
use super::teardown::{daemon_running, detach, umount2};
use super::{check_mountpoint, control, join_session, new_core, new_session, MountOptions};
use crate::config::Config;
use crate::store::Cloudstore;
use crate::sys::mounts::Unmount;

/// How long `cloudstore-fs snapshot` waits for the daemon to take and mount the snapshot.
const TAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// A snapshot being served: where, and the thread that lets go of it when it is unmounted.
struct Served {
    dir: PathBuf,
    taken: Instant,
    watcher: JoinHandle<()>,
}

/// The snapshots a daemon serves.
pub(super) struct Snapshots {
    store: Arc<dyn Cloudstore>,
    config: Config,
    live: MountOptions,
    served: Arc<Mutex<Vec<Served>>>,
}

/// Where the marker of the snapshot mount with device `dev` lives.
fn marker_path(dev: &str) -> MountResult<PathBuf> {
    Ok(runtime_dir()?.join(format!("{}.snapshot", dev.replace(':', "_"))))
}

/// Writes the marker: this daemon's pid and the snapshot's mountpoint (owner-only, never
/// through a symlink).
fn write_marker(dev: &str, dir: &Path) -> MountResult<PathBuf> {
    let path = marker_path(dev)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| MountError::Snapshot(format!("{}: {e}", path.display())))?;
    f.write_all(format!("{}\n{}\n", std::process::id(), dir.display()).as_bytes())
        .map_err(|e| MountError::Snapshot(format!("{}: {e}", path.display())))?;
    Ok(path)
}

/// The daemon pid in the marker of the mount with device `dev` at `dir`, if it is that mount's.
fn read_marker(dev: &str, dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(marker_path(dev).ok()?).ok()?;
    let mut lines = text.lines();
    let pid = lines.next()?.parse().ok()?;
    (lines.next()? == dir.to_string_lossy()).then_some(pid)
}

/// Removes the marker of `dev` while it is still this daemon's for `dir` (device numbers are
/// reused by later mounts).
fn remove_marker(dev: &str, dir: &Path) {
    if read_marker(dev, dir) == Some(std::process::id()) {
        if let Ok(path) = marker_path(dev) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// For `unmount`: the snapshot mount with device `dev` at `dir`, if it is one, whose release
/// can be waited for with [`SnapshotMount::wait_released`] after the unmount.
pub(super) struct SnapshotMount {
    dev: String,
    dir: PathBuf,
    pid: u32,
}

impl SnapshotMount {
    /// The snapshot mounted at `dir` (device `dev`), if that mount is one.
    pub fn find(dev: &str, dir: &Path) -> Option<SnapshotMount> {
        read_marker(dev, dir).map(|pid| SnapshotMount {
            dev: dev.to_string(),
            dir: dir.to_path_buf(),
            pid,
        })
    }

    /// After the unmount: waits until the daemon has let go of the snapshot (its marker is
    /// gone), up to `timeout`.
    pub fn wait_released(&self, timeout: Duration) -> MountResult<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if read_marker(&self.dev, &self.dir) != Some(self.pid) {
                return Ok(());
            }
            if !daemon_running(self.pid) {
                // Its daemon was killed: nothing holds the snapshot any more.
                if let Ok(path) = marker_path(&self.dev) {
                    let _ = std::fs::remove_file(path);
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(MountError::Snapshot(format!(
                    "unmounted the snapshot at {}, but its daemon (pid {}) has not let go of \
                     it after {}s; see its log",
                    self.dir.display(),
                    self.pid,
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Snapshots {
    /// The snapshots of `store`, mounted like the live mount `live` (owner, modes), read-only.
    pub fn new(store: Arc<dyn Cloudstore>, config: &Config, live: &MountOptions) -> Self {
        Snapshots {
            store,
            config: config.clone(),
            live: live.clone(),
            served: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The control requests of the stats socket this answers.
    pub fn control(self: &Arc<Self>) -> control::Control {
        let me = self.clone();
        Arc::new(move |request: &str| match request.split_once(' ') {
            Some(("snapshot", dir)) => match me.take(Path::new(dir)) {
                Ok(text) => format!("ok: {text}\n"),
                Err(e) => format!("error: {e}\n"),
            },
            _ => format!("error: unknown request {request:?}\n"),
        })
    }

    /// Takes a snapshot and mounts it at `dir`.
    fn take(&self, dir: &Path) -> MountResult<String> {
        if !self.store.capabilities().snapshots {
            return Err(MountError::Snapshot(format!(
                "the {} backend has no point-in-time snapshots",
                self.store.backend()
            )));
        }
        let mountpoint = check_mountpoint(dir, false)?;
        let shown = mountpoint.display().to_string();
        let view = self
            .store
            .snapshot()
            .map_err(|e| MountError::Snapshot(format!("taking the snapshot: {e}")))?;
        let opts = MountOptions {
            mountpoint: mountpoint.clone(),
            read_only: true,
            allow_other: self.live.allow_other,
            uid: self.live.uid,
            gid: self.live.gid,
            file_mode: self.live.file_mode,
            ..MountOptions::default()
        };
        let backend = view.backend();
        let core = new_core(view.clone(), &self.config, &opts);
        // `mount` and `df` show it as "cloudstore-fs:leveldb-snapshot".
        let fs_name = format!("{backend}-snapshot");
        let session = match new_session(&core, &mountpoint, &opts, &fs_name) {
            Ok(s) => s,
            Err(e) => {
                let _ = view.close();
                return Err(e);
            }
        };
        crate::fuse::wire_invalidation(&core, session.notifier());
        super::raise_read_ahead(&mountpoint);
        let session = match session.spawn() {
            Ok(s) => s,
            Err(e) => {
                let _ = umount2(&mountpoint, Unmount::Detach);
                let _ = view.close();
                return Err(MountError::Snapshot(format!(
                    "FUSE session at {shown}: {e}"
                )));
            }
        };
        if let Err(e) = std::fs::metadata(&mountpoint) {
            log::warn!("{shown}: the snapshot's mount does not answer a stat: {e}");
        }
        let dev = find_mount(&mountpoint).map(|m| m.dev);
        if let Some(dev) = &dev {
            if let Err(e) = write_marker(dev, &mountpoint) {
                log::warn!("snapshot marker: {e}; `cloudstore-fs unmount {shown}` cannot wait");
            }
        }
        let stats_server = super::start_stats(&core, &mountpoint, None);
        let served = self.served.clone();
        let dir = mountpoint.clone();
        let watcher = std::thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || {
                if let Err(e) = join_session(session) {
                    log::warn!("snapshot at {}: FUSE session: {e}", dir.display());
                }
                drop(stats_server);
                if let Err(e) = view.close() {
                    log::error!("snapshot at {}: letting go of it: {e}", dir.display());
                }
                drop(core);
                served.lock().retain(|s| s.dir != dir);
                // Last: `unmount` returns once the marker is gone.
                if let Some(dev) = &dev {
                    remove_marker(dev, &dir);
                }
                log::info!("snapshot at {} unmounted and let go of", dir.display());
            })
            .map_err(|e| {
                MountError::Snapshot(format!("cannot start the snapshot's thread: {e}"))
            })?;
        self.served.lock().push(Served {
            dir: mountpoint,
            taken: Instant::now(),
            watcher,
        });
        log::info!("{backend}: serving a snapshot at {shown}");
        Ok(format!("a read-only snapshot is mounted at {shown}"))
    }

    /// The ages of the snapshots served now.
    pub fn ages(&self) -> Vec<Duration> {
        self.served
            .lock()
            .iter()
            .map(|s| s.taken.elapsed())
            .collect()
    }

    /// Unmounts every snapshot (lazily when busy) and waits until each is let go of: before
    /// the store they read is closed.
    pub fn drop_all(&self) {
        let all: Vec<Served> = std::mem::take(&mut *self.served.lock());
        for s in all {
            match umount2(&s.dir, Unmount::Normal) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => detach(&s.dir),
                Err(e) => log::warn!("unmounting the snapshot at {}: {e}", s.dir.display()),
            }
            let _ = s.watcher.join();
        }
    }
}

/// `cloudstore-fs snapshot MOUNTPOINT DIR`: asks the daemon of `mountpoint` to mount a
/// snapshot at `dir`; what it answered.
pub fn request(mountpoint: &Path, dir: &Path) -> MountResult<String> {
    let socket = super::control_socket(mountpoint)?;
    let dir = super::mountinfo::absolute(dir)?;
    let line = format!("snapshot {}", dir.display());
    if line.contains('\n') {
        return Err(MountError::Snapshot(format!(
            "{}: a path with a newline",
            dir.display()
        )));
    }
    let answer = control::request_with(&socket, &line, TAKE_TIMEOUT).map_err(|e| {
        MountError::Snapshot(format!(
            "cannot reach the daemon of {} at {}: {e}",
            mountpoint.display(),
            socket.display()
        ))
    })?;
    match answer.trim_end().strip_prefix("ok: ") {
        Some(text) => Ok(text.to_string()),
        None => Err(MountError::Snapshot(
            answer
                .trim_end()
                .strip_prefix("error: ")
                .unwrap_or(answer.trim_end())
                .to_string(),
        )),
    }
}
