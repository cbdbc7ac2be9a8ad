//! fsx, the file system exerciser (the Rust port, `cargo install fsx`: asomers/fsx-rs), on real
//! mounts over LevelDB and over Ceph: random reads, writes, mmap reads and writes, truncates,
//! fsyncs and close/open, each read checked against fsx's own model of the file. 10,000 operations
//! per run, with fixed seeds (printed on failure, with the command to reproduce it), the
//! fallocate family (posix_fallocate, punch hole) off: the mount does not offer it. fsx's side
//! files (`NAME.fsxgood`) go to a directory outside the mount (`-P`): their names are not hex.
//! Needs root, /dev/fuse and the fsx binary (scripts/test.sh installs it; SKIPPED otherwise, a
//! failure under CI=true).

mod ceph_support;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ceph_support::skip_or_fail;
use common::mount::{TestMount, SMALL_STORE_CACHES};

/// The fsx version scripts/test.sh installs (its op sequence for a seed depends on the version).
const FSX_VERSION: &str = "0.3.2";
/// Operations per fsx run.
const OPS: u32 = 10_000;
/// A run that takes longer than this is stuck (a hung request): it is killed and fails.
const TIMEOUT: Duration = Duration::from_secs(900);
/// The mounts' --memory-budget: far more than fsx's files (at most 4 x 8 MiB) need.
const BUDGET: u64 = 256 << 20;
/// A runaway guard, not the memory test (that is tests/integrity_memory.rs): fsx is stopped, and the run
/// fails, when the daemon's resident memory passes this, before the daemon takes the machine's
/// memory (today's grew to 13 GiB and was OOM-killed under the 8 MiB variant).
const RSS_LIMIT: u64 = 1 << 30;

/// The op weights every variant starts from: pread/pwrite, mmap reads and writes (msync after
/// each), ftruncate, msync(MS_INVALIDATE), fsync and fdatasync (both commit); no
/// posix_fallocate, no punch hole, no sendfile, no posix_fadvise, no copy_file_range.
const WEIGHTS: &[(&str, f64)] = &[
    ("close_open", 0.0),
    ("read", 10.0),
    ("write", 10.0),
    ("mapread", 10.0),
    ("mapwrite", 10.0),
    ("invalidate", 1.0),
    ("truncate", 5.0),
    ("fsync", 1.0),
    ("fdatasync", 1.0),
    ("posix_fallocate", 0.0),
    ("punch_hole", 0.0),
    ("sendfile", 0.0),
    ("posix_fadvise", 0.0),
    ("copy_file_range", 0.0),
];

/// One way of running fsx.
struct Variant {
    name: &'static str,
    /// The first file's seed; file `i` of a parallel run uses `seed + i`.
    seed: u64,
    /// Largest file size (fsx `flen`).
    flen: u64,
    /// Largest read or write (fsx `opsize.max`).
    opsize: u64,
    /// Weights that differ from [`WEIGHTS`].
    weights: &'static [(&'static str, f64)],
    /// fsx processes at once, each on its own chunk.
    files: u64,
}

impl Variant {
    /// The fsx.toml of this variant.
    fn config(&self) -> String {
        let mut s = format!(
            "flen = {}\n\n[opsize]\nmax = {}\n\n[weights]\n",
            self.flen, self.opsize
        );
        for (op, w) in WEIGHTS {
            let w = self
                .weights
                .iter()
                .find(|(o, _)| o == op)
                .map_or(*w, |(_, w)| *w);
            s.push_str(&format!("{op} = {w:?}\n"));
        }
        s
    }
}

/// The fsx binary: $FSX, ~/.cargo/bin/fsx, or the PATH. `None` (after SKIPPED) when missing.
fn fsx_binary(test: &str) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("FSX") {
        candidates.push(p.into());
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cargo/bin/fsx"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("fsx")));
    }
    let found = candidates.into_iter().find(|p| p.is_file());
    if found.is_none() {
        skip_or_fail(&format!(
            "{test} needs fsx (cargo install fsx --version {FSX_VERSION} --locked; \
             scripts/test.sh installs it)"
        ));
    }
    found
}

/// The daemon's resident memory in bytes (0 when it is gone).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Why a run was stopped.
enum Stopped {
    Exited(std::process::ExitStatus),
    TimedOut,
    DaemonTooBig(u64),
}

/// Waits for `child` up to `deadline` while the daemon stays under [`RSS_LIMIT`]; kills the
/// child (this test started it) otherwise.
fn wait_until(child: &mut Child, deadline: Instant, daemon: Option<u32>) -> Stopped {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Stopped::Exited(status);
        }
        let big = daemon.map_or(0, rss);
        if Instant::now() > deadline || big > RSS_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return if big > RSS_LIMIT {
                Stopped::DaemonTooBig(big)
            } else {
                Stopped::TimedOut
            };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs the variant's fsx processes on chunks `f5NN` of the mount and asserts they all pass.
