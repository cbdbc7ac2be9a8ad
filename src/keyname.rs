//! The chunk-name codec shared by the filesystem and `import`: a chunk's file name is the
//! lowercase, even-length hex of its key, 2 to 254 characters. It is strict on purpose: exactly
//! one name maps to each key, so `ls` never shows two names for the same chunk.

use std::ffi::OsStr;
use std::fmt;

/// Shortest chunk name (one key byte).
pub const MIN_NAME_LEN: usize = 2;
/// Longest chunk name: 254 hex characters (127 key bytes), within NAME_MAX (255).
pub const MAX_NAME_LEN: usize = 254;

/// Why a name is not a chunk name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidName {
    /// Shorter than [`MIN_NAME_LEN`] (the empty name included).
    TooShort,
    /// Longer than [`MAX_NAME_LEN`].
    TooLong(usize),
    /// An odd number of characters.
    OddLength(usize),
    /// A character other than `0-9a-f` (upper case included), at a byte offset.
    NotLowercaseHex { ch: char, at: usize },
    /// Not valid UTF-8 (only from [`key_from_os_name`]).
    NotUtf8,
}

impl fmt::Display for InvalidName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidName::TooShort => write!(f, "shorter than {MIN_NAME_LEN} characters"),
            InvalidName::TooLong(n) => {
                write!(f, "{n} characters, longer than {MAX_NAME_LEN}")
            }
            InvalidName::OddLength(n) => write!(f, "odd number of characters ({n})"),
            InvalidName::NotLowercaseHex { ch, at } => {
                write!(f, "{ch:?} at offset {at} is not a lowercase hex digit")
            }
            InvalidName::NotUtf8 => write!(f, "not valid UTF-8"),
        }
    }
}

impl std::error::Error for InvalidName {}

/// The key a chunk name stands for, or why `name` is not a chunk name.
pub fn key_from_name(name: &str) -> Result<Vec<u8>, InvalidName> {
    let len = name.len();
    if len < MIN_NAME_LEN {
        return Err(InvalidName::TooShort);
    }
    if len > MAX_NAME_LEN {
        return Err(InvalidName::TooLong(len));
    }
    if let Some((at, ch)) = name
        .char_indices()
        .find(|&(_, c)| !matches!(c, '0'..='9' | 'a'..='f'))
    {
        return Err(InvalidName::NotLowercaseHex { ch, at });
    }
    if !len.is_multiple_of(2) {
        return Err(InvalidName::OddLength(len));
    }
    // Checked above: lowercase hex of even length, so decoding cannot fail.
    Ok(hex::decode(name).expect("validated hex"))
}

/// The key a chunk name stands for; `None` for any other name.
pub fn parse_key_name(name: &str) -> Option<Vec<u8>> {
    key_from_name(name).ok()
}

/// [`key_from_name`] for a name as the kernel or `read_dir` gives it.
pub fn key_from_os_name(name: &OsStr) -> Result<Vec<u8>, InvalidName> {
    key_from_name(name.to_str().ok_or(InvalidName::NotUtf8)?)
}

/// The chunk name of `key`: its lowercase hex.
pub fn name_of_key(key: &[u8]) -> String {
    hex::encode(key)
}

/// Why `key` has no chunk name (it is empty, or longer than 127 bytes), or `None` when it has.
pub fn why_not_a_name(key: &[u8]) -> Option<String> {
    match key.len() {
        0 => Some("the empty key cannot be a file name".into()),
        n if n * 2 > MAX_NAME_LEN => Some(format!(
            "a key of {n} bytes cannot be a file name (its name would have {} characters, \
             more than {MAX_NAME_LEN})",
            n * 2
        )),
        _ => None,
    }
}

/// `key` for messages and listings: its hex, or `""` for the empty key (so that it is never an
/// empty field).
pub fn display_key(key: &[u8]) -> String {
    if key.is_empty() {
        "\"\"".into()
    } else {
        hex::encode(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_lowercase_even_hex() {
        assert_eq!(parse_key_name("00"), Some(vec![0]));
        assert_eq!(parse_key_name("00ff10"), Some(vec![0, 0xff, 0x10]));
        let longest = "ab".repeat(127);
        assert_eq!(parse_key_name(&longest), Some(vec![0xab; 127]));
    }

    #[test]
    fn rejects_everything_else() {
        assert_eq!(key_from_name(""), Err(InvalidName::TooShort));
        assert_eq!(key_from_name("a"), Err(InvalidName::TooShort));
        assert_eq!(key_from_name("abc"), Err(InvalidName::OddLength(3)));
        assert_eq!(
            key_from_name("00FF"),
            Err(InvalidName::NotLowercaseHex { ch: 'F', at: 2 })
        );
        assert!(key_from_name("0g").is_err());
        assert!(key_from_name(".abcd").is_err());
        assert!(key_from_name("ab cd").is_err());
        assert!(key_from_name("+1").is_err());
        assert!(key_from_name("éé").is_err());
        assert_eq!(
            key_from_name(&"ab".repeat(128)),
            Err(InvalidName::TooLong(256))
        );
    }

    #[test]
    fn keys_without_names() {
        assert!(why_not_a_name(b"").is_some());
        assert_eq!(why_not_a_name(&[1; 127]), None);
        assert!(why_not_a_name(&[1; 128])
            .unwrap()
            .contains("256 characters"));
        assert_eq!(display_key(b""), "\"\"");
        assert_eq!(display_key(&[0xab]), "ab");
    }

    #[test]
    fn round_trips() {
        for key in [vec![0u8], vec![1, 2, 3], vec![0xde, 0xad, 0xbe, 0xef]] {
            assert_eq!(parse_key_name(&name_of_key(&key)), Some(key));
        }
    }

    #[cfg(unix)]
    #[test]
    fn os_names() {
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(key_from_os_name(OsStr::new("0a")), Ok(vec![10]));
        assert_eq!(
            key_from_os_name(OsStr::from_bytes(b"\xff\xfe")),
            Err(InvalidName::NotUtf8)
        );
    }
}
