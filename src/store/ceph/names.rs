//! Object names (the lowercase hex of the key) and the mtime xattr's text.

use std::ffi::CString;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The object name of a key: its lowercase hex.
pub(super) fn object_name(key: &[u8]) -> CString {
    CString::new(hex::encode(key)).expect("hex has no NUL byte")
}

/// The key of an object name, when the name is a chunk name (non-empty, even-length,
/// lowercase hex); `None` for any other object sharing the namespace.
pub(crate) fn key_of_object_name(name: &[u8]) -> Option<Vec<u8>> {
    let hex_lower = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if name.is_empty() || !name.len().is_multiple_of(2) || !name.iter().all(hex_lower) {
        return None;
    }
    hex::decode(name).ok()
}

/// An mtime as the xattr text and the whole second (floor) to give the object.
pub(super) fn encode_mtime(t: SystemTime) -> (Vec<u8>, i64) {
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let (s, n) = (d.as_secs() as i64, d.subsec_nanos());
            if n == 0 {
                (-s, 0)
            } else {
                (-s - 1, 1_000_000_000 - n)
            }
        }
    };
    (format!("{secs}.{nanos:09}").into_bytes(), secs)
}

/// The inverse of [`encode_mtime`]'s text: (whole second, time).
pub(super) fn decode_mtime(text: &[u8]) -> Option<(i64, SystemTime)> {
    let text = std::str::from_utf8(text).ok()?;
    let (secs, nanos) = text.split_once('.')?;
    if nanos.len() != 9 {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let nanos: u32 = nanos.parse().ok().filter(|n| *n < 1_000_000_000)?;
    Some((secs, from_secs_nanos(secs, nanos)))
}

pub(super) fn from_secs_nanos(secs: i64, nanos: u32) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_lowercase_hex_and_back() {
        assert_eq!(object_name(b"\x01\xab").to_bytes(), b"01ab");
        assert_eq!(key_of_object_name(b"01ab"), Some(vec![1, 0xab]));
        for bad in [&b""[..], b"0", b"01AB", b"xy", b"01a", b"rbd_directory"] {
            assert_eq!(key_of_object_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn mtimes_round_trip_with_nanoseconds() {
        for t in [
            UNIX_EPOCH + Duration::new(1_500_000_000, 123_456_789),
            UNIX_EPOCH,
            UNIX_EPOCH - Duration::new(10, 250_000_000),
        ] {
            let (text, secs) = encode_mtime(t);
            let (s, back) = decode_mtime(&text).unwrap();
            assert_eq!((s, back), (secs, t), "{}", String::from_utf8_lossy(&text));
        }
        assert_eq!(
            encode_mtime(UNIX_EPOCH - Duration::new(10, 250_000_000)).1,
            -11
        );
        assert_eq!(decode_mtime(b"12"), None);
        assert_eq!(decode_mtime(b"12.1234567890"), None);
    }
}
