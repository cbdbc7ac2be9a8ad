//! Mounting: checks the mountpoint, starts the FUSE session over the filesystem core, raises the
//! kernel's read-ahead, and shuts down cleanly on SIGINT/SIGTERM (commit everything pending, then
//! unmount; a busy mount is detached lazily and served until its last user leaves).
//!
//! `--daemon` re-executes the same command line in a new session (setsid) instead of forking:
//! forking a process that may already run threads (librados starts several when the Ceph store
//! is opened) is unsafe, and a re-executed child opens its own store. The parent therefore closes
//! its store first (which releases the LevelDB lock), waits until the child reports the mount
//! ready (or failed) through an inherited pipe, and returns. The child logs to
//! `$CLOUDSTORE_FS_LOG`, by default `/tmp/cloudstore-fs-<uid>-<mountpoint>.log`.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, MountOption, Session, SessionACL};

use crate::config::Config;
use crate::fs::{ChunkFs, FsConfig};
use crate::fuse::FuseAdapter;
use crate::store::Cloudstore;

/// How to mount.
#[derive(Debug, Clone, Default)]
pub struct MountOptions {
    pub mountpoint: PathBuf,
    pub read_only: bool,
    pub allow_other: bool,
    pub daemon: bool,
}

/// The environment variable through which a `--daemon` child learns its readiness pipe.
const NOTIFY_ENV: &str = "CLOUDSTORE_FS_NOTIFY_FD";
/// The environment variable naming the daemon's log file.
pub const LOG_ENV: &str = "CLOUDSTORE_FS_LOG";
/// FUSE worker threads: requests wait on the store, so more than the cores.
const FUSE_THREADS: usize = 8;
/// What read_ahead_kb is raised to (1 MiB reads instead of 128 KiB).
const READ_AHEAD_KB: u32 = 1024;
/// How long `--daemon` waits for the child's mount.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `unmount` waits for the daemon to finish its last commits.
const EXIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Mounts `store` at `opts.mountpoint` and serves it until unmounted (or, with `daemon`, until
/// the mount is ready: see the module doc; the store passed in is closed in that case).
/// Returns a message that says what failed.
pub fn run(store: Arc<dyn Cloudstore>, config: &Config, opts: &MountOptions) -> Result<(), String> {
    let notify = notify_pipe_from_env();
    let mountpoint = match check_mountpoint(&opts.mountpoint) {
        Ok(m) => m,
        Err(e) => return Err(report(notify, e)),
    };
    if opts.daemon && notify.is_none() {
        return daemonize(store, &mountpoint);
    }
    serve(store, config, opts, &mountpoint, notify)
}

/// Tells a waiting `--daemon` parent about a failure, and gives the message back.
fn report(notify: Option<File>, msg: String) -> String {
    if let Some(mut f) = notify {
        let _ = writeln!(f, "ERR {msg}");
    }
    msg
}

fn notify_pipe_from_env() -> Option<File> {
    let fd: i32 = std::env::var(NOTIFY_ENV).ok()?.parse().ok()?;
    // SAFETY: the fd was created for us by the parent (see `daemonize`); F_GETFD checks it is
    // open, and nothing else in this process owns it.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Some(unsafe { File::from_raw_fd(fd) })
}

/// The mountpoint as an absolute path, or a clear reason why it cannot be mounted on.
pub fn check_mountpoint(path: &Path) -> Result<PathBuf, String> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(format!(
                "{shown}: transport endpoint is not connected: a FUSE daemon died while \
                 mounted there; clear it with `cloudstore-fs unmount {shown}`"
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "mountpoint {shown} does not exist (create it with `mkdir -p {shown}`)"
            ))
        }
        Err(e) => return Err(format!("mountpoint {shown}: {e}")),
        Ok(m) if !m.is_dir() => return Err(format!("mountpoint {shown} is not a directory")),
        Ok(_) => {}
    }
    let canonical = path
        .canonicalize()
        .map_err(|e| format!("mountpoint {shown}: {e}"))?;
    if let Some(m) = find_mount(&canonical) {
        return Err(format!(
            "{shown} is already a mount point ({} from {}); unmount it first \
             (`cloudstore-fs unmount {shown}`)",
            m.fstype, m.source
        ));
    }
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse is missing: load the fuse module (modprobe fuse)".into());
    }
    Ok(canonical)
}

