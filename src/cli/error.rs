//! The command line's failure: what to print and the exit code it maps to.

use std::fmt;

use crate::store::StoreError;

/// A failed command. The exit code tells scripts what kind of failure it was.
#[derive(Debug)]
pub enum CliError {
    /// The key does not exist (exit 1).
    NotFound(String),
    /// Bad input: hex, range, option, configuration (exit 2).
    Invalid(String),
    /// The store or the system failed (exit 3).
    Failed(String),
}

impl CliError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::NotFound(_) => 1,
            CliError::Invalid(_) => 2,
            CliError::Failed(_) => 3,
        }
    }

    /// The "chunk KEY not found" failure.
    pub fn not_found(key: &[u8]) -> Self {
        CliError::NotFound(format!("chunk {} not found", hex::encode(key)))
    }

    /// An I/O failure on a local file, with what was being done.
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        CliError::Failed(format!("{what}: {err}"))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::NotFound(m) | CliError::Invalid(m) | CliError::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CliError {}

impl From<StoreError> for CliError {
    /// Errors caused by what the user asked for (range, key, size) are invalid input; the rest
    /// are store failures.
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::InvalidRange { .. }
            | StoreError::InvalidKey { .. }
            | StoreError::TooLarge { .. } => CliError::Invalid(err.to_string()),
            _ => CliError::Failed(err.to_string()),
        }
    }
}

impl From<crate::mount::MountError> for CliError {
    fn from(err: crate::mount::MountError) -> Self {
        CliError::Failed(err.to_string())
    }
}

/// Result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;
