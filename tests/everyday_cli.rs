//! The command line as people use it every day: how a data directory is opened (a mistyped one
//! is never turned into a new empty store), errors printed once, one spelling of keys, `import`
//! and symlinks, keys that cannot be file names in `ls`, `export` and the mount, `df` of a mount,
//! and a clean unmount that logs no error. Through the built binary on real LevelDB directories;
//! the mount cases need root and /dev/fuse (SKIPPED otherwise, a failure under CI=true).

mod ceph_support;
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cloudstore_fs::store::leveldb::db::{Db, Options};
use common::mount::{fuse_available, Store, TestMount, BIN};

/// A scratch directory; `db` inside it does not exist yet.
struct Env {
    tmp: tempfile::TempDir,
    data: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("db");
        Env { tmp, data }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `cloudstore-fs ARGS --data-dir DATA`, with no RUST_LOG: what a user sees.
    fn run(&self, args: &[&str]) -> Output {
        run_in(self.tmp.path(), args, &self.data)
    }
}

fn run_in(cwd: &Path, args: &[&str], data: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Exit code `code` and stderr exactly `line` (one line: every error is printed once).
fn assert_fails_with(out: &Output, code: i32, line: &str) {
    assert_eq!(out.status.code(), Some(code), "stderr: {}", stderr(out));
    assert_eq!(stderr(out), format!("{line}\n"));
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {}",
        out.status.code(),
        stderr(out)
    );
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn no_store(dir: &Path, what: &str) -> String {
    format!(
        "cloudstore-fs: cannot open the store: no LevelDB store in {}: the directory {what} \
         (check --data-dir; put, import and mount create a store)",
        dir.display()
    )
}

#[test]
fn reading_commands_never_create_a_store() {
    let env = Env::new();
    let export = env.path("out");
    let export = export.to_str().unwrap();
    let reads: [&[&str]; 5] = [
        &["ls"],
        &["get", "01"],
        &["stat", "01"],
        &["rm", "01"],
        &["export", export],
    ];
    for args in reads {
        let out = env.run(args);
        assert_fails_with(&out, 3, &no_store(&env.data, "does not exist"));
        assert!(
            !env.data.exists(),
            "{args:?} created {}",
            env.data.display()
        );
    }
    fs::create_dir(&env.data).unwrap();
    for args in reads {
        let out = env.run(args);
        assert_fails_with(&out, 3, &no_store(&env.data, "is empty"));
        assert!(
            listing(&env.data).is_empty(),
            "{args:?} wrote into the empty directory"
        );
    }
    // A bare `ls` with no --data-dir does not leave ./cloudstore-data behind.
    let out = Command::new(BIN)
        .arg("ls")
        .current_dir(env.tmp.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let default = env.tmp.path().join("cloudstore-data");
    assert_fails_with(
        &out,
        3,
        &no_store(Path::new("cloudstore-data"), "does not exist"),
    );
    assert!(!default.exists());
    // mount --read-only is a reader too (refused before anything is mounted).
    let mnt = env.path("mnt");
    fs::create_dir(&mnt).unwrap();
    if Path::new("/dev/fuse").exists() {
        let out = env.run(&["mount", "--read-only", mnt.to_str().unwrap()]);
        assert_fails_with(&out, 3, &no_store(&env.data, "is empty"));
        assert!(listing(&env.data).is_empty());
    }
}

#[test]
fn put_and_import_create_a_store_and_say_so_once() {
    let env = Env::new();
    let created = format!(
        "cloudstore-fs: created a new LevelDB store in {}\n",
        env.data.display()
    );
    let input = env.path("in");
    fs::write(&input, b"one").unwrap();
    let out = env.run(&["put", "01", input.to_str().unwrap()]);
    assert_ok(&out, "put into a missing directory");
    assert_eq!(stderr(&out), created);
    let out = env.run(&["put", "02", input.to_str().unwrap()]);
    assert_ok(&out, "second put");
    assert_eq!(stderr(&out), "", "a second put says nothing");
    assert_eq!(stdout(&env.run(&["ls"])), "01 3\n02 3\n");

    // import into an empty directory: a new store, said once.
    let env = Env::new();
    fs::create_dir(&env.data).unwrap();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("0a"), b"ten").unwrap();
    let out = env.run(&["import", src.to_str().unwrap()]);
    assert_ok(&out, "import into an empty directory");
    assert_eq!(
        stderr(&out),
        format!(
            "cloudstore-fs: created a new LevelDB store in {}\n",
            env.data.display()
        )
    );
    assert_eq!(stdout(&env.run(&["get", "0a"])), "ten");
}

#[test]
fn a_directory_that_holds_other_files_is_refused() {
    let env = Env::new();
    fs::create_dir(&env.data).unwrap();
    fs::write(env.data.join("notes.txt"), b"mine").unwrap();
    let refused = format!(
        "cloudstore-fs: cannot open the store: leveldb: {} is not empty and holds no LevelDB \
         store (no CURRENT file; it holds \"notes.txt\"): refusing to write a store into it; give \
         the store's directory, or a new or empty one",
        env.data.display()
    );
    let input = env.path("in");
    fs::write(&input, b"x").unwrap();
    for args in [
        &["put", "01", input.to_str().unwrap()][..],
        &["ls"],
        &["import", env.tmp.path().to_str().unwrap()],
    ] {
        assert_fails_with(&env.run(args), 3, &refused);
        assert_eq!(listing(&env.data), ["notes.txt"], "{args:?} wrote into it");
    }
    // A file where the directory should be.
    let file = env.path("plain");
    fs::write(&file, b"").unwrap();
    let out = run_in(env.tmp.path(), &["ls"], &file);
    assert_fails_with(
        &out,
        3,
        &format!(
            "cloudstore-fs: cannot open the store: leveldb: data directory {} is not a directory",
            file.display()
        ),
    );
}

/// Whether we are root (needed to bind-mount, and to become another user).
fn is_root(test: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        ceph_support::skip_or_fail(&format!("{test} needs root"));
    }
    root
}

