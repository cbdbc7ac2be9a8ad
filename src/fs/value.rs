//! Chunk bytes held in the daemon, each counted against the memory budget for the capacity it
//! really occupies, and given back when dropped. A `Value` is either a write buffer (owned by one
//! handle, growing) or a committed value shared read-only between handles (`Arc<Value>`).

use std::ops::Deref;
use std::sync::Arc;

use super::budget::Budget;
use super::error::FsResult;
use crate::store::SharedBytes;

/// The most a write buffer's capacity runs ahead of its length: doubling costs O(n) copying in
/// all, but on a 50 MiB file it would hold a 64 MiB reservation.
pub const GROWTH_STEP: u64 = 8 << 20;

/// Bytes with their share of the budget.
pub struct Value {
    bytes: Vec<u8>,
    /// A value read whole and left in the store's own buffer (`bytes` is then empty); made a
    /// `Vec` of its own, by a copy, before anything changes it.
    shared: Option<SharedBytes>,
    /// The budget age its growth waits with (see `budget`).
    age: u64,
    /// Bytes of the budget this value holds: at least `bytes.capacity()`.
    reserved: u64,
    budget: Arc<Budget>,
}

impl Value {
    /// An empty value holding nothing of the budget.
    pub fn empty(budget: &Arc<Budget>) -> Self {
        Value {
            bytes: Vec::new(),
            shared: None,
            age: budget.ticket(),
            reserved: 0,
            budget: budget.clone(),
        }
    }

    /// Wraps `bytes` that were fetched into `reserved` bytes of the budget taken beforehand;
    /// the reservation is trimmed (or topped up) to the capacity the bytes occupy.
    pub fn adopt(
        bytes: Vec<u8>,
        reserved: u64,
        budget: &Arc<Budget>,
        what: &dyn std::fmt::Display,
    ) -> FsResult<Self> {
        let mut v = Value::with_reservation(reserved, budget);
        v.hold(bytes.capacity() as u64, what)?;
        v.bytes = bytes;
        Ok(v)
    }

    /// As [`Value::adopt`], for bytes left in the store's own buffer (`get_chunk_bytes`).
    pub fn adopt_shared(
        bytes: SharedBytes,
        reserved: u64,
        budget: &Arc<Budget>,
        what: &dyn std::fmt::Display,
    ) -> FsResult<Self> {
        let mut v = Value::with_reservation(reserved, budget);
        v.hold((*bytes).as_ref().len() as u64, what)?;
        v.shared = Some(bytes);
        Ok(v)
    }

    /// An empty value holding `reserved` bytes of the budget, taken beforehand.
    fn with_reservation(reserved: u64, budget: &Arc<Budget>) -> Self {
        Value {
            bytes: Vec::new(),
            shared: None,
            age: budget.ticket(),
            reserved,
            budget: budget.clone(),
        }
    }

    /// Trims (or tops up) the reservation to `need`, the bytes about to be held.
    fn hold(&mut self, need: u64, what: &dyn std::fmt::Display) -> FsResult<()> {
        if need > self.reserved {
            self.budget.reserve(need - self.reserved, what)?;
        } else {
            self.budget.release(self.reserved - need);
        }
        self.reserved = need;
        Ok(())
    }

    /// The bytes, wherever they are.
    fn data(&self) -> &[u8] {
        match &self.shared {
            Some(shared) => (**shared).as_ref(),
            None => &self.bytes,
        }
    }

    /// Makes shared bytes a `Vec` of this value's own (a copy, of the length already
    /// reserved), before they change.
    fn unshare(&mut self) {
        if let Some(shared) = self.shared.take() {
            self.bytes = (*shared).as_ref().to_vec();
        }
    }

    /// A copy of `data` for a request of age `age`, reserved before it is made (waiting for
    /// budget if need be).
    pub fn copy_of(
        data: &[u8],
        budget: &Arc<Budget>,
        age: u64,
        what: &dyn std::fmt::Display,
    ) -> FsResult<Self> {
        budget.reserve_wait(data.len() as u64, age, what)?;
        Ok(Value {
            bytes: data.to_vec(),
            shared: None,
            age,
            reserved: data.len() as u64,
            budget: budget.clone(),
        })
    }

