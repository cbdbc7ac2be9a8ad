//! Byte sizes as people write them, on the command line and in the configuration file alike:
//! `4096`, `64K`, `64KiB`, `1.5M`, `1G` (K, M, G, T are binary: 1K = 1024 bytes, also spelled
//! KiB or KB), parsed by the `parse-size` crate.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// A size that does not parse, with the text given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a size in bytes ({reason}): give bytes, or a number with K, M, G or T (binary: 1K = 1024), e.g. 64M")]
pub struct SizeError {
    text: String,
    reason: String,
}

/// Parses a size in bytes; see the module doc.
pub fn parse(text: &str) -> Result<u64, SizeError> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(text)
        .map_err(|e| SizeError {
            text: text.to_string(),
            reason: e.to_string(),
        })
}

/// serde `deserialize_with` for a size: a non-negative integer (bytes) or a string such as
/// `"1G"`.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct Size;

    impl Visitor<'_> for Size {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a size in bytes: an integer, or a string such as \"64M\" or \"1G\"")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            parse(v).map_err(E::custom)
        }
    }

    d.deserialize_any(Size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse("4096"), Ok(4096));
        assert_eq!(parse("64K"), Ok(64 << 10));
        assert_eq!(parse("64k"), Ok(64 << 10));
        assert_eq!(parse("64MiB"), Ok(64 << 20));
        assert_eq!(parse("1G"), Ok(1 << 30));
        assert_eq!(parse("1.5M"), Ok(3 << 19));
        assert!(parse("12X").is_err());
        assert!(parse("").is_err());
        assert!(parse("-1").is_err());
        assert!(parse("99999999999999G").is_err());
        let e = parse("12X").unwrap_err().to_string();
        assert!(e.contains("\"12X\"") && e.contains("not a size"), "{e}");
    }
}
