//! Topologies: what to do with each record, independent of where records come from.
//!
//! A [`TopologyBuilder`] hands out one typed [`Stream`] per source topic; stateless operators
//! ([`map`](Stream::map), [`filter`](Stream::filter), [`flat_map`](Stream::flat_map),
//! [`key_by`](Stream::key_by), side outputs with [`tee`](Stream::tee) and
//! [`divert`](Stream::divert)), window operators ([`count_windows`](Stream::count_windows),
//! [`row_windows`](Stream::row_windows), [`time_windows`](Stream::time_windows)) and sinks
//! ([`to_topic`](Stream::to_topic), [`to_sink`](Stream::to_sink),
//! [`to_transactional`](Stream::to_transactional)) chain onto it. [`TopologyBuilder::build`]
//! freezes the result into a [`Topology`], which the Kafka runtime
//! ([`KafkaRuntime`](crate::kafka::KafkaRuntime)) and the in-memory
//! [`TestDriver`](crate::TestDriver) both run with the same operator code.
//!
//! Each source topic gets a tree of operators (a chain with side branches), instantiated once
//! per source partition, so window state is per partition as the [window](crate::window)
//! contract requires. There is no join or merge of streams.
//!
//! Records that cannot be processed (undecodable bytes, records over
//! [`TopologyBuilder::max_record_bytes`], records a [`validate`](Stream::validate) step refuses,
//! an operator error such as an out-of-range timestamp, an unencodable output) go to the
//! dead-letter topic set with [`TopologyBuilder::dead_letter_topic`], with the error, its reason
//! and their source position in headers ([`DLQ_ERROR_HEADER`], [`DLQ_REASON_HEADER`] and
//! friends), counted per reason. Without a dead-letter topic they stop the runtime instead:
//! nothing is dropped silently.

mod builder;
mod context;
mod nodes;
mod record;
mod stream;
mod task;
mod window_nodes;

pub(crate) use builder::SinkKind;
pub use builder::{Topology, TopologyBuilder};
pub(crate) use record::Emitted;
#[cfg(feature = "kafka")]
pub(crate) use record::RawRef;
pub use record::{
    DLQ_ERROR_HEADER, DLQ_OFFSET_HEADER, DLQ_PARTITION_HEADER, DLQ_REASON_HEADER, DLQ_TOPIC_HEADER,
    OutgoingMessage, RawRecord, Record, Rejection,
};
pub use stream::{Rows, Stream};
pub(crate) use task::PartitionTask;
