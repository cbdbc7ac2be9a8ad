//! The core driven directly (no mount) over the memory store, a failure-injecting wrapper and a
//! call-counting wrapper.

use std::ffi::{OsStr, OsString};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::namespace::{RENAME_EXCHANGE, RENAME_NOREPLACE};
use super::testing::{CountingStore, FailingStore};
use super::*;
use crate::store::memory::MemoryStore;
use crate::store::{ChunkList, RawChunk, Result as StoreResult};

const MAX: u64 = 1 << 20;

pub(crate) fn cfg() -> FsConfig {
    FsConfig {
        max_chunk_size: MAX,
        memory_budget: 8 << 20,
        budget_wait: Duration::from_millis(50),
        read_only: false,
        allow_other: true,
        uid: 1000,
        gid: 1000,
        file_mode: 0o644,
        attr_ttl: Duration::from_secs(1),
        whole_value_reads: false,
        open_read: crate::fs::OPEN_READ,
        metadata_parallelism: 4,
        readahead: ReadAheadConfig::default(),
        cached_reads: false,
    }
}

fn mem() -> Arc<dyn Cloudstore> {
    Arc::new(MemoryStore::new(MAX))
}

fn fs_over(store: Arc<dyn Cloudstore>) -> ChunkFs {
    ChunkFs::new(store, cfg())
}

fn n(s: &str) -> &OsStr {
    OsStr::new(s)
}

const CREATE: i32 = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC;

/// Writes a whole file like `cp`: create, write, flush (close), release.
fn put(fs: &ChunkFs, name: &str, data: &[u8]) -> FsResult<()> {
    let (_, fh) = fs.create(ROOT_INO, n(name), CREATE, 0)?;
    for (i, part) in data.chunks(4096).enumerate() {
        fs.write(fh, (i * 4096) as u64, part)?;
    }
    let flushed = fs.flush(fh, 0);
    let _ = fs.release(fh);
    flushed
}

/// Reads a whole file through open/read/release, 1000 bytes at a time.
fn cat(fs: &ChunkFs, name: &str) -> FsResult<Vec<u8>> {
    let attr = fs.lookup(ROOT_INO, n(name), 0)?;
    let fh = fs.open(attr.ino, libc::O_RDONLY, 0)?;
    let mut out = Vec::new();
    loop {
        let part = fs.read(fh, out.len() as u64, 1000)?;
        if part.is_empty() {
            break;
        }
        out.extend(part);
    }
    fs.release(fh)?;
    Ok(out)
}

fn ls(fs: &ChunkFs, plus: bool) -> Vec<DirEntry> {
    let fh = fs.opendir(ROOT_INO).unwrap();
    let mut out: Vec<DirEntry> = Vec::new();
    loop {
        let offset = out.last().map_or(0, |e| e.offset);
        let before = out.len();
        // Small pages, like a kernel buffer that fills after 7 entries.
        let mut page = 0;
        fs.readdir(fh, offset, plus, &mut |e| {
            if page == 7 {
                return true;
            }
            page += 1;
            out.push(e);
            false
        })
        .unwrap();
        if out.len() == before {
            break;
        }
    }
    fs.releasedir(fh);
    out
}

fn names(entries: &[DirEntry]) -> Vec<OsString> {
    entries.iter().map(|e| e.name.clone()).collect()
}

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

// ---- read-ahead ----

const WINDOW: usize = 32;

/// `count` files of `size` bytes named 4 hex digits (0000, 0001, ...), each its own pattern.
fn many(store: &dyn Cloudstore, count: usize, size: usize) -> Vec<(String, Vec<u8>)> {
    (0..count)
        .map(|i| {
            let name = format!("{i:04x}");
            let data: Vec<u8> = (0..size).map(|j| (i * 7 + j) as u8).collect();
            store
                .set_chunk(&hex::decode(&name).unwrap(), &data)
                .unwrap();
            (name, data)
        })
        .collect()
}

