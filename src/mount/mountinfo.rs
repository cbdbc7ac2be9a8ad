//! /proc/self/mountinfo: which mount sits at a path, its device and its filesystem type.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The filesystem type of our mounts in mountinfo ("fuse" + the `subtype` mount option).
pub(crate) const FSTYPE: &str = "fuse.cloudstore-fs";

/// A line of /proc/self/mountinfo.
#[derive(Debug, Clone)]
pub(crate) struct MountInfo {
    /// "major:minor" of the mount (names its bdi in /sys and our pid file).
    pub dev: String,
    pub fstype: String,
    pub source: String,
}

impl MountInfo {
    /// Whether this is a cloudstore-fs mount.
    pub fn is_ours(&self) -> bool {
        self.fstype == FSTYPE
    }
}

/// The newest mount at `path` (an absolute path with no symlinks), from /proc/self/mountinfo.
pub(crate) fn find_mount(path: &Path) -> Option<MountInfo> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    find_in(&text, path.as_os_str().as_bytes())
}

fn find_in(text: &str, want: &[u8]) -> Option<MountInfo> {
    // Later lines are newer mounts: a mount on top of another at the same point comes last.
    text.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let dash = fields.iter().position(|f| *f == "-")?;
        let point = unescape(fields.get(4)?);
        (point == want).then(|| MountInfo {
            dev: fields[2].to_string(),
            fstype: fields.get(dash + 1).unwrap_or(&"?").to_string(),
            source: fields.get(dash + 2).unwrap_or(&"?").to_string(),
        })
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> Vec<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes() {
        assert_eq!(unescape("/a\\040b"), b"/a b");
        assert_eq!(unescape("/plain"), b"/plain");
        assert_eq!(unescape("/end\\"), b"/end\\");
    }

    #[test]
    fn the_newest_mount_at_a_path_wins() {
        let text = "22 1 0:21 / /mnt rw - tmpfs tmpfs rw\n\
                    40 22 0:55 / /mnt rw,nosuid - fuse.cloudstore-fs cloudstore-fs:leveldb rw\n\
                    41 1 0:56 / /a\\040b rw - ext4 /dev/sda1 rw\n";
        let m = find_in(text, b"/mnt").unwrap();
        assert_eq!(
            (m.dev.as_str(), m.source.as_str()),
            ("0:55", "cloudstore-fs:leveldb")
        );
        assert!(m.is_ours());
        let m = find_in(text, b"/a b").unwrap();
        assert!(!m.is_ours());
        assert!(find_in(text, b"/none").is_none());
    }

    #[test]
    fn root_is_a_mount() {
        assert!(find_mount(Path::new("/")).is_some());
    }
}
