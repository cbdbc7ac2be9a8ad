//! Listings: streaming readdir with stable offsets, new and committing files listed once.

use super::*;

#[test]
fn readdir_streams_with_stable_offsets() {
    let store = mem();
    for i in 0..50u8 {
        store.set_chunk(&[i], &vec![i; i as usize]).unwrap();
    }
    // Keys that cannot be names are skipped.
    store.set_chunk(&[7u8; 128], b"too long a key").unwrap();
    let fs = fs_over(store);
    put(&fs, ".scratch", b"s").unwrap();
    let all = ls(&fs, true);
    let got = names(&all);
    assert_eq!(got.len(), 2 + 50 + 1);
    assert_eq!(&got[..2], &[OsString::from("."), OsString::from("..")]);
    assert_eq!(got[2 + 10], OsString::from("0a"));
    assert_eq!(got.last().unwrap(), ".scratch");
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.offset, i as u64 + 1);
    }
    for e in &all[2..52] {
        let attr = e.attr.unwrap();
        assert_eq!(attr.ino, e.ino);
        assert_eq!(
            attr.size,
            hex::decode(e.name.to_str().unwrap()).unwrap()[0] as u64
        );
        assert_eq!(
            fs.lookup(ROOT_INO, &e.name, 0).unwrap().ino,
            e.ino,
            "stable inodes"
        );
    }
    // Resuming at an offset the stream has passed restarts the listing correctly.
    let fh = fs.opendir(ROOT_INO).unwrap();
    let mut first = Vec::new();
    fs.readdir(fh, 0, false, &mut |e| {
        first.push(e);
        first.len() == 30
    })
    .unwrap();
    let mut again = Vec::new();
    fs.readdir(fh, 5, false, &mut |e| {
        again.push(e);
        false
    })
    .unwrap();
    assert_eq!(again[0].offset, 6);
    assert_eq!(names(&again), got[5..].to_vec());
    fs.releasedir(fh);
}

