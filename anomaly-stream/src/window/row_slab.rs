//! The storage behind the row-window operators: every key's ring of rows in one slab, addressed
//! by a dense slot number. [`RowWindows`](super::RowWindows) maps keys to slots with a hash map;
//! [`IndexedRowWindows`](super::IndexedRowWindows) lets the caller's own dense ids be the slots.
//!
//! Each slot owns a ring of `2 * W` rows and every row is written twice, at ring slot `i` and at
//! `i + W`. After writing slot `h`, the last `W` rows are exactly slots `h + 1 ..= h + W` of the
//! doubled ring, one contiguous slice, so emitting costs nothing and pushing costs two `D`-float
//! copies.

use super::count::CountWindowSpec;
use super::rows::{RetainedRows, RowWindow};
use crate::error::{Error, Result};

/// Event timestamp and source position of one buffered row, kept together because they are
/// written and read together (one cache line touched instead of two).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Stamp {
    pub(super) timestamp_ms: i64,
    pub(super) position: u64,
}

/// Per-slot bookkeeping; the rows themselves live in the slab.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Ring slot (`0..W`) the next row goes to.
    head: usize,
    /// Rows still to come before this slot's next window (`W` for a fresh slot, then `step`).
    countdown: usize,
}

/// A window a push closed: the values and the stamp of its oldest row.
pub(super) struct Closed<'a> {
    values: &'a [f32],
    first: Stamp,
}

impl<'a> Closed<'a> {
    /// The window as lent to the caller, for `key`, closed by the row of `width` values stamped
    /// `timestamp_ms` at `position`.
    pub(super) fn lend<Q: ?Sized>(
        self,
        key: &'a Q,
        width: usize,
        timestamp_ms: i64,
        position: u64,
    ) -> RowWindow<'a, Q> {
        RowWindow {
            key,
            values: self.values,
            width,
            start_timestamp_ms: self.first.timestamp_ms,
            end_timestamp_ms: timestamp_ms,
            first_position: self.first.position,
            last_position: position,
        }
    }
}

/// Rings of `W` rows of `D` values, one per slot.
#[derive(Debug)]
pub(super) struct RowSlab {
    spec: CountWindowSpec,
    width: usize,
    slots: Vec<Slot>,
    /// `2 * W * D` values per slot.
    values: Vec<f32>,
    /// `W` stamps per slot, ring order (one copy suffices: they are read one at a time).
    stamps: Vec<Stamp>,
}

impl RowSlab {
    /// An empty slab; fails if `spec` is invalid, `width` is 0, or `2 * size * width` overflows.
    pub(super) fn new(spec: CountWindowSpec, width: usize) -> Result<Self> {
        spec.validate()?;
        if width == 0 {
            return Err(Error::InvalidWindow("row width must be at least 1".into()));
        }
        if spec
            .size
            .checked_mul(width)
            .and_then(|n| n.checked_mul(2))
            .is_none()
        {
            return Err(Error::InvalidWindow(format!(
                "a window of {} rows of {width} values is too large",
                spec.size
            )));
        }
        Ok(Self {
            spec,
            width,
            slots: Vec::new(),
            values: Vec::new(),
            stamps: Vec::new(),
        })
    }

    pub(super) fn spec(&self) -> CountWindowSpec {
        self.spec
    }

    pub(super) fn width(&self) -> usize {
        self.width
    }

    /// Slots in the slab, used or not.
    pub(super) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Makes `slot` empty, growing the slab to hold it. A reused slot's stale rows need no
    /// clearing: a window is only read once `W` new rows have overwritten every ring slot.
    pub(super) fn reset(&mut self, slot: usize) {
        let (w, d) = (self.spec.size, self.width);
        let fresh = Slot {
            head: 0,
            countdown: w,
        };
        if slot >= self.slots.len() {
            let slots = slot + 1;
            self.slots.resize(slots, fresh);
            self.values.resize(slots * 2 * w * d, 0.0);
            self.stamps.resize(slots * w, Stamp::default());
        }
        self.slots[slot] = fresh;
    }

    /// Fails, changing nothing, unless `row` has `width` values.
    pub(super) fn check_width(&self, row: &[f32]) -> Result<()> {
        if row.len() == self.width {
            Ok(())
        } else {
            Err(Error::RowWidth {
                expected: self.width,
                actual: row.len(),
            })
        }
    }

