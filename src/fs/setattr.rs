//! setattr and fallocate: mode and owner policy, truncate (through a handle or by path), mtime.

use std::ffi::OsStr;
use std::time::SystemTime;

use super::error::{FsError, FsResult};
use super::handle::{Handle, NewValue, OpenMode, Written};
use super::name::{self, Name};
use super::node::Residence;
use super::value::Value;
use super::Attr;
use super::{ChunkFs, SetTime, ROOT_INO};

impl ChunkFs {
    /// chmod and chown: every file is 0644 and the directory 0755, all owned by the mounting
    /// user, and nothing else can be kept. On a mount other users reach (--allow-other), a
    /// change to what the file already has succeeds (cp -p and rsync -a do that) and anything
    /// else is EPERM with a log line, never a silent success. On an owner-only mount, and for
    /// scratch files, any is accepted without effect (see below).
    pub fn check_mode_owner(
        &self,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> FsResult<()> {
        if mode.is_none() && uid.is_none() && gid.is_none() {
            return Ok(());
        }
        self.check_writable("setattr")?;
        if !self.cfg.allow_other {
            // Nobody but the owner reaches the mount, so a mode or owner protects nothing:
            // refusing would only fail `rsync -a` and `cp -p` of files that are not 0644.
            log::debug!(
                "chmod/chown of {} on an owner-only mount: accepted, not kept",
                self.label(ino)
            );
            return Ok(());
        }
        if ino != ROOT_INO && self.is_scratch(ino) {
            // Scratch files are the temporary files of rsync and editors, which make them
            // owner-only (rsync: mode & 0700) and set the final mode before renaming them: a
            // refusal would fail every rsync. The mode is not kept (a chunk shows 0644).
            log::debug!(
                "chmod/chown of scratch file {}: accepted, not kept",
                self.label(ino)
            );
            return Ok(());
        }
        let (what, perm) = if ino == ROOT_INO {
            ("the mount's directory".to_string(), 0o755)
        } else {
            (self.label(ino), self.cfg.file_mode)
        };
        let refuse = |change: String| {
            log::warn!(
                "{change} of {what}: refused (EPERM): the mount keeps no modes or owners; every \
                 file is 0644 and the directory 0755, owned by uid {} gid {}",
                self.cfg.uid,
                self.cfg.gid
            );
            Err(FsError::new(libc::EPERM, format!("{change}: not supported")).logged())
        };
        if let Some(mode) = mode.filter(|m| m & 0o7777 != perm) {
            return refuse(format!("chmod to {:04o}", mode & 0o7777));
        }
        if let Some(uid) = uid.filter(|&u| u != self.cfg.uid) {
            return refuse(format!("chown to uid {uid}"));
        }
        if let Some(gid) = gid.filter(|&g| g != self.cfg.gid) {
            return refuse(format!("chgrp to gid {gid}"));
        }
        Ok(())
    }

    /// setattr: size (truncate) and mtime; mode, owner and atime are accepted and ignored
    /// (every file is 0644 and owned by the mounting user).
    pub fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        size: Option<u64>,
        mtime: Option<SetTime>,
    ) -> FsResult<Attr> {
        if ino == ROOT_INO {
            if let Some(t) = mtime {
                // rsync -a, touch -d: the directory's mtime is kept beside the keyspace.
                self.check_writable("setattr")?;
                self.set_dir_mtime(t.resolve())?;
            }
            return Ok(self.root_attr());
        }
        if size.is_some() || mtime.is_some() {
            self.check_writable("setattr")?;
        }
        // None: the file lost its name while open (unlinked or replaced); a handle open for
        // writing still resizes it and sets its mtime, discarded at close with its writes.
        let name = self.name_of(ino);
        let writer = fh
            .and_then(|fh| self.handle(fh).ok())
            .filter(|h| h.write && h.ino == ino);
        if let Some(size) = size {
            match (&writer, &name) {
                (Some(h), _) => self.truncate_handle(h, size)?,
                (None, Some(name)) => self.truncate_path(ino, name, size)?,
                (None, None) => return Err(Self::nameless(ino)),
            }
        }
        if let Some(t) = mtime {
            self.set_mtime(ino, name.as_deref(), writer.as_deref(), t.resolve())?;
        }
        match &name {
            Some(name) => self.attr_with(ino, name, writer.as_deref()),
            None => self.nameless_attr(ino, writer.as_deref()),
        }
    }

    /// ftruncate: resizes the handle's new value.
    pub(super) fn truncate_handle(&self, h: &Handle, size: u64) -> FsResult<()> {
        let mut hs = h.st.lock();
        hs.check()?;
        let label = self.label(h.ino);
        let max = self.cfg.max_chunk_size;
        let result = if size > max {
            log::warn!(
                "truncate {label} to {size}: exceeds the maximum chunk size of {max} (EFBIG); \
                 nothing of this file is committed"
            );
            Err(FsError::new(libc::EFBIG, "truncate: file too large").logged())
        } else if size == 0 {
            hs.written = Written::New(NewValue::replacing(Value::empty(&self.budget)));
            Ok(())
        } else {
            self.buffer(h, &mut hs)
                .and_then(|new| new.value.resize(size as usize, max, &label))
        };
        match result {
            Ok(()) => {
                if let Some(new) = hs.new_value_mut() {
                    // From now on the handle's value replaces the chunk's whole.
                    new.append_base = None;
                    new.changed();
                }
                Ok(())
            }
            Err(e) => {
                hs.poison(&e);
                Err(e)
            }
        }
    }