fn read_only_message(dir: &Path, why: &str) -> String {
    format!(
        "cloudstore-fs: cannot open the store: leveldb: the data directory {} is read-only \
         ({why}): LevelDB writes its lock file and log even to read, so it cannot open a store \
         there; remount it read-write or copy the store to a writable directory",
        dir.display()
    )
}

#[test]
fn a_read_only_directory_is_reported_as_read_only() {
    let test = "a_read_only_directory_is_reported_as_read_only";
    if !is_root(test) {
        return;
    }
    let env = Env::new();
    let input = env.path("in");
    fs::write(&input, b"kept").unwrap();
    assert_ok(&env.run(&["put", "01", input.to_str().unwrap()]), "put");

    // A read-only bind mount of the store.
    let ro = env.path("ro");
    fs::create_dir(&ro).unwrap();
    let sh = |script: &str| {
        let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
        assert_ok(&out, script);
    };
    sh(&format!(
        "mount --bind {0} {1} && mount -o remount,bind,ro {1}",
        env.data.display(),
        ro.display()
    ));
    let out = run_in(env.tmp.path(), &["get", "01"], &ro);
    let put = run_in(env.tmp.path(), &["put", "02", input.to_str().unwrap()], &ro);
    sh(&format!("umount {}", ro.display()));
    assert_fails_with(
        &out,
        3,
        &read_only_message(&ro, "Read-only file system (os error 30)"),
    );
    assert_fails_with(
        &put,
        3,
        &read_only_message(&ro, "Read-only file system (os error 30)"),
    );

    // A 0555 directory, for a user who is not root (root may write anyway).
    fs::set_permissions(env.tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&env.data, fs::Permissions::from_mode(0o555)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(BIN)
        .args(["get", "01", "--data-dir"])
        .arg(&env.data)
        .current_dir("/")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    fs::set_permissions(&env.data, fs::Permissions::from_mode(0o755)).unwrap();
    assert_fails_with(
        &out,
        3,
        &read_only_message(&env.data, "Permission denied (os error 13)"),
    );
    // Nothing changed: the store still reads.
    assert_eq!(stdout(&env.run(&["get", "01"])), "kept");
}

#[test]
fn every_error_is_printed_once() {
    let env = Env::new();
    let input = env.path("in");
    fs::write(&input, b"x").unwrap();
    assert_ok(&env.run(&["put", "01", input.to_str().unwrap()]), "put");
    assert_fails_with(
        &env.run(&["get", "00ab"]),
        1,
        "cloudstore-fs: chunk 00ab not found",
    );
    assert_fails_with(
        &env.run(&["rm", "00ab"]),
        1,
        "cloudstore-fs: chunk 00ab not found",
    );
    // A store that cannot be opened (its MANIFEST garbage): one line, no log line before it.
    let manifest = fs::read_dir(&env.data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("MANIFEST")
        })
        .unwrap();
    let saved = fs::read(&manifest).unwrap();
    fs::write(&manifest, vec![0x5a; saved.len()]).unwrap();
    let out = env.run(&["ls"]);
    fs::write(&manifest, saved).unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out)
        .starts_with("cloudstore-fs: cannot open the store: leveldb: cannot open database"));
    assert_eq!(stdout(&env.run(&["get", "01"])), "x");
}

