//! Event-time windows per key, aggregated incrementally, closed by a watermark with grace, by
//! per-key idleness, and able to emit early (speculative) results.
//!
//! # Window kinds
//!
//! Every window is a half-open interval `[start, end)` of event time in ms with
//! `end = start + size`: a record at exactly `end` belongs to the next window, not this one.
//!
//! * [`Tumbling`](TimeWindowSpec::Tumbling): `[k·size, (k+1)·size)` for every integer `k`
//!   (aligned to the Unix epoch); each record is in exactly one window.
//! * [`Hopping`](TimeWindowSpec::Hopping): `[k·advance, k·advance + size)`; each record is in the
//!   `size / advance` (rounded up or down) windows whose interval contains it.
//! * [`Sliding`](TimeWindowSpec::Sliding): one window per *distinct record timestamp* `t` of a
//!   key, `[t + 1 − size, t + 1)`: the key's records of the last `size` ms up to and including
//!   `t` ("the trailing `size` ms as of this record"). Windows with no record at their last
//!   millisecond do not exist, so the output is one result per distinct timestamp instead of the
//!   `size` windows per record that hopping windows with a 1 ms advance would produce. This is
//!   Kafka Streams' `SlidingWindows` left window, with end exclusive (Kafka's spans `size + 1`
//!   ms inclusive) and without its extra "right" windows. A record that arrives out of order is
//!   also added to its own window, which is back-filled from the records the key still holds, so
//!   sliding windows keep the key's raw values (not just accumulators) while they may be needed.
//!
//! # Closing
//!
//! * **Watermark.** The instance (one per source partition) tracks the largest event time seen;
//!   `watermark = max_event_time − allowed_lateness_ms`. A window closes, and is emitted once with
//!   [`WindowTrigger::Watermark`], as soon as `watermark >= end + grace_ms`. Allowed lateness
//!   holds back the whole partition's clock (expected out-of-orderness); grace extends every
//!   window. Both delay results by their sum.
//! * **Late records.** A record is late when the last window that could ever contain it is
//!   already closed. It is then returned unchanged as [`TimeWindowOutput::Late`] (for a
//!   side output) and counted in [`late_records`](TimeWindows::late_records); it changes no
//!   state. A record some of whose windows are closed (hopping) only joins the open ones.
//! * **Idleness, per key.** [`on_wall_clock`](TimeWindows::on_wall_clock) closes every open window
//!   of a key that has received no record for `idle_timeout_ms` of wall-clock time, with
//!   [`WindowTrigger::Idle`]. Without it the last windows of a partition that goes quiet never
//!   fire, because its watermark stalls. Per key rather than per instance: a quiet partition
//!   makes every key idle anyway, and a host that stops sending gets its last windows out after
//!   `idle_timeout_ms` instead of waiting for the rest of the fleet's event time to pass
//!   `end + grace_ms`. Wall-clock time comes only from `on_wall_clock` calls. After such a
//!   flush the key's event time is considered done up to the end of the last window that could
//!   hold its newest record: records of the key that would only fall in earlier windows are late,
//!   so no window is ever emitted twice.
//! * **Early updates.** With `early_updates_every = Some(n)`, each time a window's record count
//!   reaches a new multiple of `n` its current (partial) aggregate is emitted with
//!   [`WindowTrigger::Early`]; the final result still follows.
//!
//! # Order and determinism
//!
//! Outputs of one call are appended in a fixed order: early updates by window start, then closed
//! windows by end, ties in the order their keys were first seen (a key forgotten after its last
//! window closed counts as new when it returns). Given the same calls with the same arguments,
//! the outputs are identical.
//!
//! # Replay
//!
//! [`min_retained_position`](TimeWindows::min_retained_position) is the smallest position of a
//! record in an open window or held for sliding back-fill, or of the record that set the
//! current maximum event time. Replaying from it into a fresh instance therefore restores the
//! same watermark and the same open windows by the time the replay reaches the point of the
//! restart; outputs produced while replaying older records are the runtime's to suppress. Idle
//! flushes depend on wall-clock calls and are not reproduced by replay.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::Hash;

use serde::{Deserialize, Serialize};

use super::MAX_ABS_TIMESTAMP_MS;
use super::aggregate::Aggregator;
use crate::error::{Error, Result};

/// Largest window size, advance, grace, allowed lateness or idle timeout (2^50 ms, about 35,000
/// years); with timestamps bounded by [`MAX_ABS_TIMESTAMP_MS`] this keeps every sum in `i64`.
pub const MAX_DURATION_MS: u64 = 1 << 50;

/// Largest number of hopping windows one record may belong to (`size_ms / advance_ms`, rounded
/// up): beyond it per-record work and per-key memory explode.
pub const MAX_WINDOWS_PER_RECORD: u64 = 10_000;

/// The shape of a time window. All durations are in ms; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimeWindowSpec {
    /// Disjoint, epoch-aligned windows `[k·size_ms, (k+1)·size_ms)`.
    Tumbling {
        /// Window length, at least 1.
        size_ms: u64,
    },
    /// Overlapping, epoch-aligned windows `[k·advance_ms, k·advance_ms + size_ms)`.
    Hopping {
        /// Window length, at least 1.
        size_ms: u64,
        /// Distance between window starts, `1..=size_ms`, and `size_ms / advance_ms` (rounded
        /// up) at most [`MAX_WINDOWS_PER_RECORD`].
        advance_ms: u64,
    },
    /// One window `[t + 1 − size_ms, t + 1)` per distinct record timestamp `t` of a key.
    Sliding {
        /// Window length, at least 1.
        size_ms: u64,
    },
}

/// Configuration of a [`TimeWindows`] operator, validated by [`TimeWindows::new`].
///
/// ```
/// use anomaly_stream::window::{TimeWindowConfig, TimeWindowSpec};
///
/// let config = TimeWindowConfig {
///     grace_ms: 5_000,
///     idle_timeout_ms: Some(120_000),
///     ..TimeWindowConfig::new(TimeWindowSpec::Tumbling { size_ms: 60_000 })
/// };
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeWindowConfig {
    /// Window kind and size.
    pub spec: TimeWindowSpec,
    /// How long past its end (in watermark time) a window still accepts records.
    pub grace_ms: u64,
    /// How far the watermark trails the largest event time seen.
    pub allowed_lateness_ms: u64,
    /// Wall-clock time without a record after which a key's open windows are flushed by
    /// [`TimeWindows::on_wall_clock`]; `None` never flushes.
    pub idle_timeout_ms: Option<u64>,
    /// Emit a window's partial aggregate each time its count reaches a multiple of this
    /// (at least 1); `None` emits final results only.
    pub early_updates_every: Option<usize>,
}

impl TimeWindowConfig {
    /// `spec` with no grace, no allowed lateness, no idle flush and no early updates.
    pub fn new(spec: TimeWindowSpec) -> Self {
        Self {
            spec,
            grace_ms: 0,
            allowed_lateness_ms: 0,
            idle_timeout_ms: None,
            early_updates_every: None,
        }
    }
}

