//! Names: scratch files, chmod and chown, inode numbers, the directory's mtime, rename and
//! unlink, getattr racing a rename.

use super::*;

#[test]
fn names_that_are_not_chunk_names_are_scratch_files() {
    let store = mem();
    let fs = fs_over(store.clone());
    for name in [
        "hello",
        "ABCD",
        "abc",
        "0",
        "zz",
        "ab cd",
        "sedAb12Cd",
        "#aa#",
        "aa~",
    ] {
        assert_eq!(
            fs.lookup(ROOT_INO, n(name), 0).unwrap_err().errno,
            libc::ENOENT,
            "lookup {name} before it exists"
        );
        put(&fs, name, name.as_bytes()).unwrap();
        assert_eq!(cat(&fs, name).unwrap(), name.as_bytes(), "{name}");
    }
    assert!(
        store.list(None).unwrap().next().is_none(),
        "none is a chunk"
    );
    for bad in [".", ".."] {
        let e = fs.create(ROOT_INO, n(bad), CREATE, 0).unwrap_err();
        assert_eq!(e.errno, libc::EINVAL, "create {bad}");
    }
    put(&fs, "aa", b"x").unwrap();
    // A chunk renamed onto a scratch name leaves the store (cp --backup, emacs' name~).
    fs.rename(ROOT_INO, n("aa"), ROOT_INO, n("Not-Hex"), 0)
        .unwrap();
    assert_eq!(store.get_chunk(&[0xaa]).unwrap(), None);
    assert_eq!(cat(&fs, "Not-Hex").unwrap(), b"x");
    assert_eq!(fs.refuse("mkdir", n("d")).errno, libc::EPERM);
    assert_eq!(
        fs.lookup(ROOT_INO, n("ffff"), 0).unwrap_err().errno,
        libc::ENOENT
    );
}

#[test]
fn chmod_and_chown_that_cannot_be_kept_are_eperm() {
    let fs = fs_over(mem());
    put(&fs, "aa", b"x").unwrap();
    put(&fs, ".tmp", b"scratch").unwrap();
    let aa = fs.lookup(ROOT_INO, n("aa"), 0).unwrap().ino;
    let tmp = fs.lookup(ROOT_INO, n(".tmp"), 0).unwrap().ino;
    let (uid, gid) = (fs.config().uid, fs.config().gid);
    // What the file already has: accepted (cp -p, rsync -a). The type bits are ignored.
    fs.check_mode_owner(aa, Some(libc::S_IFREG | 0o644), Some(uid), Some(gid))
        .unwrap();
    fs.check_mode_owner(ROOT_INO, Some(0o755), None, None)
        .unwrap();
    fs.check_mode_owner(aa, None, None, None).unwrap();
    for (mode, u, g) in [
        (Some(0o600), None, None),
        (Some(0o4644), None, None),
        (None, Some(uid + 1), None),
        (None, None, Some(gid + 1)),
    ] {
        let e = fs.check_mode_owner(aa, mode, u, g).unwrap_err();
        assert_eq!(e.errno, libc::EPERM, "{mode:?} {u:?} {g:?}");
    }
    let e = fs
        .check_mode_owner(ROOT_INO, Some(0o700), None, None)
        .unwrap_err();
    assert_eq!(e.errno, libc::EPERM);
    // Scratch files (rsync's temporary files) accept any.
    fs.check_mode_owner(tmp, Some(0o600), Some(uid + 1), None)
        .unwrap();
    assert_eq!(fs.getattr(aa, None, 0).unwrap().perm, 0o644);
    // An owner-only mount accepts any (nobody else can reach it; rsync -a needs it).
    let owner_only = ChunkFs::new(
        mem(),
        FsConfig {
            allow_other: false,
            ..cfg()
        },
    );
    let root = owner_only.getattr(ROOT_INO, None, 0).unwrap().ino;
    owner_only
        .check_mode_owner(root, Some(0o700), Some(uid + 1), None)
        .unwrap();
}

