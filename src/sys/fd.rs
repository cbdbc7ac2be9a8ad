//! Descriptors, pipes, sockets and file systems: the calls the daemon makes on them.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag, AT_FDCWD};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{faccessat, AccessFlags};

/// Waits up to `timeout` until `fd` is readable; false on timeout. EINTR counts as a timeout.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    match poll(&mut fds, timeout) {
        Ok(n) => Ok(n > 0),
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A pipe, both ends close-on-exec: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

/// The uid of the process at the other end of a Unix socket.
pub fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    Ok(getsockopt(stream, PeerCredentials)?.uid())
}

/// Whether this process, as its effective user, may write in `dir`: `Err` with the reason
/// (EROFS, EACCES, ...) when not.
pub fn check_writable(dir: &Path) -> io::Result<()> {
    Ok(faccessat(
        AT_FDCWD,
        dir,
        AccessFlags::W_OK,
        nix::fcntl::AtFlags::AT_EACCESS,
    )?)
}

/// Space of the file system holding `path`, in bytes: (total, free, available to users).
pub fn space(path: &Path) -> io::Result<(u64, u64, u64)> {
    let st = nix::sys::statvfs::statvfs(path)?;
    let frsize = st.fragment_size() as u64;
    Ok((
        st.blocks() as u64 * frsize,
        st.blocks_free() as u64 * frsize,
        st.blocks_available() as u64 * frsize,
    ))
}

/// Device and inode of what `fd` refers to.
pub fn identity(fd: impl AsFd) -> io::Result<(u64, u64)> {
    let st = nix::sys::stat::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// Takes this process's standard input (a pipe a parent handed over) as a descriptor of its
/// own, and puts /dev/null in its place.
pub fn take_stdin() -> io::Result<OwnedFd> {
    let taken = std::io::stdin().as_fd().try_clone_to_owned()?;
    fcntl(&taken, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    let null = std::fs::File::open("/dev/null")?;
    nix::unistd::dup2_stdin(&null)?;
    Ok(taken)
}
