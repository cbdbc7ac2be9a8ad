//! The `cloudstore-fs` binary: parses the command line and runs it (see `cloudstore_fs::cli`).

use std::process::ExitCode;

use clap::Parser;
use cloudstore_fs::cli::{self, Cli};

fn main() -> ExitCode {
    cloudstore_fs::fuse::DaemonLogger::init();
    // Usage errors exit 2 (clap's default), --help and --version 0.
    let cli = Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cloudstore-fs: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