/// The names `ls` shows (plain or plus), without "." and "..".
fn file_names(fs: &ChunkFs, plus: bool) -> Vec<String> {
    ls(fs, plus)[2..]
        .iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn uncommitted_new_files_are_listed_once() {
    let store = mem();
    let fs = fs_over(store.clone());
    put(&fs, "01", b"one").unwrap();
    let (_, fh) = fs.create(ROOT_INO, n("02"), CREATE, 0).unwrap();
    fs.write(fh, 0, b"not yet stored").unwrap();
    assert_eq!(store.stat(&[2]).unwrap(), None);
    assert_eq!(file_names(&fs, false), ["01", "02"]);
    let plus = ls(&fs, true);
    let e = plus.iter().find(|e| e.name == "02").unwrap();
    let attr = e.attr.as_ref().unwrap();
    assert_eq!(attr.size, 0, "listed as created, empty, until committed");
    assert_eq!(attr.ino, e.ino);
    assert_eq!(fs.getattr(e.ino, Some(fh), 0).unwrap().size, 14);
    // Counted like any readdirplus entry: forgetting them all leaves the open file's number.
    for e in &plus[2..] {
        fs.forget(e.ino, 1);
    }
    // And the lookups of the two creates.
    fs.forget(e.ino, 1);
    fs.forget(plus[2].ino, 1);
    assert_eq!(fs.inode_count(), 2, "the root and the open file");

    // Committed: listed exactly once, from the store, while still open and after.
    fs.flush(fh, 0).unwrap();
    assert_eq!(file_names(&fs, false), ["01", "02"]);
    assert_eq!(file_names(&fs, true), ["01", "02"]);
    fs.release(fh).unwrap();
    assert_eq!(file_names(&fs, false), ["01", "02"]);

    // An existing chunk reopened for writing is listed once.
    let ino = fs.lookup(ROOT_INO, n("01"), 0).unwrap().ino;
    let fh = fs.open(ino, libc::O_WRONLY | libc::O_TRUNC, 0).unwrap();
    fs.write(fh, 0, b"uno!").unwrap();
    assert_eq!(file_names(&fs, false), ["01", "02"]);
    let (_, fh2) = fs.create(ROOT_INO, n("02"), CREATE, 0).unwrap();
    assert_eq!(file_names(&fs, true), ["01", "02"]);
    fs.release(fh2).unwrap();
    fs.release(fh).unwrap();

    // Unlinked before its commit: gone.
    let (_, fh) = fs.create(ROOT_INO, n("03"), CREATE, 0).unwrap();
    fs.write(fh, 0, b"doomed").unwrap();
    assert_eq!(file_names(&fs, false), ["01", "02", "03"]);
    fs.unlink(ROOT_INO, n("03")).unwrap();
    assert_eq!(file_names(&fs, false), ["01", "02"]);
    assert_eq!(file_names(&fs, true), ["01", "02"]);
    fs.release(fh).unwrap();
    assert_eq!(file_names(&fs, false), ["01", "02"]);

    // Renamed before its commit: under the new name only.
    let (_, fh) = fs.create(ROOT_INO, n("04"), CREATE, 0).unwrap();
    fs.write(fh, 0, b"moving").unwrap();
    fs.rename(ROOT_INO, n("04"), ROOT_INO, n("05"), 0).unwrap();
    assert_eq!(file_names(&fs, false), ["01", "02", "05"]);
    let plus = ls(&fs, true);
    assert_eq!(plus.last().unwrap().attr.as_ref().unwrap().size, 0);
    fs.write(fh, 6, b"!").unwrap();
    assert_eq!(file_names(&fs, true), ["01", "02", "05"]);
    fs.release(fh).unwrap();
    assert_eq!(file_names(&fs, false), ["01", "02", "05"]);
    assert_eq!(store.get_chunk(&[5]).unwrap().unwrap(), b"moving!");

    // Scratch files are still listed, and never as chunks.
    let (_, fh) = fs.create(ROOT_INO, n(".tmp"), CREATE, 0).unwrap();
    fs.write(fh, 0, b"s").unwrap();
    assert_eq!(file_names(&fs, false), ["01", "02", "05", ".tmp"]);
    fs.release(fh).unwrap();
}

#[test]
fn a_commit_during_the_listing_is_listed_once() {
    let store = mem();
    for i in 0..20u8 {
        store.set_chunk(&[0x10 + i], b"x").unwrap();
    }
    let fs = fs_over(store.clone());
    let (_, early) = fs.create(ROOT_INO, n("00"), CREATE, 0).unwrap();
    let (_, late) = fs.create(ROOT_INO, n("ff"), CREATE, 0).unwrap();
    let dh = fs.opendir(ROOT_INO).unwrap();
    let mut got = Vec::new();
    // Two entries past the dots: the store's listing is open.
    let mut taken = 0;
    fs.readdir(dh, 0, false, &mut |e| {
        if taken == 4 {
            return true;
        }
        taken += 1;
        got.push(e);
        false
    })
    .unwrap();
    // Both commit now, after the store's listing was opened (the memory store's is a snapshot,
    // so neither is in it; on a streaming store "ff" may be): each is listed exactly once.
    fs.flush(early, 0).unwrap();
    fs.flush(late, 0).unwrap();
    loop {
        let offset = got.last().unwrap().offset;
        let before = got.len();
        fs.readdir(dh, offset, false, &mut |e| {
            got.push(e);
            false
        })
        .unwrap();
        if got.len() == before {
            break;
        }
    }
    fs.releasedir(dh);
    let mut names: Vec<String> = got[2..]
        .iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = (0..20u8).map(|i| format!("{:02x}", 0x10 + i)).collect();
    want.insert(0, "00".into());
    want.push("ff".into());
    assert_eq!(names, want);
    fs.release(early).unwrap();
    fs.release(late).unwrap();
}
