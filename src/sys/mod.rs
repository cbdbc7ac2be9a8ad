//! The operating system, through well-kept crates: `procfs` reads /proc, `nix` makes the system
//! calls. Nothing else in the crate parses /proc or calls libc directly; the few `unsafe` blocks
//! left here are calls no safe wrapper offers (see each one's SAFETY note).

pub mod errno;
pub mod fd;
pub mod locks;
pub mod mounts;
pub mod process;
