//! Unprivileged mounts through fusermount3 (Debian's fuse3, setuid root). fuser 0.18 opens
//! /dev/fuse itself first and returns that EACCES instead of falling back to fusermount3 (see
//! FACTS.md), so a mount by a user other than root asks fusermount3 here: it mounts, and hands
//! the /dev/fuse descriptor back over a socket (SCM_RIGHTS on `$_FUSE_COMMFD`), from which
//! `fuser::Session::from_fd` serves. Unmounting is `fusermount3 -u` for such a user.

use std::io::{self, IoSliceMut};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};

use super::error::MountError;
use fuser::MountOption;

/// The setuid helper, found on PATH (or `$FUSERMOUNT_PATH`, as fuser allows).
fn program() -> std::ffi::OsString {
    std::env::var_os("FUSERMOUNT_PATH").unwrap_or_else(|| "fusermount3".into())
}

/// Whether mounting must go through fusermount3: not root.
pub(super) fn needed() -> bool {
    crate::sys::process::euid() != 0
}

/// fusermount3's spelling of a mount option.
fn option_text(o: &MountOption) -> Option<String> {
    Some(match o {
        MountOption::FSName(name) => format!("fsname={name}"),
        MountOption::CUSTOM(text) => text.clone(),
        MountOption::DefaultPermissions => "default_permissions".into(),
        MountOption::NoAtime => "noatime".into(),
        MountOption::NoDev => "nodev".into(),
        MountOption::NoSuid => "nosuid".into(),
        MountOption::RO => "ro".into(),
        _ => return None,
    })
}

/// Mounts at `mountpoint` through fusermount3; the /dev/fuse descriptor of the new mount.
pub(super) fn mount(
    mountpoint: &Path,
    options: &[MountOption],
    allow_other: bool,
) -> Result<OwnedFd, MountError> {
    let shown = mountpoint.display();
    let mut opts: Vec<String> = options.iter().filter_map(option_text).collect();
    if allow_other {
        opts.push("allow_other".into());
    }
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| MountError::Mount(format!("socketpair: {e}")))?;
    // The socket is fusermount3's descriptor 0 (the protocol names it by number).
    let mut cmd = Command::new(program());
    cmd.arg("-o")
        .arg(opts.join(","))
        .arg("--")
        .arg(mountpoint)
        .env("_FUSE_COMMFD", "0")
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = cmd.spawn().map_err(|e| {
        MountError::Mount(format!(
            "cannot mount at {shown} as a user other than root: cannot run fusermount3 ({e}); \
             install the fuse3 package"
        ))
    })?;
    drop(cmd);
    let received = receive_fd(&ours);
    let out = child
        .wait_with_output()
        .map_err(|e| MountError::Mount(format!("fusermount3: {e}")))?;
    match received {
        Ok(fd) if out.status.success() => Ok(fd),
        _ => {
            let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
            let hint = if said.contains("allow_other") {
                "; --allow-other for a user other than root needs `user_allow_other` in \
                 /etc/fuse.conf (or mount without it)"
            } else {
                ""
            };
            Err(MountError::Mount(format!(
                "cannot mount at {shown}: fusermount3 failed ({}): {said}{hint}",
                out.status
            )))
        }
    }
}

/// The descriptor fusermount3 sends (one SCM_RIGHTS message).
fn receive_fd(socket: &UnixStream) -> io::Result<OwnedFd> {
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    recvmsg(socket, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err(io::Error::other("fusermount3 sent no descriptor"))
}

/// `fusermount3 -u [-z] MOUNTPOINT`: how a user other than root unmounts.
pub(super) fn unmount(mountpoint: &Path, lazy: bool) -> io::Result<()> {
    let mut cmd = Command::new(program());
    cmd.arg("-u");
    if lazy {
        cmd.arg("-z");
    }
    let out = cmd.arg("--").arg(mountpoint).output()?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    // fusermount3 says "Device or resource busy" for a busy mount.
    if said.contains("busy") {
        return Err(io::Error::from_raw_os_error(libc::EBUSY));
    }
    Err(io::Error::other(format!("fusermount3 -u: {}", said.trim())))
}