/// A line of /proc/self/mountinfo.
struct MountInfo {
    dev: String,
    fstype: String,
    source: String,
}

/// The newest mount at `path` (an absolute, canonical path), from /proc/self/mountinfo.
fn find_mount(path: &Path) -> Option<MountInfo> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.as_os_str().as_bytes();
    text.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let dash = fields.iter().position(|f| *f == "-")?;
        let point = unescape_mountinfo(fields.get(4)?);
        (point == want).then(|| MountInfo {
            dev: fields[2].to_string(),
            fstype: fields.get(dash + 1).unwrap_or(&"?").to_string(),
            source: fields.get(dash + 2).unwrap_or(&"?").to_string(),
        })
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The fuser settings for a mount.
fn fuse_config(opts: &MountOptions, backend: &str) -> fuser::Config {
    let mut cfg = fuser::Config::default();
    cfg.mount_options = vec![
        MountOption::FSName(format!("cloudstore-fs:{backend}")),
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

fn new_core(store: Arc<dyn Cloudstore>, config: &Config, opts: &MountOptions) -> Arc<ChunkFs> {
    let fs_config = FsConfig::new(config, &*store, opts.read_only);
    Arc::new(ChunkFs::new(store, fs_config))
}

fn mount_error(mountpoint: &Path, e: io::Error) -> String {
    let shown = mountpoint.display();
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => format!(
            "cannot mount at {shown}: permission denied (mounting needs root, or fusermount3 \
             from the fuse3 package): {e}"
        ),
        Some(libc::ENOENT) => format!("cannot mount at {shown}: {e} (is /dev/fuse present?)"),
        _ => format!("cannot mount at {shown}: {e}"),
    }
}

/// Raises the kernel read-ahead of the new mount to 1 MiB (the default 128 KiB caps every read).
fn raise_read_ahead(mountpoint: &Path) {
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

/// Chunk values of MiBs come and go (write buffers, fetched values, the store's copies): they are
/// given their own mappings, returned to the system when freed. glibc otherwise raises its mmap
/// threshold after the first such free (up to 32 MiB) and serves the next ones from its heap,
/// which keeps the memory after they are freed: the daemon's RSS then grows past its budget.
fn pin_mmap_threshold() {
    // SAFETY: mallopt only changes the allocator's tuning; 1 MiB is a valid threshold.
    if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20) } != 1 {
        log::info!("mallopt(M_MMAP_THRESHOLD) failed: large buffers may stay in the heap");
    }
}

