//! The daemon's stats socket: a Unix socket beside its pid file that answers each connection
//! with the filesystem's [`StatsSnapshot`] as text and closes it. `cloudstore-fs stats
//! MOUNTPOINT` is its client. Only the mounting user (and root) is answered: the socket is
//! created owner-only in an owner-only directory, and the peer's uid is checked as well.

use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
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
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The uid of the process at the other end of `stream`.
fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED fills a ucred of the given length on a connected Unix socket.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// Starts answering stats requests for `core` at `path` (a stale socket there, left by a daemon
/// that died, is replaced; any other file is not).
pub fn serve(core: Arc<ChunkFs>, path: &Path) -> io::Result<StatsServer> {
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
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    // SAFETY: getuid cannot fail.
    let owner = unsafe { libc::getuid() };
    let thread = std::thread::Builder::new()
        .name("stats".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                match peer_uid(&conn) {
                    Ok(uid) if uid == owner || uid == 0 => {
                        let _ = conn.set_write_timeout(Some(ANSWER_TIMEOUT));
                        let _ = conn.write_all(core.stats().to_string().as_bytes());
                    }
                    Ok(uid) => log::warn!("stats: refused a request from uid {uid}"),
                    Err(e) => log::warn!("stats: cannot tell who asked: {e}"),
                }
            }
        })?;
    Ok(StatsServer {
        path: path.to_path_buf(),
        stop,
        thread: Some(thread),
    })
}

impl Drop for StatsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Asks the daemon whose socket is `path` for its stats text.
pub fn request(path: &Path) -> io::Result<String> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
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
        let server = serve(core, &path).unwrap();
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
        // Any other file at the path is left alone.
        std::fs::write(&path, "keep").unwrap();
        let store: Arc<dyn Cloudstore> = Arc::new(MemoryStore::new(1 << 20));
        let cfg = FsConfig::new(&Config::default(), &*store, false);
        assert!(serve(Arc::new(ChunkFs::new(store, cfg)), &path).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep");
    }
}