#[test]
fn scratch_files_stay_in_the_daemon_until_renamed() {
    let store = mem();
    let fs = fs_over(store.clone());
    put(&fs, ".beef.Xy12ab", b"rsync temp").unwrap();
    assert!(
        store.list(None).unwrap().next().is_none(),
        "never in the store"
    );
    assert_eq!(cat(&fs, ".beef.Xy12ab").unwrap(), b"rsync temp");
    assert!(names(&ls(&fs, false)).contains(&".beef.Xy12ab".into()));

    // rsync sets the mtime on the temp file, then renames it into place.
    let ino = fs.lookup(ROOT_INO, n(".beef.Xy12ab"), 0).unwrap().ino;
    let when = SystemTime::UNIX_EPOCH + Duration::new(1_234_567_890, 123_456_789);
    fs.setattr(ino, None, None, Some(SetTime::At(when)))
        .unwrap();
    fs.rename(ROOT_INO, n(".beef.Xy12ab"), ROOT_INO, n("beef"), 0)
        .unwrap();
    assert_eq!(
        store.get_chunk(&[0xbe, 0xef]).unwrap().unwrap(),
        b"rsync temp"
    );
    assert_eq!(store.mtime(&[0xbe, 0xef]).unwrap(), Some(when));
    let attr = fs.lookup(ROOT_INO, n("beef"), 0).unwrap();
    assert_eq!(attr.ino, ino, "the inode follows the rename");
    assert_eq!(attr.mtime, when);
    assert_eq!(
        fs.lookup(ROOT_INO, n(".beef.Xy12ab"), 0).unwrap_err().errno,
        libc::ENOENT
    );
    assert_eq!(fs.memory_in_use(), 0);

    // Chunk -> scratch takes the chunk out of the store, with its bytes and mtime.
    fs.rename(ROOT_INO, n("beef"), ROOT_INO, n("beef~"), 0)
        .unwrap();
    assert_eq!(store.get_chunk(&[0xbe, 0xef]).unwrap(), None);
    assert_eq!(cat(&fs, "beef~").unwrap(), b"rsync temp");
    assert_eq!(fs.lookup(ROOT_INO, n("beef~"), 0).unwrap().mtime, when);
    assert_eq!(fs.lookup(ROOT_INO, n("beef~"), 0).unwrap().ino, ino);
    put(&fs, ".beef.swp", b"swap").unwrap();
    put(&fs, ".other", b"zz").unwrap();
    fs.unlink(ROOT_INO, n(".other")).unwrap();
    fs.shutdown().unwrap();
    assert!(store.list(None).unwrap().next().is_none(), "never chunks");
    drop(fs);

    // Kept across the unmount: the next mount over the store shows them, with their mtimes.
    let fs = fs_over(store.clone());
    assert_eq!(cat(&fs, ".beef.swp").unwrap(), b"swap");
    assert_eq!(cat(&fs, "beef~").unwrap(), b"rsync temp");
    assert_eq!(fs.lookup(ROOT_INO, n("beef~"), 0).unwrap().mtime, when);
    assert_eq!(
        fs.lookup(ROOT_INO, n(".other"), 0).unwrap_err().errno,
        libc::ENOENT
    );
    let mut listed = names(&ls(&fs, true));
    listed.retain(|n| n != "." && n != "..");
    listed.sort();
    assert_eq!(listed, vec![OsString::from(".beef.swp"), "beef~".into()]);
    // Removed ones stay removed after the next unmount.
    fs.unlink(ROOT_INO, n(".beef.swp")).unwrap();
    fs.rename(ROOT_INO, n("beef~"), ROOT_INO, n("beef"), 0)
        .unwrap();
    fs.shutdown().unwrap();
    drop(fs);
    let fs = fs_over(store.clone());
    let listed = names(&ls(&fs, false));
    assert_eq!(
        listed,
        vec![OsString::from("."), "..".into(), "beef".into()]
    );
    assert_eq!(fs.memory_in_use(), 0);
}

#[test]
fn two_mounts_of_one_store_keep_each_others_scratch_files() {
    // Two mounts of one Ceph pool: each unmount replaces only its own scratch files.
    let store = mem();
    let first = fs_over(store.clone());
    put(&first, "old1", b"from before").unwrap();
    first.shutdown().unwrap();
    drop(first);
    let a = fs_over(store.clone());
    let b = fs_over(store.clone());
    put(&a, "tmpA", b"a").unwrap();
    put(&b, "tmpB", b"b").unwrap();
    a.unlink(ROOT_INO, n("old1")).unwrap();
    a.shutdown().unwrap();
    b.shutdown().unwrap();
    let c = fs_over(store);
    assert_eq!(cat(&c, "tmpA").unwrap(), b"a");
    assert_eq!(cat(&c, "tmpB").unwrap(), b"b");
    // b loaded old1 too and kept it: its unmount saved it again (it never removed it).
    assert_eq!(cat(&c, "old1").unwrap(), b"from before");
}

