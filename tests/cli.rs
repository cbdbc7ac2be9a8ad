//! The `cloudstore-fs` chunk commands, run as a process on a fresh LevelDB data directory:
//! round trips of binary data, ranges, exit codes, option placement, and a 100,000-chunk
//! import/export.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_cloudstore-fs");

/// A tiny deterministic generator (xorshift64*): reproducible data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// A scratch directory with a data directory inside that does not exist yet.
struct Env {
    tmp: TempDir,
    data: PathBuf,
}

impl Env {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("db");
        Env { tmp, data }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// The command with `--data-dir` placed after the subcommand's arguments.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args).arg("--data-dir").arg(&self.data);
        c.env_remove("RUST_LOG");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn run_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        assert_success(&out, args);
        out.stdout
    }
}

fn assert_success(out: &Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "{args:?} failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Expects exit code `code` and a stderr containing `needle`.
fn assert_fails(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(
        stderr.contains(needle),
        "stderr should mention {needle:?}: {stderr}"
    );
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn put_get_stat_ls_rm_round_trip_binary_data() {
    let env = Env::new();
    let mut rng = Rng(1);
    let values: Vec<(String, Vec<u8>)> = [("00", 1usize), ("00ab", 4096), ("ffee01", 300_000)]
        .iter()
        .map(|&(k, len)| (k.to_string(), rng.bytes(len)))
        .collect();
    for (key, value) in &values {
        let file = env.path(&format!("in-{key}"));
        fs::write(&file, value).unwrap();
        env.ok(&["put", key, file.to_str().unwrap()]);
    }
    for (key, value) in &values {
        assert_eq!(&env.ok(&["get", key]), value, "get {key}");
        assert_eq!(text(&env.ok(&["stat", key])), format!("{}\n", value.len()));
        let out = env.path(&format!("out-{key}"));
        env.ok(&["get", key, "-o", out.to_str().unwrap()]);
        assert_eq!(&fs::read(&out).unwrap(), value, "get -o {key}");
    }
    let listing = text(&env.ok(&["ls"]));
    let mut lines: Vec<&str> = listing.lines().collect();
    lines.sort();
    assert_eq!(lines, ["00 1", "00ab 4096", "ffee01 300000"]);

    // Keys are lowercase hex everywhere, on the command line too.
    assert_fails(
        &env.run(&["get", "00AB"]),
        2,
        "keys are written in lowercase hex (00ab)",
    );

    // A shorter put replaces the whole value.
    env.run_stdin(&["put", "ffee01"], b"short");
    assert_eq!(env.ok(&["get", "ffee01"]), b"short");

    env.ok(&["rm", "00ab"]);
    assert_fails(&env.run(&["get", "00ab"]), 1, "chunk 00ab not found");
    assert_eq!(text(&env.ok(&["ls"])).lines().count(), 2);
}

#[test]
fn get_ranges() {
    let env = Env::new();
    let value: Vec<u8> = (0..100u8).collect();
    env.run_stdin(&["put", "0102"], &value);
    let range = |r: &str| env.ok(&["get", "0102", "--range", r]);
    assert_eq!(range("10..20"), &value[10..20]);
    assert_eq!(range("90.."), &value[90..]);
    assert_eq!(range("95..200"), &value[95..], "clamped, not padded");
    assert_eq!(range("150.."), b"", "past the end: empty");
    assert_eq!(range("..5"), &value[..5]);
    assert_eq!(range("0..0"), b"");
    assert_eq!(range("7..7"), b"");
    assert_fails(
        &env.run(&["get", "0103", "--range", "1..2"]),
        1,
        "not found",
    );
}

#[test]
fn missing_keys_exit_1() {
    let env = Env::new();
    env.run_stdin(&["put", "01"], b"x");
    for cmd in ["get", "stat", "rm"] {
        assert_fails(&env.run(&[cmd, "00ab"]), 1, "chunk 00ab not found");
    }
    assert_fails(&env.run(&["get", "00ab", "--range", "0.."]), 1, "00ab");
}

#[test]
fn invalid_input_exits_2_and_says_why() {
    let env = Env::new();
    env.run_stdin(&["put", "01"], b"x");
    assert_fails(&env.run(&["get", "zz"]), 2, "not a hex digit");
    assert_fails(&env.run(&["stat", "abc"]), 2, "odd number of hex digits");
    assert_fails(&env.run(&["put", "0g1"]), 2, "'g'");
    assert_fails(&env.run(&["rm", ""]), 2, "empty key");
    assert_fails(
        &env.run(&["get", "01", "--range", "5..2"]),
        2,
        "start 5 is after end 2",
    );
    assert_fails(&env.run(&["get", "01", "--range", "x.."]), 2, "\"x\"");
    assert_fails(&env.run(&["get", "01", "--range", "12"]), 2, "not a range");
    assert_fails(&env.run(&["ls", "--frobnicate"]), 2, "--frobnicate");
    assert_fails(&env.run(&["frobnicate"]), 2, "frobnicate");
    assert_fails(&env.run(&["ls", "--backend", "s3"]), 2, "s3");
    assert_fails(
        &env.run(&["ls", "--max-chunk-size", "0"]),
        2,
        "max_chunk_size",
    );
    assert_fails(
        &env.run(&["put", "02", "/nonexistent/file"]),
        2,
        "/nonexistent/file",
    );

    let config = env.path("bad.toml");
    fs::write(&config, "bakend = \"leveldb\"\n").unwrap();
    assert_fails(
        &env.run(&["ls", "--config", config.to_str().unwrap()]),
        2,
        "bakend",
    );
    fs::write(&config, "max_chunk_size = \"big\"\n").unwrap();
    assert_fails(
        &env.run(&["ls", "--config", config.to_str().unwrap()]),
        2,
        "max_chunk_size",
    );

    // A value over the configured maximum is refused as invalid input, and nothing is stored.
    assert_fails(
        &env.run_stdin(&["put", "03", "--max-chunk-size", "4"], b"12345"),
        2,
        "maximum chunk size",
    );
    assert_fails(&env.run(&["stat", "03"]), 1, "not found");
}

#[test]
fn store_failures_exit_3() {
    let env = Env::new();
    // The data directory's parent is a file: LevelDB cannot be opened there.
    let file = env.path("plain-file");
    fs::write(&file, b"").unwrap();
    let out = Command::new(BIN)
        .args(["ls", "--data-dir"])
        .arg(file.join("db"))
        .output()
        .unwrap();
    assert_fails(&out, 3, "cannot open the store");

    // A second process on the same data directory: the first holds it while it reads stdin.
    let mut first = env
        .cmd(&["put", "01"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !env.data.join("LOCK").exists() {
        assert!(
            t.elapsed().as_secs() < 30,
            "the first process never opened the store"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_fails(&env.run(&["ls"]), 3, "locked");
    first.stdin.take().unwrap().write_all(b"first").unwrap();
    let out = first.wait_with_output().unwrap();
    assert_success(&out, &["put 01 while locked"]);
    assert_eq!(env.ok(&["get", "01"]), b"first");
}

#[test]
fn store_options_go_before_or_after_the_subcommand() {
    let env = Env::new();
    let data = env.data.to_str().unwrap();
    fs::write(env.path("in"), b"before").unwrap();
    let out = Command::new(BIN)
        .args(["--data-dir", data, "--backend", "leveldb", "put", "0a"])
        .arg(env.path("in"))
        .output()
        .unwrap();
    assert_success(&out, &["put before"]);
    let out = Command::new(BIN)
        .args(["get", "0a", "--backend", "leveldb", "--data-dir", data])
        .output()
        .unwrap();
    assert_success(&out, &["get after"]);
    assert_eq!(out.stdout, b"before");
    let out = Command::new(BIN)
        .args(["--cache-size", "8M", "stat", "--data-dir", data, "0a"])
        .output()
        .unwrap();
    assert_success(&out, &["stat mixed"]);
    assert_eq!(out.stdout, b"6\n");

    // The config file names the data directory; a flag overrides it.
    let config = env.path("store.toml");
    fs::write(&config, format!("data_dir = {data:?}\n")).unwrap();
    let out = Command::new(BIN)
        .args(["get", "0a", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_success(&out, &["get --config"]);
    assert_eq!(out.stdout, b"before");
    let other = env.path("other-db");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(["get", "0a", "--data-dir"])
        .arg(&other)
        .output()
        .unwrap();
    assert_fails(&out, 3, &format!("no LevelDB store in {}", other.display()));
}

#[test]
fn put_from_stdin_and_empty_values() {
    let env = Env::new();
    let value = Rng(7).bytes(70_000);
    assert_success(&env.run_stdin(&["put", "aa"], &value), &["put aa"]);
    assert_success(&env.run_stdin(&["put", "bb", "-"], b"dash"), &["put bb -"]);
    assert_eq!(env.ok(&["get", "aa"]), value);
    assert_eq!(env.ok(&["get", "bb"]), b"dash");

    // An empty value exists: found, 0 bytes; not the same as missing.
    assert_success(&env.run_stdin(&["put", "cc"], b""), &["put cc"]);
    let empty = env.path("empty");
    fs::write(&empty, b"").unwrap();
    env.ok(&["put", "dd", empty.to_str().unwrap()]);
    for key in ["cc", "dd"] {
        assert_eq!(env.ok(&["get", key]), b"");
        assert_eq!(env.ok(&["stat", key]), b"0\n");
        assert_eq!(env.ok(&["get", key, "--range", "0.."]), b"");
    }
    let listing = text(&env.ok(&["ls"]));
    assert!(listing.lines().any(|l| l == "cc 0"), "{listing}");
    env.ok(&["rm", "cc"]);
    assert_fails(&env.run(&["get", "cc"]), 1, "chunk cc not found");
}

/// Writes `n` chunk files with random names and sizes 0..=256; returns name -> value.
fn make_chunk_dir(dir: &Path, n: u32, rng: &mut Rng) -> BTreeMap<String, Vec<u8>> {
    fs::create_dir_all(dir).unwrap();
    let mut chunks = BTreeMap::new();
    for i in 0..n {
        // 4 distinct bytes, then 0-3 random ones: distinct keys of varied lengths.
        let mut key = i.to_be_bytes().to_vec();
        let extra = rng.below(4) as usize;
        key.extend(rng.bytes(extra));
        let len = rng.below(257) as usize;
        let value = rng.bytes(len);
        let name = hex::encode(&key);
        fs::write(dir.join(&name), &value).unwrap();
        chunks.insert(name, value);
    }
    chunks
}

/// A scratch directory for 200,000 small files: on tmpfs when there is one, because on a busy
/// disk the journal work of creating and removing them took minutes (the store stays on disk).
fn bulk_tempdir() -> TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

#[test]
fn import_then_export_100k_chunks_byte_identical() {
    const N: u32 = 100_000;
    let env = Env::new();
    let bulk = bulk_tempdir();
    let src = bulk.path().join("src");
    let t = Instant::now();
    let chunks = make_chunk_dir(&src, N, &mut Rng(42));
    let total: usize = chunks.values().map(Vec::len).sum();
    // Names that are not chunk names are reported and skipped.
    let skipped = ["README.txt", "ABCD", "abc", ".hidden0a"];
    for name in skipped {
        fs::write(src.join(name), b"not a chunk").unwrap();
    }
    fs::create_dir(src.join("0a0b")).unwrap();
    eprintln!("generated {N} files in {:.1} s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let out = env.run(&["import", src.to_str().unwrap()]);
    assert_success(&out, &["import"]);
    eprintln!("import: {:.1} s", t.elapsed().as_secs_f64());
    let summary = text(&out.stdout);
    assert!(
        summary.starts_with(&format!(
            "imported {N} chunks ({total} bytes), skipped 5 files in "
        )),
        "{summary}"
    );
    let stderr = text(&out.stderr);
    for name in skipped.iter().chain(&["0a0b"]) {
        assert!(
            stderr.contains(&format!("/{name}: ")),
            "{name} not reported: {stderr}"
        );
    }

    let t = Instant::now();
    let dst = bulk.path().join("dst");
    let out = env.run(&["export", dst.to_str().unwrap()]);
    assert_success(&out, &["export"]);
    eprintln!("export: {:.1} s", t.elapsed().as_secs_f64());
    assert!(
        text(&out.stdout).starts_with(&format!("exported {N} chunks ({total} bytes) in ")),
        "{}",
        text(&out.stdout)
    );

    let t = Instant::now();
    let mut count = 0;
    for entry in fs::read_dir(&dst).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let expected = chunks
            .get(&name)
            .unwrap_or_else(|| panic!("unexpected file {name}"));
        assert_eq!(&fs::read(entry.path()).unwrap(), expected, "{name}");
        count += 1;
    }
    assert_eq!(count, chunks.len());
    eprintln!("compare: {:.1} s", t.elapsed().as_secs_f64());

    // ls streams every chunk; a reader that stops early (`| head -1`) is not an error.
    let t = Instant::now();
    let mut child = env
        .cmd(&["ls"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_success(&out, &["ls | head -1"]);
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let (name, size) = first.trim_end().split_once(' ').unwrap();
    assert_eq!(size.parse::<usize>().unwrap(), chunks[name].len());
    let listing = env.ok(&["ls"]);
    assert_eq!(
        listing.iter().filter(|&&b| b == b'\n').count(),
        chunks.len()
    );
    eprintln!("ls: {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    drop(bulk);
    eprintln!("cleanup: {:.1} s", t.elapsed().as_secs_f64());
}

#[test]
fn import_errors_and_export_into_existing_dir() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("01"), b"one").unwrap();
    fs::write(src.join("02"), b"too large!").unwrap();
    let out = env.run(&["import", src.to_str().unwrap(), "--max-chunk-size", "5"]);
    assert_fails(&out, 3, "could not be imported");
    assert!(
        text(&out.stderr).contains("/02: 10 bytes exceed"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("imported 1 chunks (3 bytes), skipped 0 files, 1 failed"));
    assert_eq!(env.ok(&["get", "01"]), b"one");
    assert_fails(&env.run(&["stat", "02"]), 1, "not found");

    assert_fails(
        &env.run(&["import", "/nonexistent-dir"]),
        2,
        "/nonexistent-dir",
    );

    let dst = env.path("dst");
    fs::create_dir(&dst).unwrap();
    fs::write(dst.join("01"), b"old and longer").unwrap();
    env.ok(&["export", dst.to_str().unwrap()]);
    assert_eq!(fs::read(dst.join("01")).unwrap(), b"one");
}

/// `completions SHELL` prints a completion script that knows the subcommands and options; a
/// shell it does not know is exit 2. The (hidden) `man` prints a man page, with a section per
/// subcommand and the options, that man(1) renders.
#[test]
fn completions_and_man_page() {
    let run = |args: &[&str]| Command::new(BIN).args(args).output().unwrap();
    let bash = run(&["completions", "bash"]);
    assert!(bash.status.success());
    let bash = String::from_utf8(bash.stdout).unwrap();
    for word in ["cloudstore-fs", "unmount", "--log-file", "--data-dir"] {
        assert!(
            bash.contains(word),
            "{word} missing from the bash completions"
        );
    }
    for shell in ["zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success() && out.stdout.len() > 1000, "{shell}");
    }
    assert_eq!(run(&["completions", "nosh"]).status.code(), Some(2));
    let man = run(&["man"]);
    assert!(man.status.success());
    let man = String::from_utf8(man.stdout).unwrap();
    assert!(man.contains(".TH cloudstore-fs 1"), "{man}");
    for section in [
        ".SH \"MOUNT\"",
        ".SH \"UNMOUNT\"",
        "\\-\\-read\\-only",
        "\\-\\-log\\-level",
    ] {
        assert!(man.contains(section), "{section} missing from the man page");
    }
    if Command::new("man").arg("--version").output().is_ok() {
        let dir = tempfile::tempdir().unwrap();
        let page = dir.path().join("cloudstore-fs.1");
        fs::write(&page, &man).unwrap();
        let rendered = Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&rendered.stdout);
        assert!(
            rendered.status.success() && text.contains("--memory-budget"),
            "{text}"
        );
    }
}
