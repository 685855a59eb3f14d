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
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
