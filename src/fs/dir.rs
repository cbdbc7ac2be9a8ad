//! The directory listing: streamed from the backend's listing a page at a time (never the whole
//! keyspace in memory), with stable offsets: ".", "..", the chunks in the backend's order, then
//! what only the daemon has: the scratch files and the new chunks not committed yet (created and
//! still being written, e.g. during a long `cp`). The kernel resumes at the offset of the last
//! entry it consumed; entries past it stay buffered, and an offset before the buffer restarts
//! the listing.
//!
//! A new chunk whose first commit lands while the listing runs: the names that were new when the
//! store's listing was opened are remembered, struck off when the store's listing shows them,
//! and the rest listed at the end if they still exist, so such a file is listed exactly once.
//! A file created after the store's listing was opened and committed after the listing passed
//! its place may be missing, which POSIX permits for files added during a readdir. A commit that
//! fails after all reaching the store leaves the name flagged new and may list it twice.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::error::{FsError, FsResult};
use super::name::{self, Name};
use super::node::Residence;
use super::{Attr, ChunkFs, FileKind, ROOT_INO};
use crate::store::ChunkList;

/// Chunks fetched from the listing per refill.
const PAGE: usize = 256;

/// One directory entry handed to the adapter.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub ino: u64,
    /// The offset to resume after this entry.
    pub offset: u64,
    pub name: OsString,
    pub kind: FileKind,
    /// Filled for readdirplus.
    pub attr: Option<Attr>,
}

#[derive(Clone)]
struct Item {
    offset: u64,
    name: OsString,
    kind: FileKind,
    /// The size the listing reported (chunks only).
    size: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Dots,
    Chunks,
    /// Scratch files and uncommitted new chunks.
    Daemon,
    Done,
}

/// An open directory: where the listing is and what is buffered.
pub struct DirStream {
    list: Option<ChunkList>,
    pending: VecDeque<Item>,
    next_offset: u64,
    phase: Phase,
    /// This listing's id with read-ahead (which follows the most recent listing).
    readahead_id: u64,
    /// The chunks that were new (uncommitted) when the store's listing was opened, minus those
    /// that listing has shown since.
    fresh: HashSet<OsString>,
    /// The attribute cache's generation when the store's listing was opened: the sizes it shows
    /// are cached only while nothing changed since.
    since: u64,
}

impl DirStream {
    fn new() -> Self {
        DirStream {
            list: None,
            pending: VecDeque::new(),
            next_offset: 1,
            phase: Phase::Dots,
            readahead_id: 0,
            fresh: HashSet::new(),
            since: 0,
        }
    }

    fn push(&mut self, name: OsString, kind: FileKind, size: Option<u64>) {
        self.pending.push_back(Item {
            offset: self.next_offset,
            name,
            kind,
            size,
        });
        self.next_offset += 1;
    }
}

impl ChunkFs {
    /// opendir (only the root exists).
    pub fn opendir(&self, ino: u64) -> FsResult<u64> {
        if ino != ROOT_INO {
            return Err(FsError::new(libc::ENOTDIR, "not a directory"));
        }
        let fh = self.new_fh();
        self.tables()
            .dirs
            .insert(fh, Arc::new(Mutex::new(DirStream::new())));
        Ok(fh)
    }

    /// releasedir.
    pub fn releasedir(&self, fh: u64) {
        self.tables().dirs.remove(&fh);
    }