    /// Resizes to `len` bytes (zero-filling growth). Capacity grows geometrically (doubling, by
    /// at most [`GROWTH_STEP`]) up to `max`, and every byte of it is reserved before it is
    /// allocated.
    pub fn resize(&mut self, len: usize, max: u64, what: &dyn std::fmt::Display) -> FsResult<()> {
        self.grow_to(len, max, what)?;
        self.bytes.resize(len, 0);
        if len == 0 && self.bytes.capacity() > 0 {
            // A truncation to nothing (O_TRUNC, `: > file`) gives the memory back.
            self.bytes = Vec::new();
            self.trim();
        }
        Ok(())
    }

    /// Makes room for `len` bytes (see `resize`), reserved first; the length stays.
    fn grow_to(&mut self, len: usize, max: u64, what: &dyn std::fmt::Display) -> FsResult<()> {
        self.unshare();
        if len > self.bytes.capacity() {
            let cap = self.bytes.capacity() as u64;
            let grown = cap.saturating_mul(2).min(cap + GROWTH_STEP).min(max);
            let cap = (len as u64).max(grown);
            if cap > self.reserved {
                self.budget
                    .reserve_wait(cap - self.reserved, self.age, what)?;
                self.reserved = cap;
            }
            self.bytes.reserve_exact(cap as usize - self.bytes.len());
        }
        Ok(())
    }

    /// Writes `data` at `offset`, growing the value to its end if need be (a gap before
    /// `offset` reads as zeros). Bytes that land past the end are appended, not zero-filled
    /// first and then overwritten (a sequential writer's bytes are copied once).
    pub fn write(
        &mut self,
        offset: usize,
        data: &[u8],
        max: u64,
        what: &dyn std::fmt::Display,
    ) -> FsResult<()> {
        let end = offset + data.len();
        self.grow_to(end, max, what)?;
        let len = self.bytes.len();
        if offset >= len {
            self.bytes.resize(offset, 0);
            self.bytes.extend_from_slice(data);
        } else {
            let overlap = (end.min(len)) - offset;
            self.bytes[offset..offset + overlap].copy_from_slice(&data[..overlap]);
            self.bytes.extend_from_slice(&data[overlap..]);
        }
        Ok(())
    }

    /// Bytes of the budget it holds.
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// The budget age of this value.
    pub fn age(&self) -> u64 {
        self.age
    }

    /// Writes `data` at `offset`; the value must already be at least `offset + data.len()` long.
    pub fn write_at(&mut self, offset: usize, data: &[u8]) {
        self.unshare();
        self.bytes[offset..offset + data.len()].copy_from_slice(data);
    }

    /// Gives back the reservation beyond the capacity in use.
    fn trim(&mut self) {
        let cap = match &self.shared {
            Some(shared) => (**shared).as_ref().len() as u64,
            None => self.bytes.capacity() as u64,
        };
        if self.reserved > cap {
            self.budget.release(self.reserved - cap);
            self.reserved = cap;
        }
    }

    /// The byte span `[offset, offset + size)`, clamped to the end.
    fn span(&self, offset: u64, size: u32) -> std::ops::Range<usize> {
        let len = self.data().len();
        let start = (offset.min(len as u64)) as usize;
        let end = start.saturating_add(size as usize).min(len);
        start..end
    }

    /// A copy of the bytes `[offset, offset + size)`, clamped to the end.
    pub fn slice(&self, offset: u64, size: u32) -> Vec<u8> {
        self.data()[self.span(offset, size)].to_vec()
    }

    /// Moves the bytes out for a store call (the reservation stays with this value).
    pub fn take_bytes(&mut self) -> Vec<u8> {
        self.unshare();
        std::mem::take(&mut self.bytes)
    }

    /// Lets go of the bytes and hands their share of the budget to the caller, who gives it
    /// back (`Budget::release`) when the memory it stands for is free.
    pub fn into_reservation(mut self) -> u64 {
        self.bytes = Vec::new();
        self.shared = None;
        std::mem::take(&mut self.reserved)
    }