/// The file names of a listing (no dots).
fn listed(fs: &ChunkFs) -> Vec<String> {
    ls(fs, true)
        .into_iter()
        .map(|e| e.name.into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

fn counting_fs(counting: &Arc<CountingStore>, whole_value_reads: bool) -> ChunkFs {
    ChunkFs::new(
        counting.clone(),
        FsConfig {
            whole_value_reads,
            ..cfg()
        },
    )
}

#[test]
fn reading_in_listing_order_batches_one_call_per_window() {
    // Ranged backends are shared with other clients: every open reads its chunk's version
    // (close-to-open), so read-ahead only serves whole-value backends.
    let counting = Arc::new(CountingStore::new(mem()));
    let files = many(&*counting, 100, 4096);
    let fs = counting_fs(&counting, false);
    for name in &listed(&fs) {
        let want = &files.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(&cat(&fs, name).unwrap(), want, "{name}");
    }
    assert_eq!(
        counting.counts(),
        (0, 100, 0, 0),
        "one versioned read per open"
    );
    // Whole-value backends: one batch per window of opens in listing order.
    let counting = Arc::new(CountingStore::new(mem()));
    let files = many(&*counting, 100, 4096);
    let fs = counting_fs(&counting, true);
    let names = listed(&fs);
    assert_eq!(names.len(), 100);
    for name in &names {
        let want = &files.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(&cat(&fs, name).unwrap(), want, "{name}");
    }
    let (gets, ranged, batches, batched) = counting.counts();
    assert_eq!((gets, ranged), (0, 0), "no per-file read");
    assert_eq!(batches, 100usize.div_ceil(WINDOW), "one batch per window");
    assert_eq!(batched, 100);
    assert_eq!(fs.readahead_stats().served, 100);
    assert_eq!(fs.memory_in_use(), 0, "every prefetched value was used");
}

#[test]
fn name_order_and_listing_order_both_batch_when_they_differ() {
    // Like Ceph: the listing is in hash order; a shell glob and rsync open in name order.
    let counting = Arc::new(CountingStore::shuffled(mem()));
    let files = many(&*counting, 200, 1000);
    let fs = counting_fs(&counting, true);
    let listing = listed(&fs);
    let mut sorted = listing.clone();
    sorted.sort();
    assert_ne!(listing, sorted, "the wrapper lists out of name order");
    for name in &sorted {
        let i = usize::from_str_radix(name, 16).unwrap();
        assert_eq!(cat(&fs, name).unwrap(), files[i].1);
    }
    let (gets, ranged, batches, _) = counting.counts();
    assert_eq!((gets, ranged), (0, 0));
    assert_eq!(batches, 200usize.div_ceil(WINDOW));
    // And again in listing order (a fresh listing, like tar).
    let listing = listed(&fs);
    for name in &listing {
        let i = usize::from_str_radix(name, 16).unwrap();
        assert_eq!(cat(&fs, name).unwrap(), files[i].1);
    }
    let (gets, ranged, batches2, _) = counting.counts();
    assert_eq!((gets, ranged), (0, 0));
    assert_eq!(batches2 - batches, 200usize.div_ceil(WINDOW));
}

#[test]
fn skipped_and_large_files_keep_the_walk_going() {
    let counting = Arc::new(CountingStore::new(mem()));
    let mut files = many(&*counting, 100, 100);
    // Every tenth file is too large to prefetch; it is read on its own.
    for i in (5..100).step_by(10) {
        let big = vec![i as u8; (MAX as usize) / 2 + 3];
        counting
            .set_chunk(&hex::decode(&files[i].0).unwrap(), &big)
            .unwrap();
        files[i].1 = big;
    }
    let fs = ChunkFs::new(
        counting.clone(),
        FsConfig {
            readahead: ReadAheadConfig {
                max_value: 64 << 10,
                ..ReadAheadConfig::default()
            },
            ..cfg()
        },
    );
    let names = listed(&fs);
    // tar skips nothing, but a tool may skip some: open every file but the 3rd of each 7.
    for (i, name) in names.iter().enumerate() {
        if i % 7 == 3 {
            continue;
        }
        assert_eq!(cat(&fs, name).unwrap(), files[i].1, "{name}");
    }
    let (gets, ranged, batches, _) = counting.counts();
    assert_eq!(gets, 0);
    // The large ones are read with ranges (not prefetched); the rest came in a few batches.
    assert!(ranged > 0);
    assert!(batches <= 6, "{batches} batches");
}

#[test]
fn mutations_between_prefetch_and_open_are_never_served_stale() {
    let counting = Arc::new(CountingStore::new(mem()));
    let files = many(&*counting, 40, 3000);
    let fs = counting_fs(&counting, true);
    let names = listed(&fs);
    // Opening the first file prefetches the next 31.
    assert_eq!(cat(&fs, &names[0]).unwrap(), files[0].1);
    assert_eq!(counting.counts().2, 1);
    assert!(fs.readahead_bytes() > 0);

    put(&fs, &names[1], b"rewritten").unwrap();
    fs.rename(ROOT_INO, n(&names[7]), ROOT_INO, n(&names[2]), 0)
        .unwrap();
    fs.unlink(ROOT_INO, n(&names[3])).unwrap();
    fs.rename(ROOT_INO, n(&names[4]), ROOT_INO, n("ff00"), 0)
        .unwrap();
    // Truncate by path (setattr without a handle) commits at once.
    let ino5 = fs.lookup(ROOT_INO, n(&names[5]), 0).unwrap().ino;
    fs.setattr(ino5, None, Some(10), None).unwrap();
    // A scratch file renamed over a prefetched chunk (rsync's temp file).
    put(&fs, ".tmp", b"from scratch").unwrap();
    fs.rename(ROOT_INO, n(".tmp"), ROOT_INO, n(&names[6]), 0)
        .unwrap();

    assert_eq!(cat(&fs, &names[1]).unwrap(), b"rewritten");
    assert_eq!(cat(&fs, &names[2]).unwrap(), files[7].1);
    assert_eq!(
        fs.lookup(ROOT_INO, n(&names[3]), 0).unwrap_err().errno,
        libc::ENOENT
    );
    assert_eq!(
        fs.lookup(ROOT_INO, n(&names[4]), 0).unwrap_err().errno,
        libc::ENOENT
    );
    assert_eq!(cat(&fs, "ff00").unwrap(), files[4].1);
    assert_eq!(cat(&fs, &names[5]).unwrap(), files[5].1[..10].to_vec());
    assert_eq!(cat(&fs, &names[6]).unwrap(), b"from scratch");
    // The untouched ones still come from the batch.
    let before = counting.counts();
    for i in 8..32 {
        assert_eq!(cat(&fs, &names[i]).unwrap(), files[i].1);
    }
    assert_eq!(counting.counts().0, before.0, "no per-file get");
}

/// Runs a hook once, right after a batch read its values and before read-ahead keeps them.
struct RacingStore {
    inner: Arc<dyn Cloudstore>,
    hook: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Cloudstore for RacingStore {
    fn backend(&self) -> &'static str {
        "racing"
    }
    fn get_chunk(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        self.inner.get_chunk(key)
    }
    fn get_chunk_batch(&self, chunks: &mut [RawChunk]) -> StoreResult<()> {
        let result = self.inner.get_chunk_batch(chunks);
        let hook = self.hook.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        result
    }
    fn get_chunk_with_range(&self, key: &[u8], s: u64, e: u64) -> StoreResult<Option<Vec<u8>>> {
        self.inner.get_chunk_with_range(key, s, e)
    }
    fn set_chunk(&self, key: &[u8], value: &[u8]) -> StoreResult<()> {
        self.inner.set_chunk(key, value)
    }
    fn set_chunk_batch(&self, chunks: &mut [RawChunk]) -> StoreResult<()> {
        self.inner.set_chunk_batch(chunks)
    }
    fn close(&self) -> StoreResult<()> {
        self.inner.close()
    }
    fn stat(&self, key: &[u8]) -> StoreResult<Option<u64>> {
        self.inner.stat(key)
    }
    fn delete(&self, key: &[u8]) -> StoreResult<bool> {
        self.inner.delete(key)
    }
    fn list(&self, after: Option<&[u8]>) -> StoreResult<ChunkList> {
        self.inner.list(after)
    }
    fn sync(&self) -> StoreResult<()> {
        self.inner.sync()
    }
}

#[test]
fn a_write_during_a_batch_drops_that_value() {
    let inner = mem();
    let files = many(&*inner, 10, 500);
    let racing = Arc::new(RacingStore {
        inner,
        hook: std::sync::Mutex::new(None),
    });
    let fs = Arc::new(ChunkFs::new(
        racing.clone(),
        FsConfig {
            whole_value_reads: true,
            ..cfg()
        },
    ));
    let names = listed(&fs);
    let (fs2, name2) = (fs.clone(), names[2].clone());
    // The batch has read the old value of file 2 when this write lands.
    *racing.hook.lock().unwrap() = Some(Box::new(move || {
        put(&fs2, &name2, b"new").unwrap();
    }));
    assert_eq!(cat(&fs, &names[0]).unwrap(), files[0].1);
    assert!(racing.hook.lock().unwrap().is_none(), "the batch ran");
    assert_eq!(cat(&fs, &names[1]).unwrap(), files[1].1);
    assert_eq!(cat(&fs, &names[2]).unwrap(), b"new");
    assert_eq!(cat(&fs, &names[3]).unwrap(), files[3].1);
}

#[test]
fn random_opens_do_not_prefetch_beyond_a_bound() {
    let counting = Arc::new(CountingStore::new(mem()));
    let files = many(&*counting, 512, 2000);
    let fs = counting_fs(&counting, true);
    let names = listed(&fs);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..400 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x % 512) as usize;
        assert_eq!(cat(&fs, &names[i]).unwrap(), files[i].1);
    }
    let (gets, _, batches, batched) = counting.counts();
    // A random open is the next name by chance (~1/512 per order and open): at most a window
    // or two of waste, nothing like one per open.
    assert!(batches <= 2, "{batches} batches");
    assert!(batched <= 2 * WINDOW, "{batched} chunks prefetched");
    assert!(gets >= 400 - batches * WINDOW);
}

