//! Readers through the kernel's page cache (issue 14), through real mounts over LevelDB and
//! Ceph: a read-only open reads through the page cache, and nothing a writer of the same mount
//! does reaches it. The kernel keeps one size and one page cache per inode, and a writer
//! changes both for every open of the inode (O_TRUNC sets the size to 0, a write past the end
//! raises it, a truncate by path sets it), so a writer, a truncate or a newer version moves the
//! name to a new inode while cached readers keep theirs. Each case checks the bytes a reader
//! gets, to the byte and at its end (no zeros after the old end, no early EOF), and what a new
//! open reads. Needs root and /dev/fuse (SKIPPED otherwise; a failure under CI=true); the Ceph
//! variant needs the test cluster.

mod ceph_support;
mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};

use common::files::{read_file, tagged, write_file};
use common::mount::TestMount;

/// Everything from `offset` to the end of the file, read in 4 KiB reads (as `cat` does).
fn read_rest(f: &mut File) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// A reader keeps the value it opened, to its last byte and its end, while a writer of the same
/// mount replaces it with a longer one (O_TRUNC, writes past the old end, reads by the reader
/// between the writes) and after the writer closed; sizes not a multiple of the page, so that
/// the kernel's last page holds zeros past the old end. A new open reads the new value, under
/// a new inode number.
fn a_writer_never_reaches_an_open_reader(m: &mut TestMount) {
    for (round, (old_len, new_len)) in [(10_000, 20_000), (70_000, 5_000), (4096, 4097)]
        .into_iter()
        .enumerate()
    {
        let path = m.path(&format!("a{round}"));
        let old = tagged(1, round as u32, old_len);
        let new = tagged(2, round as u32, new_len);
        write_file(&path, &old);
        let mut r = File::open(&path).unwrap();
        let mut first = vec![0u8; 4096];
        r.read_exact(&mut first).unwrap();
        let ino = r.metadata().unwrap().ino();
        let mut w = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        w.write_all(&new[..new_len / 2]).unwrap();
        let mut whole = vec![0u8; old_len + 8192];
        let n = r.read_at(&mut whole, 0).unwrap();
        assert!(
            whole[..n] == old[..],
            "round {round}: a read while the writer writes"
        );
        w.write_all(&new[new_len / 2..]).unwrap();
        let n = r.read_at(&mut whole, 0).unwrap();
        assert!(
            whole[..n] == old[..],
            "round {round}: a read after the writer's last write"
        );
        drop(w);
        first.extend(read_rest(&mut r));
        assert!(
            first == old,
            "round {round}: the reader's bytes after the commit"
        );
        assert_eq!(
            r.metadata().unwrap().len(),
            old_len as u64,
            "round {round}: fstat"
        );
        let n = r.read_at(&mut whole, old_len as u64 - 1).unwrap();
        assert_eq!(n, 1, "round {round}: a read across the old end");
        drop(r);
        assert!(read_file(&path) == new, "round {round}: a new open");
        assert_ne!(
            fs::metadata(&path).unwrap().ino(),
            ino,
            "round {round}: the name moved to a new inode"
        );
    }
}

/// truncate(2) by path and an O_APPEND writer while a reader has the file open: the reader
/// keeps its bytes and size; the name holds the change.
fn truncate_and_append_never_reach_an_open_reader(m: &mut TestMount) {
    let path = m.path("b1");
    let old = tagged(3, 1, 30_000);
    write_file(&path, &old);
    let mut r = File::open(&path).unwrap();
    let mut head = vec![0u8; 100];
    r.read_exact(&mut head).unwrap();
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(7).unwrap();
    drop(f);
    assert_eq!(fs::metadata(&path).unwrap().len(), 7);
    head.extend(read_rest(&mut r));
    assert!(head == old, "after a truncate of the name");
    drop(r);

    let old = read_file(&path);
    let mut r = File::open(&path).unwrap();
    let mut head = vec![0u8; 3];
    r.read_exact(&mut head).unwrap();
    let mut a = OpenOptions::new().append(true).open(&path).unwrap();
    a.write_all(&tagged(3, 2, 9_000)).unwrap();
    drop(a);
    head.extend(read_rest(&mut r));
    assert!(head == old, "after an append to the name");
    assert_eq!(fs::metadata(&path).unwrap().len(), 7 + 9_000);
}

/// A read-only mmap keeps the bytes it mapped while the name is rewritten; the next open and
/// mmap see the new value.
fn a_mapping_keeps_its_bytes(m: &mut TestMount) {
    let path = m.path("c1");
    let old = tagged(4, 1, 12_345);
    write_file(&path, &old);
    let f = File::open(&path).unwrap();
    // SAFETY: a private read-only mapping of a file this test owns, dropped before the file.
    let map = unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            old.len(),
            libc::PROT_READ,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&f),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        p
    };
    let mapped = || unsafe { std::slice::from_raw_parts(map as *const u8, old.len()).to_vec() };
    assert!(mapped() == old);
    let new = tagged(4, 2, 9_000);
    write_file(&path, &new);
    assert!(mapped() == old, "the mapping after a rewrite of the name");
    assert!(read_file(&path) == new, "a new open");
    unsafe { libc::munmap(map, old.len()) };
}

/// Readers that open while a writer has the file open read through the daemon and see the
/// committed value; once the writer closed, a new reader reads its value through the page cache,
/// and a second read of it comes from the kernel (the same bytes).
fn readers_during_a_write_see_the_committed_value(m: &mut TestMount) {
    let path = m.path("d1");
    let old = tagged(5, 1, 50_000);
    write_file(&path, &old);
    let mut w = OpenOptions::new().write(true).open(&path).unwrap();
    w.write_all(&tagged(5, 9, 60_000)).unwrap();
    assert!(read_file(&path) == old, "a reader while the writer is open");
    let new = tagged(5, 2, 61_000);
    w.write_all(&new[60_000..]).unwrap();
    drop(w);
    let mut want = tagged(5, 9, 60_000);
    want.extend_from_slice(&new[60_000..]);
    assert!(read_file(&path) == want, "after the writer closed");
    assert!(read_file(&path) == want, "again, from the page cache");
}

mount_suites!([
    a_writer_never_reaches_an_open_reader,
    truncate_and_append_never_reach_an_open_reader,
    a_mapping_keeps_its_bytes,
    readers_during_a_write_see_the_committed_value,
]);
