//! What is mounted where (/proc/self/mountinfo), and unmounting (umount2).

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::MntFlags;
use procfs::process::{MountInfos, Process};

/// A mount, as /proc/self/mountinfo lists it.
#[derive(Debug, Clone)]
pub struct MountInfo {
    /// "major:minor" of the mount (names its bdi in /sys).
    pub dev: String,
    /// The filesystem type ("ext4", "fuse.cloudstore-fs").
    pub fstype: String,
    /// What is mounted ("/dev/sda1", "cloudstore-fs:leveldb").
    pub source: String,
}

/// The newest mount at `path` (an absolute path with no symlinks).
pub fn find_mount(path: &Path) -> Option<MountInfo> {
    let mounts = Process::myself().ok()?.mountinfo().ok()?;
    newest_at(mounts, path)
}

/// Later lines are newer mounts: a mount on top of another at the same point comes last.
fn newest_at(mounts: MountInfos, path: &Path) -> Option<MountInfo> {
    // mountinfo escapes space, tab, newline and backslash in paths as octal (`\040`).
    let mut want = Vec::new();
    for &b in path.as_os_str().as_bytes() {
        match b {
            b' ' | b'\t' | b'\n' | b'\\' => want.extend(format!("\\{b:03o}").bytes()),
            _ => want.push(b),
        }
    }
    mounts
        .0
        .into_iter()
        .rev()
        .find(|m| m.mount_point.as_os_str().as_bytes() == want)
        .map(|m| MountInfo {
            dev: m.majmin,
            fstype: m.fs_type,
            source: m.mount_source.unwrap_or_else(|| "?".into()),
        })
}

/// `path` made absolute without touching its last component (a dead mount fails every stat).
pub fn absolute(path: &Path) -> io::Result<PathBuf> {
    let abs = std::path::absolute(path)?;
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => Ok(parent
            .canonicalize()
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", parent.display())))?
            .join(name)),
        _ => Ok(abs),
    }
}

/// How to unmount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmount {
    /// Fails with EBUSY while files are open.
    Normal,
    /// Lazily (MNT_DETACH): gone from the namespace now, served until the last file is closed.
    Detach,
}

/// umount2(2) of `path`.
pub fn umount(path: &Path, how: Unmount) -> io::Result<()> {
    let flags = match how {
        Unmount::Normal => MntFlags::empty(),
        Unmount::Detach => MntFlags::MNT_DETACH,
    };
    nix::mount::umount2(path, flags).map_err(io::Error::from)
}

/// Parses the text of a mountinfo file (for tests).
#[cfg(test)]
fn parse(text: &str) -> MountInfos {
    use procfs::FromBufRead;
    MountInfos::from_buf_read(text.as_bytes()).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_mount_at_a_path_wins() {
        let text = "22 1 0:21 / /mnt rw - tmpfs tmpfs rw\n\
                    40 22 0:55 / /mnt rw,nosuid - fuse.cloudstore-fs cloudstore-fs:leveldb rw\n\
                    41 1 0:56 / /a\\040b rw - ext4 /dev/sda1 rw\n";
        let m = newest_at(parse(text), Path::new("/mnt")).unwrap();
        assert_eq!(
            (m.dev.as_str(), m.source.as_str(), m.fstype.as_str()),
            ("0:55", "cloudstore-fs:leveldb", "fuse.cloudstore-fs")
        );
        let m = newest_at(parse(text), Path::new("/a b")).unwrap();
        assert_eq!(m.fstype, "ext4");
        assert!(newest_at(parse(text), Path::new("/none")).is_none());
    }

    #[test]
    fn root_is_a_mount() {
        assert!(find_mount(Path::new("/")).is_some());
    }

    #[test]
    fn absolute_keeps_the_last_component() {
        let dir = tempfile::tempdir().unwrap();
        let p = absolute(&dir.path().join("missing")).unwrap();
        assert_eq!(p, dir.path().canonicalize().unwrap().join("missing"));
    }
}
