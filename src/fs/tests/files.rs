//! Open files: reads, writes, truncate, append, fallocate, commits and their failures, the
//! memory budget.

use super::*;

#[test]
fn write_then_read_back() {
    let store = mem();
    let fs = fs_over(store.clone());
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    put(&fs, "abcd", &data).unwrap();
    assert_eq!(store.get_chunk(&[0xab, 0xcd]).unwrap().unwrap(), data);
    assert_eq!(cat(&fs, "abcd").unwrap(), data);
    assert_eq!(fs.lookup(ROOT_INO, n("abcd"), 0).unwrap().size, 100_000);
    assert_eq!(fs.memory_in_use(), 0, "closed files hold no memory");
}

#[test]
fn ranged_reads_at_offsets() {
    let store = mem();
    store.set_chunk(&[1], b"0123456789").unwrap();
    let fs = fs_over(store);
    let ino = fs.lookup(ROOT_INO, n("01"), 0).unwrap().ino;
    let fh = fs.open(ino, libc::O_RDONLY, 0).unwrap();
    assert_eq!(fs.read(fh, 3, 4).unwrap(), b"3456");
    assert_eq!(fs.read(fh, 8, 100).unwrap(), b"89");
    assert_eq!(fs.read(fh, 50, 10).unwrap(), b"");
    fs.release(fh).unwrap();
}

/// A read of no bytes is no bytes, also through a view read by range from the store (whose
/// range end 0 means "to the end": the core model found it returning the whole value).
#[test]
fn a_read_of_no_bytes_is_empty_on_every_view() {
    let store = mem();
    store.set_chunk(&[1], b"0123456789").unwrap();
    for open_read in [crate::fs::OPEN_READ, 4] {
        let fs = ChunkFs::new(store.clone(), FsConfig { open_read, ..cfg() });
        let ino = fs.lookup(ROOT_INO, n("01"), 0).unwrap().ino;
        for flags in [libc::O_RDONLY, libc::O_RDWR] {
            let fh = fs.open(ino, flags, 0).unwrap();
            for offset in [0, 3, 50] {
                assert_eq!(
                    fs.read(fh, offset, 0).unwrap(),
                    b"",
                    "open_read {open_read}"
                );
            }
            assert_eq!(fs.read(fh, 3, 4).unwrap(), b"3456", "open_read {open_read}");
            fs.release(fh).unwrap();
        }
    }
}

#[test]
fn overwrite_in_the_middle_append_and_truncate() {
    let store = mem();
    store.set_chunk(&[2], b"hello world").unwrap();
    let fs = fs_over(store.clone());
    let ino = fs.lookup(ROOT_INO, n("02"), 0).unwrap().ino;

    // dd conv=notrunc: open without O_TRUNC, write in the middle.
    let fh = fs.open(ino, libc::O_WRONLY, 0).unwrap();
    fs.write(fh, 6, b"WORLD").unwrap();
    fs.flush(fh, 0).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(store.get_chunk(&[2]).unwrap().unwrap(), b"hello WORLD");

    // >> : O_APPEND writes at the end whatever the offset says.
    let fh = fs.open(ino, libc::O_WRONLY | libc::O_APPEND, 0).unwrap();
    fs.write(fh, 0, b"!!").unwrap();
    fs.release(fh).unwrap(); // release alone commits too
    assert_eq!(store.get_chunk(&[2]).unwrap().unwrap(), b"hello WORLD!!");

    // ftruncate on an open file, then grow with zeros.
    let fh = fs.open(ino, libc::O_RDWR, 0).unwrap();
    fs.setattr(ino, Some(fh), Some(5), None).unwrap();
    assert_eq!(
        fs.getattr(ino, Some(fh), 0).unwrap().size,
        5,
        "the writer sees its value"
    );
    assert_eq!(
        fs.getattr(ino, None, 99).unwrap().size,
        13,
        "others: the committed one"
    );
    fs.flush(fh, 0).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(store.get_chunk(&[2]).unwrap().unwrap(), b"hello");
    fs.setattr(ino, None, Some(8), None).unwrap();
    assert_eq!(store.get_chunk(&[2]).unwrap().unwrap(), b"hello\0\0\0");
    fs.setattr(ino, None, Some(0), None).unwrap();
    assert_eq!(store.get_chunk(&[2]).unwrap().unwrap(), b"");

    // O_TRUNC alone (": > file") empties a chunk.
    store.set_chunk(&[2], b"xyz").unwrap();
    let fh = fs.open(ino, libc::O_WRONLY | libc::O_TRUNC, 0).unwrap();
    fs.flush(fh, 0).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(store.get_chunk(&[2]).unwrap().unwrap(), b"");
}

