//! The `cloudstore-fs` binary: parses the command line and runs it (see `cloudstore_fs::cli`).

use std::process::ExitCode;

use clap::Parser;
use cloudstore_fs::cli::{self, Cli, Command};

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    if let Some(helper) = args
        .next()
        .and_then(|a| cli::helper::Helper::from_argv0(&a))
    {
        // Run by mount(8) or umount(8) as their helper (see `cli::helper`).
        return helper.run(&args.collect::<Vec<_>>());
    }
    // Usage errors exit 2 (clap's default), --help and --version 0.
    let cli = Cli::parse();
    // The daemon's big buffers each get their own mapping (see `sys::malloc`): this may execute
    // the program again, so it comes before the logger, threads or descriptors exist.
    let pinned = match cli.command {
        Command::Mount { .. } => cloudstore_fs::sys::malloc::pin_mmap_threshold(),
        _ => Ok(()),
    };
    // A command's failure is printed once, as its message below. The mount daemon's log keeps
    // warnings and errors (it runs for long, and its failures reach programs as errno); the
    // other commands log nothing unless RUST_LOG asks.
    let default_log = match cli.command {
        Command::Mount { .. } => "warn",
        _ => "off",
    };
    if let Err(e) = cli::logging::init(&cli.log, default_log) {
        eprintln!("cloudstore-fs: {e}");
        return ExitCode::from(e.exit_code());
    }
    if let Err(e) = pinned {
        log::warn!(
            "cannot execute this program again with {}={} ({e}): large buffers freed may stay \
             in the heap",
            cloudstore_fs::sys::malloc::MMAP_THRESHOLD_ENV,
            cloudstore_fs::sys::malloc::MMAP_THRESHOLD
        );
    }
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cloudstore-fs: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
