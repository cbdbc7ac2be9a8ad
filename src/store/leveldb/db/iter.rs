//! Snapshots and iterators: a consistent view of a database, and walking it in key order.

use std::ffi::{c_char, c_void, CStr};
use std::ptr;
use std::sync::Arc;

use leveldb_sys as sys;

use super::{Db, Error};

/// A snapshot; released when dropped, and it keeps its database open until then.
pub struct Snapshot {
    pub(super) raw: *const sys::leveldb_snapshot_t,
    pub(super) db: Arc<Db>,
}

// SAFETY: a snapshot is an immutable handle; releasing it goes through the thread-safe DB.
unsafe impl Send for Snapshot {}
unsafe impl Sync for Snapshot {}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // SAFETY: created on this db, released once, before the db (held by the Arc) closes.
        unsafe { sys::leveldb_release_snapshot(self.db.raw, self.raw) };
    }
}

/// An iterator over a snapshot, in key order.
pub struct Iter {
    pub(super) raw: *mut sys::leveldb_iterator_t,
    pub(super) read: *mut sys::leveldb_readoptions_t,
    // Dropped after the iterator (field order), and it holds the database.
    pub(super) _snapshot: Arc<Snapshot>,
}

// SAFETY: LevelDB iterators may be used from any thread, one thread at a time (`&mut self`
// everywhere below, and Iter is not Sync).
unsafe impl Send for Iter {}

impl Iter {
    /// Positions at the first key.
    pub fn seek_to_first(&mut self) {
        // SAFETY: valid iterator.
        unsafe { sys::leveldb_iter_seek_to_first(self.raw) }
    }

    /// Positions at the first key at or after `key`.
    pub fn seek(&mut self, key: &[u8]) {
        // SAFETY: valid iterator; the key is copied by the seek.
        unsafe { sys::leveldb_iter_seek(self.raw, key.as_ptr() as *const c_char, key.len()) }
    }

    /// Whether the iterator is at an entry.
    pub fn valid(&self) -> bool {
        // SAFETY: valid iterator.
        unsafe { sys::leveldb_iter_valid(self.raw) != 0 }
    }

    /// Moves to the next entry.
    pub fn next(&mut self) {
        debug_assert!(self.valid());
        // SAFETY: valid iterator at an entry.
        unsafe { sys::leveldb_iter_next(self.raw) }
    }

    /// The current key (only while `valid()`).
    pub fn key(&self) -> &[u8] {
        debug_assert!(self.valid());
        let mut len: usize = 0;
        // SAFETY: the key stays valid until the iterator moves, which needs `&mut self`.
        unsafe {
            // The binding says `*const`, but LevelDB writes the length there.
            let p = sys::leveldb_iter_key(self.raw, ptr::addr_of_mut!(len));
            std::slice::from_raw_parts(p as *const u8, len)
        }
    }

    /// The current value (only while `valid()`).
    pub fn value(&self) -> &[u8] {
        debug_assert!(self.valid());
        let mut len: usize = 0;
        // SAFETY: as for key().
        unsafe {
            // The binding says `*const`, but LevelDB writes the length there.
            let p = sys::leveldb_iter_value(self.raw, ptr::addr_of_mut!(len));
            std::slice::from_raw_parts(p as *const u8, len)
        }
    }

    /// The error that ended the iteration early, if any (check when `valid()` turns false).
    pub fn status(&self) -> Result<(), Error> {
        let mut err: *mut c_char = ptr::null_mut();
        // SAFETY: the C API declares errptr as `char**`; a message, if any, is ours to free.
        unsafe {
            sys::leveldb_iter_get_error(self.raw, &mut err as *mut *mut c_char as *const _);
        }
        if err.is_null() {
            return Ok(());
        }
        let msg = unsafe { CStr::from_ptr(err) }
            .to_string_lossy()
            .into_owned();
        unsafe { sys::leveldb_free(err as *mut c_void) };
        Err(Error(msg))
    }
}

impl Drop for Iter {
    fn drop(&mut self) {
        // SAFETY: the iterator is destroyed before its read options and its snapshot.
        unsafe {
            sys::leveldb_iter_destroy(self.raw);
            sys::leveldb_readoptions_destroy(self.read);
        }
    }
}
