//! The batches of `import` and `export`: chunks gathered for one batch call, bounded by count
//! and by bytes (a single larger chunk goes alone).

use crate::store::RawChunk;

/// Most chunks in one batch.
const BATCH_CHUNKS: usize = 1000;
/// Most value bytes in one batch.
const BATCH_BYTES: u64 = 64 << 20;

/// The chunks of the next batch call.
pub(super) struct Batcher {
    batch: Vec<RawChunk>,
    bytes: u64,
}

impl Batcher {
    pub fn new() -> Self {
        Batcher {
            batch: Vec::with_capacity(BATCH_CHUNKS),
            bytes: 0,
        }
    }

    /// Whether what is pending must be sent before a chunk of `size` bytes joins.
    pub fn full_for(&self, size: u64) -> bool {
        !self.batch.is_empty()
            && (self.batch.len() >= BATCH_CHUNKS || self.bytes + size > BATCH_BYTES)
    }

    /// Adds a chunk of `size` bytes (its value's, or the size the listing gave).
    pub fn push(&mut self, chunk: RawChunk, size: u64) {
        self.bytes += size;
        self.batch.push(chunk);
    }

    /// Takes the pending chunks for a batch call; `None` when there are none.
    pub fn take(&mut self) -> Option<Vec<RawChunk>> {
        if self.batch.is_empty() {
            return None;
        }
        self.bytes = 0;
        Some(std::mem::take(&mut self.batch))
    }

    /// Gives a sent batch's vector back, emptied, to gather the next one in.
    pub fn reuse(&mut self, mut sent: Vec<RawChunk>) {
        sent.clear();
        self.batch = sent;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_bounded_by_count_and_bytes() {
        let mut b = Batcher::new();
        assert!(b.take().is_none());
        assert!(!b.full_for(BATCH_BYTES * 2), "a larger chunk goes alone");
        b.push(RawChunk::for_get(vec![1]), BATCH_BYTES - 1);
        assert!(!b.full_for(1));
        assert!(b.full_for(2));
        assert_eq!(b.take().map(|v| v.len()), Some(1));
        for i in 0..BATCH_CHUNKS {
            assert!(!b.full_for(0));
            b.push(RawChunk::for_get(vec![i as u8]), 0);
        }
        assert!(b.full_for(0));
    }
}
