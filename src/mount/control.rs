//! The daemon's control socket (stats, snapshots): a Unix socket beside its pid file that
//! reads one request line per connection and answers it: the filesystem's [`StatsSnapshot`] as text for `stats` (or
//! no line), what the daemon's [`Control`] answers for the others (`snapshot DIR`), then
//! closes it. `cloudstore-fs stats MOUNTPOINT` and `cloudstore-fs snapshot` are its clients. Only the mounting user (and root) is answered: the socket is
//! created owner-only in an owner-only directory, and the peer's uid is checked as well.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::fs::ChunkFs;

/// How long the client waits for the daemon's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The serving end; stops and removes its socket when dropped.
pub struct StatsServer {
    path: PathBuf,
    /// The socket file's inode: device numbers (and so socket names) are reused by later
    /// mounts, whose socket must not be removed by this one's drop.
    ino: u64,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How often the accept loop looks at its stop flag.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Waits up to POLL_INTERVAL for a connection; true when one is waiting.
fn readable(listener: &UnixListener) -> bool {
    crate::sys::fd::wait_readable(listener.as_fd(), POLL_INTERVAL).unwrap_or(false)
}

/// What the socket answers besides the stats: given a request line (`snapshot DIR`), the
/// answer text.
pub type Control = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// How long the daemon waits for a request line (a client that sends none gets the stats).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The request line a client sent ("" when it sent none).
fn read_request(conn: &UnixStream) -> String {
    let _ = conn.set_read_timeout(Some(REQUEST_TIMEOUT));
    let mut line = String::new();
    let _ = io::BufRead::read_line(&mut io::BufReader::new(conn.take(4096)), &mut line);
    line.trim().to_string()
}

/// Answers one request of the mounting user or root (nobody else gets an answer): the stats
/// text, or what `control` answers to another request.
fn answer(core: &ChunkFs, mut conn: UnixStream, owner: u32, control: Option<&Control>) {
    match crate::sys::fd::peer_uid(&conn) {
        Ok(uid) if uid == owner || uid == 0 => {
            let _ = conn.set_nonblocking(false);
            let request = read_request(&conn);
            let text = match (request.as_str(), control) {
                ("" | "stats", _) => core.stats().to_string(),
                (_, Some(control)) => control(&request),
                (other, None) => format!("error: this mount does not answer {other:?}\n"),
            };
            let _ = conn.set_write_timeout(Some(ANSWER_TIMEOUT));
            let _ = conn.write_all(text.as_bytes());
        }
        Ok(uid) => log::warn!("stats: refused a request from uid {uid}"),
        Err(e) => log::warn!("stats: cannot tell who asked: {e}"),
    }
}

/// Starts answering stats requests for `core` at `path` (a stale socket there, left by a daemon
/// that died, is replaced; any other file is not).
/// Requests other than the stats go to `control`.
pub fn serve_with(
    core: Arc<ChunkFs>,
    path: &Path,
    control: Option<Control>,
) -> io::Result<StatsServer> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let ino = std::fs::symlink_metadata(path)?.ino();
    // The loop polls its stop flag: a wake-up connection to `path` could reach a later
    // daemon's socket of the same name instead.
    listener.set_nonblocking(true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let owner = crate::sys::process::uid();
    let thread = std::thread::Builder::new()
        .name("stats".into())
        .spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                if !readable(&listener) {
                    continue;
                }
                if let Ok((conn, _)) = listener.accept() {
                    answer(&core, conn, owner, control.as_ref());
                }
            }
        })?;
    Ok(StatsServer {
        path: path.to_path_buf(),
        ino,
        stop,
        thread: Some(thread),
    })
}

impl Drop for StatsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.ino);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Asks the daemon whose socket is `path` for its stats text.
pub fn request(path: &Path) -> io::Result<String> {
    request_with(path, "stats", ANSWER_TIMEOUT)
}

/// Sends the request line `line` to the daemon whose socket is `path`; its answer.
pub fn request_with(path: &Path, line: &str, timeout: Duration) -> io::Result<String> {
    let mut stream = UnixStream::connect(path)?;
    stream.write_all(format!("{line}\n").as_bytes())?;
    stream.shutdown(std::net::Shutdown::Write)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::fs::FsConfig;
    use crate::store::memory::MemoryStore;
    use crate::store::Cloudstore;

    #[test]
    fn a_request_gets_the_stats_and_the_socket_goes_with_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats.sock");
        let store: Arc<dyn Cloudstore> = Arc::new(MemoryStore::new(1 << 20));
        let cfg = FsConfig::new(&Config::default(), &*store, false);
        let core = Arc::new(ChunkFs::new(store, cfg));
        core.record_error(
            "flush",
            &crate::fs::FsError::new(libc::EIO, "commit 00ab: lost"),
        );
        // A stale socket of a dead daemon is replaced.
        drop(UnixListener::bind(&path).unwrap());
        let server = serve_with(core, &path, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = request(&path).unwrap();
        assert!(text.contains("backend: memory"), "{text}");
        assert!(text.contains("errors_EIO: 1"), "{text}");
        assert!(
            text.contains("last_error: EIO flush: commit 00ab: lost"),
            "{text}"
        );
        drop(server);
        assert!(!path.exists());
        // A later daemon's socket of the same name is not removed by an earlier one's drop.
        let store: Arc<dyn Cloudstore> = Arc::new(MemoryStore::new(1 << 20));
        let cfg = FsConfig::new(&Config::default(), &*store, false);
        let core = Arc::new(ChunkFs::new(store, cfg));
        let first = serve_with(core.clone(), &path, None).unwrap();
        let second = serve_with(core, &path, None).unwrap();
        drop(first);
        assert!(request(&path).unwrap().contains("backend: memory"));
        drop(second);
        assert!(!path.exists());
        // Any other file at the path is left alone.
        std::fs::write(&path, "keep").unwrap();
        let store: Arc<dyn Cloudstore> = Arc::new(MemoryStore::new(1 << 20));
        let cfg = FsConfig::new(&Config::default(), &*store, false);
        assert!(serve_with(Arc::new(ChunkFs::new(store, cfg)), &path, None).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep");
    }
}