/// Why a window result was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WindowTrigger {
    /// A speculative partial result; the window is still open and will be emitted again.
    Early,
    /// Final: the watermark passed the window's end plus grace.
    Watermark,
    /// Final: the key went idle (see [`TimeWindows::on_wall_clock`]).
    Idle,
}

/// One window result.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult<K, Acc> {
    /// The key the window belongs to.
    pub key: K,
    /// First millisecond of the window (inclusive).
    pub start_ms: i64,
    /// End of the window (exclusive): `start_ms + size_ms`.
    pub end_ms: i64,
    /// The aggregate of the window's records so far.
    pub aggregate: Acc,
    /// Number of records aggregated.
    pub count: u64,
    /// Why it was emitted.
    pub trigger: WindowTrigger,
}

impl<K, Acc> WindowResult<K, Acc> {
    /// Whether this is the window's one final result (not an early update).
    pub fn is_final(&self) -> bool {
        self.trigger != WindowTrigger::Early
    }
}

/// A record that arrived after every window that could contain it had closed.
#[derive(Debug, Clone, PartialEq)]
pub struct LateRecord<K, V> {
    /// The record's key.
    pub key: K,
    /// Its event timestamp in ms.
    pub timestamp_ms: i64,
    /// Its source position.
    pub position: u64,
    /// The value, handed back untouched.
    pub value: V,
}

/// What a [`TimeWindows`] call produces.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeWindowOutput<K, V, Acc> {
    /// An early or final window result.
    Window(WindowResult<K, Acc>),
    /// A late record, for a side output.
    Late(LateRecord<K, V>),
}

/// The validated window geometry, in `i64` for arithmetic with timestamps.
#[derive(Debug, Clone, Copy)]
enum Geometry {
    /// Tumbling (`advance == size`) or hopping windows.
    Aligned { size: i64, advance: i64 },
    /// Sliding windows.
    Sliding { size: i64 },
}

impl Geometry {
    fn size(self) -> i64 {
        match self {
            Self::Aligned { size, .. } | Self::Sliding { size } => size,
        }
    }

    /// End of the last window that can contain a record at `ts`: once that is closed, the record
    /// is late.
    fn last_end(self, ts: i64) -> i64 {
        match self {
            Self::Aligned { size, advance } => ts.div_euclid(advance) * advance + size,
            Self::Sliding { size } => ts + size,
        }
    }
}

/// The closing rule, copied out of the operator so it can be applied while key state is
/// borrowed mutably.
#[derive(Debug, Clone, Copy)]
struct Closing {
    watermark: Option<i64>,
    grace: i64,
}

impl Closing {
    /// Whether a window of a key ending at `end` is closed, given that key's idle-flush frontier.
    fn is_closed(self, end: i64, flushed_until: Option<i64>) -> bool {
        self.watermark.is_some_and(|wm| end + self.grace <= wm)
            || flushed_until.is_some_and(|f| end <= f)
    }
}

/// An open window's running state.
#[derive(Debug)]
struct OpenWindow<Acc> {
    acc: Acc,
    count: u64,
    /// Smallest source position folded in (back-filled records can be older than later ones).
    first_position: u64,
    /// `count / early_updates_every` at the last early update, so each multiple fires once.
    early_emitted: u64,
}

/// A record held by a sliding-window key for back-filling windows of later-arriving records.
#[derive(Debug)]
struct Held<V> {
    timestamp_ms: i64,
    position: u64,
    value: V,
}

/// Everything the operator holds for one key.
#[derive(Debug)]
struct KeyState<K, V, Acc> {
    key: K,
    /// Open windows by start.
    windows: BTreeMap<i64, OpenWindow<Acc>>,
    /// Sliding windows only: records some open or future window may contain, arrival order.
    held: VecDeque<Held<V>>,
    /// Largest event timestamp accepted for this key.
    max_timestamp_ms: i64,
    /// After an idle flush: windows ending at or before this are closed for this key.
    flushed_until: Option<i64>,
    /// Whether a record arrived since the last wall-clock call.
    active_since_tick: bool,
    /// Wall-clock time of the last call that found the key active.
    last_active_ms: Option<i64>,
}

impl<K, V, Acc> KeyState<K, V, Acc> {
    /// Whether the key holds nothing the operator still needs, so it can be forgotten.
    fn is_drained(&self, closing: Closing) -> bool {
        self.windows.is_empty()
            && self.held.is_empty()
            && self
                .flushed_until
                .is_none_or(|f| closing.is_closed(f, None))
    }
}

/// Keyed event-time windows with incremental aggregation; see the [module docs](self) for the
/// semantics.
///
/// One instance serves one source partition. Keys are cloned into the operator on first sight
/// and into every result. A key's state is dropped as soon as it has no open window and no held
/// record (after an idle flush, a marker lingers until the watermark passes the flushed windows),
/// so departed hosts cost nothing.
///
/// ```
/// use anomaly_stream::window::{
///     Count, TimeWindowConfig, TimeWindowOutput, TimeWindowSpec, TimeWindows,
/// };
///
/// let config = TimeWindowConfig::new(TimeWindowSpec::Tumbling { size_ms: 10 });
/// let mut windows = TimeWindows::new(config, Count)?;
/// let mut out = Vec::new();
/// windows.push("web-1", 3, 0, (), &mut out)?;
/// windows.push("web-1", 7, 1, (), &mut out)?;
/// windows.push("web-1", 10, 2, (), &mut out)?; // next window; the watermark reaches 10
/// let TimeWindowOutput::Window(w) = &out[0] else { unreachable!() };
/// assert_eq!((w.start_ms, w.end_ms, w.aggregate), (0, 10, 2));
/// windows.push("web-1", 9, 3, (), &mut out)?; // [0, 10) is closed
/// assert!(matches!(out[1], TimeWindowOutput::Late(_)));
/// # Ok::<(), anomaly_stream::Error>(())
/// ```
#[derive(Debug)]
pub struct TimeWindows<K, V, A: Aggregator<V>> {
    config: TimeWindowConfig,
    aggregator: A,
    geometry: Geometry,
    grace: i64,
    lateness: i64,
    idle_timeout: Option<i64>,
    early_every: Option<u64>,
    /// Key to its id. Ids are never reused, so a stale deadline can never hit a newer key.
    ids: HashMap<K, u64>,
    /// Key state by id: ordered, so idle flushes iterate deterministically.
    keys: BTreeMap<u64, KeyState<K, V, A::Acc>>,
    next_id: u64,
    /// `(time, key id)`: at watermark `time + grace`, the key's window ending at `time` closes
    /// and, for sliding windows, its records older than `time - size` are dropped.
    deadlines: BTreeSet<(i64, u64)>,
    /// Largest event time seen and the position of the newest record carrying it.
    max_event: Option<(i64, u64)>,
    late_records: u64,
}