#[test]
fn saved_scratch_files_that_cannot_be_loaded_are_never_replaced() {
    let store = mem();
    store
        .side_put(crate::store::SIDE_SCRATCH, b"garbage")
        .unwrap();
    let fs = fs_over(store.clone());
    put(&fs, "tmp1", b"new").unwrap();
    let e = fs.shutdown().unwrap_err();
    assert!(e.message.contains("tmp1"), "{}", e.message);
    assert_eq!(
        store.side_get(crate::store::SIDE_SCRATCH).unwrap().unwrap(),
        b"garbage"
    );
}

#[test]
fn inode_numbers_survive_forget_and_remount() {
    let store = mem();
    let fs = fs_over(store.clone());
    put(&fs, "aa", b"x").unwrap();
    put(&fs, "bb", b"y").unwrap();
    let a = fs.lookup(ROOT_INO, n("aa"), 0).unwrap().ino;
    let b = fs.lookup(ROOT_INO, n("bb"), 0).unwrap().ino;
    let listed: Vec<u64> = ls(&fs, false)
        .iter()
        .filter(|e| e.name == "aa")
        .map(|e| e.ino)
        .collect();
    assert_eq!(listed, vec![a], "readdir gives the number lookup gives");
    fs.forget(a, 2);
    assert_eq!(fs.lookup(ROOT_INO, n("aa"), 0).unwrap().ino, a);
    fs.shutdown().unwrap();
    drop(fs);
    let fs = fs_over(store);
    assert_eq!(fs.lookup(ROOT_INO, n("bb"), 0).unwrap().ino, b);
    assert_eq!(fs.lookup(ROOT_INO, n("aa"), 0).unwrap().ino, a);
}

#[test]
fn the_directory_mtime_follows_its_names_and_utimes_and_is_kept() {
    let store = mem();
    let fs = fs_over(store.clone());
    let when = SystemTime::UNIX_EPOCH + Duration::new(1_500_000_000, 5);
    fs.setattr(ROOT_INO, None, None, Some(SetTime::At(when)))
        .unwrap();
    assert_eq!(fs.getattr(ROOT_INO, None, 0).unwrap().mtime, when);
    // Writing an existing file leaves it alone; a new name moves it on.
    put(&fs, "aa", b"x").unwrap();
    let created = fs.getattr(ROOT_INO, None, 0).unwrap().mtime;
    assert!(created > when);
    fs.setattr(ROOT_INO, None, None, Some(SetTime::At(when)))
        .unwrap();
    put(&fs, "aa", b"y").unwrap();
    assert_eq!(fs.getattr(ROOT_INO, None, 0).unwrap().mtime, when);
    fs.shutdown().unwrap();
    drop(fs);
    let fs = fs_over(store.clone());
    assert_eq!(fs.getattr(ROOT_INO, None, 0).unwrap().mtime, when);
    fs.unlink(ROOT_INO, n("aa")).unwrap();
    let unlinked = fs.getattr(ROOT_INO, None, 0).unwrap().mtime;
    assert!(unlinked > when);
    fs.shutdown().unwrap();
    drop(fs);
    let fs = fs_over(store);
    assert_eq!(fs.getattr(ROOT_INO, None, 0).unwrap().mtime, unlinked);
}

