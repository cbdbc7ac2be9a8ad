//! The store's error: each variant names the key (in hex) and the backend where it applies, and
//! maps to the errno the filesystem returns for it.

/// Result of a store operation.
pub type Result<T> = std::result::Result<T, StoreError>;

/// What went wrong in a store operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A range whose start lies after its end.
    #[error("invalid range {start}..{end} for key {key}: start is after end")]
    InvalidRange { key: String, start: u64, end: u64 },

    /// A value larger than the configured (or the backend's) maximum chunk size.
    #[error("{backend}: value of {size} bytes for key {key} exceeds the maximum chunk size of {max} bytes")]
    TooLarge {
        backend: &'static str,
        key: String,
        size: u64,
        max: u64,
    },

    /// A key the backend cannot store (empty, too long).
    #[error("{backend}: invalid key {key:?}: {reason}")]
    InvalidKey {
        backend: &'static str,
        key: String,
        reason: String,
    },

    /// The store was closed.
    #[error("{backend}: the store is closed")]
    Closed { backend: &'static str },

    /// Bad configuration, or a store that cannot be opened as configured.
    #[error("{0}")]
    Config(String),

    /// The store's directory is in use by another process (`holder`: which, when it can be
    /// told: its pid and command line).
    #[error("{backend}: {dir} is locked by {}", holder.as_deref().unwrap_or("another process (is another cloudstore-fs using it?)"))]
    Locked {
        backend: &'static str,
        dir: String,
        holder: Option<String>,
    },

    /// The value read is no longer the version a reader began with: another client replaced
    /// or deleted it.
    #[error("{backend}: read {key}: the chunk was changed or removed by another client since this file was opened (ESTALE); reopen it to read the new value")]
    Changed { backend: &'static str, key: String },

    /// No answer within the backend's timeout. For a write the outcome is unknown: the chunk
    /// holds its previous value or the new one.
    #[error("{backend}: {op}{}: no answer from the cluster within {secs}s (is it down?){}", key_suffix(.key), if *.write { "; the outcome is unknown: the chunk holds its previous value or the new one" } else { "" })]
    TimedOut {
        backend: &'static str,
        op: &'static str,
        key: String,
        secs: u64,
        /// The operation changes the store.
        write: bool,
    },

    /// The backend failed; `errno` is what the filesystem reports.
    #[error("{backend}: {op}{}: {message}", key_suffix(.key))]
    Backend {
        backend: &'static str,
        op: &'static str,
        key: String,
        errno: i32,
        message: String,
    },
}

/// " KEY", or nothing for an operation on no particular key.
fn key_suffix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(" {key}")
    }
}

impl StoreError {
    /// The errno the filesystem returns for this error.
    pub fn errno(&self) -> i32 {
        match self {
            StoreError::InvalidRange { .. } | StoreError::InvalidKey { .. } => libc::EINVAL,
            StoreError::TooLarge { .. } => libc::EFBIG,
            StoreError::Closed { .. } => libc::EIO,
            StoreError::Config(_) => libc::EINVAL,
            StoreError::Locked { .. } => libc::EBUSY,
            StoreError::Changed { .. } => libc::ESTALE,
            StoreError::TimedOut { .. } => libc::EIO,
            StoreError::Backend { errno, .. } => *errno,
        }
    }

    /// Whether a write that failed this way may still have been stored (a timeout): the
    /// chunk holds its previous value or the new one.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, StoreError::TimedOut { write: true, .. })
    }

    /// A backend failure for `key` (given raw; shown in hex).
    pub fn backend(
        backend: &'static str,
        op: &'static str,
        key: &[u8],
        errno: i32,
        message: impl Into<String>,
    ) -> Self {
        StoreError::Backend {
            backend,
            op,
            key: hex::encode(key),
            errno,
            message: message.into(),
        }
    }
}
