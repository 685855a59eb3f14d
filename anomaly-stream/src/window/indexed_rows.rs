//! Row windows keyed by the caller's own dense ids: [`RowWindows`](super::RowWindows) without its
//! hash map, for a caller that already interned its keys (the detector numbers its hosts once, at
//! the first sample). The id is the slot in the row slab, so a push is the two row copies and
//! nothing else.

use super::count::CountWindowSpec;
use super::row_slab::RowSlab;
use super::rows::{RetainedRows, RowWindow};
use crate::error::{Error, Result};

/// Count windows over rows of `width` `f32` values, keyed by dense `u32` ids; the same windows as
/// [`RowWindows`](super::RowWindows) with a hash lookup fewer per row.
///
/// Memory grows to the largest id pushed, so ids must be dense (reuse freed ones before taking
/// new ones); every other rule (one instance per source partition, replay) is
/// [`RowWindows`](super::RowWindows)'.
///
/// ```
/// use anomaly_stream::window::{CountWindowSpec, IndexedRowWindows};
///
/// let mut windows = IndexedRowWindows::new(CountWindowSpec::sliding(2, 1)?, 1)?;
/// assert!(windows.push(0, 1_000, 0, &[1.0])?.is_none());
/// let window = windows.push(0, 2_000, 1, &[2.0])?.expect("two rows make a window");
/// assert_eq!((window.key, window.values), (&0, &[1.0, 2.0][..]));
/// # Ok::<(), anomaly_stream::Error>(())
/// ```
#[derive(Debug)]
pub struct IndexedRowWindows {
    slab: RowSlab,
    /// Each slot's id while it holds rows (pushed since its last eviction), else [`FREE`]; the
    /// emitted windows borrow their key from here.
    keys: Vec<u32>,
    len: usize,
}

/// The mark of a slot that holds nothing; the one id that cannot be pushed.
const FREE: u32 = u32::MAX;

impl IndexedRowWindows {
    /// An operator for rows of `width` values; fails if `spec` is invalid, `width` is 0, or
    /// `2 * size * width` overflows.
    pub fn new(spec: CountWindowSpec, width: usize) -> Result<Self> {
        Ok(Self {
            slab: RowSlab::new(spec, width)?,
            keys: Vec::new(),
            len: 0,
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

    /// Appends `row` (exactly `width` values) for `id`; see [`RowWindows::push`](super::RowWindows::push).
    /// Allocation-free except when `id` is above every id seen before. `u32::MAX` is refused.
    pub fn push(
        &mut self,
        id: u32,
        timestamp_ms: i64,
        position: u64,
        row: &[f32],
    ) -> Result<Option<RowWindow<'_, u32>>> {
        self.slab.check_width(row)?;
        if id == FREE {
            return Err(Error::InvalidWindow(format!("id {FREE} is reserved")));
        }
        let slot = self.occupy(id);
        let width = self.slab.width();
        let key = &self.keys[slot];
        let closed = self.slab.push(slot, timestamp_ms, position, row);
        Ok(closed.map(|closed| closed.lend(key, width, timestamp_ms, position)))
    }

    /// `id`'s slot, made fresh if `id` holds nothing.
    fn occupy(&mut self, id: u32) -> usize {
        let slot = id as usize;
        if !self.holds(id) {
            if slot >= self.keys.len() {
                self.keys.resize(slot + 1, FREE);
            }
            self.slab.reset(slot);
            self.keys[slot] = id;
            self.len += 1;
        }
        slot
    }

    fn holds(&self, id: u32) -> bool {
        id != FREE && self.keys.get(id as usize) == Some(&id)
    }

    /// Forgets `id` and its rows; returns whether it held any. Its next row starts a fresh window.
    pub fn evict(&mut self, id: u32) -> bool {
        if !self.holds(id) {
            return false;
        }
        self.keys[id as usize] = FREE;
        self.len -= 1;
        true
    }

    /// Number of ids holding rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no id holds rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The smallest source position a future window still needs; see
    /// [`RowWindows::min_retained_position`](super::RowWindows::min_retained_position).
    pub fn min_retained_position(&self) -> Option<u64> {
        self.keys
            .iter()
            .enumerate()
            .filter(|(_, id)| **id != FREE)
            .filter_map(|(slot, _)| self.slab.min_retained_position(slot))
            .min()
    }

    /// The rows `id`'s next windows still need, or `None` when it holds none; see
    /// [`RowWindows::retained`](super::RowWindows::retained).
    pub fn retained(&self, id: u32) -> Option<RetainedRows> {
        self.holds(id).then(|| self.slab.retained(id as usize))
    }

    /// Makes `id` hold exactly `rows` (from [`retained`](Self::retained)); errors, changing
    /// nothing, when the rows do not fit this operator.
    pub fn restore(&mut self, id: u32, rows: &RetainedRows) -> Result<()> {
        self.slab.check_retained(rows)?;
        self.evict(id);
        let slot = self.occupy(id);
        self.slab.restore(slot, rows);
        Ok(())
    }

    /// Approximate bytes held per id: the slab's rows, stamps and header, and the id.
    pub fn bytes_per_key(&self) -> usize {
        self.slab.bytes_per_slot() + size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::RowWindows;

    #[test]
    fn the_same_windows_as_row_windows_through_evictions_and_restores() {
        let spec = CountWindowSpec::sliding(4, 2).unwrap();
        let mut indexed = IndexedRowWindows::new(spec, 3).unwrap();
        let mut keyed: RowWindows<u32> = RowWindows::new(spec, 3).unwrap();
        let mut state = 0x9E37_79B9u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        let mut windows = 0;
        for position in 0..2_000u64 {
            let id = next() % 12;
            match next() % 50 {
                0 => assert_eq!(indexed.evict(id), keyed.evict(&id)),
                1 => {
                    let rows = keyed.retained(&id);
                    assert_eq!(indexed.retained(id), rows);
                    if let Some(rows) = rows {
                        indexed.restore(id, &rows).unwrap();
                        keyed.restore(id, &rows).unwrap();
                    }
                }
                _ => {}
            }
            let row = [position as f32, id as f32, -(position as f32)];
            let a = indexed
                .push(id, position as i64 * 10, position, &row)
                .unwrap();
            let b = keyed
                .push(&id, position as i64 * 10, position, &row)
                .unwrap();
            windows += usize::from(a.is_some());
            assert_eq!(a, b, "at position {position}");
            assert_eq!(indexed.len(), keyed.len());
            assert_eq!(
                indexed.min_retained_position(),
                keyed.min_retained_position()
            );
        }
        assert!(windows > 500, "{windows} windows");
    }

    #[test]
    fn wrong_widths_and_the_reserved_id_are_refused_changing_nothing() {
        let mut windows =
            IndexedRowWindows::new(CountWindowSpec::sliding(2, 1).unwrap(), 2).unwrap();
        assert!(windows.push(3, 0, 0, &[1.0]).is_err());
        assert!(windows.push(u32::MAX, 0, 0, &[1.0, 2.0]).is_err());
        assert!(windows.is_empty());
        assert_eq!(windows.retained(3), None);
        assert!(!windows.evict(3));
        let too_many = RetainedRows {
            stamps: vec![(0, 0), (1, 1)],
            values: vec![0.0; 4],
        };
        assert!(windows.restore(0, &too_many).is_err());
        assert!(windows.is_empty());
    }
}
