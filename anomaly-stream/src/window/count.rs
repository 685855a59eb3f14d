//! Count windows per key over any cloneable value: "the last `size` records of this key, every
//! `step` records".
//!
//! For fixed-width numeric rows on the hot path use [`RowWindows`](super::RowWindows), which
//! shares [`CountWindowSpec`] but neither allocates nor clones per record.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The shape of a count window: `size` records, emitted every `step` records.
///
/// Per key, record number `n` (1-based) closes a window when `n >= size` and
/// `(n - size) % step == 0`; the window holds records `n - size + 1 ..= n`. So the first window
/// comes with the `size`-th record, and windows overlap by `size - step` records:
/// `step == size` is tumbling (disjoint), `step == 1` slides by one record.
///
/// Fields are public for configuration files; operators [`validate`](Self::validate) on
/// construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CountWindowSpec {
    /// Records per window, at least 1.
    pub size: usize,
    /// Records between two windows of one key, `1..=size`.
    pub step: usize,
}

impl CountWindowSpec {
    /// Disjoint windows of `size` records.
    pub fn tumbling(size: usize) -> Result<Self> {
        Self::sliding(size, size)
    }

    /// Windows of `size` records emitted every `step` records.
    pub fn sliding(size: usize, step: usize) -> Result<Self> {
        let spec = Self { size, step };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks `size >= 1` and `1 <= step <= size`: a step above the size would leave records
    /// between windows that no window contains, silently skipping data.
    pub fn validate(&self) -> Result<()> {
        if self.size == 0 {
            return Err(Error::InvalidWindow(
                "count window size must be at least 1".into(),
            ));
        }
        if self.step == 0 || self.step > self.size {
            return Err(Error::InvalidWindow(format!(
                "count window step must be in 1..={} (the size), got {}",
                self.size, self.step
            )));
        }
        Ok(())
    }
}

/// One emitted count window.
#[derive(Debug, Clone, PartialEq)]
pub struct CountWindow<K, V> {
    /// The key the window belongs to.
    pub key: K,
    /// Exactly `size` values, oldest first.
    pub values: Vec<V>,
    /// Source position of the oldest value.
    pub first_position: u64,
    /// Source position of the newest value, the record that closed the window.
    pub last_position: u64,
}

/// What one key has buffered.
#[derive(Debug)]
struct KeyBuffer<V> {
    /// `(position, value)` of every record a future window still needs, oldest first. Its
    /// length is always `size - countdown`, so it never exceeds `size`.
    values: VecDeque<(u64, V)>,
    /// Records still to come before this key's next window closes (`size` for a new key).
    countdown: usize,
}

/// Keyed count windows over cloneable values (values are cloned only when overlapping windows
/// share them, i.e. `size - step` clones per emitted window).
///
/// One instance serves one source partition; see the [module docs](super) for the replay
/// contract behind [`min_retained_position`](Self::min_retained_position).
///
/// ```
/// use anomaly_stream::window::{CountWindowSpec, CountWindows};
///
/// let mut windows = CountWindows::new(CountWindowSpec::sliding(3, 2)?)?;
/// let mut emitted = Vec::new();
/// for (position, value) in (10..16).enumerate() {
///     if let Some(w) = windows.push("web-1", position as u64, value) {
///         emitted.push(w.values);
///     }
/// }
/// assert_eq!(emitted, vec![vec![10, 11, 12], vec![12, 13, 14]]);
/// # Ok::<(), anomaly_stream::Error>(())
/// ```
#[derive(Debug)]
pub struct CountWindows<K, V> {
    spec: CountWindowSpec,
    keys: HashMap<K, KeyBuffer<V>>,
}

impl<K: Hash + Eq + Clone, V: Clone> CountWindows<K, V> {
    /// An operator with no key yet; fails if `spec` is invalid.
    pub fn new(spec: CountWindowSpec) -> Result<Self> {
        spec.validate()?;
        Ok(Self {
            spec,
            keys: HashMap::new(),
        })
    }

    /// The window shape.
    pub fn spec(&self) -> CountWindowSpec {
        self.spec
    }

    /// Adds one record of `key` at source `position`; returns the window it closes, if any.
    ///
    /// The key is cloned into the operator only the first time it is seen (and into each
    /// emitted window).
    pub fn push<Q>(&mut self, key: &Q, position: u64, value: V) -> Option<CountWindow<K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let spec = self.spec;
        let buffer = match self.keys.get_mut(key) {
            Some(buffer) => buffer,
            None => self
                .keys
                .entry(key.to_owned())
                .or_insert_with(|| KeyBuffer {
                    values: VecDeque::with_capacity(spec.size),
                    countdown: spec.size,
                }),
        };
        buffer.values.push_back((position, value));
        buffer.countdown -= 1;
        if buffer.countdown > 0 {
            return None;
        }
        buffer.countdown = spec.step;
        let first_position = buffer.values.front().map_or(position, |(p, _)| *p);
        // The oldest `step` values belong to no later window: move them out, clone the rest.
        let mut values = Vec::with_capacity(spec.size);
        values.extend(buffer.values.drain(..spec.step).map(|(_, v)| v));
        values.extend(buffer.values.iter().map(|(_, v)| v.clone()));
        Some(CountWindow {
            key: key.to_owned(),
            values,
            first_position,
            last_position: position,
        })
    }

    /// Forgets `key` and whatever it had buffered (e.g. a host that left); returns whether it was
    /// tracked. Its next record starts a fresh count.
    pub fn evict<Q>(&mut self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.keys.remove(key).is_some()
    }

