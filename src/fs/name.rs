//! File names in the mount: a chunk's name is the lowercase hex of its key (the strict codec in
//! `crate::keyname`); every other name is a scratch file, kept in the daemon (and saved beside
//! the keyspace at unmount) until it is renamed onto a chunk name. Only "." and ".." are not
//! file names.
//!
//! The rule is "anything that is not a chunk name is scratch" because the temporary files of
//! everyday tools have all kinds of names (`sedXXXXXX`, `tmpXXXXXXXX`, `#name#`, `name~`,
//! `.name.XXXXXX`). A mistyped chunk name (`ABCD`, `abc`) is not lost either: it becomes a
//! visible scratch file, logged when it is created ([`near_miss`]), listed by `ls`, and kept
//! across unmounts.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use crate::keyname::{self, MAX_NAME_LEN, MIN_NAME_LEN};

/// What a name in the mount stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    /// A chunk: the decoded key.
    Chunk(Vec<u8>),
    /// A scratch file (any name that is not a chunk name).
    Scratch,
    /// Not a file name ("." or ".."); the reason says why.
    Invalid(String),
}

/// Classifies a file name.
pub fn classify(name: &OsStr) -> Name {
    let bytes = name.as_bytes();
    if bytes == b"." || bytes == b".." || bytes.is_empty() {
        return Name::Invalid("'.', '..' and the empty name are not file names".into());
    }
    match keyname::key_from_os_name(name) {
        Ok(key) => Name::Chunk(key),
        Err(_) => Name::Scratch,
    }
}

/// Why `name`, a scratch name, looks like a mistyped chunk name (only hex digits, but in upper
/// case, of odd length or too long), or `None` for an ordinary scratch name.
pub fn near_miss(name: &OsStr) -> Option<String> {
    let bytes = name.as_bytes();
    if bytes.len() < MIN_NAME_LEN || !bytes.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    keyname::key_from_os_name(name).err().map(|e| e.to_string())
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
        for scratch in [
            ".deadbeef.XyZ123",
            ".swp",
            "sedAb12Cd",
            "tmpa1b2c3d4",
            "#00ab#",
            "00ab~",
            "0",
            "abc",
            "DEADBEEF",
            "dEad",
            "zz",
            "hello",
            "00 ",
            "4g",
        ] {
            assert_eq!(c(scratch), Name::Scratch, "{scratch:?}");
        }
        assert!(matches!(c("."), Name::Invalid(_)));
        assert!(matches!(c(".."), Name::Invalid(_)));
        assert!(matches!(c(""), Name::Invalid(_)));
        assert!(matches!(c(&"ab".repeat(127)), Name::Chunk(k) if k.len() == 127));
        assert_eq!(c(&"ab".repeat(128)), Name::Scratch);
    }

    #[test]
    fn near_misses_are_told_apart() {
        let n = |s: &str| near_miss(OsStr::new(s));
        assert!(n("ABCD").unwrap().contains("'A' at offset 0"));
        assert!(n("abc").unwrap().contains("odd number"));
        assert!(n(&"ab".repeat(128)).unwrap().contains("longer than 254"));
        for ordinary in ["sedAb12Cd", ".00ab.x", "00ab~", "#00ab#", "a", "abcd"] {
            assert_eq!(n(ordinary), None, "{ordinary:?}");
        }
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