#[test]
fn touch_makes_an_empty_chunk_and_sets_mtimes() {
    let store = mem();
    let fs = fs_over(store.clone());
    let (attr, fh) = fs
        .create(ROOT_INO, n("0a0b"), libc::O_WRONLY | libc::O_CREAT, 0)
        .unwrap();
    assert_eq!(attr.size, 0);
    assert_eq!(attr.perm, 0o644);
    assert_eq!((attr.uid, attr.gid), (1000, 1000));
    fs.flush(fh, 0).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(store.get_chunk(&[0x0a, 0x0b]).unwrap(), Some(vec![]));

    // touch -d on a closed file.
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    fs.setattr(attr.ino, None, None, Some(SetTime::At(when)))
        .unwrap();
    assert_eq!(store.mtime(&[0x0a, 0x0b]).unwrap(), Some(when));
    assert_eq!(fs.getattr(attr.ino, None, 0).unwrap().mtime, when);

    // cp -p: futimens while the data is still buffered; the mtime survives the commit.
    let (attr, fh) = fs.create(ROOT_INO, n("0c"), CREATE, 0).unwrap();
    fs.write(fh, 0, b"data").unwrap();
    fs.setattr(attr.ino, Some(fh), None, Some(SetTime::At(when)))
        .unwrap();
    fs.flush(fh, 0).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(store.mtime(&[0x0c]).unwrap(), Some(when));

    // A later write moves the mtime on.
    let fh = fs
        .open(attr.ino, libc::O_WRONLY | libc::O_APPEND, 0)
        .unwrap();
    fs.write(fh, 0, b"more").unwrap();
    fs.release(fh).unwrap();
    assert!(store.mtime(&[0x0c]).unwrap().unwrap() > when);
}

#[test]
fn an_oversized_stored_value_is_efbig_on_open_and_never_read() {
    let inner = Arc::new(MemoryStore::new(8 * MAX));
    inner
        .set_chunk(&[0xab], &vec![7; 3 * MAX as usize])
        .unwrap();
    let counting = Arc::new(CountingStore::new(inner));
    let fs = fs_over(counting.clone());
    let ino = fs.lookup(ROOT_INO, n("ab"), 0).unwrap().ino;
    for flags in [
        libc::O_RDONLY,
        libc::O_WRONLY,
        libc::O_RDWR,
        libc::O_WRONLY | libc::O_APPEND,
    ] {
        assert_eq!(
            fs.open(ino, flags, 0).unwrap_err().errno,
            libc::EFBIG,
            "{flags:#o}"
        );
    }
    let reads = counting.gets.load(Ordering::Relaxed)
        + counting.ranged.load(Ordering::Relaxed)
        + counting.batched.load(Ordering::Relaxed);
    assert_eq!(reads, 0, "the value was read");
    // O_TRUNC reads nothing and may replace it.
    let fh = fs.open(ino, libc::O_WRONLY | libc::O_TRUNC, 0).unwrap();
    fs.write(fh, 0, b"small").unwrap();
    fs.flush(fh, 0).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(cat(&fs, "ab").unwrap(), b"small");
}