#[test]
fn keys_are_lowercase_hex_everywhere() {
    let env = Env::new();
    let input = env.path("in");
    fs::write(&input, b"x").unwrap();
    for cmd in ["put", "get", "stat", "rm"] {
        let mut args = vec![cmd, "ABCD"];
        if cmd == "put" {
            args.push(input.to_str().unwrap());
        }
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(
                "'A' at position 0 is upper case: keys are written in lowercase hex (abcd)"
            ),
            "{}",
            stderr(&out)
        );
    }
    assert!(!env.data.exists(), "a refused put created the store");
    // import skips an upper-case name and says which name to use.
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("BA02"), b"upper").unwrap();
    fs::write(src.join("ba03"), b"lower").unwrap();
    let out = env.run(&["import", src.to_str().unwrap()]);
    assert_ok(&out, "import");
    assert!(
        stderr(&out).contains(&format!(
            "cloudstore-fs: skipping {}: not a chunk name ('B' at offset 0 is not a lowercase hex \
             digit; chunk names are lowercase: rename it to ba02)",
            src.join("BA02").display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).starts_with("imported 1 chunks (5 bytes), skipped 1 files"));
    assert_eq!(stdout(&env.run(&["ls"])), "ba03 5\n");
}

#[test]
fn import_does_not_follow_symlinks() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    let secret = env.path("secret");
    fs::write(&secret, b"not for the store").unwrap();
    std::os::unix::fs::symlink(&secret, src.join("01")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("02")).unwrap();
    fs::write(src.join("03"), b"three").unwrap();
    let out = env.run(&["import", src.to_str().unwrap()]);
    assert_ok(&out, "import");
    for name in ["01", "02"] {
        assert!(
            stderr(&out).contains(&format!(
                "cloudstore-fs: skipping {}: a symlink (not followed)",
                src.join(name).display()
            )),
            "{}",
            stderr(&out)
        );
    }
    assert!(stdout(&out).starts_with("imported 1 chunks (5 bytes), skipped 2 files"));
    assert_eq!(stdout(&env.run(&["ls"])), "03 5\n");
}

/// Writes keys that cannot be file names straight into LevelDB (as another program may), next
/// to a normal chunk: the empty key and a 128-byte key.
fn store_with_unnamed_keys(data: &Path) -> Vec<u8> {
    let long = vec![0xabu8; 128];
    let db = Db::open(
        data,
        &Options {
            cache_bytes: 1 << 20,
            write_buffer_size: 1 << 20,
            max_open_files: 100,
            compression: true,
            block_size: cloudstore_fs::store::leveldb::db::DEFAULT_BLOCK_SIZE,
        },
    )
    .unwrap();
    db.put(b"", b"empty-key", true).unwrap();
    db.put(&long, b"long-key", true).unwrap();
    db.put(&[0x01], b"one", true).unwrap();
    long
}

#[test]
fn keys_that_cannot_be_names_in_ls_get_and_export() {
    let env = Env::new();
    let long = hex::encode(store_with_unnamed_keys(&env.data));
    let out = env.run(&["ls"]);
    assert_ok(&out, "ls");
    // The empty key is `""`, never an empty field.
    assert_eq!(stdout(&out), format!("\"\" 9\n01 3\n{long} 8\n"));
    assert_eq!(stdout(&env.run(&["get", "\"\""])), "empty-key");
    assert_eq!(stdout(&env.run(&["get", &long])), "long-key");

    let dst = env.path("out");
    let out = env.run(&["export", dst.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "cloudstore-fs: skipping the chunk with key \"\": the empty key cannot be a file name\n\
             cloudstore-fs: skipping the chunk with key {long}: a key of 128 bytes cannot be a \
             file name (its name would have 256 characters, more than 254)\n\
             cloudstore-fs: 2 chunks were not exported: their keys cannot be file names (empty, \
             or longer than 127 bytes); read them with `cloudstore-fs get`\n"
        )
    );
    assert!(stdout(&out)
        .starts_with("exported 1 chunks (3 bytes), 2 skipped (keys that cannot be file names)"));
    assert_eq!(listing(&dst), ["01"]);
}

