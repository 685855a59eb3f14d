//! Count windows over fixed-width numeric rows: the detector's hot path.
//!
//! Per key, the operator keeps the last `W = spec.size` rows of `D = width` `f32` values and, every
//! `spec.step` rows once `W` have arrived, lends out the window as one contiguous, oldest-first
//! `&[f32]` of `W * D` values, ready to feed a model without copying.
//!
//! # Layout
//!
//! Each key owns a ring of `2 * W` rows and every row is written twice, at ring slot `i` and at
//! `i + W`. After writing slot `h`, the last `W` rows are exactly slots `h + 1 ..= h + W` of the
//! doubled ring, one contiguous slice, so emitting costs nothing and pushing costs two `D`-float
//! copies. All keys live in one slab (`Vec<f32>` plus a parallel ring of timestamps and
//! positions) indexed by a dense slot number, so the only per-record work besides the copies is
//! one hash lookup; nothing is allocated except when a key is first seen (and its slot is
//! recycled after [`evict`](RowWindows::evict)). A caller that already numbers its keys densely
//! (interned host ids) skips the hash lookup with [`IndexedRowWindows`](super::IndexedRowWindows).
//!
//! # Throughput
//!
//! With 10,000 keys in random order, `W = 10`, `D = 7`, `step = 1` (a window per row), one core
//! of the shared development VM measured about 20–23 M rows/s with integer keys and 10–12 M
//! rows/s with `String` keys. The work is dominated by cache misses on the key's rows and, for
//! `String` keys, by SipHash and the comparison against the stored key's heap bytes. Interning
//! host names to integer ids is the main lever; a faster hasher ([`RowWindows::with_hasher`])
//! only saves the hashing share (about 15%).
//!
//! # Memory per key
//!
//! `2·W·D·4` bytes of values, `W·16` bytes of timestamps and positions, a 16-byte slot header and
//! one hash-map entry (`size_of::<(K, usize)>()` plus a control byte, over a load factor of at
//! most 7/8), plus whatever `K` owns on the heap. For `W = 10`, `D = 7` and `K = String`:
//! `560 + 160 + 16 + 37 = 773` bytes (about 0.8 KB, well under the 4 KB budget) plus the host name;
//! [`RowWindows::bytes_per_key`] computes the figure for any configuration.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};

use serde::{Deserialize, Serialize};

use super::count::CountWindowSpec;
use super::row_slab::RowSlab;
use crate::error::Result;

/// One emitted row window, borrowed from the operator until the next call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowWindow<'a, Q: ?Sized> {
    /// The key, as the caller passed it to [`RowWindows::push`].
    pub key: &'a Q,
    /// `W * D` values: `W` rows of `D` values each, oldest row first.
    pub values: &'a [f32],
    /// Values per row (`D`).
    pub width: usize,
    /// Event timestamp (ms) of the oldest row.
    pub start_timestamp_ms: i64,
    /// Event timestamp (ms) of the newest row, the one that closed the window. Rows are kept in
    /// arrival order, so with out-of-order timestamps this can be below the start.
    pub end_timestamp_ms: i64,
    /// Source position of the oldest row.
    pub first_position: u64,
    /// Source position of the newest row.
    pub last_position: u64,
}

impl<'a, Q: ?Sized> RowWindow<'a, Q> {
    /// The rows of the window, oldest first, each `width` values long.
    pub fn rows(&self) -> std::slice::ChunksExact<'a, f32> {
        self.values.chunks_exact(self.width)
    }
}

/// The rows one key's next windows still need, oldest first; see [`RowWindows::retained`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetainedRows {
    /// Event timestamp and source position of each row.
    pub stamps: Vec<(i64, u64)>,
    /// The rows' values, `width` per row.
    pub values: Vec<f32>,
}