#[test]
fn appends_land_after_the_value_as_it_stands_at_commit() {
    let store = mem();
    let fs = fs_over(store.clone());
    put(&fs, "10", b"start\n").unwrap();
    let ino = fs.lookup(ROOT_INO, n("10"), 0).unwrap().ino;
    let append = libc::O_WRONLY | libc::O_APPEND;
    let a = fs.open(ino, append, 0).unwrap();
    let b = fs.open(ino, append, 0).unwrap();
    fs.write(a, 0, b"a1\n").unwrap();
    fs.write(b, 0, b"b1\n").unwrap();
    fs.write(a, 0, b"a2\n").unwrap();
    // The handle sees its own value.
    assert_eq!(fs.getattr(ino, Some(a), 0).unwrap().size, 12);
    fs.flush(b, 0).unwrap();
    fs.flush(a, 0).unwrap();
    assert_eq!(
        store.get_chunk(&[0x10]).unwrap().unwrap(),
        b"start\nb1\na1\na2\n"
    );
    // Written on after its commit: after what it committed, and after others again.
    fs.write(b, 0, b"b2\n").unwrap();
    fs.fsync(b).unwrap();
    fs.write(a, 0, b"a3\n").unwrap();
    fs.release(a).unwrap();
    fs.release(b).unwrap();
    assert_eq!(
        store.get_chunk(&[0x10]).unwrap().unwrap(),
        b"start\nb1\na1\na2\nb2\na3\n"
    );
    // An ordinary writer still replaces the value whole; an appender that truncated too.
    let w = fs.open(ino, libc::O_WRONLY, 0).unwrap();
    let t = fs.open(ino, append, 0).unwrap();
    fs.write(w, 0, b"W").unwrap();
    fs.setattr(ino, Some(t), Some(0), None).unwrap();
    fs.write(t, 0, b"T").unwrap();
    fs.flush(w, 0).unwrap();
    assert_eq!(&store.get_chunk(&[0x10]).unwrap().unwrap()[..2], b"Wt");
    fs.flush(t, 0).unwrap();
    assert_eq!(store.get_chunk(&[0x10]).unwrap().unwrap(), b"T");
    fs.release(w).unwrap();
    fs.release(t).unwrap();
    // Two O_APPEND|O_CREAT opens of a new name (two `>>` of a new log file): both land.
    let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT;
    let (_, c) = fs.create(ROOT_INO, n("20"), flags, 0).unwrap();
    let (_, d) = fs.create(ROOT_INO, n("20"), flags, 0).unwrap();
    fs.write(c, 0, b"c").unwrap();
    fs.write(d, 0, b"d").unwrap();
    fs.flush(d, 0).unwrap();
    fs.flush(c, 0).unwrap();
    fs.release(c).unwrap();
    fs.release(d).unwrap();
    assert_eq!(store.get_chunk(&[0x20]).unwrap().unwrap(), b"dc");
}

#[test]
fn fallocate_extends_with_zeros_and_other_modes_create_nothing() {
    let store = mem();
    let fs = fs_over(store.clone());
    let (_, fh) = fs.create(ROOT_INO, n("aa"), CREATE, 0).unwrap();
    fs.write(fh, 0, b"ab").unwrap();
    fs.fallocate(fh, 0, 5, 0).unwrap();
    fs.fallocate(fh, 0, 1, 0).unwrap();
    fs.flush(fh, 0).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(store.get_chunk(&[0xaa]).unwrap().unwrap(), b"ab\0\0\0");
    let (_, fh) = fs.create(ROOT_INO, n("bb"), CREATE, 0).unwrap();
    let e = fs
        .fallocate(fh, 0, 8192, libc::FALLOC_FL_KEEP_SIZE)
        .unwrap_err();
    assert_eq!(e.errno, libc::EOPNOTSUPP);
    fs.flush(fh, 0).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(store.get_chunk(&[0xbb]).unwrap(), None, "nothing created");
    assert_eq!(
        fs.lookup(ROOT_INO, n("bb"), 0).unwrap_err().errno,
        libc::ENOENT
    );
}

#[test]
fn writes_past_the_maximum_are_efbig() {
    let store = mem();
    let fs = fs_over(store);
    let (attr, fh) = fs.create(ROOT_INO, n("0f"), CREATE, 0).unwrap();
    fs.write(fh, MAX - 4, b"1234").unwrap();
    let e = fs.write(fh, MAX - 4, b"12345").unwrap_err();
    assert_eq!(e.errno, libc::EFBIG);
    let e = fs
        .setattr(attr.ino, Some(fh), Some(MAX + 1), None)
        .unwrap_err();
    assert_eq!(e.errno, libc::EFBIG);
    fs.release(fh).unwrap();
}

