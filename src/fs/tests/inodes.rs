//! Lookup counting: the kernel's forgets shrink the inode table.

use super::*;

#[test]
fn forget_drops_an_inode_once_every_lookup_is_forgotten() {
    let store = mem();
    store.set_chunk(b"\x01", b"one").unwrap();
    let fs = fs_over(store);
    assert_eq!(fs.inode_count(), 1, "only the root");
    let ino = fs.lookup(ROOT_INO, n("01"), 0).unwrap().ino;
    assert_eq!(fs.lookup(ROOT_INO, n("01"), 0).unwrap().ino, ino);
    fs.forget(ino, 1);
    assert_eq!(fs.inode_count(), 2, "one lookup is still held");
    assert_eq!(fs.getattr(ino, None, 0).unwrap().size, 3);
    fs.forget(ino, 1);
    assert_eq!(fs.inode_count(), 1);
    assert_eq!(fs.getattr(ino, None, 0).unwrap_err().errno, libc::ESTALE);
    // A later lookup gets the same number (derived from the name); forget(2) drops it at once.
    let again = fs.lookup(ROOT_INO, n("01"), 0).unwrap().ino;
    assert_eq!(again, ino);
    fs.lookup(ROOT_INO, n("01"), 0).unwrap();
    fs.forget(again, 2);
    assert_eq!(fs.inode_count(), 1);
    // The root and unknown numbers are ignored; the root always answers.
    fs.forget(ROOT_INO, 5);
    fs.forget(12345, 1);
    assert_eq!(fs.getattr(ROOT_INO, None, 0).unwrap().ino, ROOT_INO);
    // A failed lookup leaves nothing behind.
    assert!(fs.lookup(ROOT_INO, n("02"), 0).is_err());
    assert_eq!(fs.inode_count(), 1);
}

#[test]
fn an_open_file_keeps_its_inode_until_release() {
    let store = mem();
    store.set_chunk(b"\x01", b"one").unwrap();
    let fs = fs_over(store);
    // Forget while open: the release drops it.
    let ino = fs.lookup(ROOT_INO, n("01"), 0).unwrap().ino;
    let fh = fs.open(ino, libc::O_RDONLY, 0).unwrap();
    fs.forget(ino, 1);
    assert_eq!(fs.inode_count(), 2);
    assert_eq!(fs.read(fh, 0, 10).unwrap(), b"one");
    fs.release(fh).unwrap();
    assert_eq!(fs.inode_count(), 1);
    // Release before the forget: the forget drops it.
    let ino = fs.lookup(ROOT_INO, n("01"), 0).unwrap().ino;
    let fh = fs.open(ino, libc::O_RDONLY, 0).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(fs.inode_count(), 2);
    fs.forget(ino, 1);
    assert_eq!(fs.inode_count(), 1);
}

#[test]
fn a_dirty_file_is_never_dropped_before_its_commit() {
    let store = mem();
    let fs = fs_over(store.clone());
    let (attr, fh) = fs.create(ROOT_INO, n("0a"), CREATE, 0).unwrap();
    fs.write(fh, 0, b"dirty data").unwrap();
    fs.forget(attr.ino, 1);
    assert_eq!(fs.inode_count(), 2, "open and dirty");
    assert_eq!(fs.getattr(attr.ino, Some(fh), 0).unwrap().size, 10);
    assert_eq!(
        fs.getattr(attr.ino, None, 99).unwrap().size,
        0,
        "others see the new file as created: empty"
    );
    fs.flush(fh, 0).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(fs.inode_count(), 1);
    assert_eq!(store.get_chunk(b"\x0a").unwrap().unwrap(), b"dirty data");
    // A scratch file lives (with its number) as long as its name, forgotten or not.
    let (attr, fh) = fs.create(ROOT_INO, n(".tmp"), CREATE, 0).unwrap();
    fs.write(fh, 0, b"scratch").unwrap();
    fs.release(fh).unwrap();
    fs.forget(attr.ino, 1);
    assert_eq!(fs.inode_count(), 2);
    assert_eq!(cat(&fs, ".tmp").unwrap(), b"scratch");
    fs.forget(attr.ino, 1); // cat's lookup
                            // A failed create takes no lookup.
    assert_eq!(
        fs.create(ROOT_INO, n(".tmp"), CREATE | libc::O_EXCL, 0)
            .unwrap_err()
            .errno,
        libc::EEXIST
    );
    let ino = fs.lookup(ROOT_INO, n(".tmp"), 0).unwrap().ino;
    assert_eq!(ino, attr.ino);
    fs.forget(ino, 1);
    fs.unlink(ROOT_INO, n(".tmp")).unwrap();
    assert_eq!(fs.inode_count(), 1);
}