/// Converts a configured duration, rejecting values whose sums could overflow.
fn duration(name: &str, ms: u64, min: u64) -> Result<i64> {
    if (min..=MAX_DURATION_MS).contains(&ms) {
        // Lossless: bounded by MAX_DURATION_MS < i64::MAX.
        Ok(ms as i64)
    } else {
        Err(Error::InvalidWindow(format!(
            "{name} must be in {min}..={MAX_DURATION_MS} ms, got {ms}"
        )))
    }
}

impl<K, V, A> TimeWindows<K, V, A>
where
    K: Hash + Eq + Clone,
    A: Aggregator<V>,
{
    /// An operator with no key yet; fails if `config` is invalid.
    pub fn new(config: TimeWindowConfig, aggregator: A) -> Result<Self> {
        let geometry = match config.spec {
            TimeWindowSpec::Tumbling { size_ms } => {
                let size = duration("size_ms", size_ms, 1)?;
                Geometry::Aligned {
                    size,
                    advance: size,
                }
            }
            TimeWindowSpec::Hopping {
                size_ms,
                advance_ms,
            } => {
                let size = duration("size_ms", size_ms, 1)?;
                let advance = duration("advance_ms", advance_ms, 1)?;
                if advance > size {
                    return Err(Error::InvalidWindow(format!(
                        "hopping advance_ms {advance_ms} exceeds size_ms {size_ms}: records \
                         between windows would be dropped"
                    )));
                }
                if size_ms.div_ceil(advance_ms) > MAX_WINDOWS_PER_RECORD {
                    return Err(Error::InvalidWindow(format!(
                        "hopping windows of {size_ms} ms every {advance_ms} ms put each record in \
                         more than {MAX_WINDOWS_PER_RECORD} windows"
                    )));
                }
                Geometry::Aligned { size, advance }
            }
            TimeWindowSpec::Sliding { size_ms } => Geometry::Sliding {
                size: duration("size_ms", size_ms, 1)?,
            },
        };
        let early_every = match config.early_updates_every {
            Some(0) => {
                return Err(Error::InvalidWindow(
                    "early_updates_every must be at least 1".into(),
                ));
            }
            other => other.map(|n| n as u64),
        };
        Ok(Self {
            config,
            aggregator,
            geometry,
            grace: duration("grace_ms", config.grace_ms, 0)?,
            lateness: duration("allowed_lateness_ms", config.allowed_lateness_ms, 0)?,
            idle_timeout: config
                .idle_timeout_ms
                .map(|ms| duration("idle_timeout_ms", ms, 0))
                .transpose()?,
            early_every,
            ids: HashMap::new(),
            keys: BTreeMap::new(),
            next_id: 0,
            deadlines: BTreeSet::new(),
            max_event: None,
            late_records: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TimeWindowConfig {
        &self.config
    }

    /// The current watermark: largest event time seen minus the allowed lateness; `None` before
    /// the first record.
    pub fn watermark_ms(&self) -> Option<i64> {
        self.max_event.map(|(t, _)| t - self.lateness)
    }

    fn closing(&self) -> Closing {
        Closing {
            watermark: self.watermark_ms(),
            grace: self.grace,
        }
    }

    /// Adds one record of `key` with event time `timestamp_ms` at source `position`, appending
    /// to `out` any early updates, the record itself if it is late, and every window (of any
    /// key) that the advanced watermark closes.
    ///
    /// Fails only with [`Error::TimestampOutOfRange`] (beyond ±[`MAX_ABS_TIMESTAMP_MS`]), leaving
    /// the operator unchanged.
    pub fn push<Q>(
        &mut self,
        key: &Q,
        timestamp_ms: i64,
        position: u64,
        value: V,
        out: &mut Vec<TimeWindowOutput<K, V, A::Acc>>,
    ) -> Result<()>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if !(-MAX_ABS_TIMESTAMP_MS..=MAX_ABS_TIMESTAMP_MS).contains(&timestamp_ms) {
            return Err(Error::TimestampOutOfRange { timestamp_ms });
        }
        let closing = self.closing();
        let known = self.ids.get(key).copied();
        let flushed_until = known
            .and_then(|id| self.keys.get(&id))
            .and_then(|state| state.flushed_until);
        if closing.is_closed(self.geometry.last_end(timestamp_ms), flushed_until) {
            self.late_records += 1;
            out.push(TimeWindowOutput::Late(LateRecord {
                key: key.to_owned(),
                timestamp_ms,
                position,
                value,
            }));
            return Ok(());
        }
        let id = match known {
            Some(id) => id,
            None => self.insert_key(key.to_owned(), timestamp_ms),
        };
        self.add(id, timestamp_ms, position, value, closing, out);
        self.advance(timestamp_ms, position, out);
        Ok(())
    }

    /// Starts tracking a new key; returns its id.
    fn insert_key(&mut self, key: K, timestamp_ms: i64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.ids.insert(key.clone(), id);
        self.keys.insert(
            id,
            KeyState {
                key,
                windows: BTreeMap::new(),
                held: VecDeque::new(),
                max_timestamp_ms: timestamp_ms,
                flushed_until: None,
                active_since_tick: true,
                last_active_ms: None,
            },
        );
        id
    }

    /// Folds a non-late record into the key's open windows, creating missing ones.
    fn add(
        &mut self,
        id: u64,
        ts: i64,
        position: u64,
        value: V,
        closing: Closing,
        out: &mut Vec<TimeWindowOutput<K, V, A::Acc>>,
    ) {
        let Some(state) = self.keys.get_mut(&id) else {
            return;
        };
        state.active_since_tick = true;
        state.max_timestamp_ms = state.max_timestamp_ms.max(ts);
        let (aggregator, deadlines, early_every) =
            (&self.aggregator, &mut self.deadlines, self.early_every);
        let new_window = |first_position| OpenWindow {
            acc: aggregator.init(),
            count: 0,
            first_position,
            early_emitted: 0,
        };
        match self.geometry {
            Geometry::Aligned { size, advance } => {
                // Starts are multiples of `advance` in (ts - size, ts].
                let mut start = (ts - size).div_euclid(advance) * advance + advance;
                while start <= ts {
                    let end = start + size;
                    if !closing.is_closed(end, state.flushed_until) {
                        let window = state.windows.entry(start).or_insert_with(|| {
                            deadlines.insert((end, id));
                            new_window(position)
                        });
                        fold(aggregator, window, &value, position);
                        early_update(early_every, &state.key, start, end, window, out);
                    }
                    start += advance;
                }
            }
            Geometry::Sliding { size } => {
                let own_start = ts + 1 - size;
                if !closing.is_closed(ts + 1, state.flushed_until)
                    && !state.windows.contains_key(&own_start)
                {
                    // A new distinct timestamp: its window starts with the held records it covers.
                    let mut window = new_window(position);
                    for held in &state.held {
                        if (own_start..=ts).contains(&held.timestamp_ms) {
                            fold(aggregator, &mut window, &held.value, held.position);
                        }
                    }
                    state.windows.insert(own_start, window);
                    deadlines.insert((ts + 1, id));
                }
                for (&start, window) in state.windows.range_mut(own_start..=ts) {
                    fold(aggregator, window, &value, position);
                    early_update(early_every, &state.key, start, start + size, window, out);
                }
                state.held.push_back(Held {
                    timestamp_ms: ts,
                    position,
                    value,
                });
                deadlines.insert((ts + size, id));
            }
        }
    }

    /// Raises the maximum event time to `ts` if above it, then closes every window the new
    /// watermark passes.
    fn advance(&mut self, ts: i64, position: u64, out: &mut Vec<TimeWindowOutput<K, V, A::Acc>>) {
        let raised = match self.max_event {
            Some((max, _)) if ts < max => return,
            Some((max, _)) => ts > max,
            None => true,
        };
        // On a tie, remember the newer record: replaying from it restores the same watermark.
        self.max_event = Some((ts, position));
        if !raised {
            return;
        }
        let closing = self.closing();
        while let Some(&(time, id)) = self.deadlines.first() {
            if !closing.is_closed(time, None) {
                break;
            }
            self.deadlines.pop_first();
            self.expire(time, id, closing, out);
        }
    }

    /// Handles the due deadline `time` of key `id`: emits its window ending at `time`, drops held
    /// records no window can need any more, and forgets the key once it holds nothing.
    fn expire(
        &mut self,
        time: i64,
        id: u64,
        closing: Closing,
        out: &mut Vec<TimeWindowOutput<K, V, A::Acc>>,
    ) {
        let Some(state) = self.keys.get_mut(&id) else {
            return;
        };
        let size = self.geometry.size();
        let start = time - size;
        if let Some(window) = state.windows.remove(&start) {
            out.push(result(
                &state.key,
                start,
                start + size,
                window,
                WindowTrigger::Watermark,
            ));
        }
        state
            .held
            .retain(|h| !closing.is_closed(h.timestamp_ms + size, None));
        if state.is_drained(closing) {
            self.forget(id);
        }
    }

    fn forget(&mut self, id: u64) {
        if let Some(state) = self.keys.remove(&id) {
            self.ids.remove(&state.key);
        }
    }

    /// Tells the operator the wall-clock time and flushes idle keys into `out`.
    ///
    /// A key is idle once two calls at least `idle_timeout_ms` apart found no record of it in
    /// between; each call marks keys that received records since the previous call as active
    /// at `now_ms`. So a key is flushed after between `idle_timeout_ms` and `idle_timeout_ms` plus
    /// one call interval without records, never earlier. Flushed windows are emitted in key
    /// key order (as for watermark closes), then by start, with [`WindowTrigger::Idle`]. Does
    /// nothing without an
    /// `idle_timeout_ms`.
    pub fn on_wall_clock(&mut self, now_ms: i64, out: &mut Vec<TimeWindowOutput<K, V, A::Acc>>) {
        let Some(timeout) = self.idle_timeout else {
            return;
        };
        let size = self.geometry.size();
        for (&id, state) in &mut self.keys {
            let last_active = match state.last_active_ms {
                Some(t) if !state.active_since_tick => t,
                _ => {
                    state.active_since_tick = false;
                    state.last_active_ms = Some(now_ms);
                    continue;
                }
            };
            if now_ms.saturating_sub(last_active) < timeout
                || (state.windows.is_empty() && state.held.is_empty())
            {
                continue;
            }
            for (start, window) in std::mem::take(&mut state.windows) {
                out.push(result(
                    &state.key,
                    start,
                    start + size,
                    window,
                    WindowTrigger::Idle,
                ));
            }
            state.held.clear();
            // Every window that could hold a record seen so far is now closed for this key.
            let frontier = self.geometry.last_end(state.max_timestamp_ms);
            state.flushed_until = Some(state.flushed_until.map_or(frontier, |f| f.max(frontier)));
            // Forget the key once the watermark makes the frontier redundant.
            self.deadlines.insert((frontier, id));
        }
    }

    /// Number of records returned as late so far.
    pub fn late_records(&self) -> u64 {
        self.late_records
    }

    /// Number of keys with state (open windows, held records, or a recent idle flush).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key has state.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Number of open windows over all keys. `O(keys)`.
    pub fn open_windows(&self) -> usize {
        self.keys.values().map(|s| s.windows.len()).sum()
    }

    /// The smallest source position replay must start from to rebuild this state: that of the
    /// oldest record in an open window or held for sliding windows, or of the record that set
    /// the maximum event time (so the watermark is restored too). `None` before the first
    /// accepted record. `O(open windows + held records)`: meant for commit time.
    pub fn min_retained_position(&self) -> Option<u64> {
        let in_keys = self.keys.values().flat_map(|state| {
            let windows = state.windows.values().map(|w| w.first_position);
            windows.chain(state.held.iter().map(|h| h.position))
        });
        in_keys.chain(self.max_event.map(|(_, p)| p)).min()
    }
}

/// Folds one value into a window.
fn fold<V, A: Aggregator<V>>(
    aggregator: &A,
    window: &mut OpenWindow<A::Acc>,
    value: &V,
    position: u64,
) {
    aggregator.add(&mut window.acc, value);
    window.count += 1;
    window.first_position = window.first_position.min(position);
}

/// Emits an early update if the window's count just reached a new multiple of `every`.
fn early_update<K: Clone, V, Acc: Clone>(
    every: Option<u64>,
    key: &K,
    start: i64,
    end: i64,
    window: &mut OpenWindow<Acc>,
    out: &mut Vec<TimeWindowOutput<K, V, Acc>>,
) {
    let Some(every) = every else {
        return;
    };
    let reached = window.count / every;
    if reached > window.early_emitted {
        window.early_emitted = reached;
        out.push(TimeWindowOutput::Window(WindowResult {
            key: key.clone(),
            start_ms: start,
            end_ms: end,
            aggregate: window.acc.clone(),
            count: window.count,
            trigger: WindowTrigger::Early,
        }));
    }
}

/// A closed window's final result.
fn result<K: Clone, V, Acc>(
    key: &K,
    start: i64,
    end: i64,
    window: OpenWindow<Acc>,
    trigger: WindowTrigger,
) -> TimeWindowOutput<K, V, Acc> {
    TimeWindowOutput::Window(WindowResult {
        key: key.clone(),
        start_ms: start,
        end_ms: end,
        aggregate: window.acc,
        count: window.count,
        trigger,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects the values (by convention, each record's position) in fold order.
    struct Collect;

    impl Aggregator<u64> for Collect {
        type Acc = Vec<u64>;

        fn init(&self) -> Vec<u64> {
            Vec::new()
        }

        fn add(&self, acc: &mut Vec<u64>, value: &u64) {
            acc.push(*value);
        }
    }

    type Output = TimeWindowOutput<String, u64, Vec<u64>>;

    fn show(output: &Output) -> String {
        match output {
            TimeWindowOutput::Window(w) => {
                assert_eq!(w.count as usize, w.aggregate.len());
                assert_eq!(w.end_ms - w.start_ms, size_of_spec(w));
                format!(
                    "{} [{},{}) {:?} {:?}",
                    w.key, w.start_ms, w.end_ms, w.aggregate, w.trigger
                )
            }
            TimeWindowOutput::Late(l) => {
                assert_eq!(l.value, l.position);
                format!("late {} @{} #{}", l.key, l.timestamp_ms, l.position)
            }
        }
    }

    /// Window results do not carry the spec; the tests' windows are all checked against the size
    /// recorded here, set by `Harness::new`.
    fn size_of_spec(_: &WindowResult<String, Vec<u64>>) -> i64 {
        SIZE.with(|s| s.get())
    }

    thread_local! {
        static SIZE: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
    }

    struct Harness {
        op: TimeWindows<String, u64, Collect>,
    }

    impl Harness {
        fn new(config: TimeWindowConfig) -> Self {
            let size = match config.spec {
                TimeWindowSpec::Tumbling { size_ms }
                | TimeWindowSpec::Hopping { size_ms, .. }
                | TimeWindowSpec::Sliding { size_ms } => size_ms as i64,
            };
            SIZE.with(|s| s.set(size));
            Self {
                op: TimeWindows::new(config, Collect).unwrap(),
            }
        }

        /// Pushes a record whose value is its position; returns the outputs of the call.
        fn push(&mut self, key: &str, ts: i64, position: u64) -> Vec<String> {
            let mut out = Vec::new();
            self.op.push(key, ts, position, position, &mut out).unwrap();
            out.iter().map(show).collect()
        }

        fn tick(&mut self, now_ms: i64) -> Vec<String> {
            let mut out = Vec::new();
            self.op.on_wall_clock(now_ms, &mut out);
            out.iter().map(show).collect()
        }
    }

    fn tumbling(size_ms: u64) -> TimeWindowConfig {
        TimeWindowConfig::new(TimeWindowSpec::Tumbling { size_ms })
    }

    fn hopping(size_ms: u64, advance_ms: u64) -> TimeWindowConfig {
        TimeWindowConfig::new(TimeWindowSpec::Hopping {
            size_ms,
            advance_ms,
        })
    }

    fn sliding(size_ms: u64) -> TimeWindowConfig {
        TimeWindowConfig::new(TimeWindowSpec::Sliding { size_ms })
    }

    const NONE: [&str; 0] = [];

    #[test]
    fn config_validation() {
        let bad = [
            tumbling(0),
            sliding(0),
            hopping(10, 0),
            hopping(10, 11),
            hopping(100_000, 1),
            tumbling(MAX_DURATION_MS + 1),
            TimeWindowConfig {
                grace_ms: MAX_DURATION_MS + 1,
                ..tumbling(10)
            },
            TimeWindowConfig {
                allowed_lateness_ms: u64::MAX,
                ..tumbling(10)
            },
            TimeWindowConfig {
                idle_timeout_ms: Some(u64::MAX),
                ..tumbling(10)
            },
            TimeWindowConfig {
                early_updates_every: Some(0),
                ..tumbling(10)
            },
        ];
        for config in bad {
            assert!(
                matches!(
                    TimeWindows::<String, u64, _>::new(config, Collect),
                    Err(Error::InvalidWindow(_))
                ),
                "{config:?}"
            );
        }
        let good = [
            tumbling(1),
            hopping(10, 10),
            hopping(10_000, 1),
            sliding(MAX_DURATION_MS),
            TimeWindowConfig {
                idle_timeout_ms: Some(0),
                early_updates_every: Some(1),
                ..tumbling(10)
            },
        ];
        for config in good {
            let op = TimeWindows::<String, u64, _>::new(config, Collect).unwrap();
            assert_eq!(op.config(), &config);
        }
    }

    #[test]
    fn timestamps_out_of_range_are_rejected_without_state_change() {
        let mut h = Harness::new(sliding(MAX_DURATION_MS));
        let mut out = Vec::new();
        for ts in [
            i64::MIN,
            -MAX_ABS_TIMESTAMP_MS - 1,
            MAX_ABS_TIMESTAMP_MS + 1,
            i64::MAX,
        ] {
            assert!(matches!(
                h.op.push("a", ts, 0, 0, &mut out),
                Err(Error::TimestampOutOfRange { timestamp_ms }) if timestamp_ms == ts
            ));
        }
        assert!(out.is_empty() && h.op.is_empty() && h.op.watermark_ms().is_none());
        // The extremes themselves work, for every kind of window.
        for config in [
            tumbling(MAX_DURATION_MS),
            hopping(MAX_DURATION_MS, 1 << 41),
            sliding(7),
        ] {
            let mut h = Harness::new(config);
            assert_eq!(h.push("a", -MAX_ABS_TIMESTAMP_MS, 0), NONE);
            let closed = h.push("a", MAX_ABS_TIMESTAMP_MS, 1);
            assert!(!closed.is_empty());
            assert_eq!(
                h.push("a", -MAX_ABS_TIMESTAMP_MS, 2),
                ["late a @-1152921504606846976 #2"]
            );
        }
    }

    #[test]
    fn tumbling_boundaries_end_is_exclusive() {
        let mut h = Harness::new(tumbling(10));
        assert_eq!(h.push("a", 0, 0), NONE);
        assert_eq!(h.push("a", 9, 1), NONE);
        // 10 is the end of [0,10): it opens [10,20), and the watermark (10) closes [0,10).
        assert_eq!(h.push("a", 10, 2), ["a [0,10) [0, 1] Watermark"]);
        assert_eq!(h.push("a", 19, 3), NONE);
        assert_eq!(h.push("a", 20, 4), ["a [10,20) [2, 3] Watermark"]);
        assert_eq!(h.op.open_windows(), 1);

        // Negative event times use floor division: -1 is in [-10,0), not [0,10).
        let mut h = Harness::new(tumbling(10));
        assert_eq!(h.push("b", -1, 0), NONE);
        assert_eq!(h.push("b", -10, 1), NONE);
        assert_eq!(h.push("b", 0, 2), ["b [-10,0) [0, 1] Watermark"]);
    }

    #[test]
    fn windows_of_all_keys_close_in_end_then_first_seen_order() {
        let mut h = Harness::new(TimeWindowConfig {
            grace_ms: 100,
            ..tumbling(10)
        });
        h.push("z", 5, 0);
        h.push("a", 15, 1);
        h.push("z", 12, 2);
        h.push("m", 3, 3);
        assert_eq!(
            h.push("q", 200, 4),
            [
                "z [0,10) [0] Watermark",
                "m [0,10) [3] Watermark",
                "z [10,20) [2] Watermark",
                "a [10,20) [1] Watermark",
            ]
        );
        assert_eq!(h.op.len(), 1);
    }

    #[test]
    fn hopping_membership() {
        // Grace keeps [-5,5) open while the watermark is at 7.
        let mut h = Harness::new(TimeWindowConfig {
            grace_ms: 10,
            ..hopping(10, 5)
        });
        h.push("a", 7, 0); // [0,10) [5,15)
        h.push("a", 4, 1); // [-5,5) [0,10)
        h.push("a", 5, 2); // [0,10) [5,15)
        assert_eq!(h.op.open_windows(), 3);
        assert_eq!(
            h.push("a", 100, 3),
            [
                "a [-5,5) [1] Watermark",
                "a [0,10) [0, 1, 2] Watermark",
                "a [5,15) [0, 2] Watermark"
            ]
        );

        // An advance that does not divide the size: 3 or 4 windows per record.
        let mut h = Harness::new(hopping(10, 3));
        h.push("a", 7, 0); // starts 0, 3, 6
        assert_eq!(h.op.open_windows(), 3);
        h.push("b", 9, 1); // starts 0, 3, 6, 9
        assert_eq!(h.op.open_windows(), 7);
        assert_eq!(
            h.push("c", 13, 2),
            [
                "a [0,10) [0] Watermark",
                "b [0,10) [1] Watermark",
                "a [3,13) [0] Watermark",
                "b [3,13) [1] Watermark",
            ]
        );
    }

    #[test]
    fn hopping_record_joins_only_its_open_windows() {
        let mut h = Harness::new(hopping(10, 5));
        h.push("a", 20, 0); // [15,25) [20,30); watermark 20
        // 14 is in [5,15) and [10,20), both closed: late.
        assert_eq!(h.push("a", 14, 1), ["late a @14 #1"]);
        // 16 is in [10,20) (closed) and [15,25) (open).
        assert_eq!(h.push("a", 16, 2), NONE);
        assert_eq!(h.op.open_windows(), 2);
        assert_eq!(
            h.push("a", 100, 3),
            ["a [15,25) [0, 2] Watermark", "a [20,30) [0] Watermark"]
        );
        assert_eq!(h.op.late_records(), 1);
    }

    #[test]
    fn grace_accepts_until_end_plus_grace() {
        let mut h = Harness::new(TimeWindowConfig {
            grace_ms: 5,
            ..tumbling(10)
        });
        h.push("a", 0, 0);
        assert_eq!(h.push("a", 12, 1), NONE); // watermark 12 < 10 + 5
        assert_eq!(h.push("a", 9, 2), NONE); // accepted within grace
        assert_eq!(h.push("a", 14, 3), NONE);
        assert_eq!(h.push("a", 15, 4), ["a [0,10) [0, 2] Watermark"]);
        assert_eq!(h.push("a", 8, 5), ["late a @8 #5"]);
        assert_eq!(h.push("a", 10, 6), NONE); // [10,20) is still open
        assert_eq!(h.push("a", 25, 7), ["a [10,20) [1, 3, 4, 6] Watermark"]);
        assert_eq!(h.op.late_records(), 1);
    }

    #[test]
    fn allowed_lateness_holds_the_watermark_back() {
        let mut h = Harness::new(TimeWindowConfig {
            allowed_lateness_ms: 3,
            ..tumbling(10)
        });
        h.push("a", 0, 0);
        assert_eq!(h.push("a", 12, 1), NONE);
        assert_eq!(h.op.watermark_ms(), Some(9));
        assert_eq!(h.push("b", 5, 2), NONE);
        assert_eq!(
            h.push("a", 13, 3),
            ["a [0,10) [0] Watermark", "b [0,10) [2] Watermark"]
        );
        assert_eq!(h.op.watermark_ms(), Some(10));
        assert_eq!(h.push("a", 9, 4), ["late a @9 #4"]);
        // An older record does not move the watermark back.
        assert_eq!(h.push("a", 11, 5), NONE);
        assert_eq!(h.op.watermark_ms(), Some(10));
    }

    #[test]
    fn late_records_are_returned_counted_and_change_nothing() {
        let mut h = Harness::new(TimeWindowConfig {
            grace_ms: 2,
            ..tumbling(10)
        });
        h.push("a", 30, 0);
        h.push("a", 25, 1);
        let (open, retained, keys) = (
            h.op.open_windows(),
            h.op.min_retained_position(),
            h.op.len(),
        );
        let mut out = Vec::new();
        h.op.push("new-host", 17, 2, 42, &mut out).unwrap();
        assert_eq!(
            out,
            [TimeWindowOutput::Late(LateRecord {
                key: "new-host".to_string(),
                timestamp_ms: 17,
                position: 2,
                value: 42,
            })]
        );
        assert_eq!(h.push("a", 0, 3), ["late a @0 #3"]);
        assert_eq!(h.op.late_records(), 2);
        assert_eq!(
            (
                h.op.open_windows(),
                h.op.min_retained_position(),
                h.op.len()
            ),
            (open, retained, keys)
        );
    }

    #[test]
    fn early_updates_then_final() {
        let mut h = Harness::new(TimeWindowConfig {
            early_updates_every: Some(2),
            ..tumbling(10)
        });
        assert_eq!(h.push("a", 0, 0), NONE);
        assert_eq!(h.push("a", 1, 1), ["a [0,10) [0, 1] Early"]);
        assert_eq!(h.push("a", 2, 2), NONE);
        assert_eq!(h.push("b", 2, 3), NONE);
        assert_eq!(h.push("a", 3, 4), ["a [0,10) [0, 1, 2, 4] Early"]);
        assert_eq!(
            h.push("a", 10, 5),
            ["a [0,10) [0, 1, 2, 4] Watermark", "b [0,10) [3] Watermark"]
        );

        // Hopping: each window counts its own records.
        let mut h = Harness::new(TimeWindowConfig {
            early_updates_every: Some(1),
            ..hopping(10, 5)
        });
        assert_eq!(
            h.push("a", 7, 0),
            ["a [0,10) [0] Early", "a [5,15) [0] Early"]
        );
        let mut out = Vec::new();
        h.op.push("a", 8, 1, 1, &mut out).unwrap();
        let TimeWindowOutput::Window(w) = &out[0] else {
            panic!("expected a window")
        };
        assert!(!w.is_final());
        assert_eq!(w.count, 2);
    }

    #[test]
    fn idle_keys_are_flushed_by_wall_clock() {
        // A long grace keeps the watermark from closing anything before the end.
        let mut h = Harness::new(TimeWindowConfig {
            idle_timeout_ms: Some(1_000),
            grace_ms: 100,
            ..tumbling(10)
        });
        h.push("a", 0, 0);
        h.push("b", 5, 1);
        assert_eq!(h.tick(10_000), NONE); // both active since the previous call
        assert_eq!(h.tick(10_500), NONE);
        h.push("a", 7, 2);
        // b has been silent from 10_000 to 11_000; a was active.
        assert_eq!(h.tick(11_000), ["b [0,10) [1] Idle"]);
        // b's flushed window does not reopen; b's later windows work as usual.
        assert_eq!(h.push("b", 8, 3), ["late b @8 #3"]);
        assert_eq!(h.push("b", 12, 4), NONE);
        assert_eq!(h.tick(11_999), NONE);
        assert_eq!(h.tick(12_000), ["a [0,10) [0, 2] Idle"]);
        // The watermark closes b's [10,20) and drops the tombstones of flushed keys.
        assert_eq!(h.push("c", 200, 5), ["b [10,20) [4] Watermark"]);
        assert_eq!(h.op.len(), 1);
        assert_eq!(h.op.late_records(), 1);
    }

    #[test]
    fn idle_flush_needs_a_timeout_and_open_windows() {
        let mut h = Harness::new(tumbling(10));
        h.push("a", 0, 0);
        assert_eq!(h.tick(0), NONE);
        assert_eq!(h.tick(i64::MAX), NONE);

        let mut h = Harness::new(TimeWindowConfig {
            idle_timeout_ms: Some(0),
            ..sliding(10)
        });
        h.push("a", 0, 0);
        assert_eq!(h.tick(5), NONE);
        assert_eq!(h.tick(5), ["a [-9,1) [0] Idle"]);
        assert_eq!(h.tick(6), NONE); // only the tombstone is left
        // A clock that goes backwards does not flush.
        h.push("b", 50, 1);
        assert_eq!(h.tick(100), NONE);
        assert_eq!(h.tick(-100), NONE);
    }

    #[test]
    fn min_retained_position_advances_as_windows_close() {
        let mut h = Harness::new(tumbling(10));
        assert_eq!(h.op.min_retained_position(), None);
        h.push("a", 0, 0);
        h.push("b", 5, 1);
        assert_eq!(h.op.min_retained_position(), Some(0));
        h.push("a", 12, 2);
        assert_eq!(h.op.min_retained_position(), Some(2));
        h.push("b", 11, 3);
        h.push("a", 25, 4);
        assert_eq!(h.op.min_retained_position(), Some(4));

        // The record that set the watermark is retained even once its window is gone, so that
        // replay restores the watermark.
        let mut h = Harness::new(TimeWindowConfig {
            idle_timeout_ms: Some(0),
            allowed_lateness_ms: 10,
            ..tumbling(10)
        });
        h.push("a", 100, 0);
        h.tick(0);
        assert_eq!(h.tick(0), ["a [100,110) [0] Idle"]);
        assert_eq!(h.push("b", 95, 1), NONE); // watermark 90: [90,100) is open
        assert_eq!(h.op.min_retained_position(), Some(0));
        // A later record at the same maximum event time takes over.
        h.push("b", 100, 2);
        assert_eq!(h.op.min_retained_position(), Some(1));
    }

    #[test]
    fn sliding_windows_end_at_each_distinct_timestamp() {
        let mut h = Harness::new(sliding(10));
        assert_eq!(h.push("a", 5, 0), NONE); // window [-4,6)
        // [3,13) is back-filled with the record at 5; the watermark (12) closes [-4,6).
        assert_eq!(h.push("a", 12, 1), ["a [-4,6) [0] Watermark"]);
        // Out of order: its own window [-1,9) is already closed, but it joins [3,13).
        assert_eq!(h.push("a", 8, 2), NONE);
        // Same timestamp as an existing window: no new window.
        assert_eq!(h.push("a", 12, 3), NONE);
        assert_eq!(h.op.open_windows(), 1);
        assert_eq!(h.push("a", 30, 4), ["a [3,13) [0, 1, 2, 3] Watermark"]);
        // Held records no window can use any more are dropped.
        assert_eq!(h.op.min_retained_position(), Some(4));

        // A record exactly `size` ms earlier is outside the window (end exclusive).
        let mut h = Harness::new(sliding(10));
        h.push("a", 0, 0);
        assert_eq!(h.push("a", 10, 1), ["a [-9,1) [0] Watermark"]);
        assert_eq!(h.push("a", 100, 2), ["a [1,11) [1] Watermark"]);
    }

    #[test]
    fn sliding_back_fills_out_of_order_records_with_grace() {
        let mut h = Harness::new(TimeWindowConfig {
            grace_ms: 20,
            early_updates_every: Some(3),
            ..sliding(10)
        });
        h.push("a", 10, 0); // [1,11)
        h.push("a", 14, 1); // [5,15) back-filled with 10
        // 12 arrives late but within grace: its own window [3,13) holds 10 and 12, and it joins
        // [5,15), whose count reaches 3.
        assert_eq!(h.push("a", 12, 2), ["a [5,15) [0, 1, 2] Early"]);
        // 3 opens [-6,4) and joins [1,11) and [3,13), whose count reaches 3.
        assert_eq!(h.push("a", 3, 3), ["a [3,13) [0, 2, 3] Early"]);
        assert_eq!(
            h.push("a", 40, 4),
            [
                "a [-6,4) [3] Watermark",
                "a [1,11) [0, 3] Watermark",
                "a [3,13) [0, 2, 3] Watermark",
                "a [5,15) [0, 1, 2] Watermark",
            ]
        );
        // 10's last window [10,20) closed at watermark 20 + grace 20; 11's is still open.
        assert_eq!(h.push("a", 10, 5), ["late a @10 #5"]);
        assert_eq!(h.push("a", 11, 6), NONE);
    }

    /// splitmix64: a tiny seeded PRNG, so the property tests need no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A random out-of-order stream: `(key, timestamp, position)`.
    fn random_stream(seed: u64, len: u64, keys: u64) -> Vec<(String, i64, u64)> {
        let mut rng = Rng(seed);
        let mut base = rng.below(100) as i64 - 50;
        (0..len)
            .map(|position| {
                base += rng.below(4) as i64;
                let jitter = if rng.below(4) == 0 { rng.below(30) } else { 0 } as i64;
                (format!("k{}", rng.below(keys)), base - jitter, position)
            })
            .collect()
    }

    /// Sorts one call's outputs so they compare independently of key ids.
    fn sorted(mut outputs: Vec<String>) -> Vec<String> {
        outputs.sort();
        outputs
    }

    /// Brute force tumbling/hopping semantics straight from the definitions.
    struct HoppingReference {
        size: i64,
        advance: i64,
        grace: i64,
        lateness: i64,
        max: Option<(i64, u64)>,
        /// `(end, key, start)` to positions.
        open: BTreeMap<(i64, String, i64), Vec<u64>>,
    }

    impl HoppingReference {
        fn closed(&self, end: i64) -> bool {
            self.max
                .is_some_and(|(m, _)| end + self.grace <= m - self.lateness)
        }

        fn push(&mut self, key: &str, ts: i64, position: u64) -> Vec<String> {
            let starts: Vec<i64> = (-1000..=1000)
                .map(|k| ts.div_euclid(self.advance) * self.advance + k * self.advance)
                .filter(|&s| s <= ts && ts < s + self.size)
                .collect();
            if starts.iter().all(|&s| self.closed(s + self.size)) {
                return vec![format!("late {key} @{ts} #{position}")];
            }
            for s in starts {
                if !self.closed(s + self.size) {
                    self.open
                        .entry((s + self.size, key.to_string(), s))
                        .or_default()
                        .push(position);
                }
            }
            if self.max.is_none_or(|(m, _)| ts >= m) {
                self.max = Some((ts, position));
            }
            let due: Vec<_> = self
                .open
                .keys()
                .filter(|(end, _, _)| self.closed(*end))
                .cloned()
                .collect();
            due.into_iter()
                .map(|k| {
                    let values = self.open.remove(&k).unwrap_or_default();
                    format!("{} [{},{}) {:?} Watermark", k.1, k.2, k.0, values)
                })
                .collect()
        }

        fn min_retained_position(&self) -> Option<u64> {
            let open = self.open.values().flatten().copied();
            open.chain(self.max.map(|(_, p)| p)).min()
        }
    }

    #[test]
    fn hopping_matches_brute_force() {
        let configs = [
            (10, 5, 0, 0),
            (10, 3, 2, 4),
            (7, 7, 0, 3),
            (12, 4, 5, 0),
            (1, 1, 0, 0),
        ];
        for (i, &(size, advance, grace, lateness)) in configs.iter().enumerate() {
            for seed in 0..8u64 {
                let mut h = Harness::new(TimeWindowConfig {
                    grace_ms: grace,
                    allowed_lateness_ms: lateness,
                    ..hopping(size, advance)
                });
                let mut reference = HoppingReference {
                    size: size as i64,
                    advance: advance as i64,
                    grace: grace as i64,
                    lateness: lateness as i64,
                    max: None,
                    open: BTreeMap::new(),
                };
                let mut emitted = 0;
                for (key, ts, position) in random_stream(seed * 31 + i as u64, 400, 6) {
                    let got = sorted(h.push(&key, ts, position));
                    let want = sorted(reference.push(&key, ts, position));
                    assert_eq!(got, want, "config {i} seed {seed} at position {position}");
                    assert_eq!(
                        h.op.min_retained_position(),
                        reference.min_retained_position()
                    );
                    emitted += got.len();
                }
                assert!(emitted > 100, "the stream should exercise closing");
            }
        }
    }

    /// Brute force sliding semantics: keep every accepted record; a window per distinct timestamp
    /// whose window was open when the timestamp first arrived.
    struct SlidingReference {
        size: i64,
        grace: i64,
        max: Option<(i64, u64)>,
        accepted: Vec<(String, i64, u64)>,
        /// `(end, key)` of open windows.
        open: BTreeSet<(i64, String)>,
    }

    impl SlidingReference {
        fn closed(&self, end: i64) -> bool {
            self.max.is_some_and(|(m, _)| end + self.grace <= m)
        }

        fn members(&self, key: &str, end: i64) -> Vec<u64> {
            self.accepted
                .iter()
                .filter(|(k, t, _)| k == key && end - self.size <= *t && *t < end)
                .map(|(_, _, p)| *p)
                .collect()
        }

        fn push(&mut self, key: &str, ts: i64, position: u64) -> Vec<String> {
            if self.closed(ts + self.size) {
                return vec![format!("late {key} @{ts} #{position}")];
            }
            self.accepted.push((key.to_string(), ts, position));
            if !self.closed(ts + 1) {
                self.open.insert((ts + 1, key.to_string()));
            }
            if self.max.is_none_or(|(m, _)| ts >= m) {
                self.max = Some((ts, position));
            }
            let due: Vec<_> = self
                .open
                .iter()
                .filter(|(end, _)| self.closed(*end))
                .cloned()
                .collect();
            due.into_iter()
                .map(|(end, key)| {
                    self.open.remove(&(end, key.clone()));
                    let values = self.members(&key, end);
                    format!("{key} [{},{end}) {values:?} Watermark", end - self.size)
                })
                .collect()
        }

        fn min_retained_position(&self) -> Option<u64> {
            let in_windows = self
                .open
                .iter()
                .flat_map(|(end, key)| self.members(key, *end));
            let held = self
                .accepted
                .iter()
                .filter(|(_, t, _)| !self.closed(t + self.size))
                .map(|(_, _, p)| *p);
            in_windows.chain(held).chain(self.max.map(|(_, p)| p)).min()
        }
    }

    #[test]
    fn sliding_matches_brute_force() {
        for (i, &(size, grace)) in [(10u64, 0u64), (5, 3), (1, 0), (25, 10)].iter().enumerate() {
            for seed in 0..8u64 {
                let mut h = Harness::new(TimeWindowConfig {
                    grace_ms: grace,
                    ..sliding(size)
                });
                let mut reference = SlidingReference {
                    size: size as i64,
                    grace: grace as i64,
                    max: None,
                    accepted: Vec::new(),
                    open: BTreeSet::new(),
                };
                for (key, ts, position) in random_stream(1_000 + seed * 17 + i as u64, 300, 4) {
                    let got = sorted(h.push(&key, ts, position));
                    let want = sorted(reference.push(&key, ts, position));
                    assert_eq!(got, want, "config {i} seed {seed} at position {position}");
                    assert_eq!(
                        h.op.min_retained_position(),
                        reference.min_retained_position()
                    );
                }
            }
        }
    }

    #[test]
    fn same_calls_same_outputs() {
        let configs = [
            TimeWindowConfig {
                grace_ms: 3,
                allowed_lateness_ms: 2,
                idle_timeout_ms: Some(50),
                early_updates_every: Some(2),
                ..hopping(40, 8)
            },
            TimeWindowConfig {
                grace_ms: 3,
                idle_timeout_ms: Some(50),
                early_updates_every: Some(3),
                ..sliding(30)
            },
        ];
        for config in configs {
            let run = || {
                let mut op = TimeWindows::new(config, Collect).unwrap();
                let mut out = Vec::new();
                for (i, (key, ts, position)) in random_stream(7, 500, 20).into_iter().enumerate() {
                    op.push(key.as_str(), ts, position, position, &mut out)
                        .unwrap();
                    if i % 5 == 0 {
                        op.on_wall_clock(i as i64 * 10, &mut out);
                    }
                }
                format!(
                    "{out:?} {:?} {}",
                    op.min_retained_position(),
                    op.late_records()
                )
            };
            let first = run();
            assert!(first.contains("Early"), "early");
            assert!(first.contains("Idle"), "idle");
            assert!(first.contains("Late"), "late");
            assert_eq!(first, run());
        }
    }
}