#[test]
fn a_failed_commit_reaches_flush_and_fsync() {
    let inner = mem();
    let failing = Arc::new(FailingStore::new(inner.clone()));
    let fs = fs_over(failing.clone());
    put(&fs, "aa", b"before").unwrap();

    failing.fail_writes(true);
    let (_, fh) = fs.create(ROOT_INO, n("aa"), CREATE, 0).unwrap();
    fs.write(fh, 0, b"after").unwrap();
    assert_eq!(fs.fsync(fh).unwrap_err().errno, libc::EIO);
    assert_eq!(
        fs.flush(fh, 0).unwrap_err().errno,
        libc::EIO,
        "close() sees it"
    );
    fs.release(fh)
        .expect("release commits nothing: what close() said is final");
    failing.fail_writes(false);
    fs.commit_all().unwrap();
    assert_eq!(
        inner.get_chunk(&[0xaa]).unwrap().unwrap(),
        b"before",
        "no retry later"
    );
    failing.fail_writes(true);
    assert_eq!(inner.get_chunk(&[0xaa]).unwrap().unwrap(), b"before");
    assert_eq!(fs.memory_in_use(), 0);

    // A failure of the commit that rename does for a scratch file.
    put(&fs, ".tmp", b"x").unwrap();
    let e = fs
        .rename(ROOT_INO, n(".tmp"), ROOT_INO, n("bb"), 0)
        .unwrap_err();
    assert_eq!(e.errno, libc::EIO);
    assert_eq!(cat(&fs, ".tmp").unwrap(), b"x", "the scratch file is kept");

    failing.fail_writes(false);
    put(&fs, "aa", b"after").unwrap();
    assert_eq!(inner.get_chunk(&[0xaa]).unwrap().unwrap(), b"after");
}

#[test]
fn whole_value_backends_fetch_once_per_open_file() {
    let inner = mem();
    let value: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
    inner.set_chunk(&[9], &value).unwrap();
    let counting = Arc::new(CountingStore::new(inner));
    let fs = ChunkFs::new(
        counting.clone(),
        FsConfig {
            whole_value_reads: true,
            ..cfg()
        },
    );
    assert_eq!(cat(&fs, "09").unwrap(), value);
    assert_eq!(
        counting.gets.load(Ordering::SeqCst),
        1,
        "50 reads, one fetch"
    );
    assert_eq!(counting.ranged.load(Ordering::SeqCst), 0);

    // Ranged backends: the open reads the first 64 KiB with the version; this value fits, so
    // the handle holds it and its 50 reads need no store call.
    let fs = fs_over(counting.clone());
    assert_eq!(cat(&fs, "09").unwrap(), value);
    assert_eq!(counting.gets.load(Ordering::SeqCst), 1);
    assert_eq!(counting.ranged.load(Ordering::SeqCst), 1);
    // A longer value: the open's read, then one ranged read per read call.
    let long: Vec<u8> = (0..100_000u32).map(|i| (i / 7) as u8).collect();
    counting.set_chunk(&[10], &long).unwrap();
    assert_eq!(cat(&fs, "0a").unwrap(), long);
    assert_eq!(counting.ranged.load(Ordering::SeqCst), 1 + 1 + 101);
}

#[test]
fn the_memory_budget_is_enforced() {
    let fs = ChunkFs::new(
        mem(),
        FsConfig {
            memory_budget: 10_000,
            ..cfg()
        },
    );
    // A commit needs room for the store's copy too: 4000 + 4000 of 10000.
    let (_, a) = fs.create(ROOT_INO, n("01"), CREATE, 0).unwrap();
    fs.write(a, 0, &[1; 4000]).unwrap();
    let (_, b) = fs.create(ROOT_INO, n("02"), CREATE, 0).unwrap();
    fs.write(b, 0, &[2; 3000]).unwrap();
    assert_eq!(
        fs.write(b, 3000, &[2; 4000]).unwrap_err().errno,
        libc::ENOMEM
    );
    assert_eq!(
        fs.write(b, 0, &[3; 1]).unwrap_err().errno,
        libc::ENOMEM,
        "poisoned"
    );
    assert_eq!(
        fs.flush(b, 0).unwrap_err().errno,
        libc::ENOMEM,
        "close says so"
    );
    fs.release(b).unwrap();
    fs.flush(a, 0).unwrap();
    fs.release(a).unwrap();
    assert_eq!(fs.store().get_chunk(&[2]).unwrap(), None, "nothing of b");
    assert_eq!(fs.store().get_chunk(&[1]).unwrap().unwrap(), vec![1; 4000]);
    assert_eq!(fs.memory_in_use(), 0);
}