#[test]
fn read_ahead_stays_within_the_memory_budget() {
    let counting = Arc::new(CountingStore::new(mem()));
    let files = many(&*counting, 300, 4096);
    let budget = 256 << 10;
    let fs = ChunkFs::new(
        counting.clone(),
        FsConfig {
            memory_budget: budget,
            whole_value_reads: true,
            ..cfg()
        },
    );
    let names = listed(&fs);
    // A writer holds much of the budget meanwhile.
    let (_, w) = fs.create(ROOT_INO, n("ffff"), CREATE, 0).unwrap();
    fs.write(w, 0, &vec![1; 52 << 10]).unwrap();
    for (i, name) in names.iter().enumerate().filter(|(_, n)| *n != "ffff") {
        assert_eq!(cat(&fs, name).unwrap(), files[i].1);
        assert!(fs.readahead_bytes() <= budget / 8, "cache within 1/8");
        assert!(fs.memory_in_use() <= budget);
    }
    // The writer can still grow, read-ahead did not take the rest: to the most it can commit
    // (its value and the store's copy of it).
    let left = budget - fs.memory_in_use();
    assert!(left >= budget - (52 << 10) - budget / 8);
    fs.write(w, 52 << 10, &vec![2; 52 << 10]).unwrap();
    fs.flush(w, 0).unwrap();
    fs.release(w).unwrap();
    let (gets, _, batches, _) = counting.counts();
    assert!(batches > 0);
    assert!(gets < 300, "{gets} gets: most opens came from batches");
    drop(fs);
    // Nothing leaked: the cache gave its bytes back (checked by Budget's debug assertion too).
}

// Lookup counting: the kernel's forgets shrink the inode table.

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
