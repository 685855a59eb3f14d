//! # anomaly-stream
//!
//! A Kafka Streams-style typed stream library for the anomaly detector: keyed, windowed,
//! fault-tolerant pipelines from Kafka topics to Kafka topics and databases.
//!
//! * [`topology`]: a [`TopologyBuilder`] hands out typed [`Stream`]s per source topic with
//!   stateless operators (`map`, `filter`, `flat_map`, `key_by`, side outputs), window operators
//!   and sinks, and builds an immutable [`Topology`].
//! * [`window`]: the pure per-partition window operators the topology instantiates.
//!   [`RowWindows`] is the detector's hot path (last `W` rows of `D` floats per host as one
//!   contiguous slice, no allocation per record); [`CountWindows`] is its generic counterpart;
//!   [`TimeWindows`] aggregates tumbling, hopping or sliding event-time windows with watermark,
//!   grace, late-record output, idle flush and early updates, over any [`Aggregator`].
//! * [`kafka`]: the runtime (rdkafka lives only here): consumer group, one operator instance per
//!   assigned partition, at-least-once commits that wait for sink acknowledgements, window state
//!   rebuilt by replay after restarts and rebalances, dead-letter topic, backpressure by pausing
//!   partitions. [`sink`]: async and transactional (exactly-once) sinks for databases.
//! * [`TestDriver`]: the same topology and operator code in memory, with an explicit clock, for
//!   unit tests without a broker. [`offsets`]: the commit and replay bookkeeping both share.
//! * [`codec`]: [`Codec`] with [`JsonCodec`], [`PostcardCodec`], [`Utf8Codec`] and [`SkipCodec`].
//! * [`metrics`]: every metric name, and [`metrics::describe`].
//!
//! Operators take every input, wall-clock time included, as arguments, so the same calls always
//! produce the same outputs; the runtime owns consumers, producers and timers and replays
//! from [`min_retained_position`](TimeWindows::min_retained_position) after a restart (see
//! [`window`] for the contract).
//!
//! The window operators on their own:
//!
//! ```
//! use anomaly_stream::window::{
//!     Mean, TimeWindowConfig, TimeWindowOutput, TimeWindowSpec, TimeWindows, WindowTrigger,
//! };
//!
//! // Mean CPU per host over one-minute tumbling windows, accepting records up to 10 s late.
//! let config = TimeWindowConfig {
//!     grace_ms: 10_000,
//!     ..TimeWindowConfig::new(TimeWindowSpec::Tumbling { size_ms: 60_000 })
//! };
//! let mut windows = TimeWindows::new(config, Mean::new(|cpu: &f64| *cpu))?;
//! let mut out = Vec::new();
//! // (host, event time in ms, Kafka offset, cpu)
//! for (host, t, offset, cpu) in [
//!     ("web-1", 1_000, 0, 20.0),
//!     ("web-1", 59_000, 1, 40.0),
//!     ("web-2", 61_000, 2, 90.0), // watermark 61 s: [0, 60 s) still within grace
//!     ("web-1", 30_000, 3, 60.0), // out of order but in grace: joins [0, 60 s)
//!     ("web-2", 70_000, 4, 80.0), // watermark 70 s = end + grace: [0, 60 s) closes
//! ] {
//!     windows.push(host, t, offset, cpu, &mut out)?;
//! }
//! let TimeWindowOutput::Window(w) = &out[0] else { panic!("expected a window") };
//! assert_eq!((w.key.as_str(), w.start_ms, w.end_ms), ("web-1", 0, 60_000));
//! assert_eq!((w.aggregate.mean(), w.count, w.trigger), (Some(40.0), 3, WindowTrigger::Watermark));
//! assert_eq!(out.len(), 1);
//! // Offsets 2 and 4 are still in web-2's open window [60 s, 120 s).
//! assert_eq!(windows.min_retained_position(), Some(2));
//! # Ok::<(), anomaly_stream::Error>(())
//! ```
#![deny(missing_docs)]

pub mod codec;
pub mod driver;
pub mod error;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod metrics;
pub mod offsets;
pub mod sink;
pub mod topology;
pub mod window;

pub use codec::{Codec, JsonCodec, PostcardCodec, SkipCodec, Utf8Codec};
pub use driver::TestDriver;
pub use error::{Error, Result};
pub use offsets::CommitPoint;
pub use sink::{MemorySink, Sink, SourceOffset, TransactionalSink};
pub use topology::{
    OutgoingMessage, RawRecord, Record, Rejection, Rows, Stream, Topology, TopologyBuilder,
};
pub use window::{
    Aggregator, CountWindow, CountWindowSpec, CountWindows, RowWindow, RowWindows,
    TimeWindowConfig, TimeWindowOutput, TimeWindowSpec, TimeWindows, WindowResult, WindowTrigger,
};