/// Keyed count windows over rows of `width` `f32` values; see the [module docs](self) for layout
/// and memory.
///
/// One instance serves one source partition; see the [window module docs](super) for the replay
/// contract behind [`min_retained_position`](Self::min_retained_position). `S` lets callers
/// pick the hasher; the default SipHash resists hash flooding by hostile keys.
///
/// ```
/// use anomaly_stream::window::{CountWindowSpec, RowWindows};
///
/// // Windows of 3 rows of 2 metrics, emitted on every row once 3 have arrived.
/// let mut windows = RowWindows::new(CountWindowSpec::sliding(3, 1)?, 2)?;
/// for (i, t) in [1_000, 2_000, 3_000].into_iter().enumerate() {
///     let x = i as f32;
///     if let Some(w) = windows.push("web-1", t, i as u64, &[x, -x])? {
///         assert_eq!(w.values, &[0.0, -0.0, 1.0, -1.0, 2.0, -2.0]);
///         assert_eq!((w.start_timestamp_ms, w.end_timestamp_ms), (1_000, 3_000));
///     }
/// }
/// assert!(windows.push("web-1", 4_000, 3, &[1.0]).is_err()); // wrong width
/// # Ok::<(), anomaly_stream::Error>(())
/// ```
#[derive(Debug)]
pub struct RowWindows<K, S = RandomState> {
    /// Key to slot number.
    index: HashMap<K, usize, S>,
    slab: RowSlab,
    /// Slots of evicted keys, reused before the slab grows.
    free: Vec<usize>,
}

impl<K: Hash + Eq> RowWindows<K> {
    /// An operator for rows of `width` values; fails if `spec` is invalid, `width` is 0, or
    /// `2 * size * width` overflows.
    pub fn new(spec: CountWindowSpec, width: usize) -> Result<Self> {
        Self::with_hasher(spec, width, RandomState::new())
    }
}

impl<K: Hash + Eq, S: BuildHasher> RowWindows<K, S> {
    /// Like [`new`](RowWindows::new) with a caller-chosen hasher, e.g. a faster one when keys are
    /// trusted.
    pub fn with_hasher(spec: CountWindowSpec, width: usize, hasher: S) -> Result<Self> {
        Ok(Self {
            index: HashMap::with_hasher(hasher),
            slab: RowSlab::new(spec, width)?,
            free: Vec::new(),
        })
    }

    /// The window shape.
    pub fn spec(&self) -> CountWindowSpec {
        self.slab.spec()
    }

    /// Values per row.
    pub fn width(&self) -> usize {
        self.slab.width()
    }

