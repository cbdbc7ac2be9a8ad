//! Descriptors, pipes, sockets and file systems: the calls the daemon makes on them.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
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

/// Takes ownership of descriptor `fd`, inherited from the parent process, if it is open; it is
/// made close-on-exec.
pub fn adopt_inherited(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_GETFD on a number touches no memory; it only asks whether it is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the parent handed this open descriptor to us (see `mount::daemon`), and nothing
    // else in this process owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).ok()?;
    Some(owned)
}

/// Takes ownership of a descriptor the kernel just installed in this process (SCM_RIGHTS).
pub fn adopt_received(fd: RawFd) -> OwnedFd {
    // SAFETY: recvmsg installed it for us and returned its number; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Makes `cmd`'s child keep `keep` open across exec (as the same number) and, with
/// `new_session`, start a session of its own (setsid: no controlling terminal, no SIGHUP or
/// SIGINT from ours).
pub fn inherit_fd(cmd: &mut Command, keep: BorrowedFd<'_>, new_session: bool) {
    let fd = keep.as_raw_fd();
    // SAFETY: between fork and exec only async-signal-safe calls: setsid, fcntl.
    unsafe {
        cmd.pre_exec(move || {
            if new_session {
                nix::unistd::setsid()?;
            }
            let kept = BorrowedFd::borrow_raw(fd);
            fcntl(kept, FcntlArg::F_SETFD(FdFlag::empty()))?;
            Ok(())
        });
    }
}

/// Chunk values of MiBs come and go: glibc is told to give each allocation of 1 MiB or more its
/// own mapping, returned to the system when freed (its default raises the threshold after the
/// first such free and keeps the memory in its heap). False when glibc refused.
pub fn pin_mmap_threshold() -> bool {
    // SAFETY: mallopt only changes the allocator's tuning; 1 MiB is a valid threshold. No safe
    // wrapper for it exists in nix or rustix.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20) == 1 }
}