/// Serves the mount in this process until it is unmounted.
fn serve(
    store: Arc<dyn Cloudstore>,
    config: &Config,
    opts: &MountOptions,
    mountpoint: &Path,
    notify: Option<File>,
) -> Result<(), String> {
    let backend = store.backend();
    pin_mmap_threshold();
    let core = new_core(store, config, opts);
    // Signals first: the FUSE threads spawned below inherit the blocked mask, and the handler
    // covers threads that existed before (librados), so no signal kills us mid-commit.
    let signals = match SignalPipe::install() {
        Ok(s) => s,
        Err(e) => {
            return Err(report(
                notify,
                format!("cannot set up signal handling: {e}"),
            ))
        }
    };
    let mut session = match Session::new(
        FuseAdapter::new(core.clone()),
        mountpoint,
        &fuse_config(opts, backend),
    ) {
        Ok(s) => s,
        Err(e) => return Err(report(notify, mount_error(mountpoint, e))),
    };
    crate::fuse::wire_invalidation(&core, session.notifier());
    raise_read_ahead(mountpoint);
    let pid_file = PidFile::create(mountpoint);
    let waiter = signals.spawn_waiter(core.clone(), session.unmount_callable(), mountpoint);
    let daemon = notify.is_some();
    if let Some(mut f) = notify {
        let _ = writeln!(f, "READY {}", std::process::id());
    }
    log::info!("{backend}: mounted at {}", mountpoint.display());
    if !daemon {
        eprintln!(
            "cloudstore-fs: serving the {backend} store at {shown}; stop with Ctrl-C or \
             `cloudstore-fs unmount {shown}`",
            shown = mountpoint.display()
        );
    }
    let result = session.run();
    // destroy() committed and dropped the scratch files; anything a lost connection left behind
    // is committed here.
    let late = core.commit_all();
    signals.stop(waiter);
    drop(pid_file);
    log::info!("{backend}: unmounted {}", mountpoint.display());
    result.map_err(|e| format!("FUSE session at {}: {e}", mountpoint.display()))?;
    late.map_err(|e| format!("commit at unmount: {e}"))
}

/// The write end of the signal pipe, for the handler (which may only use async-signal-safe calls).
static SIGNAL_FD: AtomicI32 = AtomicI32::new(-1);
/// Signals that stop the mount.
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
/// Written to the pipe to end the waiter thread.
const WAKE_EXIT: u8 = 0;

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = SIGNAL_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is a local byte.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset initializes the set; sigaddset with valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// SIGINT/SIGTERM/SIGHUP turned into bytes on a pipe, read by one waiter thread.
struct SignalPipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl SignalPipe {
    fn install() -> io::Result<SignalPipe> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two fds on success.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both fds were just created and are owned here only.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        SIGNAL_FD.store(write.as_raw_fd(), Ordering::SeqCst);
        for sig in STOP_SIGNALS {
            // SAFETY: a zeroed sigaction with a valid handler and flags.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        let set = sigset(&STOP_SIGNALS);
        // SAFETY: blocks the stop signals in this thread (inherited by the threads it spawns).
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        Ok(SignalPipe { read, write })
    }

    /// The thread that turns a signal into commit + unmount.
    fn spawn_waiter(
        &self,
        core: Arc<ChunkFs>,
        mut unmounter: fuser::SessionUnmounter,
        mountpoint: &Path,
    ) -> std::thread::JoinHandle<()> {
        let mut read = File::from(self.read.try_clone().expect("dup of the signal pipe"));
        let mountpoint = mountpoint.to_path_buf();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let set = sigset(&STOP_SIGNALS);
                // SAFETY: only this thread takes the stop signals (through the handler).
                unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
                let mut stopping = false;
                let mut b = [0u8; 1];
                while let Ok(1) = read.read(&mut b) {
                    if b[0] == WAKE_EXIT {
                        return;
                    }
                    if stopping {
                        log::warn!("signal {}: already unmounting", b[0]);
                        continue;
                    }
                    stopping = true;
                    log::warn!(
                        "signal {}: committing pending writes, then unmounting {}",
                        b[0],
                        mountpoint.display()
                    );
                    if let Err(e) = core.commit_all() {
                        log::error!("commit before unmount: {e}");
                    }
                    match unmounter.unmount() {
                        Ok(()) => {}
                        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                            detach(&mountpoint);
                        }
                        Err(e) => {
                            log::error!("unmount {}: {e}; detaching", mountpoint.display());
                            detach(&mountpoint);
                        }
                    }
                }
            })
            .expect("spawn the signal thread")
    }

    /// Ends the waiter and restores the default handling.
    fn stop(self, waiter: std::thread::JoinHandle<()>) {
        // SAFETY: writes one byte from a local buffer to our own pipe.
        unsafe { libc::write(self.write.as_raw_fd(), (&WAKE_EXIT as *const u8).cast(), 1) };
        let _ = waiter.join();
        SIGNAL_FD.store(-1, Ordering::SeqCst);
    }
}

