//! Configuration, like the Go `NewCloudstore(config)`: a TOML file (`--config FILE`) whose values
//! the command-line flags override. Unknown keys and bad values are errors that say what is wrong.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Which store the configuration opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Embedded LevelDB in a local directory (the default).
    Leveldb,
    /// Ceph RADOS through librados (built with the `ceph` feature).
    Ceph,
    /// In-process memory, lost at exit: for tests and trials.
    Memory,
}

/// LevelDB table compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Snappy (LevelDB's default, and what other LevelDB writers produce).
    Snappy,
    /// Uncompressed tables.
    None,
}

/// Default largest value, in bytes: 64 MiB (Ceph refuses one op over 90 MiB).
pub const DEFAULT_MAX_CHUNK_SIZE: u64 = 64 << 20;

/// A configuration that cannot be used: the file is unreadable or malformed, or a value is out
/// of range. Config depends on nothing of the store; callers turn this into their own error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    /// The file is not valid TOML for a configuration (unknown key, wrong type).
    #[error("config {origin}: {reason}")]
    Parse { origin: String, reason: String },
    /// A value that parses but cannot work: names the key and why.
    #[error("invalid configuration: {key} = {value}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: String,
    },
}

impl ConfigError {
    /// The errno a filesystem would report for it (bad input).
    pub fn errno(&self) -> i32 {
        libc::EINVAL
    }
}

/// Everything a store and the mount are opened with.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Which backend to open.
    pub backend: Backend,
    /// LevelDB: the database directory.
    pub data_dir: PathBuf,
    /// Largest value accepted, in bytes.
    #[serde(deserialize_with = "crate::size::deserialize")]
    pub max_chunk_size: u64,
    /// LevelDB: block cache size in bytes. Values read do not fill it (issue 14: a copy of every
    /// value read stayed in the daemon); the kernel's page cache keeps the table files.
    #[serde(deserialize_with = "crate::size::deserialize")]
    pub cache_size: u64,
    /// LevelDB: write buffer (memtable) size in bytes.
    #[serde(deserialize_with = "crate::size::deserialize")]
    pub write_buffer_size: u64,
    /// LevelDB: table files kept open.
    pub max_open_files: u64,
    /// LevelDB: table compression.
    pub compression: Compression,
    /// Mount: bytes of chunk data the daemon may hold (write buffers, read cache, scratch files).
    #[serde(deserialize_with = "crate::size::deserialize")]
    pub memory_budget: u64,
    /// Ceph settings.
    pub ceph: CephConfig,
}

/// Ceph RADOS connection settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CephConfig {
    /// The ceph.conf to read (it names the monitors and the keyring).
    pub conf: PathBuf,
    /// The pool that holds the chunks.
    pub pool: String,
    /// The client name without "client." (cephx user).
    pub user: String,
    /// The RADOS namespace inside the pool ("" = the default namespace).
    pub namespace: String,
    /// Seconds to wait for the monitors when connecting.
    pub connect_timeout_secs: u64,
    /// Seconds an OSD or monitor operation may take before it fails.
    pub op_timeout_secs: u64,
    /// Batch operations in flight at once.
    pub max_in_flight: usize,
    /// Check at connect that this client may use the pool (one stat the OSDs answer), so that
    /// a refused pool fails a mount at once. Not a configuration key: the one-shot commands
    /// turn it off, their operation is the check (a probe first would double what a stopped
    /// cluster makes them wait).
    #[serde(skip)]
    pub probe_access: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            backend: Backend::Leveldb,
            data_dir: PathBuf::from("cloudstore-data"),
            max_chunk_size: DEFAULT_MAX_CHUNK_SIZE,
            cache_size: 64 << 20,
            write_buffer_size: 64 << 20,
            max_open_files: 1000,
            compression: Compression::Snappy,
            memory_budget: 1 << 30,
            ceph: CephConfig::default(),
        }
    }
}

impl Default for CephConfig {
    fn default() -> Self {
        CephConfig {
            conf: PathBuf::from("/etc/ceph/ceph.conf"),
            pool: "cloudstore".into(),
            user: "admin".into(),
            namespace: String::new(),
            connect_timeout_secs: 10,
            op_timeout_secs: 30,
            max_in_flight: 128,
            probe_access: true,
        }
    }
}

impl CephConfig {
    /// The connect timeout as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    /// The operation timeout as a duration.
    pub fn op_timeout(&self) -> Duration {
        Duration::from_secs(self.op_timeout_secs)
    }
}