#[test]
fn keys_that_cannot_be_names_are_logged_once_per_mount() {
    let test = "keys_that_cannot_be_names_are_logged_once_per_mount";
    let Some(mut m) = TestMount::new(Store::Leveldb, test) else {
        return;
    };
    m.unmount();
    store_with_unnamed_keys(&m.outside("data"));
    m.mount();
    for _ in 0..3 {
        assert_eq!(listing(&m.mnt), ["01"]);
    }
    m.assert_logged(&["cannot be file names", "the first: key"]);
    let log = fs::read_to_string(m.log_path()).unwrap();
    assert_eq!(
        log.matches("cannot be file names").count(),
        1,
        "logged more than once:\n{log}"
    );
}

/// `df -B1 --output=size,used,avail PATH` as three numbers.
fn df(path: &Path) -> [u64; 3] {
    let out = Command::new("df")
        .args(["-B1", "--output=size,used,avail"])
        .arg(path)
        .output()
        .unwrap();
    assert_ok(&out, "df");
    let text = stdout(&out);
    let nums: Vec<u64> = text
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    [nums[0], nums[1], nums[2]]
}

#[test]
fn df_of_a_leveldb_mount_is_its_data_directorys_filesystem() {
    let test = "df_of_a_leveldb_mount_is_its_data_directorys_filesystem";
    let Some(m) = TestMount::new(Store::Leveldb, test) else {
        return;
    };
    let [size, used, avail] = df(&m.mnt);
    let [d_size, d_used, d_avail] = df(&m.outside("data"));
    // Others write to the same disk meanwhile: used and available agree within 256 MiB.
    let near = |a: u64, b: u64| a.abs_diff(b) <= 256 << 20;
    assert!(
        near(size, d_size) && near(used, d_used) && near(avail, d_avail),
        "df of the mount {:?}, of the data directory {:?}",
        [size, used, avail],
        [d_size, d_used, d_avail]
    );
}

#[test]
fn a_clean_unmount_logs_no_error() {
    let test = "a_clean_unmount_logs_no_error";
    let Some(mut m) = TestMount::new(Store::Leveldb, test) else {
        return;
    };
    fs::write(m.path("01"), b"one").unwrap();
    m.unmount();
    m.mount();
    assert_eq!(fs::read(m.path("01")).unwrap(), b"one");
    m.signal_daemon(libc::SIGTERM);
    m.mark_unmounted();
    let log = fs::read_to_string(m.log_path()).unwrap();
    for bad in [
        "ERROR",
        "Unmount failed",
        "Failed to umount",
        "Invalid argument",
    ] {
        assert!(!log.contains(bad), "a clean unmount logged {bad:?}:\n{log}");
    }
    // Both ways out were taken: `unmount` and SIGTERM.
    assert_eq!(log.matches("unmounted").count(), 2, "{log}");
}

#[test]
fn mount_creates_a_store_and_says_so_once() {
    let test = "mount_creates_a_store_and_says_so_once";
    if !fuse_available(test) {
        return;
    }
    let Some(mut m) = TestMount::new(Store::Leveldb, test) else {
        return;
    };
    // TestMount's first mount created dir/data: a new mount of a new directory says so once.
    m.unmount();
    let data = m.outside("data2");
    let mnt = m.outside("mnt2");
    fs::create_dir(&mnt).unwrap();
    let out = Command::new(BIN)
        .args(["mount", "--daemon", "--data-dir"])
        .arg(&data)
        .arg(&mnt)
        .env("CLOUDSTORE_FS_LOG", m.outside("daemon2.log"))
        .output()
        .unwrap();
    assert_ok(&out, "mount of a new data directory");
    let said = stderr(&out);
    let unmount = Command::new(BIN).arg("unmount").arg(&mnt).output().unwrap();
    assert_ok(&unmount, "unmount");
    // Said once: by the command, or by the daemon into its log (whichever opens the store).
    let created = format!("created a new LevelDB store in {}", data.display());
    let log = fs::read_to_string(m.outside("daemon2.log")).unwrap();
    assert_eq!(
        said.matches(&created).count() + log.matches(&created).count(),
        1,
        "mount said:\n{said}\nthe daemon's log:\n{log}"
    );
    assert!(
        said.is_empty() || said == format!("cloudstore-fs: {created}\n"),
        "{said}"
    );
}