    /// readdir / readdirplus from `offset` (0 = the start): calls `add` for each entry until it
    /// returns true (the reply is full). With `plus`, every entry carries its attributes.
    pub fn readdir(
        &self,
        fh: u64,
        offset: u64,
        plus: bool,
        add: &mut dyn FnMut(DirEntry) -> bool,
    ) -> FsResult<()> {
        let stream = self
            .tables()
            .dirs
            .get(&fh)
            .cloned()
            .ok_or_else(|| FsError::new(libc::EBADF, format!("no open directory {fh}")))?;
        let mut s = stream.lock();
        while s.pending.front().is_some_and(|i| i.offset <= offset) {
            s.pending.pop_front();
        }
        let first_buffered = s.pending.front().map_or(s.next_offset, |i| i.offset);
        if first_buffered > offset + 1 {
            // The kernel went back (rewinddir, seekdir): list again from the start.
            *s = DirStream::new();
        }
        let mut i = 0;
        loop {
            if i == s.pending.len() {
                let before = s.pending.len();
                if !self.refill(&mut s)? {
                    return Ok(());
                }
                if plus {
                    self.prefetch_mtimes(s.pending.range(before..));
                }
                // After a restart, skip what the kernel already has (nothing processed yet).
                while i == 0 && s.pending.front().is_some_and(|it| it.offset <= offset) {
                    s.pending.pop_front();
                }
                continue;
            }
            let item = s.pending[i].clone();
            i += 1;
            let Some(entry) = self.dir_entry(&item, plus)? else {
                continue;
            };
            let ino = entry.ino;
            if add(entry) {
                // The reply is full: the kernel never sees this entry, so it takes no lookup.
                if plus && ino != ROOT_INO {
                    self.forget(ino, 1);
                }
                return Ok(());
            }
        }
    }

    /// Appends the next page of entries; false at the end.
    fn refill(&self, s: &mut DirStream) -> FsResult<bool> {
        loop {
            match s.phase {
                Phase::Dots => {
                    s.push(".".into(), FileKind::Directory, None);
                    s.push("..".into(), FileKind::Directory, None);
                    s.phase = Phase::Chunks;
                    return Ok(true);
                }
                Phase::Chunks => {
                    if s.list.is_none() {
                        // Before the listing, so that a commit in between is seen by one of them.
                        s.fresh = self.new_chunks().into_iter().collect();
                        s.since = self.attrs.generation();
                        let list = self
                            .store
                            .list(None)
                            .map_err(|e| FsError::store("readdir", self.store.backend(), e))?;
                        s.list = Some(list);
                        s.readahead_id = self.readahead.begin_listing();
                    }
                    let mut added = 0;
                    let mut page = Vec::new();
                    while added < PAGE {
                        let next = s.list.as_mut().expect("opened above").next();
                        match next {
                            Some(Ok(info)) => match name::chunk_name(&info.key) {
                                Some(n) => {
                                    if !s.fresh.is_empty() {
                                        s.fresh.remove(&n);
                                    }
                                    self.attrs.learn_size(&info.key, Some(info.size), s.since);
                                    if let Some(t) = info.mtime {
                                        self.attrs.learn_mtime(&info.key, t, s.since);
                                    }
                                    s.push(n, FileKind::File, Some(info.size));
                                    page.push((info.key, info.size));
                                    added += 1;
                                }
                                None => log_unnamed_key(&info.key),
                            },
                            Some(Err(e)) => {
                                self.readahead.listed(s.readahead_id, page);
                                return Err(FsError::store("readdir", self.store.backend(), e));
                            }
                            None => {
                                s.list = None;
                                s.phase = Phase::Daemon;
                                break;
                            }
                        }
                    }
                    self.readahead.listed(s.readahead_id, page);
                    if added > 0 {
                        return Ok(true);
                    }
                }
                Phase::Daemon => {
                    let mut names: BTreeSet<OsString> = {
                        let t = self.tables();
                        t.nodes
                            .keys()
                            .filter_map(|&ino| t.inodes.name_of(ino))
                            .filter(|n| name::classify(n) == Name::Scratch)
                            .map(|n| n.to_owned())
                            .collect()
                    };
                    // Still new: not in the store, so not in its listing.
                    for n in self.new_chunks() {
                        s.fresh.remove(&n);
                        names.insert(n);
                    }
                    // New when the listing began, committed since, after the listing passed
                    // their place: listed here unless they are gone meanwhile.
                    for n in std::mem::take(&mut s.fresh) {
                        if self.exists(&n).unwrap_or(false) {
                            names.insert(n);
                        }
                    }
                    s.phase = Phase::Done;
                    let any = !names.is_empty();
                    for n in names {
                        s.push(n, FileKind::File, None);
                    }
                    if any {
                        return Ok(true);
                    }
                }
                Phase::Done => return Ok(false),
            }
        }
    }