    /// Puts back the bytes `take_bytes` moved out.
    pub fn put_bytes(&mut self, bytes: Vec<u8>) {
        debug_assert!(bytes.capacity() as u64 <= self.reserved);
        self.shared = None;
        self.bytes = bytes;
    }
}

/// The bytes a read returns: a span of a committed value the daemon holds (shared, not copied:
/// the FUSE reply is written straight from it), or bytes of their own.
pub enum ReadData {
    Held(Arc<Value>, std::ops::Range<usize>),
    Owned(Vec<u8>),
}

impl ReadData {
    /// `[offset, offset + size)` of `value`, clamped to its end.
    pub fn held(value: &Arc<Value>, offset: u64, size: u32) -> Self {
        ReadData::Held(value.clone(), value.span(offset, size))
    }
}

impl Deref for ReadData {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            ReadData::Held(v, span) => &v.data()[span.clone()],
            ReadData::Owned(b) => b,
        }
    }
}

impl Deref for Value {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.data()
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        self.budget.release(self.reserved);
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Value({} bytes)", self.data().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_reserved_before_it_is_taken_and_given_back() {
        let b = Arc::new(Budget::new(1000, std::time::Duration::from_millis(10)));
        let mut v = Value::empty(&b);
        v.resize(100, 1000, &"t").unwrap();
        assert!(b.used() >= 100 && b.used() as usize >= v.bytes.capacity());
        v.resize(300, 1000, &"t").unwrap();
        assert!(b.used() as usize >= v.bytes.capacity());
        let e = v.resize(2000, 4000, &"t").unwrap_err();
        assert_eq!(
            e.errno,
            libc::ENOMEM,
            "more than the whole budget fails at once"
        );
        v.resize(0, 1000, &"t").unwrap();
        assert_eq!(b.used(), 0);
        let c = Value::copy_of(&[1; 10], &b, 1, &"c").unwrap();
        assert_eq!(b.used(), 10);
        drop(c);
        drop(v);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn writes_land_as_resize_and_copy_would_place_them() {
        let b = Arc::new(Budget::new(1 << 20, std::time::Duration::from_millis(10)));
        let mut v = Value::empty(&b);
        let mut model: Vec<u8> = Vec::new();
        for (offset, len, byte) in [
            (0, 5, 1u8),
            (5, 3, 2),
            (2, 2, 3),
            (12, 4, 4),
            (10, 8, 5),
            (20, 0, 6),
        ] {
            v.write(offset, &vec![byte; len], 1 << 20, &"t").unwrap();
            let end = offset + len;
            if end > model.len() {
                model.resize(end, 0);
            }
            model[offset..end].fill(byte);
            assert_eq!(&v[..], &model[..], "after writing {len} at {offset}");
            assert!(b.used() as usize >= v.bytes.capacity());
        }
    }

    #[test]
    fn a_value_left_in_the_store_buffer_reads_and_copies_before_it_changes() {
        let b = Arc::new(Budget::new(1000, std::time::Duration::from_millis(10)));
        b.reserve(200, &"t").unwrap();
        let shared: SharedBytes = Box::new(vec![7u8; 50]);
        let mut v = Value::adopt_shared(shared, 200, &b, &"t").unwrap();
        assert_eq!(b.used(), 50, "the reservation trimmed to the bytes held");
        assert_eq!(&v[..], &[7u8; 50][..]);
        assert_eq!(v.slice(45, 10), vec![7u8; 5]);
        b.reserve(3, &"t").unwrap();
        let arc = Arc::new(Value::adopt_shared(Box::new(vec![1u8, 2, 3]), 3, &b, &"t").unwrap());
        assert_eq!(b.used(), 53);
        assert_eq!(&*ReadData::held(&arc, 1, 5), &[2u8, 3][..]);
        v.write_at(0, &[9]);
        assert_eq!(v[0], 9);
        assert_eq!(&v[1..], &[7u8; 49][..]);
        assert_eq!(v.take_bytes().len(), 50);
        assert_eq!(
            b.used(),
            53,
            "the copy made before the change is what was reserved"
        );
        drop(v);
        drop(arc);
        assert_eq!(b.used(), 0);
    }
}