fn run(m: &mut TestMount, v: &Variant, test: &str) {
    let Some(fsx) = fsx_binary(test) else {
        return;
    };
    let conf = m.outside(&format!("fsx-{}.toml", v.name));
    std::fs::write(&conf, v.config()).unwrap();
    let artifacts = m.outside(&format!("fsx-{}-artifacts", v.name));
    std::fs::create_dir_all(&artifacts).unwrap();
    let started = Instant::now();
    let mut runs = Vec::new();
    for i in 0..v.files {
        let file = m.path(&format!("f5{i:02x}"));
        let seed = v.seed + i;
        let log = m.outside(&format!("fsx-{}-{i}.log", v.name));
        let cmdline = format!(
            "{} -N {OPS} -S {seed} -P {} -f {} {}",
            fsx.display(),
            artifacts.display(),
            conf.display(),
            file.display()
        );
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(&fsx)
            .args(["-N", &OPS.to_string(), "-S", &seed.to_string(), "-P"])
            .arg(&artifacts)
            .arg("-f")
            .arg(&conf)
            .arg(&file)
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap_or_else(|e| panic!("{cmdline}: {e}"));
        runs.push((child, cmdline, log, seed));
    }
    let deadline = started + TIMEOUT;
    let daemon = m.daemon_pid();
    let mut failures = Vec::new();
    for (mut child, cmdline, log, seed) in runs {
        let status = match wait_until(&mut child, deadline, daemon) {
            Stopped::Exited(s) if s.success() => continue,
            Stopped::Exited(s) => s.to_string(),
            Stopped::TimedOut => format!("timed out after {TIMEOUT:?}"),
            Stopped::DaemonTooBig(rss) => format!(
                "stopped: the daemon's RSS reached {} MiB (budget {} MiB, limit {} MiB)",
                rss >> 20,
                BUDGET >> 20,
                RSS_LIMIT >> 20
            ),
        };
        failures.push(format!(
            "fsx {} (seed {seed}) {}:\n  {cmdline}\n  fsx.toml:\n{}\n  its log ({}), the last \
                 operations:\n{}",
            v.name,
            status,
            v.config(),
            log.display(),
            tail(&log, 120)
        ));
    }
    let took = started.elapsed();
    assert!(
        failures.is_empty(),
        "{} of {} fsx run(s) failed after {took:?}; artifacts in {} (kept: {}):\n{}",
        failures.len(),
        v.files,
        artifacts.display(),
        keep(m),
        failures.join("\n\n")
    );
    // Nothing of fsx's landed in the mount but its chunks.
    let names: Vec<String> = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with("f5"))
        .collect();
    assert!(names.is_empty(), "stray files in the mount: {names:?}");
    eprintln!("fsx {}: {} x {OPS} ops in {took:?}", v.name, v.files);
}

/// Keeps the test directory (the fsx logs, the .fsxgood files) for a look after a failure.
fn keep(m: &mut TestMount) -> String {
    let dir = m.dir.path().to_path_buf();
    let kept = PathBuf::from(format!("{}-kept", dir.display()));
    match std::fs::create_dir_all(&kept) {
        Ok(()) => {
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                let name = e.file_name();
                if name.to_string_lossy().starts_with("fsx-") || name == "daemon.log" {
                    let _ = Command::new("cp")
                        .arg("-r")
                        .arg(e.path())
                        .arg(kept.join(&name))
                        .status();
                }
            }
            kept.display().to_string()
        }
        Err(e) => format!("not kept: {e}"),
    }
}

const MMAP: Variant = Variant {
    name: "mmap",
    seed: 7001,
    flen: 256 * 1024,
    opsize: 64 * 1024,
    weights: &[],
    files: 1,
};

const NO_MMAP: Variant = Variant {
    name: "no_mmap",
    seed: 7101,
    flen: 256 * 1024,
    opsize: 64 * 1024,
    weights: &[("mapread", 0.0), ("mapwrite", 0.0), ("invalidate", 0.0)],
    files: 1,
};

const CLOSE_OPEN: Variant = Variant {
    name: "close_open",
    seed: 7201,
    flen: 256 * 1024,
    opsize: 64 * 1024,
    weights: &[("close_open", 4.0)],
    files: 1,
};

/// Files up to 8 MiB: every fsync and close commits the whole value, and an mmap write of a big
/// file costs the most (~0.2 s on today's debug daemon), so those are rarer.
const BIG_FILES: Variant = Variant {
    name: "big_files",
    seed: 7301,
    flen: 8 << 20,
    opsize: 256 * 1024,
    weights: &[
        ("close_open", 0.5),
        ("mapread", 3.0),
        ("mapwrite", 0.5),
        ("invalidate", 0.5),
        ("truncate", 2.0),
        ("fsync", 0.25),
        ("fdatasync", 0.25),
    ],
    files: 1,
};

/// Four fsx at once, each on its own chunk, with close/open.
const PARALLEL: Variant = Variant {
    name: "parallel",
    seed: 7401,
    flen: 256 * 1024,
    opsize: 64 * 1024,
    weights: &[("close_open", 1.0)],
    files: 4,
};

macro_rules! fsx_suite {
    ($backend:ident, $store:expr) => {
        mod $backend {
            use super::*;

            fn go(v: &Variant) {
                let test = format!("fsx::{}::{}", stringify!($backend), v.name);
                let budget = BUDGET.to_string();
                let args = ["--memory-budget", budget.as_str()];
                if let Some(mut m) =
                    TestMount::with_config($store, &test, SMALL_STORE_CACHES, &args)
                {
                    run(&mut m, v, &test);
                }
            }

            #[test]
            fn fsx_mmap() {
                go(&MMAP);
            }

            #[test]
            fn fsx_no_mmap() {
                go(&NO_MMAP);
            }

            #[test]
            fn fsx_close_open() {
                go(&CLOSE_OPEN);
            }

            #[test]
            fn fsx_big_files() {
                go(&BIG_FILES);
            }

            #[test]
            fn fsx_four_in_parallel() {
                go(&PARALLEL);
            }
        }
    };
}

fsx_suite!(leveldb, common::mount::Store::Leveldb);
fsx_suite!(ceph, common::mount::Store::Ceph);
