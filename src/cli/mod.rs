//! The command line: chunk commands in the manner of the `rados` tool, plus mount and unmount.
//! `main.rs` only parses and calls [`run`]; each command lives in its own module.

mod args;
mod batch;
mod chunk;
mod docs;
mod error;
mod export;
pub mod helper;
mod import;
pub mod logging;
mod mount;
mod progress;
mod snapshot;
mod store_args;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

pub use args::{parse_key_arg, ByteRange, HexKey};
pub use error::{CliError, CliResult};
pub use store_args::{StoreArgs, DEFAULT_CONFIG};

use crate::config::{Backend, Config};
use crate::store::{self, Cloudstore};

/// Command line of `cloudstore-fs`.
#[derive(Debug, Parser)]
#[command(name = "cloudstore-fs", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub log: logging::LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a chunk from FILE (or stdin).
    Put {
        /// The key, in hex.
        key: HexKey,
        /// Where the value comes from; omitted or "-": stdin.
        file: Option<PathBuf>,
    },
    /// Write a chunk's value (or a byte range of it) to stdout or a file.
    Get {
        /// The key, in hex.
        key: HexKey,
        /// Only bytes START..END (half-open); START.. reads to the end.
        #[arg(long, value_name = "START..END")]
        range: Option<ByteRange>,
        /// Write to FILE instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print the size of a chunk in bytes.
    Stat {
        /// The key, in hex.
        key: HexKey,
    },
    /// Delete a chunk.
    Rm {
        /// The key, in hex.
        key: HexKey,
    },
    /// List every chunk: one "KEY SIZE" line each.
    Ls,
    /// Store every file of DIR named by a hex key as that chunk.
    Import {
        /// The directory to read.
        dir: PathBuf,
    },
    /// Write every chunk to DIR as a file named by its hex key.
    Export {
        /// The directory to write (created if needed).
        dir: PathBuf,
    },
    /// Mount the store as a directory and serve it until unmounted.
    Mount {
        /// Refuse every change.
        #[arg(long, env = "CLOUDSTORE_FS_READ_ONLY")]
        read_only: bool,
        /// Let other users than the mounting one see the files.
        #[arg(long, env = "CLOUDSTORE_FS_ALLOW_OTHER")]
        allow_other: bool,
        /// Return once the mount is ready and keep serving in the background.
        #[arg(long, env = "CLOUDSTORE_FS_DAEMON")]
        daemon: bool,
        /// Serve in this process until unmounted (the default; systemd's Type=notify); wins
        /// over --daemon and CLOUDSTORE_FS_DAEMON.
        #[arg(long, env = "CLOUDSTORE_FS_FOREGROUND")]
        foreground: bool,
        /// Mount over a directory that holds files (they are hidden while mounted).
        #[arg(long, env = "CLOUDSTORE_FS_NONEMPTY")]
        nonempty: bool,
        /// The owner every file and the directory show (default: the mounting user).
        #[arg(long, env = "CLOUDSTORE_FS_UID")]
        uid: Option<u32>,
        /// The group every file and the directory show (default: the mounting user's).
        #[arg(long, env = "CLOUDSTORE_FS_GID")]
        gid: Option<u32>,
        /// The permission bits every file shows, in octal (default 0644; the directory stays
        /// 0755).
        #[arg(long, env = "CLOUDSTORE_FS_FILE_MODE", value_parser = parse_file_mode)]
        file_mode: Option<u32>,
        /// Serve Prometheus metrics at http://HOST:PORT/metrics (a bare PORT: 127.0.0.1);
        /// loopback only unless --metrics-allow-remote.
        #[arg(long, env = "CLOUDSTORE_FS_METRICS_ADDR", value_name = "HOST:PORT")]
        metrics_addr: Option<String>,
        /// Let --metrics-addr bind to an address other than loopback.
        #[arg(long, env = "CLOUDSTORE_FS_METRICS_ALLOW_REMOTE")]
        metrics_allow_remote: bool,
        /// Where to mount (an empty directory; the stale mount of a dead cloudstore-fs daemon
        /// there is cleared).
        mountpoint: PathBuf,
    },
    /// Show what the daemon of a mount reports: commits pending and done, errors by kind, the
    /// last error, memory in use against the budget.
    Stats {
        /// The mounted directory.
        mountpoint: PathBuf,
    },
    /// Mount at DIR a read-only view of MOUNTPOINT's store as it is now, served by
    /// MOUNTPOINT's daemon while MOUNTPOINT goes on changing (a consistent backup: `tar c DIR`);
    /// `cloudstore-fs unmount DIR` lets go of it.
    Snapshot {
        /// The live cloudstore-fs mount.
        mountpoint: PathBuf,
        /// An empty directory to mount the snapshot at.
        dir: PathBuf,
    },
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff; `man -l <(cloudstore-fs man)`).
    #[command(hide = true)]
    Man,
    /// Unmount a cloudstore-fs mount; returns once its daemon has committed everything and
    /// exited. A busy mount (files open) is an error unless --lazy.
    Unmount {
        /// Detach a busy mount now; its daemon stops when the last open file is closed.
        #[arg(long)]
        lazy: bool,
        /// Seconds to wait for the daemon to exit.
        #[arg(long, value_name = "SECS", default_value_t = 120)]
        timeout: u64,
        /// The mounted directory.
        mountpoint: PathBuf,
    },
}

