//! Tests that touch global kernel state (`/proc/sys/vm/drop_caches` drops every filesystem's
//! caches), so they run alone: this test binary is left out of the parallel `cargo test` run
//! (`test = false` in Cargo.toml) and scripts/test.sh runs it afterwards with
//! `cargo test --all-features --test serial -- --test-threads=1`. A lock keeps its own tests
//! one at a time even without that flag. Needs root and /dev/fuse (SKIPPED otherwise; a failure
//! under CI=true); the Ceph variants need CLOUDSTORE_TEST_CEPH_CONF (see scripts/test.sh).

mod ceph_support;
mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::mount::TestMount;

/// One test of this binary at a time.
static ALONE: Mutex<()> = Mutex::new(());

/// The kernel's forgets shrink the daemon's inode table: `df -i`'s used inodes (statfs files -
/// ffree) are the numbers live in the daemon, and the daemon logs the count at unmount. After
/// `ls -l` of 5,000 files the kernel holds them all; `drop_caches` makes it forget them; then
/// every file still reads back, under the same inode numbers (restic, borg and tar
/// --listed-incremental key their caches on them).
fn forgets_shrink_the_inode_table(m: &mut TestMount) {
    m.sh(
        "mkdir src && cd src && for i in $(seq 1 5000); do printf 'file %d' $i > $(printf '%04x' $i); done
         cp * \"$MNT\"/",
    );
    let used = |m: &TestMount| -> u64 {
        let out = m.sh("stat -f -c '%c %d' \"$MNT\"");
        let v: Vec<u64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
        v[0] - v[1]
    };
    let ls = m.sh("ls -l \"$MNT\" | tail -n +2");
    assert_eq!(ls.lines().count(), 5000);
    let numbers = "ls -i \"$MNT\" | sort -k2 && stat -c '%i %n' \"$MNT\"/0001 \"$MNT\"/1388";
    let inos = m.sh(numbers);
    let held = used(m);
    assert!(
        held > 5000,
        "after ls -l the kernel holds every file: {held} inode(s)"
    );
    let mut after = held;
    for _ in 0..50 {
        m.sh("sync && echo 2 > /proc/sys/vm/drop_caches");
        after = used(m);
        if after < 100 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        after < 100,
        "the inode table did not shrink: {held} -> {after}"
    );
    assert!(
        m.sh(numbers) == inos,
        "inode numbers changed after the kernel forgot them"
    );
    m.sh(
        "cat src/* > all.src && cat \"$MNT\"/* > all.mnt && cmp all.src all.mnt
          test \"$(ls \"$MNT\" | wc -l)\" = 5000
          for f in 0001 0abc 1388; do cmp src/$f \"$MNT\"/$f; done",
    );
    m.unmount();
    let log = std::fs::read_to_string(m.log_path()).unwrap();
    assert!(
        log.contains(" inode(s) live"),
        "no inode count at unmount:\n{}",
        m.log_tail()
    );
    m.mount();
}

/// restic (a backup client that keys its cache on inode, size and times) backs the mount up
/// twice with the kernel's caches dropped in between: the second run finds every file
/// unmodified and reads none of them again.
fn restic_sees_an_unchanged_mount_as_unchanged(m: &mut TestMount) {
    if !m.sh_output("command -v restic").status.success() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "restic is not installed (scripts/test.sh installs it)"
        );
        println!("*** SKIPPED: restic is not installed ***");
        return;
    }
    m.sh("for i in $(seq 1 300); do printf 'chunk %d' $i > \"$MNT\"/$(printf '%04x' $i); done");
    let backup =
        "export RESTIC_REPOSITORY=$PWD/repo RESTIC_PASSWORD=test RESTIC_CACHE_DIR=$PWD/cache
        restic backup \"$MNT\" 2>&1";
    m.sh("RESTIC_REPOSITORY=$PWD/repo RESTIC_PASSWORD=test restic init -q");
    let first = m.sh(backup);
    assert!(first.contains("300 new"), "{first}");
    m.sh("sync && echo 2 > /proc/sys/vm/drop_caches");
    let second = m.sh(backup);
    let files = second
        .lines()
        .find(|l| l.trim_start().starts_with("Files:"))
        .unwrap_or_else(|| panic!("no Files: line in\n{second}"));
    assert!(
        files.contains("0 new") && files.contains("0 changed") && files.contains("300 unmodified"),
        "the second backup saw changes: {files}\n{second}"
    );
}

macro_rules! serial_suite {
    ($backend:ident, $store:expr, [$($case:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[test]
                fn $case() {
                    let _alone = super::ALONE.lock().unwrap_or_else(|e| e.into_inner());
                    let test = concat!("serial::", stringify!($backend), "::", stringify!($case));
                    if let Some(mut m) = super::TestMount::new($store, test) {
                        super::$case(&mut m);
                    }
                }
            )*
        }
    };
}

serial_suite!(
    leveldb,
    super::common::mount::Store::Leveldb,
    [
        forgets_shrink_the_inode_table,
        restic_sees_an_unchanged_mount_as_unchanged
    ]
);
serial_suite!(
    ceph,
    super::common::mount::Store::Ceph,
    [
        forgets_shrink_the_inode_table,
        restic_sees_an_unchanged_mount_as_unchanged
    ]
);
