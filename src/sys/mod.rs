//! The operating system, through well-kept crates: `procfs` reads /proc, `nix` makes the system
//! calls. Nothing else in the crate parses /proc or calls libc directly, and nothing here needs
//! an unchecked block (the allocator's tuning goes through glibc's environment: see `malloc`).

pub mod errno;
pub mod fd;
pub mod locks;
pub mod malloc;
pub mod mounts;
pub mod process;