    /// An appending handle's commit: its own bytes (after `base`) go after the committed value
    /// as it stands now, which another handle may have changed since this one began. The
    /// caller holds the node's gate exclusively, so no other commit of the chunk runs meanwhile.
    pub(super) fn rebase_appends(
        &self,
        h: &Handle,
        new: &mut NewValue,
        base: usize,
    ) -> FsResult<()> {
        let current = self.committed(&h.node, h.ino, h.age)?;
        let buf = &new.value;
        if current.len() == base && current[..] == buf[..base] {
            return Ok(());
        }
        let label = self.label(h.ino);
        let tail_len = buf.len() - base;
        let len = current.len() + tail_len;
        let max = self.cfg.max_chunk_size;
        if len as u64 > max {
            log::warn!(
                "append to {label}: {len} bytes with what was committed since this file was \
                 opened would exceed the maximum chunk size of {max} (EFBIG); nothing of this \
                 file is committed"
            );
            return Err(FsError::new(libc::EFBIG, "append: file too large").logged());
        }
        let mut value = Value::copy_of(&current, &self.budget, h.age, &label)?;
        value.resize(len, max, &label)?;
        value.write_at(current.len(), &buf[base..]);
        new.value = value;
        Ok(())
    }

    /// fallocate: mode 0 makes the handle's value at least `offset + length` bytes, the new
    /// bytes zeros (like an ftruncate that grows it; it never shrinks). Other modes (keep size,
    /// punch or zero a range) are EOPNOTSUPP, and a file this handle created and has not
    /// written is then not created at all (no empty chunk is left behind).
    pub fn fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> FsResult<()> {
        let h = self.handle(fh)?;
        if !h.write {
            return Err(FsError::new(
                libc::EBADF,
                "fallocate: file not open for writing",
            ));
        }
        self.check_writable("fallocate")?;
        let label = self.label(h.ino);
        if mode != 0 {
            let mut hs = h.st.lock();
            let untouched = hs.new_value().is_some_and(|new| {
                new.dirty && new.value.is_empty() && h.node.state.lock().residence == Residence::New
            });
            if let Some(new) = hs.new_value_mut().filter(|_| untouched) {
                new.dirty = false;
            }
            log::warn!(
                "fallocate {label} mode {mode:#x}: only mode 0 (extend with zeros) is supported \
                 (EOPNOTSUPP){}",
                if untouched {
                    "; the file it created is not kept unless written"
                } else {
                    ""
                }
            );
            return Err(FsError::new(libc::EOPNOTSUPP, "fallocate: mode not supported").logged());
        }
        let end = offset.saturating_add(length);
        let size = self.getattr(h.ino, Some(fh), h.pid)?.size;
        if end > size {
            self.truncate_handle(&h, end)?;
        }
        Ok(())
    }

    /// truncate(2) on a path: takes effect at once, as if the file were opened, truncated and
    /// closed.
    pub(super) fn truncate_path(&self, ino: u64, name: &OsStr, size: u64) -> FsResult<()> {
        if name::classify(name) != Name::Scratch && self.node_of(ino).is_none() {
            // The file must exist.
            self.attr_of(ino, name)?;
        }
        let mode = OpenMode {
            write: true,
            truncate: size == 0,
            append: false,
            exclusive: false,
        };
        let (fh, _) = self.open_ino(ino, name, mode, 0)?;
        let h = self.handle(fh)?;
        let result = self
            .truncate_handle(&h, size)
            .and_then(|()| self.flush(fh, 0));
        drop(h);
        let released = self.release(fh);
        result.and(released)
    }

    pub(super) fn set_mtime(
        &self,
        ino: u64,
        name: Option<&OsStr>,
        writer: Option<&Handle>,
        t: SystemTime,
    ) -> FsResult<()> {
        if let Some(h) = writer {
            let mut hs = h.st.lock();
            if let Some(new) = hs.new_value_mut().filter(|new| new.dirty) {
                // futimens on a file being written: stored after its commit.
                new.mtime = Some(t);
                return Ok(());
            }
        }
        let scratch = name.is_some_and(|name| name::classify(name) == Name::Scratch);
        let mut store_now = true;
        if let Some(node) = self.node_of(ino) {
            let mut st = node.state.lock();
            if st.writers > 0 || st.is_local(scratch) {
                // cp -p, rsync: the time is set while (or before) the file is written; it is
                // stored with the next commit, or with a scratch file's rename. A file that
                // lost its name keeps it in the daemon (it is local).
                st.mtime = Some(t);
                st.mtime_explicit = true;
                store_now = !st.is_local(scratch);
            }
        }
        if !store_now {
            return Ok(());
        }
        let Some(name) = name else {
            return Err(Self::nameless(ino));
        };
        let Name::Chunk(key) = name::classify(name) else {
            return Err(FsError::not_found(name.to_string_lossy()));
        };
        self.store
            .set_mtime(&key, t)
            .map_err(|e| FsError::store("set mtime", name.to_string_lossy(), e))?;
        self.attrs.set_mtime(&key, t);
        Ok(())
    }
}
