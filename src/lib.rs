//! cloudstore-fs: a chunk store (LevelDB or Ceph RADOS) shown as a directory through FUSE.
//!
//! `store` holds the `Cloudstore` trait and its backends; `config` the configuration;
//! `cli` the chunk commands; `fs` the filesystem core, `fuse` its fuser adapter and `mount`
//! the mount itself; `size` byte sizes as written; `sys` the operating system (procfs, nix).
//! ARCHITECTURE.md shows how they fit.

pub mod cli;
pub mod config;
pub mod fs;
pub mod fuse;
pub mod keyname;
pub mod metrics;
pub mod mount;
pub mod size;
pub mod store;
pub mod sys;
