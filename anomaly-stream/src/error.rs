//! The one error type of `anomaly-stream`.

/// Everything that can go wrong in `anomaly-stream`.
///
/// Marked `#[non_exhaustive]` because the Kafka runtime adds its own variants later; code outside
/// the crate must keep a wildcard arm so those additions are not breaking changes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A window specification or operator configuration is unusable (zero size, a step that would
    /// skip records, durations out of range, ...). Raised at construction, never per record.
    #[error("invalid window configuration: {0}")]
    InvalidWindow(String),
    /// A numeric row does not have the width the operator was built for.
    #[error("row has {actual} values, expected {expected}")]
    RowWidth {
        /// The width the operator was built for.
        expected: usize,
        /// The width of the rejected row.
        actual: usize,
    },
    /// An event timestamp lies outside the range window arithmetic supports
    /// (±[`MAX_ABS_TIMESTAMP_MS`](crate::window::MAX_ABS_TIMESTAMP_MS)); the record is rejected
    /// rather than risking integer overflow.
    #[error("event timestamp {timestamp_ms} ms is outside the supported range")]
    TimestampOutOfRange {
        /// The rejected timestamp.
        timestamp_ms: i64,
    },
    /// A value could not be serialized.
    #[error("{codec} encode failed: {message}")]
    Encode {
        /// The codec's [`name`](crate::codec::Codec::name).
        codec: &'static str,
        /// What the serializer reported.
        message: String,
    },
    /// Bytes could not be deserialized (garbage, truncated, or of another schema).
    #[error("{codec} decode failed: {message}")]
    Decode {
        /// The codec's [`name`](crate::codec::Codec::name).
        codec: &'static str,
        /// What the deserializer reported.
        message: String,
    },
    /// A topology is inconsistent (two pipelines on one topic, no sink, a transactional sink
    /// mixed with other sinks, ...). Raised when it is built, never per record.
    #[error("invalid topology: {0}")]
    Topology(String),
    /// The Kafka runtime could not go on (a setting missing, no tokio runtime, its poll thread
    /// gone, a fatal client error it was told of).
    #[error("kafka: {0}")]
    Kafka(String),
    /// The Kafka client failed (configuration, connection, subscription, produce or commit);
    /// the client's error is the source.
    #[cfg(feature = "kafka")]
    #[error("the Kafka client failed")]
    KafkaClient(#[from] crate::kafka::ClientError),
    /// A sink failed to write or acknowledge outputs; the runtime stops rather than commit past
    /// them.
    #[error("sink {sink}: {message}")]
    Sink {
        /// The sink's name (topic name for topic sinks).
        sink: String,
        /// What went wrong.
        message: String,
    },
    /// A sink's own work failed with an error of its own, kept as the source.
    #[error("sink {sink}: {context}")]
    SinkFailed {
        /// The sink's name.
        sink: String,
        /// What the sink was doing.
        context: String,
        /// The error it met.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A record could not be processed and there is no dead-letter topic to send it to.
    #[error(
        "record at {topic}/{partition}@{offset} failed and no dead-letter topic is set: {message}"
    )]
    Undeliverable {
        /// Source topic.
        topic: String,
        /// Source partition.
        partition: i32,
        /// Source offset.
        offset: u64,
        /// The underlying error.
        message: String,
    },
    /// A typed call on the test driver named a topic, sink or type the topology does not have.
    #[error("test driver: {0}")]
    Driver(String),
    /// A validation step refused a record (see [`Stream::validate`](crate::Stream::validate)).
    #[error("rejected ({reason}): {message}")]
    Rejected {
        /// A short, stable label for the kind of problem (`wrong_width`, `timestamp`, ...).
        reason: &'static str,
        /// What is wrong with this record.
        message: String,
    },
    /// A source record is larger than the topology accepts (see
    /// [`TopologyBuilder::max_record_bytes`](crate::TopologyBuilder::max_record_bytes)).
    #[error("record of {bytes} bytes exceeds the limit of {limit}")]
    Oversized {
        /// Key and value bytes of the record.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
}

impl Error {
    /// A short, stable label for the kind of failure that sends a record to the dead-letter
    /// topic: the `reason` label of [`DEAD_LETTERS`](crate::metrics::DEAD_LETTERS) and the
    /// [`DLQ_REASON_HEADER`](crate::topology::DLQ_REASON_HEADER).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Decode { .. } => "undecodable",
            Self::Encode { .. } => "unencodable",
            Self::RowWidth { .. } => "row_width",
            Self::TimestampOutOfRange { .. } => "timestamp_range",
            Self::Rejected { reason, .. } => reason,
            Self::Oversized { .. } => "oversized",
            _ => "error",
        }
    }
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Errors of the layers below stay reachable as sources, not flattened into text.
    #[test]
    fn wrapped_errors_keep_their_source() {
        let io = std::io::Error::other("disk full");
        let failed = Error::SinkFailed {
            sink: "store".into(),
            context: "writing events".into(),
            source: Box::new(io),
        };
        assert_eq!(failed.to_string(), "sink store: writing events");
        let source = std::error::Error::source(&failed).expect("a source");
        assert_eq!(source.to_string(), "disk full");
        assert!(source.downcast_ref::<std::io::Error>().is_some());

        #[cfg(feature = "kafka")]
        {
            use crate::kafka::ClientError;
            let client = Error::from(ClientError::Subscription("no such topic".into()));
            let source = std::error::Error::source(&client).expect("a source");
            assert!(source.downcast_ref::<ClientError>().is_some());
        }
    }
}
