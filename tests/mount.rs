//! The filesystem through a real FUSE mount, one suite run over LevelDB and over Ceph: each test
//! mounts the built binary (`mount --daemon`) in a temporary directory and drives it with the
//! everyday tools (cp, cat, dd, tar, rsync, ...), then checks what the mount and the store hold.
//! Needs root and /dev/fuse (SKIPPED otherwise; a failure under CI=true); the Ceph variants need
//! CLOUDSTORE_TEST_CEPH_CONF (see scripts/test.sh).

mod ceph_support;
mod common;

use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ceph_support::bytes;
use cloudstore_fs::config::{Backend, Config};
use cloudstore_fs::fs::testing::FailingStore;
use cloudstore_fs::mount::MountOptions;
use cloudstore_fs::store::leveldb::LevelDbStore;
use cloudstore_fs::store::{self, Cloudstore};
use common::files::{read_file, write_file};
use common::mount::{Store, TestMount};

/// Files of awkward sizes: empty, tiny, around a page, over a FUSE request, several MiB.
const SIZES: [usize; 7] = [0, 1, 4095, 4097, 131_073, (1 << 20) + 7, 5 << 20];

fn cp_in_and_out(m: &mut TestMount) {
    fs::create_dir(m.outside("src")).unwrap();
    for (i, &size) in SIZES.iter().enumerate() {
        write_file(
            &m.outside(&format!("src/{:02x}aa", i)),
            &bytes(i as u64, size),
        );
    }
    m.sh("cp src/* \"$MNT\"/ && mkdir out && cp \"$MNT\"/* out/");
    for (i, &size) in SIZES.iter().enumerate() {
        let name = format!("{:02x}aa", i);
        m.sh(&format!(
            "cmp src/{name} \"$MNT\"/{name} && cmp src/{name} out/{name}"
        ));
        assert_eq!(fs::metadata(m.path(&name)).unwrap().len(), size as u64);
    }
    // ls -l shows the sizes, the modes and the owner.
    let ls = m.sh("ls -l \"$MNT\"");
    for (i, &size) in SIZES.iter().enumerate() {
        let line = ls
            .lines()
            .find(|l| l.ends_with(&format!(" {:02x}aa", i)))
            .unwrap_or_else(|| panic!("{i:02x}aa missing from ls -l:\n{ls}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[0], "-rw-r--r--", "{line}");
        assert_eq!(fields[2], "root", "{line}");
        assert_eq!(fields[4], size.to_string(), "{line}");
    }
    let dir = fs::metadata(&m.mnt).unwrap();
    assert_eq!(dir.mode() & 0o7777, 0o755);
    // Sequential reads go ahead 8 MiB (in parallel requests of up to 1 MiB): read_ahead_kb was
    // raised from the kernel's 128.
    let ra = m.sh("cat /sys/class/bdi/$(mountpoint -d \"$MNT\")/read_ahead_kb");
    assert_eq!(ra.trim(), "8192");
    m.sh("df \"$MNT\" >/dev/null");
}

fn cat_and_dd(m: &mut TestMount) {
    let data = bytes(7, 300_000);
    write_file(&m.path("0d0d"), &data);
    write_file(&m.outside("expected"), &data);
    m.sh("cat \"$MNT\"/0d0d | cmp - expected");
    // Ranged reads: bs=1 skip=100 count=50; bs=4096 skip=3 count=2; past the end.
    let out =
        m.sh("dd if=\"$MNT\"/0d0d bs=1 skip=100 count=50 status=none | od -An -tx1 | tr -d ' \\n'");
    assert_eq!(out, hex(&data[100..150]));
    let out =
        m.sh("dd if=\"$MNT\"/0d0d bs=4096 skip=3 count=2 status=none | od -An -tx1 | tr -d ' \\n'");
    assert_eq!(out, hex(&data[3 * 4096..5 * 4096]));
    let out = m.sh("dd if=\"$MNT\"/0d0d bs=4096 skip=73 count=5 status=none | wc -c");
    assert_eq!(out.trim(), (300_000 - 73 * 4096).to_string());
    // conv=notrunc: overwrite in the middle, the rest stays.
    m.sh("printf 'MIDDLE' | dd of=\"$MNT\"/0d0d bs=1 seek=1000 conv=notrunc status=none");
    let mut expected = data.clone();
    expected[1000..1006].copy_from_slice(b"MIDDLE");
    assert_eq!(read_file(&m.path("0d0d")), expected);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn append_truncate_touch_rm_mv(m: &mut TestMount) {
    m.sh("echo first > \"$MNT\"/a1 && echo second >> \"$MNT\"/a1");
    assert_eq!(read_file(&m.path("a1")), b"first\nsecond\n");
    m.sh("truncate -s 3 \"$MNT\"/a1");
    assert_eq!(read_file(&m.path("a1")), b"fir");
    m.sh("truncate -s 6 \"$MNT\"/a1");
    assert_eq!(read_file(&m.path("a1")), b"fir\0\0\0");
    m.sh(": > \"$MNT\"/a1");
    assert_eq!(fs::metadata(m.path("a1")).unwrap().len(), 0);

    // touch makes a 0-byte chunk; touch -d sets the mtime; touch again moves it to now.
    m.sh("touch \"$MNT\"/b2");
    assert_eq!(read_file(&m.path("b2")), b"");
    m.sh("touch -d '2001-02-03 04:05:06.5' \"$MNT\"/b2");
    let mtime = fs::metadata(m.path("b2")).unwrap().modified().unwrap();
    let want = SystemTime::UNIX_EPOCH + Duration::new(981_173_106, 500_000_000);
    assert_eq!(mtime, want);
    m.sh("touch \"$MNT\"/b2");
    let now = fs::metadata(m.path("b2")).unwrap().modified().unwrap();
    assert!(now > SystemTime::now() - Duration::from_secs(60));
    // A write changes the mtime.
    m.sh("touch -d '2001-02-03' \"$MNT\"/b2 && echo x >> \"$MNT\"/b2");
    let after = fs::metadata(m.path("b2")).unwrap().modified().unwrap();
    assert!(after > SystemTime::now() - Duration::from_secs(60));

    // mv moves; mv onto an existing chunk replaces it; rm deletes.
    write_file(&m.path("c3"), b"three");
    write_file(&m.path("d4"), b"four");
    m.sh("mv \"$MNT\"/c3 \"$MNT\"/e5 && mv \"$MNT\"/e5 \"$MNT\"/d4");
    assert_eq!(read_file(&m.path("d4")), b"three");
    assert!(!m.path("c3").exists() && !m.path("e5").exists());
    m.sh("rm \"$MNT\"/d4 \"$MNT\"/a1");
    let names = m.sh("ls \"$MNT\"");
    assert_eq!(names.split_whitespace().collect::<Vec<_>>(), ["b2"]);
}

fn tar_round_trip(m: &mut TestMount) {
    m.sh(
        "mkdir src && for i in $(seq 1 60); do head -c $((i * 997)) /dev/urandom > src/$(printf '%04x' $i); done
         touch -d '2010-05-06 07:08:09' src/0001
         tar cf - -C src . | tar xf - -C \"$MNT\"
         mkdir out && tar cf mnt.tar -C \"$MNT\" . && tar xf mnt.tar -C out
         for f in src/*; do n=${f#src/}; cmp \"$f\" \"$MNT/$n\"; cmp \"$f\" \"out/$n\"; done
         test \"$(ls src | wc -l)\" = \"$(ls out | wc -l)\"",
    );
    // tar x set the mtimes, and tar c of the mount carried them out again.
    let want = fs::metadata(m.outside("src/0001"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        fs::metadata(m.path("0001")).unwrap().modified().unwrap(),
        want
    );
    assert_eq!(
        fs::metadata(m.outside("out/0001"))
            .unwrap()
            .modified()
            .unwrap(),
        want
    );
}

fn transferred(stats: &str) -> usize {
    let line = stats
        .lines()
        .find(|l| l.starts_with("Number of regular files transferred:"))
        .unwrap_or_else(|| panic!("no transfer count in rsync --stats:\n{stats}"));
    line.rsplit(':')
        .next()
        .unwrap()
        .trim()
        .replace(',', "")
        .parse()
        .unwrap()
}

fn rsync_in_twice(m: &mut TestMount) {
    m.sh("mkdir src && for i in $(seq 1 40); do head -c $((i * 3001)) /dev/urandom > src/$(printf '%02x' $i); done");
    let first = m.sh("rsync -a --stats src/ \"$MNT\"/");
    assert_eq!(transferred(&first), 40);
    m.sh("diff -r src \"$MNT\"");
    let second = m.sh("rsync -a --stats src/ \"$MNT\"/");
    assert_eq!(
        transferred(&second),
        0,
        "second rsync transferred files:\n{second}"
    );
    // rsync's temp files (.NAME.XXXXXX) never reached the store.
    assert_eq!(m.sh("ls -A \"$MNT\" | grep -c '^\\.' || true").trim(), "0");
    // A changed file is transferred again, and only it.
    m.sh("echo changed >> src/07");
    let third = m.sh("rsync -a --stats src/ \"$MNT\"/");
    assert_eq!(transferred(&third), 1, "{third}");
    m.sh("cmp src/07 \"$MNT\"/07");
}

fn rsync_out_twice(m: &mut TestMount) {
    for i in 0..30u64 {
        write_file(
            &m.path(&format!("{:04x}", i * 7)),
            &bytes(i, i as usize * 1111),
        );
    }
    let first = m.sh("rsync -a --stats \"$MNT\"/ backup/");
    assert_eq!(transferred(&first), 30);
    m.sh("diff -r \"$MNT\" backup");
    let second = m.sh("rsync -a --stats \"$MNT\"/ backup/");
    assert_eq!(
        transferred(&second),
        0,
        "second rsync transferred files:\n{second}"
    );
}

fn other_names_are_scratch_and_eperm(m: &mut TestMount) {
    // Every name that is not a chunk name is a scratch file, a mistyped chunk name included.
    for name in ["hello", "ABCD", "abc", "0", "x.txt"] {
        write_file(&m.path(name), name.as_bytes());
        assert_eq!(read_file(&m.path(name)), name.as_bytes());
    }
    m.sh("touch \"$MNT\"/NotHex");
    write_file(&m.path("aa"), b"x");
    // A chunk renamed onto a scratch name leaves the store (cp --backup does it).
    fs::rename(m.path("aa"), m.path("not-hex")).unwrap();
    assert_eq!(read_file(&m.path("not-hex")), b"x");
    let ls = m.cli(&["ls"]);
    assert!(ls.status.success());
    assert_eq!(String::from_utf8_lossy(&ls.stdout), "", "no chunk");
    assert_eq!(
        fs::create_dir(m.path("d1")).unwrap_err().raw_os_error(),
        Some(libc::EPERM)
    );
    assert_eq!(
        std::os::unix::fs::symlink("not-hex", m.path("bb"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EPERM)
    );
    assert_eq!(
        fs::hard_link(m.path("not-hex"), m.path("cc"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EPERM)
    );
    // A mistyped chunk name and each refusal are logged with the name and the reason.
    for line in [
        "create \"ABCD\": not a chunk name ('A' at offset 0 is not a lowercase hex digit)",
        "create \"abc\": not a chunk name (odd number of characters (3))",
        "mkdir \"d1\": refused (EPERM)",
        "symlink \"bb\": refused (EPERM)",
    ] {
        m.assert_logged(&[line]);
    }
    // All are kept across the unmount.
    m.remount();
    for name in ["hello", "ABCD", "abc", "0", "x.txt"] {
        assert_eq!(read_file(&m.path(name)), name.as_bytes());
    }
    assert_eq!(read_file(&m.path("not-hex")), b"x");
}

fn scratch_files(m: &mut TestMount) {
    write_file(&m.path(".scratch.swp"), b"editor state");
    assert_eq!(read_file(&m.path(".scratch.swp")), b"editor state");
    assert!(m.sh("ls -A \"$MNT\"").contains(".scratch.swp"));
    // Renaming a scratch file to a chunk name commits it (how rsync and editors write).
    write_file(&m.path(".f0.tmp"), b"committed by rename");
    fs::rename(m.path(".f0.tmp"), m.path("f0")).unwrap();
    let ls = m.cli(&["ls"]);
    assert!(ls.status.success());
    let listed = String::from_utf8_lossy(&ls.stdout).into_owned();
    assert!(listed.contains("f0 19"), "{listed}");
    assert!(!listed.contains("scratch"), "{listed}");
    // Scratch files are kept across unmounts, beside the chunks, never as chunks.
    m.remount();
    assert_eq!(read_file(&m.path(".scratch.swp")), b"editor state");
    assert_eq!(read_file(&m.path("f0")), b"committed by rename");
    assert!(!m.path(".f0.tmp").exists());
    m.assert_logged(&["kept 1 scratch file(s) for the next mount"]);
    fs::remove_file(m.path(".scratch.swp")).unwrap();
    m.remount();
    assert!(!m.path(".scratch.swp").exists());
}

fn cli_put_visible_in_mount_and_reverse(m: &mut TestMount) {
    let data = bytes(99, 70_000);
    write_file(&m.outside("put.bin"), &data);
    let put_path = m.outside("put.bin");
    let out = m.cli(&["put", "c0ffee", put_path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read_file(&m.path("c0ffee")), data);
    assert!(m.sh("ls \"$MNT\"").contains("c0ffee"));

    write_file(&m.path("beef01"), b"written through the mount");
    let out = m.cli(&["get", "beef01"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"written through the mount");
    let out = m.cli(&["get", "beef01", "--range", "8..15"]);
    assert_eq!(out.stdout, b"through");
}

fn remount_keeps_everything(m: &mut TestMount) {
    let when = SystemTime::UNIX_EPOCH + Duration::new(1_500_000_000, 250_000_000);
    for i in 0..20u64 {
        let p = m.path(&format!("{:02x}", i));
        write_file(&p, &bytes(i, i as usize * 5000));
        fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(when + Duration::from_secs(i))
            .unwrap();
    }
    m.remount();
    for i in 0..20u64 {
        let p = m.path(&format!("{:02x}", i));
        assert_eq!(read_file(&p), bytes(i, i as usize * 5000));
        let meta = fs::metadata(&p).unwrap();
        assert_eq!(meta.modified().unwrap(), when + Duration::from_secs(i));
        assert_eq!(meta.len(), i * 5000);
    }
}

fn sigterm_commits_then_unmounts(m: &mut TestMount) {
    let pid = m.daemon_pid().expect("daemon pid");
    // A file still open with written data: SIGTERM commits it, then detaches the busy mount
    // lazily; closing the file lets the daemon finish.
    let mut f = fs::File::create(m.path("5157")).unwrap();
    f.write_all(b"pending at SIGTERM").unwrap();
    // SAFETY: signalling the daemon this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while cloudstore_fs::mount::daemon_pid(&m.mnt).is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "still mounted after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    f.write_all(b", and after").unwrap();
    drop(f);
    assert!(
        cloudstore_fs::mount::wait_for_exit(pid, Duration::from_secs(30)),
        "daemon still running"
    );
    // Remount (the TestMount thinks it is mounted: mark it gone first).
    m.mark_unmounted();
    m.mount();
    assert_eq!(read_file(&m.path("5157")), b"pending at SIGTERM, and after");
}

/// close() reports a failed commit: an in-process mount of the same backend behind a store
/// wrapper that fails writes on demand.
fn close_reports_a_failed_commit(m: &mut TestMount) {
    m.unmount();
    let config = match m.store {
        Store::Leveldb => Config {
            backend: Backend::Leveldb,
            data_dir: m.outside("data"),
            ..Config::default()
        },
        Store::Ceph => m.cluster().unwrap().config(64 << 20),
    };
    let inner = store::open(&config).unwrap();
    let failing = Arc::new(FailingStore::new(inner.clone()));
    let opts = MountOptions {
        mountpoint: m.mnt.clone(),
        ..MountOptions::default()
    };
    let mount = cloudstore_fs::mount::spawn(failing.clone(), &config, &opts).unwrap();
    write_file(&m.path("fa11"), b"good");
    failing.fail_writes(true);
    let mut f = fs::File::create(m.path("fa11")).unwrap();
    f.write_all(b"never stored").unwrap();
    let fd = f.into_raw_fd();
    // SAFETY: closing the fd just taken from the File.
    let rc = unsafe { libc::close(fd) };
    let err = std::io::Error::last_os_error();
    assert_eq!(rc, -1, "close() must fail when the commit fails");
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    // cp sees it too.
    let out = m.sh_output("echo data > src.txt && cp src.txt \"$MNT\"/fa12");
    assert!(!out.status.success(), "cp must fail");
    // The kernel sends RELEASE after close() returns, and release retries the commit: wait for
    // it (it fails too) before the store heals, or the retry would store the file after all.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while mount.core().memory_in_use() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "files still open in the daemon"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    failing.fail_writes(false);
    assert_eq!(inner.get_chunk(&[0xfa, 0x11]).unwrap().unwrap(), b"good");
    assert_eq!(inner.get_chunk(&[0xfa, 0x12]).unwrap(), None);
    mount.unmount().unwrap();
    inner.close().unwrap();
    drop(inner);
    m.mount();
    assert_eq!(read_file(&m.path("fa11")), b"good");
}

fn many_files_and_listing(m: &mut TestMount) {
    m.sh(
        "mkdir src && cd src && for i in $(seq 1 1500); do printf '%05d' $i > $(printf '%04x' $i); done
         cp * \"$MNT\"/",
    );
    let ls = m.sh("ls -l \"$MNT\" | tail -n +2");
    assert_eq!(ls.lines().count(), 1500);
    assert!(
        ls.lines().all(|l| l.split_whitespace().nth(4) == Some("5")),
        "{ls}"
    );
    m.sh("cd src && for f in 0001 05dc 02ee; do cmp $f \"$MNT\"/$f; done");
    m.sh("rm \"$MNT\"/*");
    assert_eq!(m.sh("ls \"$MNT\" | wc -l").trim(), "0");
}

/// Read-ahead: `cat *` (name order), `tar c` and a shell loop (listing order) over many small
/// files give the same bytes as the source, also when a file ahead of the reader changes
/// between the prefetch and its open; the daemon reports its batches at unmount. On Ceph,
/// which other clients share, every open reads its chunk's version instead (close-to-open),
/// and nothing is prefetched.
fn read_many_files_in_listing_order(m: &mut TestMount) {
    m.sh(
        "mkdir src && cd src && for i in $(seq 1 700); do head -c $(( (i * 37) % 6000 )) /dev/urandom > $(printf '%04x' $i); done
         head -c 3000000 /dev/urandom > 0100
         cp * \"$MNT\"/",
    );
    m.remount();
    m.sh(
        "cat src/* > all.src && cat \"$MNT\"/* > all.mnt && cmp all.src all.mnt
         mkdir out && tar cf - -C \"$MNT\" . | tar xf - -C out
         for f in src/*; do cmp \"$f\" \"out/${f#src/}\"; done
         test \"$(ls out | wc -l)\" = 700",
    );
    // Read the first files in listing order (the next ones get prefetched), change some of
    // the files ahead, then read on: the changes must show.
    m.sh("ls -f \"$MNT\" | grep -v '^\\.' > order
         head -n 3 order | while read f; do cat \"$MNT/$f\" > /dev/null; done
         a=$(sed -n 6p order); b=$(sed -n 9p order); c=$(sed -n 12p order); d=$(sed -n 15p order)
         echo changed > \"$MNT/$a\" && echo changed > \"src/$a\"
         rm \"$MNT/$b\" \"src/$b\"
         mv \"$MNT/$d\" \"$MNT/$c\" && mv \"src/$d\" \"src/$c\"
         grep -v -x -e \"$b\" -e \"$d\" order | while read f; do cmp \"src/$f\" \"$MNT/$f\"; done
         test \"$(cat \"$MNT/$a\")\" = changed");
    m.unmount();
    let log = std::fs::read_to_string(m.log_path()).unwrap();
    let reported = log.contains("read-ahead: ") && log.contains("batch(es)");
    assert_eq!(
        reported,
        m.cluster().is_none(),
        "read-ahead reported (LevelDB) or not (Ceph):\n{}",
        m.log_tail()
    );
    m.mount();
}

/// Runs `script` like `m.sh`, with `fd` inherited (no close-on-exec in that child only): the
/// exec of a command closes its copies of close-on-exec descriptors, and a close into the mount
/// is a FUSE flush, which would commit the file. Inherited, the copies close when the commands
/// exit, after they ran.
fn sh_holding(m: &TestMount, fd: std::os::fd::RawFd, script: &str) -> String {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("bash");
    cmd.arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .env("MNT", &m.mnt);
    // SAFETY: fcntl is async-signal-safe, and `fd` stays open until the command is done.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A new file still being written (open, never flushed) is listed, as created: empty, since
/// readers see only committed values; its writer sees its own size through fstat. Once closed
/// it is listed exactly once (from the store) with its whole size.
fn listing_shows_files_being_written(m: &mut TestMount) {
    write_file(&m.path("0100"), b"committed");
    let mut f = fs::File::create(m.path("beef")).unwrap();
    // A new file is empty to everyone until its first write (the kernel keeps the attributes
    // the create answered); then the writer sees its own size and others the committed one.
    assert_eq!(
        f.metadata().unwrap().len(),
        0,
        "the writer's fstat after create"
    );
    let stat = |f: &fs::File| sh_holding(m, f.as_raw_fd(), "stat -c %s \"$MNT\"/beef");
    assert_eq!(stat(&f).trim(), "0", "another process's stat after create");
    f.write_all(&bytes(7, 1234)).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 1234, "the writer's fstat");
    assert_eq!(stat(&f).trim(), "0", "another process's stat while written");
    // Read in this process: a child that inherits the descriptor closes it when it exits,
    // and that close (a FUSE flush) commits the file.
    assert_eq!(
        read_file(&m.path("beef")),
        b"",
        "a reader sees nothing uncommitted"
    );
    let ls = sh_holding(m, f.as_raw_fd(), "ls -l \"$MNT\"");
    let line = ls
        .lines()
        .find(|l| l.ends_with(" beef"))
        .unwrap_or_else(|| panic!("beef missing from ls -l while open:\n{ls}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[4], "0", "{line}");
    // The listing's attributes are not cached for the writer (it showed 0 for 1 s after ls -l).
    assert_eq!(
        f.metadata().unwrap().len(),
        1234,
        "the writer's fstat after another process's ls -l"
    );
    assert_eq!(
        ls.lines().filter(|l| l.ends_with(" beef")).count(),
        1,
        "{ls}"
    );
    drop(f);
    let names = m.sh("ls \"$MNT\"");
    assert_eq!(
        names.split_whitespace().collect::<Vec<_>>(),
        ["0100", "beef"],
        "{names}"
    );
    assert_eq!(read_file(&m.path("beef")), bytes(7, 1234));
    let ls = m.sh("ls -l \"$MNT\"/beef");
    assert_eq!(ls.split_whitespace().nth(4), Some("1234"), "{ls}");
}

/// A 64 MiB chunk (the default max chunk size) written with dd, `conv=fsync` or not, survives
/// an unmount and a mount, and so does a second version over it. rusty-leveldb 4.0.2 lost the
/// fsynced one (ENOENT after the remount, while the listing still showed it).
fn dd_64_mib(m: &mut TestMount, conv: &str) {
    for (round, seed) in [(0, 64u64), (1, 65)].iter() {
        write_file(&m.outside("big.bin"), &bytes(*seed, 64 << 20));
        m.sh(&format!(
            "dd if=big.bin of=\"$MNT\"/b16f bs=1M {conv} status=none"
        ));
        m.remount();
        assert_eq!(
            fs::metadata(m.path("b16f"))
                .unwrap_or_else(|e| panic!("round {round}: b16f after remount: {e}"))
                .len(),
            64 << 20
        );
        m.sh("cmp big.bin \"$MNT\"/b16f");
    }
}

fn dd_64_mib_fsync_then_remount(m: &mut TestMount) {
    dd_64_mib(m, "conv=fsync");
}

fn dd_64_mib_then_clean_unmount(m: &mut TestMount) {
    dd_64_mib(m, "");
}

mount_suites!([
    cp_in_and_out,
    cat_and_dd,
    append_truncate_touch_rm_mv,
    tar_round_trip,
    rsync_in_twice,
    rsync_out_twice,
    other_names_are_scratch_and_eperm,
    scratch_files,
    cli_put_visible_in_mount_and_reverse,
    remount_keeps_everything,
    sigterm_commits_then_unmounts,
    close_reports_a_failed_commit,
    many_files_and_listing,
    read_many_files_in_listing_order,
    listing_shows_files_being_written,
    dd_64_mib_fsync_then_remount,
    dd_64_mib_then_clean_unmount,
]);

/// fsync(2) on a file in the mount reaches a synced LevelDB write (an fsync of its log): the
/// store's counter of synced writes, read in-process around the call; a close alone does not.
#[test]
fn fsync_reaches_a_synced_leveldb_write() {
    let Some(mut m) = TestMount::new(Store::Leveldb, "fsync_reaches_a_synced_leveldb_write") else {
        return;
    };
    m.unmount();
    let config = Config {
        backend: Backend::Leveldb,
        data_dir: m.outside("data"),
        ..Config::default()
    };
    let leveldb = Arc::new(LevelDbStore::open(&config).unwrap());
    let opts = MountOptions {
        mountpoint: m.mnt.clone(),
        ..MountOptions::default()
    };
    let mount = cloudstore_fs::mount::spawn(leveldb.clone(), &config, &opts).unwrap();
    let before = leveldb.synced_writes();
    write_file(&m.path("c105ed"), b"closed, not fsynced");
    assert_eq!(
        leveldb.synced_writes(),
        before,
        "close() alone syncs nothing"
    );
    let mut f = fs::File::create(m.path("f5")).unwrap_or_else(|e| panic!("create: {e}"));
    f.write_all(b"fsynced").unwrap();
    f.sync_all().unwrap();
    assert!(
        leveldb.synced_writes() > before,
        "fsync(2) made no synced LevelDB write"
    );
    drop(f);
    mount.unmount().unwrap();
    leveldb.close().unwrap();
    drop(leveldb);
    m.mount();
    assert_eq!(read_file(&m.path("f5")), b"fsynced");
    assert_eq!(read_file(&m.path("c105ed")), b"closed, not fsynced");
}

/// The same through the real daemon, seen by strace: fsync(2) on a file makes the daemon
/// fdatasync a LevelDB log (SKIPPED without strace).
#[test]
fn fsync_fdatasyncs_the_leveldb_log_under_strace() {
    let test = "fsync_fdatasyncs_the_leveldb_log_under_strace";
    if !std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        ceph_support::skip_or_fail(&format!("{test} needs strace (apt-get install strace)"));
        return;
    }
    let Some(m) = TestMount::new(Store::Leveldb, test) else {
        return;
    };
    let pid = m.daemon_pid().expect("daemon pid");
    let trace = m.outside("strace.out");
    let mut strace = std::process::Command::new("strace")
        .args(["-f", "-qq", "-y", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&trace)
        .arg("-p")
        .arg(pid.to_string())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // strace writes its output file once attached; give it a moment past that.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !trace.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut f = fs::File::create(m.path("f6")).unwrap();
    f.write_all(b"traced").unwrap();
    f.sync_all().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    strace.kill().unwrap();
    strace.wait().unwrap();
    let out = fs::read_to_string(&trace).unwrap();
    assert!(
        out.lines()
            .any(|l| l.contains("fdatasync(") && l.contains(".log>")),
        "no fdatasync of a LevelDB log in:\n{out}"
    );
}
