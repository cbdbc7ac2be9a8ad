//! File names in the mount: a chunk's name is the lowercase hex of its key (the strict codec in
//! `crate::keyname`); names that begin with '.' are scratch files kept in the daemon; every other
//! name is refused.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use crate::keyname::{self, MAX_NAME_LEN, MIN_NAME_LEN};

/// What a name in the mount stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    /// A chunk: the decoded key.
    Chunk(Vec<u8>),
    /// A scratch file (the name begins with '.').
    Scratch,
    /// A name that is neither; the reason says why.
    Invalid(String),
}

/// Classifies a file name.
pub fn classify(name: &OsStr) -> Name {
    let bytes = name.as_bytes();
    if bytes == b"." || bytes == b".." {
        return Name::Invalid("'.' and '..' are not file names".into());
    }
    if bytes.first() == Some(&b'.') {
        return Name::Scratch;
    }
    match keyname::key_from_os_name(name) {
        Ok(key) => Name::Chunk(key),
        Err(e) => Name::Invalid(format!(
            "{e}; a chunk name is 2 to 254 lowercase hex characters (even count), \
             a scratch file's name begins with '.'"
        )),
    }
}

/// The file name of a chunk key, or `None` when the key cannot be shown (empty, or over 127 bytes).
pub fn chunk_name(key: &[u8]) -> Option<OsString> {
    let len = key.len() * 2;
    if !(MIN_NAME_LEN..=MAX_NAME_LEN).contains(&len) {
        return None;
    }
    Some(OsString::from(keyname::name_of_key(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Name {
        classify(OsStr::new(s))
    }

    #[test]
    fn classifies_names() {
        assert_eq!(c("00"), Name::Chunk(vec![0]));
        assert_eq!(c("deadbeef"), Name::Chunk(vec![0xde, 0xad, 0xbe, 0xef]));
        assert_eq!(c(".deadbeef.XyZ123"), Name::Scratch);
        assert_eq!(c(".swp"), Name::Scratch);
        for bad in [
            "", "0", "abc", "DEADBEEF", "dEad", "zz", "hello", "00 ", "4g",
        ] {
            assert!(matches!(c(bad), Name::Invalid(_)), "{bad:?}");
        }
        assert!(matches!(c("."), Name::Invalid(_)));
        assert!(matches!(c(".."), Name::Invalid(_)));
        assert!(matches!(c(&"ab".repeat(127)), Name::Chunk(k) if k.len() == 127));
        assert!(matches!(c(&"ab".repeat(128)), Name::Invalid(_)));
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(chunk_name(&[0xab, 0x01]).unwrap(), "ab01");
        assert_eq!(chunk_name(&[]), None);
        assert_eq!(chunk_name(&[7; 128]), None);
        let key = vec![9u8; 127];
        assert_eq!(
            c(chunk_name(&key).unwrap().to_str().unwrap()),
            Name::Chunk(key)
        );
    }
}
