//! Every metric this crate records: the names as constants, and [`describe`], the one place that
//! documents them to the installed `metrics` recorder (e.g. a Prometheus exporter).
//!
//! Labels: `operator` is an operator's name in its topology (`"map-2"`, `"time_windows-4"`,
//! ...), `topic` a source or sink topic, `partition` a source partition, `trigger` a window
//! trigger (`early`, `watermark`, `idle`, `count`), `sink` a sink's name, `reason` why a record
//! was dead-lettered ([`Error::reason`](crate::Error::reason)).

/// Counter: records entering an operator. Labels: `operator`.
pub const RECORDS_IN: &str = "anomaly_stream_records_in_total";
/// Counter: records leaving an operator (for windows: emitted windows). Labels: `operator`.
pub const RECORDS_OUT: &str = "anomaly_stream_records_out_total";
/// Counter: source records whose key or value failed to decode. Labels: `topic`.
pub const DECODE_ERRORS: &str = "anomaly_stream_decode_errors_total";
/// Counter: records sent to the dead-letter topic (decode, encode and operator errors,
/// validation rejections, oversized records). Labels: `topic` (the source topic), `reason`
/// ([`Error::reason`](crate::Error::reason)).
pub const DEAD_LETTERS: &str = "anomaly_stream_dead_letters_total";
/// Counter: records a time-window operator found late. Labels: `operator`.
pub const LATE_RECORDS: &str = "anomaly_stream_late_records_total";
/// Counter: window results emitted. Labels: `operator`, `trigger`.
pub const WINDOW_EMITS: &str = "anomaly_stream_window_emits_total";
/// Counter: outputs suppressed while replaying records below the committed offset.
/// Labels: `topic`.
pub const REPLAY_SUPPRESSED: &str = "anomaly_stream_replay_suppressed_total";
/// Histogram: seconds to run one source record through its pipeline (decode to sink hand-off,
/// excluding transaction writes): one observation per batch of records, its mean per record (so
/// the count is of batches). Labels: `topic`.
pub const PROCESSING_SECONDS: &str = "anomaly_stream_processing_seconds";
/// Gauge: high watermark minus next offset to consume. Labels: `topic`, `partition`.
pub const CONSUMER_LAG: &str = "anomaly_stream_consumer_lag";
/// Gauge: records held in the runtime's bounded queues (fetched but not processed, or produced
/// but not handed to a sink). Bounded by the queue capacities: the backpressure signal.
pub const BUFFERED_RECORDS: &str = "anomaly_stream_buffered_records";
/// Counter: times a partition was paused because its queue was full. Labels: `topic`.
pub const PARTITION_PAUSES: &str = "anomaly_stream_partition_pauses_total";
/// Counter: source offsets committed (one per partition per commit). Labels: `topic`.
pub const COMMITS: &str = "anomaly_stream_commits_total";
/// Counter: sink write or delivery failures. Labels: `sink`.
pub const SINK_ERRORS: &str = "anomaly_stream_sink_errors_total";
/// Counter: partitions assigned to this instance. Labels: `topic`.
pub const PARTITIONS_ASSIGNED: &str = "anomaly_stream_partitions_assigned_total";
/// Counter: partitions revoked from this instance. Labels: `topic`.
pub const PARTITIONS_REVOKED: &str = "anomaly_stream_partitions_revoked_total";

/// Registers units and help texts for every metric above with the installed recorder. Call once
/// after installing it; harmless without one.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(RECORDS_IN, Unit::Count, "Records entering an operator.");
    describe_counter!(
        RECORDS_OUT,
        Unit::Count,
        "Records leaving an operator (windows emitted, for window operators)."
    );
    describe_counter!(
        DECODE_ERRORS,
        Unit::Count,
        "Source records whose key or value failed to decode."
    );
    describe_counter!(
        DEAD_LETTERS,
        Unit::Count,
        "Records routed to the dead-letter topic."
    );
    describe_counter!(
        LATE_RECORDS,
        Unit::Count,
        "Records that arrived after all their windows closed."
    );
    describe_counter!(WINDOW_EMITS, Unit::Count, "Window results emitted.");
    describe_counter!(
        REPLAY_SUPPRESSED,
        Unit::Count,
        "Outputs suppressed while rebuilding window state by replay."
    );
    describe_histogram!(
        PROCESSING_SECONDS,
        Unit::Seconds,
        "Time to run one source record through its pipeline (a batch's mean; one observation per batch)."
    );
    describe_gauge!(
        CONSUMER_LAG,
        Unit::Count,
        "High watermark minus the next offset to consume."
    );
    describe_gauge!(
        BUFFERED_RECORDS,
        Unit::Count,
        "Records held in the runtime's bounded queues."
    );
    describe_counter!(
        PARTITION_PAUSES,
        Unit::Count,
        "Times a partition was paused because its queue was full."
    );
    describe_counter!(COMMITS, Unit::Count, "Source offsets committed.");
    describe_counter!(SINK_ERRORS, Unit::Count, "Sink write or delivery failures.");
    describe_counter!(
        PARTITIONS_ASSIGNED,
        Unit::Count,
        "Partitions assigned to this instance."
    );
    describe_counter!(
        PARTITIONS_REVOKED,
        Unit::Count,
        "Partitions revoked from this instance."
    );
}
