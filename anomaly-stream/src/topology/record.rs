//! What flows through a topology: typed records, source bytes, outgoing messages and the
//! dead-letter headers.

use crate::sink::Item;

/// Dead-letter header: the error message (UTF-8).
pub const DLQ_ERROR_HEADER: &str = "anomaly.dlq.error";
/// Dead-letter header: why, as a short stable label ([`Error::reason`](crate::Error::reason): `undecodable`,
/// `oversized`, a validation's own reasons, ...).
pub const DLQ_REASON_HEADER: &str = "anomaly.dlq.reason";
/// Dead-letter header: the source topic (UTF-8).
pub const DLQ_TOPIC_HEADER: &str = "anomaly.dlq.source.topic";
/// Dead-letter header: the source partition (decimal UTF-8).
pub const DLQ_PARTITION_HEADER: &str = "anomaly.dlq.source.partition";
/// Dead-letter header: the source offset (decimal UTF-8).
pub const DLQ_OFFSET_HEADER: &str = "anomaly.dlq.source.offset";

/// A typed record inside a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<K, V> {
    /// The key (what windows group by).
    pub key: K,
    /// The value.
    pub value: V,
    /// Event time in ms since the Unix epoch.
    pub timestamp_ms: i64,
}

/// Why a [`validate`](crate::Stream::validate) step refused a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// A short, stable label (`wrong_width`, `timestamp`, ...): the dead-letter counter's
    /// `reason` and the [`DLQ_REASON_HEADER`].
    pub reason: &'static str,
    /// What is wrong with this record, for the [`DLQ_ERROR_HEADER`].
    pub message: String,
}

/// A source record as bytes, before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Key bytes; `None` for a record without a key (decoded as an empty slice).
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Vec<u8>,
    /// Event time in ms (the Kafka message timestamp).
    pub timestamp_ms: i64,
}

impl RawRecord {
    pub(crate) fn as_raw_ref(&self) -> RawRef<'_> {
        RawRef {
            key: self.key.as_deref(),
            value: &self.value,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// A source record's bytes where they lie (a runtime's batch buffer, a driver's log): what the
/// operators decode in place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawRef<'a> {
    /// Key bytes; `None` for a record without a key (decoded as an empty slice).
    pub key: Option<&'a [u8]>,
    /// Value bytes.
    pub value: &'a [u8],
    /// Event time in ms (the Kafka message timestamp).
    pub timestamp_ms: i64,
}

/// A message a pipeline produces to a Kafka topic (a topic sink's output or a dead letter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Destination topic.
    pub topic: String,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Vec<u8>,
    /// Message timestamp in ms.
    pub timestamp_ms: i64,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl OutgoingMessage {
    /// The first header called `name`, as UTF-8 text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// One output of a pipeline, before it reaches its sink.
pub(crate) enum Emitted {
    /// For the producer.
    Topic(OutgoingMessage),
    /// For the async sink with this index in [`Topology::sinks`] (the transactional sink's
    /// records go to [`Cx::transactional`](super::context::Cx::transactional) instead).
    Sink { sink: usize, item: Item },
}
