//! The store options (`--config`, `--backend`, `--data-dir`, sizes, Ceph's), accepted before or
//! after the subcommand, and the configuration they make with the --config file.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{CliError, CliResult};
use crate::config::{Backend, Config};

/// The configuration file read when neither --config nor $CLOUDSTORE_FS_CONFIG names one.
pub const DEFAULT_CONFIG: &str = "/etc/cloudstore-fs/config.toml";

/// Store options, accepted before or after the subcommand; each overrides the --config file.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Store options")]
pub struct StoreArgs {
    /// TOML configuration file (flags override its values) [default:
    /// /etc/cloudstore-fs/config.toml when present].
    #[arg(long, global = true, env = "CLOUDSTORE_FS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Which store to use [default: leveldb].
    #[arg(long, global = true, env = "CLOUDSTORE_FS_BACKEND", value_enum)]
    pub backend: Option<Backend>,
    /// LevelDB database directory.
    #[arg(
        long,
        global = true,
        env = "CLOUDSTORE_FS_DATA_DIR",
        value_name = "DIR"
    )]
    pub data_dir: Option<PathBuf>,
    /// Ceph: the ceph.conf to read.
    #[arg(
        long,
        global = true,
        env = "CLOUDSTORE_FS_CEPH_CONF",
        value_name = "FILE"
    )]
    pub ceph_conf: Option<PathBuf>,
    /// Ceph: the pool holding the chunks.
    #[arg(long, global = true, env = "CLOUDSTORE_FS_POOL", value_name = "NAME")]
    pub pool: Option<String>,
    /// Ceph: the client name, without "client.".
    #[arg(
        long,
        global = true,
        env = "CLOUDSTORE_FS_CEPH_USER",
        value_name = "NAME"
    )]
    pub ceph_user: Option<String>,
    /// Ceph: the RADOS namespace inside the pool.
    #[arg(
        long,
        global = true,
        env = "CLOUDSTORE_FS_NAMESPACE",
        value_name = "NS"
    )]
    pub namespace: Option<String>,
    /// Largest value accepted, in bytes (suffixes K, M, G).
    #[arg(long, global = true, env = "CLOUDSTORE_FS_MAX_CHUNK_SIZE", value_name = "BYTES", value_parser = crate::size::parse)]
    pub max_chunk_size: Option<u64>,
    /// LevelDB block cache size in bytes (suffixes K, M, G).
    #[arg(long, global = true, env = "CLOUDSTORE_FS_CACHE_SIZE", value_name = "BYTES", value_parser = crate::size::parse)]
    pub cache_size: Option<u64>,
    /// Mount: bytes of chunk data the daemon may hold (suffixes K, M, G).
    #[arg(long, global = true, env = "CLOUDSTORE_FS_MEMORY_BUDGET", value_name = "BYTES", value_parser = crate::size::parse)]
    pub memory_budget: Option<u64>,
}

impl StoreArgs {
    /// The configuration: the --config file (or the defaults), then each given flag, validated.
    /// Every failure here is invalid input.
    pub fn load_config(&self) -> CliResult<Config> {
        let default_file = Path::new(DEFAULT_CONFIG);
        let file = match &self.config {
            Some(path) => Some(path.as_path()),
            None => default_file.exists().then_some(default_file),
        };
        let mut config = match file {
            Some(path) => Config::load(path).map_err(|e| CliError::Invalid(e.to_string()))?,
            None => Config::default(),
        };
        if let Some(backend) = self.backend {
            config.backend = backend;
        }
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(conf) = &self.ceph_conf {
            config.ceph.conf = conf.clone();
        }
        if let Some(pool) = &self.pool {
            config.ceph.pool = pool.clone();
        }
        if let Some(user) = &self.ceph_user {
            config.ceph.user = user.clone();
        }
        if let Some(ns) = &self.namespace {
            config.ceph.namespace = ns.clone();
        }
        if let Some(max) = self.max_chunk_size {
            config.max_chunk_size = max;
        }
        if let Some(cache) = self.cache_size {
            config.cache_size = cache;
        }
        if let Some(budget) = self.memory_budget {
            config.memory_budget = budget;
        }
        self.check_backend_flags(config.backend)?;
        config
            .validate()
            .map_err(|e| CliError::Invalid(e.to_string()))?;
        for warning in config.warnings() {
            eprintln!("cloudstore-fs: warning: configuration: {warning}");
        }
        Ok(config)
    }
}

impl StoreArgs {
    /// Flags of another backend than the one used are refused, naming them: a forgotten
    /// `--backend ceph` would otherwise open an empty LevelDB store and ignore the Ceph options.
    fn check_backend_flags(&self, backend: Backend) -> CliResult<()> {
        let leveldb = [
            ("--data-dir", self.data_dir.is_some()),
            ("--cache-size", self.cache_size.is_some()),
        ];
        let ceph = [
            ("--ceph-conf", self.ceph_conf.is_some()),
            ("--pool", self.pool.is_some()),
            ("--ceph-user", self.ceph_user.is_some()),
            ("--namespace", self.namespace.is_some()),
        ];
        let (other, misfits): (&str, Vec<&str>) = match backend {
            Backend::Leveldb => ("ceph", given(&ceph)),
            Backend::Ceph => ("leveldb", given(&leveldb)),
            Backend::Memory => ("leveldb or ceph", [given(&leveldb), given(&ceph)].concat()),
        };
        if misfits.is_empty() {
            return Ok(());
        }
        let used = format!("{backend:?}").to_lowercase();
        let how = if self.backend.is_some() {
            "--backend"
        } else {
            "the default, or `backend` in the config file"
        };
        Err(CliError::Invalid(format!(
            "{} {} of the {other} backend, but the backend is {used} ({how}); \
             choose the backend with --backend",
            misfits.join(", "),
            if misfits.len() == 1 {
                "is an option"
            } else {
                "are options"
            },
        )))
    }
}

/// The names of the flags that were given.
fn given<'a>(flags: &[(&'a str, bool)]) -> Vec<&'a str> {
    flags
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect()
}