/// Lazy unmount of a busy mount: it disappears from the namespace now and is served until the
/// last open file is closed.
fn detach(mountpoint: &Path) {
    match umount2(mountpoint, libc::MNT_DETACH) {
        Ok(()) => log::warn!(
            "{} is busy: detached lazily; open files are served until they are closed",
            mountpoint.display()
        ),
        Err(e) => log::error!("lazy unmount of {}: {e}", mountpoint.display()),
    }
}

fn umount2(path: &Path, flags: libc::c_int) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The default log file of a daemon mounted at `mountpoint`.
fn default_log_path(mountpoint: &Path) -> PathBuf {
    let flat: String = mountpoint
        .to_string_lossy()
        .trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("cloudstore-fs-{uid}-{flat}.log"))
}

/// `--daemon`: re-executes this command line detached, waits for its mount, returns.
fn daemonize(store: Arc<dyn Cloudstore>, mountpoint: &Path) -> Result<(), String> {
    let backend = store.backend();
    // The child opens the store itself: let go of it (LevelDB allows one opener).
    store
        .close()
        .map_err(|e| format!("closing the store before starting the daemon: {e}"))?;
    drop(store);
    let log_path = std::env::var_os(LOG_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| default_log_path(mountpoint));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("daemon log {}: {e}", log_path.display()))?;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", io::Error::last_os_error()));
    }
    // SAFETY: both fds were just created and are owned here only.
    let (read_end, write_end) =
        unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .env(NOTIFY_ENV, write_end.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    let notify_fd = write_end.as_raw_fd();
    // SAFETY: between fork and exec only async-signal-safe calls: setsid, fcntl.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            libc::fcntl(notify_fd, libc::F_SETFD, 0);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the daemon: {e}"))?;
    drop(write_end);
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
        Some(line) if line.starts_with("ERR ") => Err(line[4..].to_string()),
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
            Err(format!(
                "the daemon {status} before the mount was ready; its log {}:\n{}",
                log_path.display(),
                log_tail(&log_path)
            ))
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
        let mut pfd = libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return None;
        }
        if n == 0 {
            continue;
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

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// Unmounts a cloudstore-fs mount and waits until its daemon has finished (its last commits);
/// a busy mount is detached lazily instead, with a message.
pub fn unmount(mountpoint: &Path) -> Result<(), String> {
    let shown = mountpoint.display();
    let path = if mountpoint.is_absolute() {
        mountpoint.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| e.to_string())?
            .join(mountpoint)
    };
    let pid = daemon_pid(&path);
    match umount2(&path, 0) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            umount2(&path, libc::MNT_DETACH).map_err(|e| format!("{shown}: lazy unmount: {e}"))?;
            eprintln!(
                "cloudstore-fs: {shown} is busy: detached lazily; the daemon keeps serving the \
                 files still open and stops when the last one is closed"
            );
            return Ok(());
        }
        Err(e) => {
            return Err(match e.raw_os_error() {
                Some(libc::EINVAL) => format!("{shown} is not a mount point"),
                Some(libc::ENOENT) => format!("{shown} does not exist"),
                Some(libc::EPERM) => format!("unmounting {shown} needs root"),
                _ => format!("unmount {shown}: {e}"),
            })
        }
    }
    if let Some(pid) = pid {
        if !wait_for_exit(pid, EXIT_TIMEOUT) {
            eprintln!(
                "cloudstore-fs: unmounted {shown}, but daemon pid {pid} is still finishing after \
                 {}s",
                EXIT_TIMEOUT.as_secs()
            );
        }
    }
    Ok(())
}

/// The pid of the daemon serving the mount at `mountpoint`, from its pid file.
pub fn daemon_pid(mountpoint: &Path) -> Option<u32> {
    let path = mountpoint.canonicalize().ok()?;
    let m = find_mount(&path)?;
    let text = std::fs::read_to_string(pid_file_path(&m.dev)).ok()?;
    let mut lines = text.lines();
    let pid: u32 = lines.next()?.parse().ok()?;
    // A pid file left by a daemon that died belongs to an older mount with the same device.
    (lines.next()? == path.to_string_lossy()).then_some(pid)
}