/// Whether a command may create the store it opens: `put`, `import` and a writable `mount`
/// do; commands that only read (and `rm`) never do.
fn creates_store(command: &Command) -> bool {
    match command {
        Command::Put { .. } | Command::Import { .. } => true,
        Command::Mount { read_only, .. } => !read_only,
        _ => false,
    }
}

/// Opens the configured store; a store that cannot be opened is a failure (exit 3). A LevelDB
/// directory that is missing or empty is a new store for commands that create one (said once,
/// on stderr) and an error naming the path for the others.
fn open_store(config: &Config, create: bool) -> CliResult<Arc<dyn Cloudstore>> {
    let failed = |e: store::StoreError| CliError::Failed(format!("cannot open the store: {e}"));
    let new_dir = match config.backend {
        Backend::Leveldb => {
            use store::leveldb::DataDir;
            let dir = &config.data_dir;
            let what = match store::leveldb::inspect_data_dir(dir).map_err(failed)? {
                DataDir::Store => None,
                DataDir::Missing => Some("does not exist"),
                DataDir::Empty => Some("is empty"),
            };
            match what {
                Some(what) if !create => {
                    return Err(CliError::Failed(format!(
                        "cannot open the store: no LevelDB store in {}: the directory {what} \
                         (check --data-dir; put, import and mount create a store)",
                        dir.display()
                    )))
                }
                other => other.is_some(),
            }
        }
        _ => false,
    };
    let store = store::open(config).map_err(failed)?;
    if new_dir {
        eprintln!(
            "cloudstore-fs: created a new LevelDB store in {}",
            config.data_dir.display()
        );
    }
    Ok(store)
}

