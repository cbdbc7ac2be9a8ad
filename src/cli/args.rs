//! Parsers for command-line values: hex keys and byte ranges (sizes: `crate::size`). Each error says what
//! was wrong; clap reports it with exit code 2.

use std::fmt;
use std::str::FromStr;

/// A command-line value that does not parse: what was wrong with it (clap prints it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ArgError(pub String);

/// Parses a key given in hex on the command line: lowercase, even length, not empty (the empty
/// key is written `""`, as `ls` prints it). Keys are
/// spelled one way everywhere (a chunk's file name in the mount and in `import`/`export` is the
/// same lowercase hex), so `ABCD` is refused with the spelling to use instead.
pub fn parse_key_arg(s: &str) -> Result<Vec<u8>, ArgError> {
    if s == "\"\"" {
        // The empty key, as `ls` prints it (a store written by another program may hold it).
        return Ok(Vec::new());
    }
    if s.is_empty() {
        return Err(ArgError(
            "empty key: give the key in hex, e.g. 00ab (the empty key is written \"\")".into(),
        ));
    }
    // The first bad character is the more useful message, so it is looked for before the length.
    if let Some((index, c)) = s.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        return Err(ArgError(format!(
            "{c:?} at position {index} is not a hex digit"
        )));
    }
    if let Some((index, c)) = s.char_indices().find(|(_, c)| c.is_ascii_uppercase()) {
        return Err(ArgError(format!(
            "{c:?} at position {index} is upper case: keys are written in lowercase hex ({})",
            s.to_ascii_lowercase()
        )));
    }
    if !s.len().is_multiple_of(2) {
        return Err(ArgError(format!(
            "odd number of hex digits ({}): each key byte takes two digits",
            s.len()
        )));
    }
    Ok(hex::decode(s).expect("validated hex"))
}

/// A key given in hex on the command line; see [`parse_key_arg`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HexKey(pub Vec<u8>);

impl FromStr for HexKey {
    type Err = ArgError;

    fn from_str(s: &str) -> Result<Self, ArgError> {
        parse_key_arg(s).map(HexKey)
    }
}

/// A byte range `START..END` (half-open), `START..` (to the end) or `..END` (from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    /// `None`: to the end of the value.
    pub end: Option<u64>,
}

impl FromStr for ByteRange {
    type Err = ArgError;

    fn from_str(s: &str) -> Result<Self, ArgError> {
        let Some((start, end)) = s.split_once("..") else {
            return Err(ArgError(format!(
                "{s:?} is not a range: expected START..END or START.."
            )));
        };
        let number = |text: &str, what: &str| {
            text.parse::<u64>().map_err(|_| {
                ArgError(format!(
                    "{what} {text:?} of range {s:?} is not a non-negative integer"
                ))
            })
        };
        let start = if start.is_empty() {
            0
        } else {
            number(start, "start")?
        };
        let end = if end.is_empty() {
            None
        } else {
            Some(number(end, "end")?)
        };
        if let Some(end) = end {
            if start > end {
                return Err(ArgError(format!(
                    "range {s:?}: start {start} is after end {end}"
                )));
            }
        }
        Ok(ByteRange { start, end })
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end {
            Some(end) => write!(f, "{}..{end}", self.start),
            None => write!(f, "{}..", self.start),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(parse_key_arg("00ab"), Ok(vec![0, 0xab]));
        assert_eq!(
            parse_key_arg("00aB").unwrap_err().0,
            "'B' at position 3 is upper case: keys are written in lowercase hex (00ab)"
        );
        assert!(parse_key_arg("").unwrap_err().0.contains("empty"));
        assert!(parse_key_arg("abc").unwrap_err().0.contains("odd"));
        assert_eq!(parse_key_arg("\"\""), Ok(vec![]));
        assert!(parse_key_arg("zz").unwrap_err().0.contains("'z'"));
        assert!(parse_key_arg("0g1")
            .unwrap_err()
            .0
            .contains("'g' at position 1"));
    }

    #[test]
    fn ranges() {
        let r = |s: &str| s.parse::<ByteRange>();
        assert_eq!(
            r("2..5"),
            Ok(ByteRange {
                start: 2,
                end: Some(5)
            })
        );
        assert_eq!(
            r("7.."),
            Ok(ByteRange {
                start: 7,
                end: None
            })
        );
        assert_eq!(
            r("..3"),
            Ok(ByteRange {
                start: 0,
                end: Some(3)
            })
        );
        assert_eq!(
            r("4..4"),
            Ok(ByteRange {
                start: 4,
                end: Some(4)
            })
        );
        assert!(r("5..2").unwrap_err().0.contains("after"));
        assert!(r("x..").unwrap_err().0.contains("\"x\""));
        assert!(r("5").is_err());
        assert!(r("-1..3").is_err());
        assert!(r("1..2..3").is_err());
    }
}