#[test]
fn rename_moves_and_replaces_chunks() {
    let store = mem();
    let fs = fs_over(store.clone());
    put(&fs, "01", b"one").unwrap();
    put(&fs, "02", b"two").unwrap();
    let ino1 = fs.lookup(ROOT_INO, n("01"), 0).unwrap().ino;
    let e = fs
        .rename(ROOT_INO, n("01"), ROOT_INO, n("02"), RENAME_NOREPLACE)
        .unwrap_err();
    assert_eq!(e.errno, libc::EEXIST);
    let e = fs
        .rename(ROOT_INO, n("01"), ROOT_INO, n("02"), RENAME_EXCHANGE)
        .unwrap_err();
    assert_eq!(e.errno, libc::EINVAL);
    assert!(
        e.message.contains("\"01\"") && e.message.contains("\"02\""),
        "the refusal names both files: {}",
        e.message
    );
    fs.rename(ROOT_INO, n("01"), ROOT_INO, n("02"), 0).unwrap();
    assert_eq!(store.get_chunk(&[1]).unwrap(), None);
    assert_eq!(store.get_chunk(&[2]).unwrap().unwrap(), b"one");
    assert_eq!(fs.lookup(ROOT_INO, n("02"), 0).unwrap().ino, ino1);
    assert_eq!(fs.getattr(ino1, None, 0).unwrap().size, 3);
    let e = fs
        .rename(ROOT_INO, n("01"), ROOT_INO, n("03"), 0)
        .unwrap_err();
    assert_eq!(e.errno, libc::ENOENT);

    // A file renamed while open and dirty: its data lands under the new name.
    let (attr, fh) = fs.create(ROOT_INO, n("10"), CREATE, 0).unwrap();
    fs.write(fh, 0, b"moving").unwrap();
    fs.rename(ROOT_INO, n("10"), ROOT_INO, n("11"), 0).unwrap();
    fs.write(fh, 6, b"!").unwrap();
    fs.flush(fh, 0).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(store.get_chunk(&[0x11]).unwrap().unwrap(), b"moving!");
    assert_eq!(store.get_chunk(&[0x10]).unwrap(), None);
    assert_eq!(fs.getattr(attr.ino, None, 0).unwrap().size, 7);
}

#[test]
fn unlink_deletes_and_open_files_do_not_resurrect() {
    let store = mem();
    let fs = fs_over(store.clone());
    put(&fs, "01", b"one").unwrap();
    fs.unlink(ROOT_INO, n("01")).unwrap();
    assert_eq!(store.get_chunk(&[1]).unwrap(), None);
    assert_eq!(
        fs.unlink(ROOT_INO, n("01")).unwrap_err().errno,
        libc::ENOENT
    );

    let (_, fh) = fs.create(ROOT_INO, n("02"), CREATE, 0).unwrap();
    fs.write(fh, 0, b"doomed").unwrap();
    fs.unlink(ROOT_INO, n("02")).unwrap();
    fs.flush(fh, 0).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(store.get_chunk(&[2]).unwrap(), None);
}

#[test]
fn a_getattr_overtaken_by_a_rename_answers_under_the_new_name() {
    let failing = Arc::new(crate::fs::testing::FailingStore::new(mem()));
    let fs = Arc::new(ChunkFs::new(
        failing.clone(),
        FsConfig {
            // Every getattr asks the store.
            attr_ttl: Duration::ZERO,
            ..cfg()
        },
    ));
    put(&fs, "bb", b"value").unwrap();
    let bb = fs.lookup(ROOT_INO, n("bb"), 0).unwrap().ino;
    // The getattr has taken the inode's name (bb) and is held before it asks the store; the
    // rename bb -> aa runs; then the store has no bb, and the getattr would say ENOENT for an
    // inode that is aa.
    failing.stall_next_stat_of(&[0xbb]);
    let getattr = {
        let fs = fs.clone();
        std::thread::spawn(move || fs.getattr(bb, None, 0))
    };
    while !failing.stat_is_stalled() {
        std::thread::yield_now();
    }
    fs.rename(ROOT_INO, n("bb"), ROOT_INO, n("aa"), 0).unwrap();
    failing.release_stat();
    let attr = getattr.join().unwrap().unwrap();
    assert_eq!((attr.ino, attr.size), (bb, 5));
}

