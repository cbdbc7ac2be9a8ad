//! Documents generated from the clap definition: shell completions (`cloudstore-fs completions
//! SHELL`) and the man page (`cloudstore-fs man`), which the Debian package installs.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use super::{Cli, CliError, CliResult};

/// Writes the completion script for `shell` to stdout.
pub fn completions(shell: Shell) -> CliResult {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "cloudstore-fs", &mut out);
    write_stdout(&out)
}

/// Writes the man page (roff) to stdout: the command, its options and each subcommand's.
pub fn man_page() -> CliResult {
    let cmd = Cli::command();
    let mut out = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render(&mut out)
        .map_err(|e| CliError::io("rendering the man page", e))?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        writeln!(out, ".SH \"{}\"", sub.get_name().to_uppercase())
            .map_err(|e| CliError::io("rendering the man page", e))?;
        let man = clap_mangen::Man::new(
            sub.clone()
                .bin_name(format!("cloudstore-fs {}", sub.get_name())),
        );
        man.render_description_section(&mut out)
            .and_then(|()| man.render_synopsis_section(&mut out))
            .and_then(|()| man.render_options_section(&mut out))
            .map_err(|e| CliError::io("rendering the man page", e))?;
    }
    write_stdout(&out)
}

fn write_stdout(bytes: &[u8]) -> CliResult {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| CliError::io("writing to stdout", e))
}