/// `--file-mode`: permission bits in octal (`644`, `0640`), at most 0777.
fn parse_file_mode(text: &str) -> Result<u32, args::ArgError> {
    match u32::from_str_radix(text, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(args::ArgError(format!(
            "{text:?} is not a file mode: give permission bits in octal, 0 to 0777 (e.g. 0640)"
        ))),
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> CliResult {
    if let Command::Unmount {
        mountpoint,
        lazy,
        timeout,
    } = &cli.command
    {
        // Needs no store: the mount's daemon owns it.
        let opts = crate::mount::UnmountOptions {
            lazy: *lazy,
            timeout: std::time::Duration::from_secs(*timeout),
        };
        return mount::unmount(mountpoint, &opts);
    }
    match &cli.command {
        // Generated from this definition; need no store.
        Command::Completions { shell } => return docs::completions(*shell),
        Command::Man => return docs::man_page(),
        _ => {}
    }
    if let Command::Stats { mountpoint } = &cli.command {
        // Asks the mount's daemon; needs no store.
        return mount::stats(mountpoint);
    }
    if let Command::Snapshot { mountpoint, dir } = &cli.command {
        // The mount's daemon takes and serves it; needs no store.
        return snapshot::run(mountpoint, dir);
    }
    let metrics_addr = match &cli.command {
        Command::Mount {
            metrics_addr: Some(addr),
            metrics_allow_remote,
            ..
        } => Some(
            crate::metrics::parse_addr(addr, *metrics_allow_remote)
                .map_err(|e| CliError::Invalid(e.to_string()))?,
        ),
        _ => None,
    };
    let mut config = cli.store.load_config()?;
    // A one-shot command's operation tells whether the pool may be used: no probe before it.
    config.ceph.probe_access = matches!(cli.command, Command::Mount { .. });
    if let Command::Mount {
        mountpoint,
        nonempty,
        ..
    } = &cli.command
    {
        // A bad mountpoint is reported before the store is opened (and locked); a stale mount
        // of a dead daemon is cleared here.
        crate::mount::check_mountpoint(mountpoint, *nonempty)?;
    }
    if let Command::Mount {
        mountpoint,
        daemon: true,
        foreground: false,
        nonempty,
        ..
    } = &cli.command
    {
        if !crate::mount::is_daemon_child() {
            // The daemon opens the store: opening it here too would connect (and on Ceph wait
            // for the access probe) twice.
            return mount::start_daemon(&config, mountpoint, *nonempty);
        }
    }
    let store = open_store(&config, creates_store(&cli.command)).inspect_err(|e| {
        if matches!(cli.command, Command::Mount { .. }) {
            // A daemon's parent waits for this answer.
            crate::mount::report_failure(&e.to_string());
        }
    })?;
    let result = match cli.command {
        Command::Put { key, file } => chunk::put(&*store, &config, &key.0, file.as_deref()),
        Command::Get { key, range, output } => {
            chunk::get(&*store, &key.0, range, output.as_deref())
        }
        Command::Stat { key } => chunk::stat(&*store, &key.0),
        Command::Rm { key } => chunk::rm(&*store, &key.0),
        Command::Ls => chunk::ls(&*store),
        Command::Import { dir } => import::run(&*store, &config, &dir),
        Command::Export { dir } => export::run(&*store, &dir),
        Command::Mount {
            read_only,
            allow_other,
            daemon,
            foreground,
            nonempty,
            uid,
            gid,
            file_mode,
            mountpoint,
            ..
        } => {
            let opts = crate::mount::MountOptions {
                mountpoint,
                read_only,
                allow_other,
                daemon: daemon && !foreground,
                nonempty,
                uid,
                gid,
                file_mode,
                metrics_addr,
            };
            mount::mount(store.clone(), &config, &opts)
        }
        Command::Unmount { .. }
        | Command::Stats { .. }
        | Command::Snapshot { .. }
        | Command::Completions { .. }
        | Command::Man => unreachable!("handled above"),
    };
    // Close even after a failure, so that whatever did succeed (part of an import) is flushed;
    // the command's own error is the one reported.
    let closed = store
        .close()
        .map_err(|e| CliError::Failed(format!("closing the store: {e}")));
    result.and(closed)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn store_options_go_anywhere_and_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "data_dir = \"/from/file\"\n[ceph]\npool = \"filepool\"\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "cloudstore-fs",
            "--backend",
            "ceph",
            "--pool",
            "p1",
            "--config",
            file.to_str().unwrap(),
            "get",
            "00ab",
            "--namespace",
            "ns",
            "--max-chunk-size",
            "1M",
            "--memory-budget",
            "128M",
        ])
        .unwrap();
        let Command::Get { key, .. } = &cli.command else {
            panic!("{:?}", cli.command)
        };
        assert_eq!(key.0, [0, 0xab]);
        let config = cli.store.load_config().unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/from/file"));
        assert_eq!(config.ceph.pool, "p1");
        assert_eq!(config.ceph.namespace, "ns");
        assert_eq!(config.max_chunk_size, 1 << 20);
        assert_eq!(config.memory_budget, 128 << 20);
        assert_eq!(config.backend, Backend::Ceph);
    }

    #[test]
    fn flags_of_another_backend_are_invalid_input() {
        let load = |args: &[&str]| {
            let mut argv = vec!["cloudstore-fs"];
            argv.extend(args);
            argv.push("ls");
            Cli::try_parse_from(argv).unwrap().store.load_config()
        };
        let e = load(&["--ceph-conf", "c", "--pool", "p"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            "--ceph-conf, --pool are options of the ceph backend, but the backend is leveldb \
             (the default, or `backend` in the config file); choose the backend with --backend"
        );
        let e = load(&["--backend", "ceph", "--data-dir", "d"]).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "--data-dir is an option of the leveldb backend, but the backend is ceph \
                 (--backend)"
            ),
            "{e}"
        );
        assert!(load(&["--backend", "ceph", "--pool", "p"]).is_ok());
        assert!(load(&["--data-dir", "d", "--cache-size", "1M"]).is_ok());
    }

    #[test]
    fn config_problems_are_invalid_input() {
        let cli =
            Cli::try_parse_from(["cloudstore-fs", "ls", "--config", "/nonexistent.toml"]).unwrap();
        assert_eq!(cli.store.load_config().unwrap_err().exit_code(), 2);
    }
}
