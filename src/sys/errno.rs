//! errno values by name.

use nix::errno::Errno;

/// The errno's symbolic name ("EIO"), or "errno N" for a number the system does not know.
pub fn errno_name(errno: i32) -> String {
    match Errno::from_raw(errno) {
        Errno::UnknownErrno => format!("errno {errno}"),
        e => format!("{e:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(errno_name(libc::EIO), "EIO");
        assert_eq!(errno_name(libc::ENOSPC), "ENOSPC");
        assert_eq!(errno_name(libc::ESTALE), "ESTALE");
        assert_eq!(errno_name(12345), "errno 12345");
    }
}
