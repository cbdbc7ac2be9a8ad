//! The filesystem's error: the errno the caller gets and a message naming the file and the cause.

use std::fmt;

use crate::store::StoreError;

/// Result of a filesystem operation.
pub type FsResult<T> = Result<T, FsError>;

/// A failed filesystem operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsError {
    /// The errno returned to the program.
    pub errno: i32,
    /// What failed, for the log.
    pub message: String,
    /// True when the core already wrote a log line for it (the adapter then stays quiet).
    pub logged: bool,
    /// A failure even where its errno is usually an answer (ESTALE of a read: the kernel does
    /// not retry it, the program gets it).
    pub failure: bool,
    /// The store's error behind it, when a store call failed.
    pub source: Option<StoreError>,
}

impl FsError {
    /// An error with an errno and a message.
    pub fn new(errno: i32, message: impl Into<String>) -> Self {
        FsError {
            errno,
            message: message.into(),
            logged: false,
            failure: false,
            source: None,
        }
    }

    /// ENOENT for `what`.
    pub fn not_found(what: impl fmt::Display) -> Self {
        FsError::new(libc::ENOENT, format!("{what}: no such file"))
    }

    /// A store failure while doing `op` on `name`.
    pub fn store(op: &str, name: impl fmt::Display, err: StoreError) -> Self {
        FsError {
            source: Some(err.clone()),
            ..FsError::new(err.errno(), format!("{op} {name}: {err}"))
        }
    }

    /// Marks the error as a failure to count and log, whatever its errno.
    pub fn failure(mut self) -> Self {
        self.failure = true;
        self
    }

    /// Marks the error as logged already.
    pub fn logged(mut self) -> Self {
        self.logged = true;
        self
    }

    /// Whether this errno is an expected answer rather than a failure: a lookup of a missing
    /// name, an exclusive create of an existing one, a missing xattr, a lookup to redo.
    pub fn is_answer(&self) -> bool {
        !self.failure
            && matches!(
                self.errno,
                libc::ENOENT | libc::EEXIST | libc::ENODATA | libc::ESTALE
            )
    }

    /// Whether it needs no log line: an expected answer, or logged by the core already.
    pub fn is_quiet(&self) -> bool {
        self.logged || self.is_answer()
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (errno {})", self.message, self.errno)
    }
}

impl std::error::Error for FsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::FsError;
    use crate::store::StoreError;

    #[test]
    fn a_store_failure_keeps_the_store_error_as_its_source() {
        let e = FsError::store("open", "aa", StoreError::Closed { backend: "memory" });
        assert_eq!(e.errno, libc::EIO);
        let source = e.source().expect("a source");
        assert_eq!(
            source.downcast_ref::<StoreError>(),
            Some(&StoreError::Closed { backend: "memory" })
        );
        assert!(FsError::not_found("aa").source().is_none());
    }
}
