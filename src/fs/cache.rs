//! Readers through the kernel's page cache.
//!
//! A read-only open of a stored chunk is a cached open (no direct I/O) when nothing else on its
//! inode could make the kernel's pages or size disagree with the version it reads: no handle
//! open for writing, no reader through the daemon, no cached reader of another version. The
//! kernel keeps one size and one page cache per inode, and a writer changes both for every
//! open of the inode (O_TRUNC sets the size to 0, a write past the end raises it), so while
//! cached readers are open, an open that would need anything else of the inode (a writer, a
//! truncate, or on Ceph a reader of a newer version) first moves the name to a new inode
//! ([`ChunkFs::supersede`]): the cached readers keep the old inode, its pages and its size, and
//! the open is answered ESTALE, on which the kernel looks the path up again (once) and opens the
//! new inode. The inode number of the name changes then, as with a save by rename.
//!
//! FOPEN_KEEP_CACHE is given when the kernel's pages of the inode are of the version the open
//! reads (a cached open of it made them, and nothing changed or invalidated the inode since);
//! otherwise the kernel drops them at the open. Every commit, rename and unlink still drops the
//! pages (`invalidate_kernel`), and forgets that they were current.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::error::FsError;
use super::name::{self, Name};
use super::node::Node;
use super::{ChunkFs, NodeEntry};
use crate::store::Version;

/// How long an open that conflicts with cached readers waits for their pending releases
/// before it moves the name to a new inode.
const RELEASE_GRACE: Duration = Duration::from_millis(20);

/// How long a name moved off cached readers for a writer stays reserved for writers.
const WRITER_DUE: Duration = Duration::from_secs(1);

/// Names moved to a new inode for a writer (an open for writing, a create) that is on its way
/// back: the kernel retries an open answered ESTALE only once, so for [`WRITER_DUE`] readers of
/// the name read through the daemon instead of through the page cache, and the writer's second
/// open cannot meet cached readers again (readers reopening in a loop made a writer's open fail
/// with ESTALE). Not ended by a writer's arrival: several writers may be on their way.
#[derive(Default)]
pub(super) struct WritersDue(Mutex<HashMap<OsString, Instant>>);

impl WritersDue {
    /// A writer of `name` will come back.
    fn expect(&self, name: &OsStr) {
        let now = Instant::now();
        let mut due = self.0.lock();
        due.retain(|_, until| *until > now);
        due.insert(name.to_owned(), now + WRITER_DUE);
    }

    /// Whether a writer of `name` is on its way: readers must not open it through the cache.
    pub(super) fn due(&self, name: &OsStr) -> bool {
        let due = self.0.lock();
        due.get(name).is_some_and(|until| *until > Instant::now())
    }
}

impl ChunkFs {
    /// Moves `name` off inode `ino`, whose cached readers keep it (with the committed value,
    /// loaded for them, as for an unlink), so that the next lookup of the name makes a new
    /// inode. The store is not touched. Answers the ESTALE that makes the kernel look the path
    /// up again and open what it finds.
    /// `writer`: the open is a writer's, whose retry the name is kept for (see [`WritersDue`]).
    pub(super) fn supersede(&self, ino: u64, name: &OsStr, op: &str, writer: bool) -> FsError {
        let stale = || {
            FsError::new(
                libc::ESTALE,
                format!(
                    "{op} {name:?}: read through the page cache by open files; the name moves \
                     to a new inode"
                ),
            )
        };
        let _ns = self.ns.write();
        if writer {
            self.writers_due.expect(name);
        }
        self.ns_changes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.tables().inodes.ino_of(name) != Some(ino) {
            // Moved already (another open, a rename, an unlink).
            return stale();
        }
        let Some(node) = self.node_of(ino) else {
            return stale();
        };
        let _gate = node.gate.write();
        // A file that lives in the daemon (a scratch file, renamed from a chunk the readers
        // opened) is its node: the name's new node carries the same bytes on.
        let successor = {
            let st = node.state.lock();
            if st.readers.cached == 0 {
                // The readers are gone: the name stays.
                return stale();
            }
            st.is_local(self.tables().inodes.class_of(ino) == Some(&Name::Scratch))
                .then(|| {
                    (
                        st.value.clone(),
                        st.value_version,
                        st.residence,
                        st.mtime,
                        st.mtime_explicit,
                    )
                })
        };
        if successor.is_none() {
            if let Err(e) = self.keep_for_nameless_handles(&node, name) {
                return e;
            }
        }
        Self::mark_detached(&node);
        let mut t = self.tables();
        if let Some(old) = t.inodes.remove(name) {
            t.drop_if_unused(old);
        }
        if let Some((value, value_version, residence, mtime, mtime_explicit)) = successor {
            let new_ino = t.inodes.get_or_assign(name);
            let next = Node::stored(new_ino);
            {
                let mut st = next.state.lock();
                st.value = value;
                st.value_version = value_version;
                st.residence = residence;
                st.mtime = mtime;
                st.mtime_explicit = mtime_explicit;
            }
            t.nodes.insert(
                new_ino,
                NodeEntry {
                    node: Arc::new(next),
                    open: 0,
                },
            );
        }
        drop(t);
        if let Name::Chunk(key) = name::classify(name) {
            self.attrs.forget(&key);
        }
        log::debug!("{op} {name:?}: inode {ino} kept by its cached readers; the name moves");
        stale()
    }