/// Where the daemon of the mount with device `dev` ("major:minor") writes its pid.
fn pid_file_path(dev: &str) -> PathBuf {
    let name = format!("{}.pid", dev.replace(':', "_"));
    let run = Path::new("/run/cloudstore-fs");
    if std::fs::create_dir_all(run).is_ok() {
        return run.join(name);
    }
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let dir = std::env::temp_dir().join(format!("cloudstore-fs-{uid}"));
    let _ = std::fs::create_dir_all(&dir);
    dir.join(name)
}

/// The serving daemon's pid file (so that `unmount` can wait for the last commits); removed on
/// drop.
struct PidFile(Option<PathBuf>);

impl PidFile {
    fn create(mountpoint: &Path) -> PidFile {
        let Some(m) = find_mount(mountpoint) else {
            return PidFile(None);
        };
        let path = pid_file_path(&m.dev);
        let text = format!("{}\n{}\n", std::process::id(), mountpoint.display());
        match std::fs::write(&path, text) {
            Ok(()) => PidFile(Some(path)),
            Err(e) => {
                log::info!("pid file {}: {e}", path.display());
                PidFile(None)
            }
        }
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let Some(path) = &self.0 else {
            return;
        };
        // Device numbers are reused: a newer mount with the same one may have written its own
        // pid file meanwhile, which `unmount` of that mount needs.
        let ours = std::fs::read_to_string(path)
            .is_ok_and(|text| text.lines().next() == Some(std::process::id().to_string().as_str()));
        if ours {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Waits until process `pid` is gone (or a zombie); false on timeout.
pub fn wait_for_exit(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        // SAFETY: kill with signal 0 only checks for existence.
        let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()
                    .map(|r| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(false);
        if !alive || zombie {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
) -> Result<BackgroundMount, String> {
    let mountpoint = check_mountpoint(&opts.mountpoint)?;
    let backend = store.backend();
    let core = new_core(store, config, opts);
    let session = Session::new(
        FuseAdapter::new(core.clone()),
        &mountpoint,
        &fuse_config(opts, backend),
    )
    .map_err(|e| mount_error(&mountpoint, e))?;
    crate::fuse::wire_invalidation(&core, session.notifier());
    raise_read_ahead(&mountpoint);
    let session = session
        .spawn()
        .map_err(|e| format!("FUSE session at {}: {e}", mountpoint.display()))?;
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
    pub fn unmount(mut self) -> Result<(), String> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), String> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let committed = self.core.commit_all();
        match umount2(&self.mountpoint, 0) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => detach(&self.mountpoint),
            // Already unmounted from outside.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(format!("unmount {}: {e}", self.mountpoint.display())),
        }
        session
            .join()
            .map_err(|e| format!("FUSE session at {}: {e}", self.mountpoint.display()))?;
        committed.map_err(|e| e.to_string())
    }
}

impl Drop for BackgroundMount {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            log::error!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), b"/a b");
        assert_eq!(unescape_mountinfo("/plain"), b"/plain");
        assert_eq!(unescape_mountinfo("/end\\"), b"/end\\");
    }

    #[test]
    fn root_is_a_mount_and_missing_dirs_are_reported() {
        assert!(find_mount(Path::new("/")).is_some());
        let e = check_mountpoint(Path::new("/nonexistent/cloudstore-fs-test")).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        let e = check_mountpoint(Path::new("/")).unwrap_err();
        assert!(e.contains("already a mount point"), "{e}");
    }

    #[test]
    fn log_names_are_flat() {
        let p = default_log_path(Path::new("/tmp/a b/mnt"));
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with("tmp_a_b_mnt.log"), "{name}");
    }
}