    /// The names of the chunks created in the daemon and not in the store yet.
    fn new_chunks(&self) -> Vec<OsString> {
        let nodes: Vec<Arc<super::Node>> = self
            .tables()
            .nodes
            .values()
            .map(|e| e.node.clone())
            .collect();
        let mut out = Vec::new();
        for node in nodes {
            // Lock order: the node's state, then the tables. The name is read under the node's
            // lock, so no commit, rename or unlink of it is halfway.
            let st = node.state.lock();
            if st.residence != Residence::New {
                continue;
            }
            let name = self.tables().inodes.name_of(node.ino).map(OsStr::to_owned);
            if let Some(n) = name.filter(|n| matches!(name::classify(n), Name::Chunk(_))) {
                out.push(n);
            }
        }
        out
    }

    /// Fetches the mtimes that a page of readdirplus needs, several at a time.
    fn prefetch_mtimes<'a>(&self, items: impl Iterator<Item = &'a Item>) {
        let workers = self.cfg.metadata_parallelism;
        if workers <= 1 {
            return;
        }
        let keys: Vec<Vec<u8>> = items
            .filter_map(|it| match name::classify(&it.name) {
                Name::Chunk(key) if self.attrs.mtime(&key).is_none() => Some(key),
                _ => None,
            })
            .collect();
        if keys.len() < 2 {
            return;
        }
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..workers.min(keys.len()) {
                scope.spawn(|| {
                    while let Some(key) = keys.get(next.fetch_add(1, Ordering::Relaxed)) {
                        // Failures are left for the entry itself to report.
                        let since = self.attrs.generation();
                        if let Ok(t) = self.store.mtime(key) {
                            let t = t.unwrap_or(std::time::SystemTime::UNIX_EPOCH);
                            self.attrs.learn_mtime(key, t, since);
                        }
                    }
                });
            }
        });
    }

    /// The entry for an item, with its inode number (and attributes for readdirplus); None when
    /// it vanished since it was listed. A readdirplus entry counts one kernel lookup (taken
    /// with the number, so a racing forget cannot drop it; `readdir` undoes it for an entry
    /// the reply had no room for). A plain readdir entry takes none, so a name without a
    /// number gets a fresh one that is not recorded (a later lookup gives another).
    fn dir_entry(&self, item: &Item, plus: bool) -> FsResult<Option<DirEntry>> {
        if item.kind == FileKind::Directory {
            return Ok(Some(DirEntry {
                ino: ROOT_INO,
                offset: item.offset,
                name: item.name.clone(),
                kind: FileKind::Directory,
                attr: plus.then(|| self.root_attr()),
            }));
        }
        if !plus {
            return Ok(Some(DirEntry {
                ino: self.tables().inodes.ino_or_fresh(&item.name),
                offset: item.offset,
                name: item.name.clone(),
                kind: FileKind::File,
                attr: None,
            }));
        }
        let ino = self.tables().inodes.lookup(&item.name);
        let attr = {
            let attr = match (self.node_of(ino), name::classify(&item.name), item.size) {
                (Some(node), _, _) => self.node_attr(ino, &node, Some(&item.name), None),
                (None, Name::Chunk(key), Some(size)) => self
                    .chunk_mtime(&key, &item.name)
                    .map(|mtime| self.file_attr(ino, size, mtime)),
                _ => self.attr_of(ino, &item.name),
            };
            match attr {
                Ok(a) => Some(a),
                Err(e) => {
                    self.forget(ino, 1);
                    if e.errno == libc::ENOENT {
                        return Ok(None);
                    }
                    return Err(e);
                }
            }
        };
        Ok(Some(DirEntry {
            ino,
            offset: item.offset,
            name: item.name.clone(),
            kind: FileKind::File,
            attr,
        }))
    }
}

/// Whether a key that cannot be a file name was logged (one daemon serves one mount).
static UNNAMED_KEY_LOGGED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Logs, once per daemon, that the store holds a key the listing cannot show (see README,
/// "Keys that cannot be file names"): a line per key per readdir would grow the log with each `ls`.
fn log_unnamed_key(key: &[u8]) {
    if !UNNAMED_KEY_LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        log::warn!(
            "readdir: the store holds chunks whose keys cannot be file names (keys must be 1 to \
             127 bytes), so the mount does not show them; the first: key {} ({} bytes); \
             `cloudstore-fs ls` lists them and `cloudstore-fs get` reads them (logged once)",
            crate::keyname::display_key(key),
            key.len()
        );
    }
}