#[test]
fn forget_after_rename_and_unlink() {
    let store = mem();
    store.set_chunk(b"\x01", b"one").unwrap();
    store.set_chunk(b"\x02", b"two").unwrap();
    store.set_chunk(b"\x03", b"three").unwrap();
    let fs = fs_over(store);
    // The number follows the rename, and so does its count.
    let a = fs.lookup(ROOT_INO, n("01"), 0).unwrap().ino;
    let b = fs.lookup(ROOT_INO, n("02"), 0).unwrap().ino;
    fs.rename(ROOT_INO, n("01"), ROOT_INO, n("02"), 0).unwrap();
    assert_eq!(fs.inode_count(), 3, "the replaced number is still held");
    assert_eq!(fs.getattr(b, None, 0).unwrap_err().errno, libc::ESTALE);
    fs.forget(b, 1);
    assert_eq!(fs.inode_count(), 2);
    assert_eq!(fs.getattr(a, None, 0).unwrap().size, 3);
    fs.forget(a, 1);
    assert_eq!(fs.inode_count(), 1);
    let c = fs.lookup(ROOT_INO, n("02"), 0).unwrap().ino;
    assert_eq!(
        c, b,
        "the name's own number once the moved one is forgotten"
    );
    fs.forget(c, 1);
    // Renaming a name the kernel never looked up leaves nothing behind.
    fs.rename(ROOT_INO, n("02"), ROOT_INO, n("04"), 0).unwrap();
    assert_eq!(fs.inode_count(), 1);
    // Unlinked while held: nameless until forgotten.
    let d = fs.lookup(ROOT_INO, n("03"), 0).unwrap().ino;
    fs.unlink(ROOT_INO, n("03")).unwrap();
    assert_eq!(fs.inode_count(), 2);
    assert_eq!(fs.getattr(d, None, 0).unwrap_err().errno, libc::ESTALE);
    fs.forget(d, 1);
    assert_eq!(fs.inode_count(), 1);
    // Unlinked after the forget.
    let e = fs.lookup(ROOT_INO, n("04"), 0).unwrap().ino;
    fs.forget(e, 1);
    fs.unlink(ROOT_INO, n("04")).unwrap();
    assert_eq!(fs.inode_count(), 1);
}

#[test]
fn readdirplus_counts_only_the_entries_the_reply_took() {
    let store = mem();
    for i in 0..50u8 {
        store.set_chunk(&[i], b"x").unwrap();
    }
    let fs = fs_over(store);
    // Plain readdir takes no lookups and records nothing.
    assert_eq!(ls(&fs, false).len(), 52);
    assert_eq!(fs.inode_count(), 1);
    // `ls` refuses the 8th entry of every page: it must not be counted.
    let all = ls(&fs, true);
    assert_eq!(all.len(), 52);
    assert_eq!(fs.inode_count(), 51);
    for e in &all[2..] {
        fs.forget(e.ino, 1);
    }
    assert_eq!(
        fs.inode_count(),
        1,
        "every taken entry counted exactly once"
    );
}

#[test]
fn many_lookups_then_forgets_leave_only_the_root() {
    let store = mem();
    let keys: Vec<[u8; 3]> = (0..100_000u32)
        .map(|i| {
            let b = i.to_be_bytes();
            [b[1], b[2], b[3]]
        })
        .collect();
    for k in &keys {
        store.set_chunk(k, b"").unwrap();
    }
    let fs = fs_over(store);
    let mut inos = Vec::with_capacity(keys.len());
    for k in &keys {
        inos.push(fs.lookup(ROOT_INO, n(&hex::encode(k)), 0).unwrap().ino);
    }
    assert_eq!(fs.inode_count(), 100_001);
    for ino in inos {
        fs.forget(ino, 1);
    }
    assert_eq!(fs.inode_count(), 1);
}

#[test]
fn lookups_racing_forgets_never_lose_a_held_number() {
    let store = mem();
    store.set_chunk(b"\x01", b"one").unwrap();
    let fs = Arc::new(fs_over(store));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                for _ in 0..2000 {
                    let ino = fs.lookup(ROOT_INO, n("01"), 0).unwrap().ino;
                    // Held: the number must answer until it is forgotten.
                    assert_eq!(fs.getattr(ino, None, 0).unwrap().size, 3);
                    fs.forget(ino, 1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(fs.inode_count(), 1);
}

/// The kernel may hold the attributes a create answered (see `create`): every close that
/// leaves a created file (committed, or never stored: a refused fallocate) drops them before
/// close() returns, and so does the release of one never stored.
#[test]
fn closes_of_created_files_drop_the_kernels_attributes() {
    let fs = fs_over(mem());
    let dropped = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let seen = dropped.clone();
    fs.set_attr_invalidator(Box::new(move |ino| seen.lock().push(ino)));
    // Never stored: fallocate with a mode other than 0 is refused and leaves nothing to store.
    let (attr, fh) = fs.create(ROOT_INO, n("0e"), CREATE, 0).unwrap();
    let keep_size = 1;
    let e = fs.fallocate(fh, 0, 10, keep_size).unwrap_err();
    assert_eq!(e.errno, libc::EOPNOTSUPP);
    fs.flush(fh, 0).unwrap();
    assert_eq!(*dropped.lock(), [attr.ino], "at the flush");
    fs.release(fh).unwrap();
    assert_eq!(*dropped.lock(), [attr.ino, attr.ino], "at the release");
    let e = fs.lookup(ROOT_INO, n("0e"), 0).unwrap_err();
    assert_eq!(e.errno, libc::ENOENT, "the created file is gone");
    // Committed (touch): its commit drops them.
    dropped.lock().clear();
    let (attr, fh) = fs.create(ROOT_INO, n("0f"), CREATE, 0).unwrap();
    fs.flush(fh, 0).unwrap();
    assert!(dropped.lock().contains(&attr.ino), "at the commit");
    fs.release(fh).unwrap();
}