/// An inode that stopped being what its name stands for is answered ESTALE, never ENOENT: the
/// kernel then looks the path up again (an open of aa that looked aa up just before a rename
/// bb -> aa replaced it must open the new aa, not fail: the name never stopped existing). A
/// file that lost its name while open keeps attributes, those of its handles.
#[test]
fn getattr_of_an_inode_that_lost_its_name() {
    let store = mem();
    let fs = fs_over(store.clone());
    put(&fs, "aa", b"old aa").unwrap();
    put(&fs, "bb", b"the new aa").unwrap();
    // Replaced by a rename, nothing open: ESTALE; the name answers for the new file.
    let aa = fs.lookup(ROOT_INO, n("aa"), 0).unwrap().ino;
    fs.rename(ROOT_INO, n("bb"), ROOT_INO, n("aa"), 0).unwrap();
    assert_eq!(fs.getattr(aa, None, 0).unwrap_err().errno, libc::ESTALE);
    let now = fs.lookup(ROOT_INO, n("aa"), 0).unwrap();
    assert_ne!(now.ino, aa);
    assert_eq!(now.size, 10);
    // Open when replaced: the handle's file keeps its size, with no link.
    put(&fs, "bb", b"newer").unwrap();
    let fh = fs.open(now.ino, libc::O_RDONLY, 0).unwrap();
    fs.rename(ROOT_INO, n("bb"), ROOT_INO, n("aa"), 0).unwrap();
    let orphan = fs.getattr(now.ino, Some(fh), 0).unwrap();
    assert_eq!((orphan.size, orphan.nlink), (10, 0));
    assert_eq!(fs.getattr(now.ino, None, 0).unwrap().size, 10);
    assert_eq!(fs.read(fh, 0, 100).unwrap(), b"the new aa");
    fs.release(fh).unwrap();
    assert_eq!(
        fs.getattr(now.ino, None, 0).unwrap_err().errno,
        libc::ESTALE
    );
    // Unlinked while open, and written through its handle: the writer sees its own size.
    let cc = fs.create(ROOT_INO, n("cc"), CREATE, 7).unwrap().1;
    fs.write(cc, 0, b"12345").unwrap();
    let ino = fs.lookup(ROOT_INO, n("cc"), 0).unwrap().ino;
    fs.unlink(ROOT_INO, n("cc")).unwrap();
    assert_eq!(fs.getattr(ino, Some(cc), 7).unwrap().size, 5);
    assert_eq!(fs.getattr(ino, None, 7).unwrap().nlink, 0);
    // Its handle still truncates it and sets its mtime (ftruncate, futimens); a truncate by
    // path of the nameless inode is ESTALE.
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let attr = fs.setattr(ino, Some(cc), Some(2), None).unwrap();
    assert_eq!((attr.size, attr.nlink), (2, 0));
    let attr = fs
        .setattr(ino, Some(cc), None, Some(SetTime::At(t)))
        .unwrap();
    assert_eq!((attr.size, attr.mtime), (2, t));
    let e = fs.setattr(ino, None, Some(0), None).unwrap_err();
    assert_eq!(e.errno, libc::ESTALE);
    fs.release(cc).unwrap();
    // Deleted behind the daemon's back (another client of the store): ESTALE, and the lookup
    // the kernel then makes says ENOENT.
    let a = fs.lookup(ROOT_INO, n("aa"), 0).unwrap().ino;
    store.delete(&[0xaa]).unwrap();
    std::thread::sleep(cfg().attr_ttl);
    assert_eq!(fs.getattr(a, None, 0).unwrap_err().errno, libc::ESTALE);
    assert_eq!(
        fs.lookup(ROOT_INO, n("aa"), 0).unwrap_err().errno,
        libc::ENOENT
    );
}

/// A chunk read by range (longer than the open's first read), renamed to a scratch name and
/// back to a chunk name while open: the reader keeps reading its bytes (the model found it
/// answered ESTALE: the value's new object in the store has another version).
#[test]
fn a_ranged_reader_follows_its_chunk_through_a_scratch_name() {
    let store = mem();
    store.set_chunk(&[0x0c], &vec![7u8; 1025]).unwrap();
    let fs = ChunkFs::new(
        store,
        FsConfig {
            open_read: 1024,
            ..cfg()
        },
    );
    let a = fs.lookup(ROOT_INO, n("0c"), 0).unwrap();
    let r = fs.open(a.ino, libc::O_RDONLY, 0).unwrap();
    fs.rename(ROOT_INO, n("0c"), ROOT_INO, n("tmpX"), 0)
        .unwrap();
    fs.rename(ROOT_INO, n("tmpX"), ROOT_INO, n("0a"), 0)
        .unwrap();
    assert_eq!(fs.read(r, 0, 2000).unwrap(), vec![7u8; 1025]);
    fs.release(r).unwrap();
    assert_eq!(cat(&fs, "0a").unwrap(), vec![7u8; 1025]);
}