    /// Appends `row` (exactly `width` values) for `key`, event time `timestamp_ms`, source
    /// `position`. Returns the window it closes, if any, or [`Error::RowWidth`](crate::Error::RowWidth) (the row is then
    /// ignored and no state changes).
    ///
    /// Allocation-free except the first time a key is seen, when it is cloned (`to_owned`) into
    /// the operator.
    pub fn push<'a, Q>(
        &'a mut self,
        key: &'a Q,
        timestamp_ms: i64,
        position: u64,
        row: &[f32],
    ) -> Result<Option<RowWindow<'a, Q>>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.slab.check_width(row)?;
        let slot = match self.index.get(key) {
            Some(&slot) => slot,
            None => self.allocate(key.to_owned()),
        };
        let width = self.slab.width();
        Ok(self
            .slab
            .push(slot, timestamp_ms, position, row)
            .map(|closed| closed.lend(key, width, timestamp_ms, position)))
    }

    /// Gives `key` a fresh slot, reusing an evicted one when possible.
    fn allocate(&mut self, key: K) -> usize {
        let slot = self.free.pop().unwrap_or(self.slab.capacity());
        self.slab.reset(slot);
        self.index.insert(key, slot);
        slot
    }

    /// Forgets `key` and its rows; returns whether it was tracked. Its slot is reused by the next
    /// new key (the slab never shrinks) and its next row starts a fresh window.
    pub fn evict<Q>(&mut self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.index.remove(key) {
            Some(slot) => {
                self.free.push(slot);
                true
            }
            None => false,
        }
    }

    /// Forgets every key whose newest row has an event timestamp below `timestamp_ms` (hosts that
    /// stopped sending), returning how many. `O(keys)`: call it periodically, e.g. with
    /// `now - idle_timeout` from the runtime's clock.
    pub fn evict_idle(&mut self, timestamp_ms: i64) -> usize {
        let (slab, free) = (&self.slab, &mut self.free);
        let before = self.index.len();
        self.index.retain(|_, &mut slot| {
            let keep = slab.newest_timestamp(slot) >= timestamp_ms;
            if !keep {
                free.push(slot);
            }
            keep
        });
        before - self.index.len()
    }

    /// Number of keys tracked.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The smallest source position a future window still needs, `None` if none does. `O(keys)`:
    /// meant for commit time, not per record.
    pub fn min_retained_position(&self) -> Option<u64> {
        self.index
            .values()
            .filter_map(|&slot| self.slab.min_retained_position(slot))
            .min()
    }

    /// The rows of `key` that its next windows still need (the newest `W - countdown`), oldest
    /// first, or `None` for an unknown key: what a snapshot of the key must keep. Pushing them
    /// back into a fresh key ([`restore`](Self::restore)) gives the same windows from then on.
    pub fn retained<Q>(&self, key: &Q) -> Option<RetainedRows>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let slot = *self.index.get(key)?;
        Some(self.slab.retained(slot))
    }

    /// Makes `key` hold exactly `rows` (from [`retained`](Self::retained)), replacing whatever
    /// it held; errors, changing nothing, when the rows do not fit this operator.
    pub fn restore(&mut self, key: K, rows: &RetainedRows) -> Result<()> {
        self.slab.check_retained(rows)?;
        self.evict(&key);
        let slot = self.allocate(key);
        self.slab.restore(slot, rows);
        Ok(())
    }

    /// Approximate bytes held per tracked key (see the [module docs](self)): the two row copies,
    /// timestamp and position rings, slot header and hash-map entry, excluding heap memory owned
    /// by `K` itself.
    pub fn bytes_per_key(&self) -> usize {
        // hashbrown keeps one control byte per bucket and fills at most 7/8 of its buckets.
        let map_entry = (size_of::<(K, usize)>() + 1) * 8 / 7;
        self.slab.bytes_per_slot() + map_entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn make(size: usize, step: usize, width: usize) -> RowWindows<String> {
        RowWindows::new(CountWindowSpec::sliding(size, step).unwrap(), width).unwrap()
    }

    /// Row `i` of key `k`: `[k*1000 + i, k*1000 + i + 0.5]`.
    fn row(k: u32, i: u32) -> [f32; 2] {
        let x = (k * 1000 + i) as f32;
        [x, x + 0.5]
    }

    #[test]
    fn construction_errors() {
        assert!(RowWindows::<String>::new(CountWindowSpec { size: 0, step: 1 }, 2).is_err());
        assert!(RowWindows::<String>::new(CountWindowSpec { size: 2, step: 3 }, 2).is_err());
        assert!(RowWindows::<String>::new(CountWindowSpec::tumbling(2).unwrap(), 0).is_err());
        assert!(
            RowWindows::<String>::new(CountWindowSpec::tumbling(usize::MAX / 2).unwrap(), 2)
                .is_err()
        );
    }

    #[test]
    fn row_width_mismatch_is_an_error_and_changes_nothing() {
        let mut op = make(2, 1, 2);
        assert!(matches!(
            op.push("a", 0, 0, &[1.0, 2.0, 3.0]),
            Err(Error::RowWidth {
                expected: 2,
                actual: 3
            })
        ));
        assert!(matches!(
            op.push("a", 0, 0, &[]),
            Err(Error::RowWidth { actual: 0, .. })
        ));
        assert!(op.is_empty());
        assert!(op.push("a", 0, 0, &[1.0, 2.0]).unwrap().is_none());
        assert!(op.push("a", 0, 1, &[1.0]).is_err());
        // The bad row did not count: the second good row closes the first window.
        assert!(op.push("a", 0, 2, &[3.0, 4.0]).unwrap().is_some());
    }

    #[test]
    fn sliding_by_one_is_contiguous_and_oldest_first() {
        let mut op = make(3, 1, 2);
        let mut got = Vec::new();
        for i in 0..7u32 {
            let ts = 1_000 * i64::from(i);
            if let Some(w) = op.push("a", ts, 100 + u64::from(i), &row(0, i)).unwrap() {
                assert_eq!(w.key, "a");
                assert_eq!(w.rows().len(), 3);
                got.push((
                    w.values.to_vec(),
                    w.start_timestamp_ms,
                    w.end_timestamp_ms,
                    w.first_position,
                    w.last_position,
                ));
            }
        }
        // First window with the 3rd row, then one per row, across several ring wrap-arounds.
        assert_eq!(got.len(), 5);
        for (j, (values, start, end, first, last)) in got.into_iter().enumerate() {
            let i = j as u32 + 2;
            let expected: Vec<f32> = (i - 2..=i).flat_map(|r| row(0, r)).collect();
            assert_eq!(values, expected);
            assert_eq!(
                (start, end),
                (1_000 * i64::from(i - 2), 1_000 * i64::from(i))
            );
            assert_eq!((first, last), (98 + u64::from(i), 100 + u64::from(i)));
        }
    }

    #[test]
    fn tumbling_and_step() {
        let mut tumbling = make(3, 3, 2);
        let emitted: Vec<u32> = (0..10u32)
            .filter_map(|i| {
                let w = tumbling.push("a", 0, u64::from(i), &row(0, i)).unwrap()?;
                assert_eq!(w.values[0], (i - 2) as f32);
                Some(i)
            })
            .collect();
        assert_eq!(emitted, vec![2, 5, 8]);

        let mut stepped = make(4, 3, 2);
        let emitted: Vec<(u32, Vec<f32>)> = (0..11u32)
            .filter_map(|i| {
                let w = stepped.push("a", 0, u64::from(i), &row(0, i)).unwrap()?;
                Some((i, w.rows().map(|r| r[0]).collect()))
            })
            .collect();
        assert_eq!(
            emitted,
            vec![
                (3, vec![0.0, 1.0, 2.0, 3.0]),
                (6, vec![3.0, 4.0, 5.0, 6.0]),
                (9, vec![6.0, 7.0, 8.0, 9.0]),
            ]
        );
    }

    #[test]
    fn window_of_one_row() {
        let mut op = make(1, 1, 3);
        let w = op.push("a", 7, 8, &[1.0, 2.0, 3.0]).unwrap().unwrap();
        assert_eq!(w.values, &[1.0, 2.0, 3.0]);
        assert_eq!((w.start_timestamp_ms, w.end_timestamp_ms), (7, 7));
        assert_eq!((w.first_position, w.last_position), (8, 8));
    }

    #[test]
    fn many_keys_are_isolated() {
        let mut op = make(4, 1, 2);
        let keys = 2_000u32;
        let names: Vec<String> = (0..keys).map(|k| format!("host-{k}")).collect();
        let mut position = 0u64;
        for i in 0..6u32 {
            for k in 0..keys {
                let got = op
                    .push(
                        names[k as usize].as_str(),
                        i64::from(i),
                        position,
                        &row(k, i),
                    )
                    .unwrap();
                position += 1;
                if i < 3 {
                    assert!(got.is_none());
                    continue;
                }
                let w = got.unwrap();
                assert_eq!(w.key, names[k as usize]);
                let expected: Vec<f32> = (i - 3..=i).flat_map(|r| row(k, r)).collect();
                assert_eq!(w.values, &expected[..]);
                assert_eq!(w.first_position, u64::from((i - 3) * keys + k));
            }
        }
        assert_eq!(op.len(), keys as usize);
    }

    #[test]
    fn borrowed_and_owned_keys_agree() {
        let mut op = make(2, 1, 1);
        op.push("a", 0, 0, &[1.0]).unwrap();
        let owned = "a".to_string();
        let w = op.push(&owned, 0, 1, &[2.0]).unwrap().unwrap();
        assert_eq!(w.values, &[1.0, 2.0]);
        assert_eq!(op.len(), 1);
    }

    #[test]
    fn eviction_and_slot_reuse() {
        let mut op = make(2, 1, 1);
        op.push("a", 10, 0, &[1.0]).unwrap();
        op.push("b", 20, 1, &[2.0]).unwrap();
        op.push("c", 30, 2, &[3.0]).unwrap();
        assert!(op.evict("a"));
        assert!(!op.evict("a"));
        assert_eq!(op.len(), 2);
        // "d" takes a's slot and must not see a's stale row.
        assert!(op.push("d", 40, 3, &[4.0]).unwrap().is_none());
        assert_eq!(
            op.push("d", 41, 4, &[5.0]).unwrap().unwrap().values,
            &[4.0, 5.0]
        );
        // Newest rows: b@20, c@30, d@41.
        assert_eq!(op.evict_idle(30), 1);
        assert_eq!(op.len(), 2);
        assert_eq!(op.evict_idle(i64::MAX), 2);
        assert!(op.is_empty());
        assert_eq!(op.min_retained_position(), None);
        assert!(op.push("b", 50, 5, &[6.0]).unwrap().is_none());
    }

    #[test]
    fn min_retained_position_advances() {
        let mut op = make(3, 1, 1);
        assert_eq!(op.min_retained_position(), None);
        op.push("a", 0, 10, &[0.0]).unwrap();
        op.push("b", 0, 11, &[0.0]).unwrap();
        op.push("a", 0, 12, &[0.0]).unwrap();
        assert_eq!(op.min_retained_position(), Some(10));
        // a's 3rd row closes [10, 12, 13]; a's next window needs rows 12 and 13.
        op.push("a", 0, 13, &[0.0]).unwrap().unwrap();
        assert!(op.evict("b"));
        assert_eq!(op.min_retained_position(), Some(12));
        op.push("a", 0, 14, &[0.0]).unwrap().unwrap();
        assert_eq!(op.min_retained_position(), Some(13));

        // Tumbling: an emitted window releases everything.
        let mut tumbling = make(2, 2, 1);
        tumbling.push("a", 0, 1, &[0.0]).unwrap();
        assert_eq!(tumbling.min_retained_position(), Some(1));
        tumbling.push("a", 0, 2, &[0.0]).unwrap().unwrap();
        assert_eq!(tumbling.min_retained_position(), None);
        tumbling.push("a", 0, 3, &[0.0]).unwrap();
        assert_eq!(tumbling.min_retained_position(), Some(3));

        // Step 2 of 3: after a window, the newest row is kept for the next one.
        let mut stepped = make(3, 2, 1);
        for p in 0..3 {
            stepped.push("a", 0, p, &[0.0]).unwrap();
        }
        assert_eq!(stepped.min_retained_position(), Some(2));
        stepped.push("a", 0, 3, &[0.0]).unwrap();
        assert_eq!(stepped.min_retained_position(), Some(2));
    }

    #[test]
    fn memory_per_host_is_under_4_kb() {
        let op = make(10, 1, 7);
        let bytes = op.bytes_per_key();
        assert!(bytes < 4_096, "{bytes}");
        // The figure quoted in the module docs.
        #[cfg(target_pointer_width = "64")]
        assert_eq!(bytes, 773);
        assert!(bytes >= 2 * 10 * 7 * 4 + 10 * 16);
    }

    #[test]
    fn same_input_same_output() {
        let run = || {
            let mut op = make(3, 2, 2);
            let mut out = Vec::new();
            for i in 0..200u32 {
                let key = format!("k{}", i % 7);
                if let Some(w) = op
                    .push(key.as_str(), i64::from(i), u64::from(i), &row(i % 7, i))
                    .unwrap()
                {
                    out.push((w.key.to_string(), w.values.to_vec(), w.first_position));
                }
            }
            (out, op.min_retained_position())
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn a_key_restored_from_its_retained_rows_gives_the_same_windows() {
        for (size, step) in [(4, 1), (5, 2), (3, 3)] {
            for already in 0..12u32 {
                let mut original = make(size, step, 2);
                for i in 0..already {
                    original
                        .push("h", i64::from(i), u64::from(i), &row(1, i))
                        .unwrap();
                }
                let mut restored = make(size, step, 2);
                // Something stale under the key is replaced, not mixed in.
                restored.push("h", -1, 99, &row(9, 9)).unwrap();
                match original.retained("h") {
                    Some(rows) => {
                        assert!(rows.stamps.len() < size);
                        restored.restore("h".to_string(), &rows).unwrap();
                    }
                    None => assert_eq!(already, 0),
                }
                if already == 0 {
                    restored.evict("h");
                }
                assert_eq!(
                    original.min_retained_position(),
                    restored.min_retained_position(),
                    "size {size}, step {step}, after {already}"
                );
                for i in already..already + 2 * size as u32 {
                    let r = row(1, i);
                    let a = original.push("h", i64::from(i), u64::from(i), &r).unwrap();
                    let a = a.map(|w| (w.values.to_vec(), w.start_timestamp_ms, w.first_position));
                    let b = restored.push("h", i64::from(i), u64::from(i), &r).unwrap();
                    let b = b.map(|w| (w.values.to_vec(), w.start_timestamp_ms, w.first_position));
                    assert_eq!(a, b, "size {size}, step {step}, after {already}, row {i}");
                }
            }
        }
        let mut windows = make(3, 1, 2);
        let too_many = RetainedRows {
            stamps: vec![(0, 0); 3],
            values: vec![0.0; 6],
        };
        assert!(windows.restore("h".into(), &too_many).is_err());
        let ragged = RetainedRows {
            stamps: vec![(0, 0); 2],
            values: vec![0.0; 3],
        };
        assert!(windows.restore("h".into(), &ragged).is_err());
        assert!(windows.is_empty());
    }
}
