//! Batches of source records handed from the poll thread to a partition's worker.
//!
//! The poll thread copies each record's key and value out of librdkafka's buffer once, into the
//! batch's single byte buffer; the worker decodes them in place from there. A worker gives every
//! batch back to its partition's [`BatchPool`] once processed, so in steady state no batch, byte
//! buffer or record list is allocated: the per-record cost of the hand-over is a copy, and the
//! queue, wake-up and lock costs are paid once per batch.

use std::sync::{Arc, Mutex};

use crate::topology::RawRef;

/// Where one record's parts lie in [`RecordBatch::bytes`].
#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: u64,
    /// Start and length of the key; `None` for a record without one.
    key: Option<(usize, usize)>,
    value: (usize, usize),
    timestamp_ms: i64,
}

/// Consecutive records of one partition, in offset order.
#[derive(Debug, Default)]
pub(crate) struct RecordBatch {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

impl RecordBatch {
    /// Appends a record, copying its key and value.
    pub(super) fn push(
        &mut self,
        offset: u64,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp_ms: i64,
    ) {
        let key = key.map(|k| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(k);
            (start, k.len())
        });
        let start = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.entries.push(Entry {
            offset,
            key,
            value: (start, value.len()),
            timestamp_ms,
        });
    }

    /// Records held.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Offset of the first record, if any.
    pub(super) fn first_offset(&self) -> Option<u64> {
        self.entries.first().map(|e| e.offset)
    }

    /// Each record's offset and bytes, in order.
    pub(super) fn records(&self) -> impl Iterator<Item = (u64, RawRef<'_>)> {
        self.entries.iter().map(|e| {
            let slice = |(start, len): (usize, usize)| &self.bytes[start..start + len];
            (
                e.offset,
                RawRef {
                    key: e.key.map(slice),
                    value: slice(e.value),
                    timestamp_ms: e.timestamp_ms,
                },
            )
        })
    }

    /// Forgets every record, keeping the buffers' capacity.
    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
    }
}

/// Emptied batches of one partition, waiting to be filled again. Holds at most as many batches
/// as can be in flight (the queue's capacity plus the one being filled and the one being
/// processed), so it is bounded.
#[derive(Debug, Clone)]
pub(crate) struct BatchPool {
    spare: Arc<Mutex<Vec<RecordBatch>>>,
    limit: usize,
}

/// A batch holding this much more byte capacity than it used is not kept: one burst of large
/// records must not pin its buffer for the partition's lifetime.
const KEEP_BYTES: usize = 1 << 20;

impl BatchPool {
    /// A pool keeping at most `limit` spare batches.
    pub(super) fn new(limit: usize) -> Self {
        Self {
            spare: Arc::new(Mutex::new(Vec::with_capacity(limit))),
            limit,
        }
    }

    /// An empty batch: a spare one if there is one.
    pub(super) fn take(&self) -> RecordBatch {
        self.lock().pop().unwrap_or_default()
    }

    /// Gives an emptied batch back for reuse.
    pub(super) fn give(&self, mut batch: RecordBatch) {
        if batch.bytes.capacity() > KEEP_BYTES {
            return;
        }
        batch.clear();
        let mut spare = self.lock();
        if spare.len() < self.limit {
            spare.push(batch);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RecordBatch>> {
        self.spare.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_in_order_with_their_keys_values_and_times() {
        let mut batch = RecordBatch::default();
        batch.push(7, Some(b"web-1"), b"one", 1_000);
        batch.push(8, None, b"", 2_000);
        batch.push(9, Some(b""), b"three", 3_000);
        let got: Vec<_> = batch
            .records()
            .map(|(o, r)| (o, r.key, r.value, r.timestamp_ms))
            .collect();
        assert_eq!(
            got,
            vec![
                (7, Some(&b"web-1"[..]), &b"one"[..], 1_000),
                (8, None, &b""[..], 2_000),
                (9, Some(&b""[..]), &b"three"[..], 3_000),
            ]
        );
        assert_eq!(batch.first_offset(), Some(7));
        assert_eq!(batch.len(), 3);
    }

    #[test]
    fn a_given_back_batch_is_reused_empty_and_the_pool_stays_bounded() {
        let pool = BatchPool::new(1);
        let mut batch = pool.take();
        batch.push(1, Some(b"k"), b"value", 0);
        let capacity = batch.bytes.capacity();
        pool.give(batch);
        let mut extra = RecordBatch::default();
        extra.push(2, None, b"x", 0);
        pool.give(extra);
        assert_eq!(pool.lock().len(), 1, "the pool keeps at most its limit");
        let reused = pool.take();
        assert_eq!(reused.len(), 0);
        assert_eq!(reused.bytes.capacity(), capacity, "the buffer is kept");
    }
}