impl Config {
    /// Parses a TOML configuration.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            reason: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a TOML configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Config::from_toml(&text, &path.display().to_string())
    }

    /// Checks values that parse but make no sense; the error names the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &'static str, value: impl ToString, reason: &str) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                key,
                value: value.to_string(),
                reason: reason.into(),
            })
        }
        if self.max_chunk_size == 0 {
            return bad("max_chunk_size", 0, "must be at least 1 byte");
        }
        if self.backend == Backend::Ceph && self.max_chunk_size > 90 << 20 {
            return bad(
                "max_chunk_size",
                self.max_chunk_size,
                "over 90 MiB (94371840): Ceph refuses larger single operations",
            );
        }
        if self.memory_budget == 0 {
            return bad(
                "memory_budget",
                0,
                "must be at least max_chunk_size: the daemon could hold no file data",
            );
        }
        // A value is held whole while it is written: a budget below the largest value would
        // accept writes that can never be committed, so it is refused up front.
        if self.memory_budget < self.max_chunk_size {
            return bad(
                "memory_budget",
                self.memory_budget,
                &format!(
                    "smaller than max_chunk_size ({}): a value of the maximum size could never \
                     be written; raise memory_budget or lower max_chunk_size",
                    self.max_chunk_size
                ),
            );
        }
        // LevelDB's own limits (it would clip silently).
        if !(64 << 10..=1 << 30).contains(&self.write_buffer_size) {
            return bad(
                "write_buffer_size",
                self.write_buffer_size,
                "must be between 64 KiB (65536) and 1 GiB (1073741824)",
            );
        }
        if !(74..=50_000).contains(&self.max_open_files) {
            return bad(
                "max_open_files",
                self.max_open_files,
                "must be between 74 and 50000",
            );
        }
        // LevelDB with no block cache of ours still builds an 8 MiB one of its own: 0 would not
        // mean "no cache", so it is refused rather than silently ignored.
        if self.cache_size == 0 {
            return bad(
                "cache_size",
                0,
                "must be at least 1 byte (LevelDB always keeps a block cache; 0 would silently \
                 become its default 8 MiB)",
            );
        }
        if self.cache_size > 1 << 40 {
            return bad("cache_size", self.cache_size, "over 1 TiB (it is in bytes)");
        }
        if self.backend == Backend::Leveldb && self.data_dir.as_os_str().is_empty() {
            return bad("data_dir", "\"\"", "is empty");
        }
        if self.backend == Backend::Ceph && self.ceph.pool.is_empty() {
            return bad("ceph.pool", "\"\"", "is empty");
        }
        if self.ceph.max_in_flight == 0 {
            return bad("ceph.max_in_flight", 0, "must be at least 1");
        }
        if self.ceph.connect_timeout_secs == 0 {
            return bad(
                "ceph.connect_timeout_secs",
                0,
                "must be at least 1 second (0 would wait forever)",
            );
        }
        if self.ceph.op_timeout_secs == 0 {
            return bad(
                "ceph.op_timeout_secs",
                0,
                "must be at least 1 second (0 would wait forever)",
            );
        }
        Ok(())
    }

    /// Values that work but likely not as meant, one sentence each (logged at startup).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        // Committing a value holds the write buffer and the store's copies of it at once:
        // Ceph one (the request), LevelDB two (the batch, the memtable) and, for a value as big
        // as its write buffer, three (the memtable and the table block it is written out to,
        // grown to twice its size), the write buffer being freed once the batch holds it.
        let (copies, times, besides) = match self.backend {
            Backend::Leveldb if self.max_chunk_size >= self.write_buffer_size => {
                (3, "three times", " (and snappy's buffer)")
            }
            _ => (2, "twice", ""),
        };
        if self.memory_budget < self.max_chunk_size.saturating_mul(copies) {
            out.push(format!(
                "memory_budget ({}) is less than {times} max_chunk_size ({}): a value near the \
                 maximum is held {times}{besides} while it is committed and may fail with ENOMEM",
                self.memory_budget, self.max_chunk_size
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file() {
        let c = Config::from_toml(
            "backend = \"ceph\"\nmax_chunk_size = 1048576\n[ceph]\npool = \"p\"\nnamespace = \"ns\"\n",
            "test",
        )
        .unwrap();
        assert_eq!(c.backend, Backend::Ceph);
        assert_eq!(c.max_chunk_size, 1 << 20);
        assert_eq!(c.ceph.pool, "p");
        assert_eq!(c.ceph.namespace, "ns");
        assert_eq!(c.ceph.user, "admin");
    }

    #[test]
    fn sizes_are_bytes_or_text_with_a_binary_suffix() {
        let c = Config::from_toml(
            "memory_budget = \"1G\"\nmax_chunk_size = \"64M\"\ncache_size = 8388608\n\
             write_buffer_size = \"4MiB\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.memory_budget, 1 << 30);
        assert_eq!(c.max_chunk_size, 64 << 20);
        assert_eq!(c.cache_size, 8 << 20);
        assert_eq!(c.write_buffer_size, 4 << 20);
        let e = Config::from_toml("memory_budget = \"lots\"\n", "t").unwrap_err();
        assert!(
            e.to_string().contains("memory_budget") && e.to_string().contains("\"lots\""),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let e = Config::from_toml("bakend = \"leveldb\"\n", "t").unwrap_err();
        assert!(e.to_string().contains("bakend"), "{e}");
        let e = Config::from_toml("backend = \"s3\"\n", "t").unwrap_err();
        assert!(e.to_string().contains("s3"), "{e}");
        let e = Config::from_toml("max_chunk_size = 0\n", "t").unwrap_err();
        assert!(e.to_string().contains("max_chunk_size"), "{e}");
        let e = Config::from_toml("max_chunk_size = -5\n", "t").unwrap_err();
        assert!(e.to_string().contains("max_chunk_size"), "{e}");
        let e = Config::from_toml("max_open_files = 10\n", "t").unwrap_err();
        assert!(e.to_string().contains("max_open_files"), "{e}");
        let e = Config::from_toml("write_buffer_size = 2147483648\n", "t").unwrap_err();
        assert!(e.to_string().contains("write_buffer_size"), "{e}");
        let e = Config::from_toml("compression = \"zstd\"\n", "t").unwrap_err();
        assert!(e.to_string().contains("zstd"), "{e}");
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let err = |toml: &str| Config::from_toml(toml, "t").unwrap_err();
        let cases = [
            ("memory_budget = 0\n", "memory_budget", "= 0"),
            ("cache_size = 0\n", "cache_size", "= 0"),
            (
                "max_chunk_size = 8388608\nmemory_budget = 4194304\n",
                "memory_budget",
                "smaller than max_chunk_size (8388608)",
            ),
            (
                "[ceph]\nop_timeout_secs = 0\n",
                "ceph.op_timeout_secs",
                "= 0",
            ),
            (
                "[ceph]\nconnect_timeout_secs = 0\n",
                "ceph.connect_timeout_secs",
                "= 0",
            ),
            ("[ceph]\nmax_in_flight = 0\n", "ceph.max_in_flight", "= 0"),
            (
                "backend = \"ceph\"\nmax_chunk_size = 104857600\n",
                "max_chunk_size",
                "90 MiB",
            ),
        ];
        for (toml, key, what) in cases {
            let e = err(toml);
            let ConfigError::Invalid { key: named, .. } = &e else {
                panic!("{toml}: not an invalid value: {e}");
            };
            assert_eq!(*named, key, "{toml}");
            let text = e.to_string();
            assert!(text.contains(key) && text.contains(what), "{toml}: {text}");
            assert_eq!(e.errno(), libc::EINVAL);
        }
        // The smallest accepted values.
        let c = Config::from_toml(
            "max_chunk_size = 1\nmemory_budget = 1\ncache_size = 1\n[ceph]\nop_timeout_secs = 1\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.memory_budget, 1);
        // Equal budget and maximum: accepted, with a warning about the commit's second copy.
        let c = Config::from_toml("max_chunk_size = 1024\nmemory_budget = 1024\n", "t").unwrap();
        assert_eq!(c.warnings().len(), 1, "{:?}", c.warnings());
        assert!(c.warnings()[0].contains("memory_budget (1024)"));
        assert!(Config::default().warnings().is_empty());
    }

    #[test]
    fn leveldb_options_parse() {
        let c = Config::from_toml(
            "compression = \"none\"\nmax_open_files = 500\ncache_size = 8388608\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.compression, Compression::None);
        assert_eq!(c.max_open_files, 500);
        assert_eq!(c.cache_size, 8 << 20);
        assert_eq!(Config::default().compression, Compression::Snappy);
    }
}
