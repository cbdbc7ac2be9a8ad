//! Helpers shared by the integration tests that mount the filesystem.
pub mod mount;
