//! cloudstore-fs: a chunk store (LevelDB or Ceph RADOS) shown as a directory through FUSE.
//!
//! `store` holds the `Cloudstore` trait and its backends; `config` the configuration;
//! `cli` the chunk commands.

pub mod cli;
pub mod config;
pub mod keyname;
pub mod mount;
pub mod store;