    /// Number of keys tracked.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The smallest source position a future window still needs, `None` if none does.
    /// `O(keys)`: meant for commit time, not per record.
    pub fn min_retained_position(&self) -> Option<u64> {
        self.keys
            .values()
            .filter_map(|b| b.values.iter().map(|(p, _)| *p).min())
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(ws: &[CountWindow<String, i32>]) -> Vec<Vec<i32>> {
        ws.iter().map(|w| w.values.clone()).collect()
    }

    /// Pushes `1..=n` for one key at positions `100..`, collecting the windows.
    fn run(spec: CountWindowSpec, n: i32) -> Vec<CountWindow<String, i32>> {
        let mut op = CountWindows::new(spec).unwrap();
        (1..=n)
            .filter_map(|v| op.push("k", 99 + v as u64, v))
            .collect()
    }

    #[test]
    fn spec_validation() {
        assert!(CountWindowSpec::tumbling(0).is_err());
        assert!(CountWindowSpec::sliding(3, 0).is_err());
        assert!(CountWindowSpec::sliding(3, 4).is_err());
        assert!(CountWindows::<String, i32>::new(CountWindowSpec { size: 2, step: 3 }).is_err());
        assert_eq!(
            CountWindowSpec::tumbling(4).unwrap(),
            CountWindowSpec { size: 4, step: 4 }
        );
        assert!(CountWindowSpec::sliding(1, 1).is_ok());
    }

    #[test]
    fn tumbling_boundaries() {
        let ws = run(CountWindowSpec::tumbling(3).unwrap(), 8);
        assert_eq!(values(&ws), vec![vec![1, 2, 3], vec![4, 5, 6]]);
        assert_eq!((ws[0].first_position, ws[0].last_position), (100, 102));
        assert_eq!((ws[1].first_position, ws[1].last_position), (103, 105));
        assert_eq!(ws[1].key, "k");
    }

    #[test]
    fn sliding_by_one_emits_from_the_size_th_record_on() {
        let ws = run(CountWindowSpec::sliding(3, 1).unwrap(), 5);
        assert_eq!(
            values(&ws),
            vec![vec![1, 2, 3], vec![2, 3, 4], vec![3, 4, 5]]
        );
        assert_eq!((ws[2].first_position, ws[2].last_position), (102, 104));
    }

    #[test]
    fn sliding_with_step() {
        // Emitted at n = 4, 6, 8, 10: records n-3..=n.
        let ws = run(CountWindowSpec::sliding(4, 2).unwrap(), 11);
        assert_eq!(
            values(&ws),
            vec![
                vec![1, 2, 3, 4],
                vec![3, 4, 5, 6],
                vec![5, 6, 7, 8],
                vec![7, 8, 9, 10]
            ]
        );
    }

    #[test]
    fn size_one() {
        let ws = run(CountWindowSpec::tumbling(1).unwrap(), 3);
        assert_eq!(values(&ws), vec![vec![1], vec![2], vec![3]]);
    }

    #[test]
    fn keys_are_isolated() {
        let mut op = CountWindows::new(CountWindowSpec::sliding(3, 1).unwrap()).unwrap();
        let mut out: Vec<CountWindow<String, u64>> = Vec::new();
        // 500 keys interleaved round-robin, 4 records each.
        for round in 0..4u64 {
            for k in 0..500u64 {
                let position = round * 500 + k;
                out.extend(op.push(format!("host-{k}").as_str(), position, round * 1000 + k));
            }
        }
        assert_eq!(op.len(), 500);
        assert_eq!(out.len(), 1000);
        for w in &out {
            let k: u64 = w.key["host-".len()..].parse().unwrap();
            let last_round = w.last_position / 500;
            let expected: Vec<u64> = (last_round - 2..=last_round)
                .map(|r| r * 1000 + k)
                .collect();
            assert_eq!(w.values, expected);
            assert_eq!(w.first_position, (last_round - 2) * 500 + k);
        }
    }

    #[test]
    fn min_retained_position_follows_open_windows() {
        let mut op = CountWindows::new(CountWindowSpec::sliding(3, 2).unwrap()).unwrap();
        assert_eq!(op.min_retained_position(), None);
        assert!(op.push("a", 10, 'x').is_none());
        assert!(op.push("b", 11, 'x').is_none());
        assert_eq!(op.min_retained_position(), Some(10));
        assert!(op.push("a", 12, 'x').is_none());
        // a's third record closes [10, 12, 13]; the next window (records 3..=5) starts at 13.
        assert!(op.push("a", 13, 'x').is_some());
        assert_eq!(op.min_retained_position(), Some(11));
        assert!(op.evict("b"));
        assert!(!op.evict("b"));
        assert_eq!(op.min_retained_position(), Some(13));
        assert_eq!(op.len(), 1);

        let mut tumbling = CountWindows::new(CountWindowSpec::tumbling(2).unwrap()).unwrap();
        tumbling.push("a", 1, ());
        assert_eq!(tumbling.min_retained_position(), Some(1));
        tumbling.push("a", 2, ());
        // Tumbling: nothing survives an emitted window.
        assert_eq!(tumbling.min_retained_position(), None);
        assert!(!tumbling.is_empty());
    }

    #[test]
    fn evicted_key_starts_over() {
        let mut op = CountWindows::new(CountWindowSpec::tumbling(2).unwrap()).unwrap();
        op.push("a", 1, 1);
        op.evict("a");
        assert!(op.push("a", 2, 2).is_none());
        assert_eq!(op.push("a", 3, 3).unwrap().values, vec![2, 3]);
    }
}