#[test]
fn read_only_refuses_changes() {
    let store = mem();
    store.set_chunk(&[1], b"x").unwrap();
    let fs = ChunkFs::new(
        store,
        FsConfig {
            read_only: true,
            ..cfg()
        },
    );
    assert_eq!(
        fs.create(ROOT_INO, n("02"), CREATE, 0).unwrap_err().errno,
        libc::EROFS
    );
    let ino = fs.lookup(ROOT_INO, n("01"), 0).unwrap().ino;
    assert_eq!(
        fs.open(ino, libc::O_WRONLY, 0).unwrap_err().errno,
        libc::EROFS
    );
    assert_eq!(fs.unlink(ROOT_INO, n("01")).unwrap_err().errno, libc::EROFS);
    assert_eq!(cat(&fs, "01").unwrap(), b"x");
}

#[test]
fn concurrent_writers_commit_in_groups() {
    let store = mem();
    let fs = Arc::new(fs_over(store.clone()));
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                for i in 0..40u8 {
                    let name = hex::encode([t, i]);
                    put(&fs, &name, &vec![t ^ i; 3000]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(store.list(None).unwrap().count(), 8 * 40);
    assert_eq!(cat(&fs, "0305").unwrap(), vec![3 ^ 5; 3000]);
    let st = fs.statfs().unwrap();
    assert!(st.bavail > 0 && st.namelen == 255);
}

#[test]
fn a_panic_in_the_store_fails_that_commit_and_nothing_else() {
    let inner = mem();
    let failing = Arc::new(FailingStore::new(inner.clone()));
    let fs = Arc::new(fs_over(failing.clone()));
    put(&fs, "aa", b"before").unwrap();
    failing.panic_writes(true);
    let (_, fh) = fs.create(ROOT_INO, n("aa"), CREATE, 0).unwrap();
    fs.write(fh, 0, b"after").unwrap();
    assert_eq!(fs.flush(fh, 0).unwrap_err().errno, libc::EIO);
    fs.release(fh).unwrap();
    failing.panic_writes(false);
    assert_eq!(inner.get_chunk(&[0xaa]).unwrap().unwrap(), b"before");
    // The committer is not stuck, from this thread or others.
    let threads: Vec<_> = (0..4u8)
        .map(|i| {
            let fs = fs.clone();
            std::thread::spawn(move || put(&fs, &format!("b{i}"), &[i; 100]))
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    put(&fs, "aa", b"after").unwrap();
    assert_eq!(inner.get_chunk(&[0xaa]).unwrap().unwrap(), b"after");
    assert_eq!(fs.memory_in_use(), 0);
}

/// A create of a new name answers attributes the kernel may cache (the new file is empty to
/// its writer and to everyone else until the first write), so the writer's permission check
/// and fstat cost no GETATTR; once written, and for a create that finds the name, they are
/// per caller again and not cached.
#[test]
fn a_create_of_a_new_name_answers_cacheable_attributes() {
    let fs = fs_over(mem());
    let (attr, fh) = fs.create(ROOT_INO, n("0d"), CREATE, 1).unwrap();
    assert!(!attr.volatile, "{attr:?}");
    assert_eq!(attr.size, 0);
    let others = fs.getattr(attr.ino, None, 99).unwrap();
    assert_eq!((others.size, others.mtime), (attr.size, attr.mtime));
    fs.write(fh, 0, b"four").unwrap();
    let own = fs.getattr(attr.ino, Some(fh), 1).unwrap();
    assert!(own.volatile && own.size == 4, "{own:?}");
    let others = fs.getattr(attr.ino, None, 99).unwrap();
    assert!(others.volatile && others.size == 0, "{others:?}");
    // The name exists (open and written): a second create opens it, per caller.
    let (again, fh2) = fs.create(ROOT_INO, n("0d"), CREATE, 2).unwrap();
    assert!(again.volatile, "{again:?}");
    for fh in [fh, fh2] {
        fs.flush(fh, 0).unwrap();
        fs.release(fh).unwrap();
    }
    // A committed chunk recreated with O_TRUNC: its writer sees 0 bytes, others the value.
    let (trunc, fh) = fs.create(ROOT_INO, n("0d"), CREATE, 3).unwrap();
    assert!(trunc.volatile && trunc.size == 0, "{trunc:?}");
    fs.release(fh).unwrap();
}
