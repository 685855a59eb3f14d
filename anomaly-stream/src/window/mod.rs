//! Window operators: pure, synchronous state machines fed one record at a time.
//!
//! * [`RowWindows`]: the last `W` rows of `D` `f32` per key, every `step` rows, lent out as one
//!   contiguous `&[f32]` of `W·D` values without allocating (the detector's hot path);
//!   [`IndexedRowWindows`] is the same keyed by the caller's dense ids, without a hash lookup.
//! * [`CountWindows`]: the last `size` values of any cloneable type per key, every `step` values,
//!   as an owned [`CountWindow`].
//! * [`TimeWindows`]: tumbling, hopping or sliding event-time windows per key, folded by an
//!   [`Aggregator`], emitting early and final [`WindowResult`]s and late records
//!   ([`TimeWindowOutput`]).
//!
//! # Contract with the runtime
//!
//! Operators know nothing about Kafka, tasks or clocks: every input, including wall-clock time,
//! is an argument, so outputs depend only on the sequence of calls and are reproducible.
//!
//! * **One instance per source partition.** Keys never span partitions, so an instance can be
//!   dropped when its partition is revoked and rebuilt on the new owner.
//! * **Positions.** Each record carries a `position: u64` that increases within the partition
//!   (its Kafka offset). The operators only store and compare positions.
//! * **Replay.** `min_retained_position()` is the smallest position still referenced by the
//!   operator's state (`None` when it needs none). Re-creating the operator and replaying from it
//!   rebuilds the state the windows had; the runtime suppresses outputs it already emitted.
//!   For time windows the rebuilt state is exact (see [`time`]'s docs). For count and row windows
//!   it is exact when `step == 1`; with a larger step, a key whose records before its current
//!   window get replayed too starts counting earlier, so its window boundaries can shift
//!   (contents stay correct "last `size` records", only which records close a window changes).

pub mod aggregate;
pub mod count;
pub mod indexed_rows;
mod row_slab;
pub mod rows;
pub mod time;

pub use aggregate::{
    Aggregator, Count, FnAggregator, Max, Mean, MeanAcc, Min, Reduce, Sum, aggregate, reduce,
};
pub use count::{CountWindow, CountWindowSpec, CountWindows};
pub use indexed_rows::IndexedRowWindows;
pub use rows::{RetainedRows, RowWindow, RowWindows};
pub use time::{
    LateRecord, MAX_DURATION_MS, MAX_WINDOWS_PER_RECORD, TimeWindowConfig, TimeWindowOutput,
    TimeWindowSpec, TimeWindows, WindowResult, WindowTrigger,
};

/// Largest absolute event timestamp accepted, 2^60 ms (about 36 million years either side of
/// 1970): far beyond real clocks, and small enough that adding window sizes and grace periods
/// never overflows `i64`.
pub const MAX_ABS_TIMESTAMP_MS: i64 = 1 << 60;