    /// Waits a little for the cached readers of `node` to be released: the kernel sends a
    /// reader's RELEASE after its close() returned, so `cat f; cp g f` finds the reader still
    /// registered for a moment. True once none is left.
    pub(super) fn cached_readers_left(&self, node: &Node) -> bool {
        let until = Instant::now() + RELEASE_GRACE;
        loop {
            if node.state.lock().readers.cached == 0 {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Whether the kernel's pages of `ino` are of `stamp`'s store version (and so may be kept at
    /// a cached open), and from now on they are.
    pub(super) fn pages_current(&self, ino: u64, store: Option<Version>) -> bool {
        let mut t = self.tables();
        let current = t.inodes.pages(ino) == Some(store);
        t.inodes.set_pages(ino, Some(store));
        current
    }

    /// The kernel's pages of `ino` may be of anything (a direct handle may fill them by mmap,
    /// or a change dropped them).
    pub(super) fn pages_unknown(&self, ino: u64) {
        self.tables().inodes.set_pages(ino, None);
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::sync::Arc;

    use crate::fs::handle::OpenMode;
    use crate::fs::readers::{Io, Readers, Stamp};
    use crate::fs::{ChunkFs, FsConfig, ROOT_INO};
    use crate::store::memory::MemoryStore;
    use crate::store::Cloudstore;

    const V1: Stamp = Stamp {
        node: 1,
        store: None,
    };
    const V2: Stamp = Stamp {
        node: 2,
        store: None,
    };

    #[test]
    fn cached_readers_share_an_inode_only_with_their_version() {
        let mut r = Readers::default();
        assert_eq!(
            r.open(0, false, Some((V1, 10))),
            Ok(Io::Cached { keep: false })
        );
        assert_eq!(
            r.open(0, false, Some((V1, 10))),
            Ok(Io::Cached { keep: false })
        );
        assert_eq!(r.pinned_size(), Some(10));
        // A writer, a reader of another version, a reader through the daemon: conflicts.
        assert!(r.open(0, true, None).is_err());
        assert!(r.open(0, false, Some((V2, 20))).is_err());
        assert!(r.open(0, false, None).is_err());
        r.close(Io::Cached { keep: false });
        r.close(Io::Cached { keep: false });
        assert_eq!(r.pinned_size(), None);
        // With a writer open, readers go through the daemon, and no cached reader joins them.
        assert_eq!(r.open(0, true, None), Ok(Io::Direct));
        assert_eq!(r.open(1, false, Some((V2, 20))), Ok(Io::Direct));
        r.close(Io::Direct);
        assert_eq!(
            r.open(0, false, Some((V2, 20))),
            Ok(Io::Cached { keep: false })
        );
    }

    fn fs() -> ChunkFs {
        let store: Arc<dyn Cloudstore> = Arc::new(MemoryStore::new(1 << 20));
        let mut cfg = FsConfig {
            cached_reads: true,
            ..crate::fs::tests::cfg()
        };
        cfg.whole_value_reads = true;
        ChunkFs::new(store, cfg)
    }

    fn put(fs: &ChunkFs, name: &str, data: &[u8]) {
        let (_, fh) = fs
            .create(
                ROOT_INO,
                OsStr::new(name),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
                0,
            )
            .unwrap();
        fs.write(fh, 0, data).unwrap();
        fs.flush(fh, 0).unwrap();
        fs.release(fh).unwrap();
    }

    /// A writer's open on an inode with cached readers is ESTALE and moves the name: the kernel's
    /// second lookup finds a new inode, the writer opens it, and the readers keep the old
    /// inode's value and size; a new reader of the name reads the new value, cached, with the
    /// kernel's pages of the old inode not kept for it.
    #[test]
    fn a_writer_moves_the_name_off_the_cached_readers_inode() {
        let fs = fs();
        put(&fs, "aa", b"old value");
        let a = fs.lookup(ROOT_INO, OsStr::new("aa"), 0).unwrap();
        let (r, io) = fs.open_io(a.ino, libc::O_RDONLY, 0).unwrap();
        assert_eq!(io, Io::Cached { keep: false });
        let e = fs
            .open_io(a.ino, libc::O_WRONLY | libc::O_TRUNC, 0)
            .unwrap_err();
        assert_eq!(e.errno, libc::ESTALE);
        let b = fs.lookup(ROOT_INO, OsStr::new("aa"), 0).unwrap();
        assert_ne!(b.ino, a.ino, "the name moved to a new inode");
        let (w, io) = fs
            .open_io(b.ino, libc::O_WRONLY | libc::O_TRUNC, 0)
            .unwrap();
        assert_eq!(io, Io::Direct);
        fs.write(w, 0, b"the new value").unwrap();
        fs.flush(w, 0).unwrap();
        fs.release(w).unwrap();
        assert_eq!(fs.read(r, 0, 100).unwrap(), b"old value");
        assert_eq!(fs.getattr(a.ino, Some(r), 0).unwrap().size, 9);
        fs.release(r).unwrap();
        // Readers of the name read through the daemon while writers may be on their way.
        let (r1, io) = fs.open_io(b.ino, libc::O_RDONLY, 0).unwrap();
        assert_eq!(io, Io::Direct);
        assert_eq!(fs.read(r1, 0, 100).unwrap(), b"the new value");
        fs.release(r1).unwrap();
        std::thread::sleep(super::WRITER_DUE);
        let (r2, io) = fs.open_io(b.ino, libc::O_RDONLY, 0).unwrap();
        assert_eq!(io, Io::Cached { keep: false });
        assert_eq!(fs.read(r2, 0, 100).unwrap(), b"the new value");
        fs.release(r2).unwrap();
        // The kernel's pages of the new inode are now of its value: the next open keeps them.
        let (r3, io) = fs.open_io(b.ino, libc::O_RDONLY, 0).unwrap();
        assert_eq!(io, Io::Cached { keep: true });
        fs.release(r3).unwrap();
    }

    /// A reader that opens the name between a writer's ESTALE and the writer's second open
    /// (the kernel's one retry) reads through the daemon, so the writer's second open does not
    /// meet cached readers again.
    #[test]
    fn a_writer_moved_off_cached_readers_gets_the_new_inode() {
        let fs = fs();
        put(&fs, "ab", b"old value");
        let a = fs.lookup(ROOT_INO, OsStr::new("ab"), 0).unwrap();
        let (r, _) = fs.open_io(a.ino, libc::O_RDONLY, 0).unwrap();
        let e = fs.open_io(a.ino, libc::O_WRONLY, 0).unwrap_err();
        assert_eq!(e.errno, libc::ESTALE);
        let b = fs.lookup(ROOT_INO, OsStr::new("ab"), 0).unwrap();
        let (r2, io) = fs.open_io(b.ino, libc::O_RDONLY, 0).unwrap();
        assert_eq!(io, Io::Direct, "a reader before the writer's retry");
        assert_eq!(fs.read(r2, 0, 100).unwrap(), b"old value");
        let (w, io) = fs
            .open_io(b.ino, libc::O_WRONLY | libc::O_TRUNC, 0)
            .unwrap();
        assert_eq!(io, Io::Direct);
        fs.write(w, 0, b"new").unwrap();
        fs.flush(w, 0).unwrap();
        fs.release(w).unwrap();
        assert_eq!(fs.read(r2, 0, 100).unwrap(), b"old value");
        assert_eq!(fs.read(r, 0, 100).unwrap(), b"old value");
        fs.release(r2).unwrap();
        fs.release(r).unwrap();
        let (r3, io) = fs.open_io(b.ino, libc::O_RDONLY, 0).unwrap();
        assert_eq!(io, Io::Direct, "another writer may still be on its way");
        assert_eq!(fs.read(r3, 0, 100).unwrap(), b"new");
        fs.release(r3).unwrap();
    }

    /// An open that gets to an inode after its name moved off it (it waited for the cached
    /// readers' releases while another writer moved the name) is ESTALE: a writer registered
    /// there would write to a file no name reaches, and its close would drop its bytes while
    /// returning 0; a reader would read nothing.
    #[test]
    fn a_writer_never_opens_an_inode_that_lost_its_name() {
        let fs = fs();
        put(&fs, "ac", b"old value");
        let a = fs.lookup(ROOT_INO, OsStr::new("ac"), 0).unwrap();
        let (r, _) = fs.open_io(a.ino, libc::O_RDONLY, 0).unwrap();
        let e = fs.open_io(a.ino, libc::O_WRONLY, 0).unwrap_err();
        assert_eq!(e.errno, libc::ESTALE, "the name moved");
        fs.release(r).unwrap();
        let mode = OpenMode::of(libc::O_WRONLY | libc::O_TRUNC);
        let e = fs
            .open_ino_once(a.ino, OsStr::new("ac"), mode, 0, false)
            .unwrap_err();
        assert_eq!(e.errno, libc::ESTALE);
        // Nor a reader: the node keeps no value for it (its last readers read cached pages).
        let e = fs
            .open_ino_once(
                a.ino,
                OsStr::new("ac"),
                OpenMode::of(libc::O_RDONLY),
                0,
                false,
            )
            .unwrap_err();
        assert_eq!(e.errno, libc::ESTALE);
        let b = fs.lookup(ROOT_INO, OsStr::new("ac"), 0).unwrap();
        let (w, _) = fs
            .open_io(b.ino, libc::O_WRONLY | libc::O_TRUNC, 0)
            .unwrap();
        fs.write(w, 0, b"new").unwrap();
        fs.flush(w, 0).unwrap();
        fs.release(w).unwrap();
        assert_eq!(fs.store().get_chunk(&[0xac]).unwrap().unwrap(), b"new");
    }

    /// A chunk open by a cached reader, renamed to a scratch name (its bytes now live in the
    /// daemon): opening the scratch file moves its name, with its bytes, to a new inode; the
    /// reader keeps its own; nothing of the scratch file is lost.
    #[test]
    fn a_scratch_file_moves_with_its_bytes() {
        let fs = fs();
        put(&fs, "bb", b"chunk bytes");
        let a = fs.lookup(ROOT_INO, OsStr::new("bb"), 0).unwrap();
        let (r, io) = fs.open_io(a.ino, libc::O_RDONLY, 0).unwrap();
        assert_eq!(io, Io::Cached { keep: false });
        fs.rename(ROOT_INO, OsStr::new("bb"), ROOT_INO, OsStr::new("tmpX"), 0)
            .unwrap();
        let e = fs.open_io(a.ino, libc::O_RDONLY, 0).unwrap_err();
        assert_eq!(e.errno, libc::ESTALE);
        let b = fs.lookup(ROOT_INO, OsStr::new("tmpX"), 0).unwrap();
        assert_ne!(b.ino, a.ino);
        assert_eq!(b.size, 11);
        let (w, _) = fs.open_io(b.ino, libc::O_RDWR, 0).unwrap();
        assert_eq!(fs.read(w, 0, 100).unwrap(), b"chunk bytes");
        fs.write(w, 0, b"CHUNK").unwrap();
        fs.flush(w, 0).unwrap();
        fs.release(w).unwrap();
        assert_eq!(fs.read(r, 0, 100).unwrap(), b"chunk bytes");
        fs.release(r).unwrap();
        let (w, _) = fs.open_io(b.ino, libc::O_RDONLY, 0).unwrap();
        assert_eq!(fs.read(w, 0, 100).unwrap(), b"CHUNK bytes");
        fs.release(w).unwrap();
    }
}