    /// Appends `row` (of `width` values, checked by the caller) to `slot` (in the slab); returns
    /// the window it closes, if any.
    #[inline]
    pub(super) fn push(
        &mut self,
        slot: usize,
        timestamp_ms: i64,
        position: u64,
        row: &[f32],
    ) -> Option<Closed<'_>> {
        let (w, d) = (self.spec.size, self.width);
        let meta = &mut self.slots[slot];
        let head = meta.head;
        let ring = &mut self.values[slot * 2 * w * d..(slot + 1) * 2 * w * d];
        // One loop writing both copies: for a few floats this beats two `memcpy` calls.
        let (low, high) = ring.split_at_mut(w * d);
        let row_range = head * d..(head + 1) * d;
        for ((a, b), &x) in low[row_range.clone()]
            .iter_mut()
            .zip(&mut high[row_range])
            .zip(row)
        {
            *a = x;
            *b = x;
        }
        self.stamps[slot * w + head] = Stamp {
            timestamp_ms,
            position,
        };
        meta.head = if head + 1 == w { 0 } else { head + 1 };
        meta.countdown -= 1;
        if meta.countdown > 0 {
            return None;
        }
        meta.countdown = self.spec.step;
        // The countdown only reaches 0 once W rows are in, so the oldest is the next head.
        let oldest = meta.head;
        Some(Closed {
            values: &ring[oldest * d..(oldest + w) * d],
            first: self.stamps[slot * w + oldest],
        })
    }

    /// Event time of `slot`'s newest row.
    pub(super) fn newest_timestamp(&self, slot: usize) -> i64 {
        let w = self.spec.size;
        // The newest row sits just before the head.
        let newest = (self.slots[slot].head + w - 1) % w;
        self.stamps[slot * w + newest].timestamp_ms
    }

    /// The smallest source position `slot`'s next window needs, `None` if it needs none.
    pub(super) fn min_retained_position(&self, slot: usize) -> Option<u64> {
        let w = self.spec.size;
        let meta = &self.slots[slot];
        // The next window takes the newest `W - countdown` rows already here (before the first
        // window that is every row so far).
        let needed = w - meta.countdown;
        (needed > 0).then(|| self.stamps[slot * w + (meta.head + w - needed) % w].position)
    }

    /// The rows `slot`'s next windows still need (the newest `W - countdown`), oldest first.
    pub(super) fn retained(&self, slot: usize) -> RetainedRows {
        let (w, d) = (self.spec.size, self.width);
        let meta = &self.slots[slot];
        let needed = w - meta.countdown;
        let mut rows = RetainedRows::default();
        for back in (1..=needed).rev() {
            let ring_slot = (meta.head + w - back) % w;
            let stamp = self.stamps[slot * w + ring_slot];
            rows.stamps.push((stamp.timestamp_ms, stamp.position));
            let at = slot * 2 * w * d + ring_slot * d;
            rows.values.extend_from_slice(&self.values[at..at + d]);
        }
        rows
    }

    /// Fails unless `rows` fit this slab: `width` values per stamp, fewer rows than a window.
    pub(super) fn check_retained(&self, rows: &RetainedRows) -> Result<()> {
        let (w, d) = (self.spec.size, self.width);
        if rows.values.len() != rows.stamps.len() * d {
            return Err(Error::RowWidth {
                expected: rows.stamps.len() * d,
                actual: rows.values.len(),
            });
        }
        if rows.stamps.len() >= w {
            return Err(Error::InvalidWindow(format!(
                "{} retained rows for windows of {w}: a window would be due",
                rows.stamps.len()
            )));
        }
        Ok(())
    }

    /// Makes the fresh `slot` hold `rows` (checked with [`check_retained`](Self::check_retained)).
    pub(super) fn restore(&mut self, slot: usize, rows: &RetainedRows) {
        for (&(timestamp_ms, position), row) in
            rows.stamps.iter().zip(rows.values.chunks_exact(self.width))
        {
            // Below a window's worth of rows, so no window closes.
            let _ = self.push(slot, timestamp_ms, position, row);
        }
    }

    /// Bytes of the slab per slot: the two row copies, the stamp ring and the slot header.
    pub(super) fn bytes_per_slot(&self) -> usize {
        let (w, d) = (self.spec.size, self.width);
        2 * w * d * size_of::<f32>() + w * size_of::<Stamp>() + size_of::<Slot>()
    }
}
