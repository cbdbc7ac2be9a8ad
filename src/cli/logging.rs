//! Where the log goes and how much of it: `--log-level` (else `RUST_LOG`, else the command's
//! default), `--log-file` (else stderr), and journald's priority prefixes (`<3>`, `<4>`, ...) when
//! stderr is the journal (systemd sets `$JOURNAL_STREAM` to its device and inode).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use clap::Args;

use super::{CliError, CliResult};

/// Logging options, accepted before or after the subcommand.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Logging")]
pub struct LogArgs {
    /// How much to log: off, error, warn, info, debug or trace, or env_logger directives
    /// (`cloudstore_fs::fs=debug`); overrides RUST_LOG [default: warn for mount, else off].
    #[arg(
        long,
        global = true,
        env = "CLOUDSTORE_FS_LOG_LEVEL",
        value_name = "LEVEL"
    )]
    pub log_level: Option<String>,
    /// Append the log to FILE instead of stderr (also a --daemon mount's output).
    #[arg(
        long,
        global = true,
        env = "CLOUDSTORE_FS_LOG_FILE",
        value_name = "FILE"
    )]
    pub log_file: Option<PathBuf>,
}

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Sets up the logger; `default_level` applies when neither --log-level nor RUST_LOG says.
pub fn init(args: &LogArgs, default_level: &str) -> CliResult {
    let env = env_logger::Env::default().default_filter_or(default_level);
    let mut builder = env_logger::Builder::from_env(env);
    if let Some(level) = &args.log_level {
        let simple = !level.contains(['=', ',', '/']);
        if level.is_empty() || (simple && !LEVELS.contains(&level.to_lowercase().as_str())) {
            return Err(CliError::Invalid(format!(
                "--log-level {level:?}: expected one of {} (or env_logger directives such as \
                 cloudstore_fs=debug)",
                LEVELS.join(", ")
            )));
        }
        builder.parse_filters(level);
    }
    if let Some(path) = &args.log_file {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| CliError::io(format!("--log-file {}", path.display()), e))?;
        builder.target(env_logger::Target::Pipe(Box::new(file)));
        // A --daemon mount's output goes to the same file (see `mount::files`).
        std::env::set_var(crate::mount::LOG_ENV, path);
    } else if stderr_is_the_journal() {
        builder.format(|buf, record| {
            let priority = match record.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            writeln!(buf, "<{priority}>{}: {}", record.target(), record.args())
        });
    }
    // fuser's report of an interrupted request is put in its place (see `fuse::DaemonLogger`).
    crate::fuse::DaemonLogger::install(builder.build());
    Ok(())
}

/// Whether stderr is the journal's stream (`$JOURNAL_STREAM` = its "device:inode").
fn stderr_is_the_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok((dev, ino)) = crate::sys::fd::identity(std::io::stderr()) else {
        return false;
    };
    stream.to_str() == Some(&format!("{dev}:{ino}"))
}
