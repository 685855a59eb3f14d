//! Diesel table definitions for the PostgreSQL store; they mirror `migrations/postgres`.

diesel::table! {
    /// Anomaly events, one row per event.
    anomalies (id) {
        /// Surrogate key.
        id -> Int8,
        /// The host (entity) the event is about.
        host -> Text,
        /// Start of the first window of the event.
        window_start -> Timestamptz,
        /// End of the last window of the event.
        window_end -> Timestamptz,
        /// Peak score over the event.
        score -> Float8,
        /// The threshold the score was compared with.
        threshold -> Float8,
        /// `warning` or `critical`.
        severity -> Text,
        /// The metrics that contributed most, with their share of the error.
        top_metrics -> Jsonb,
        /// Version of the model that found the event.
        model_version -> Text,
        /// When the row was written.
        detected_at -> Timestamptz,
        /// Whether the event has ended.
        closed -> Bool,
    }
}

diesel::table! {
    /// Source offsets stored atomically with the rows they produced.
    stream_offsets (consumer_group, topic, partition_id) {
        /// The consumer group that owns the offsets.
        consumer_group -> Text,
        /// Source topic.
        topic -> Text,
        /// Source partition.
        partition_id -> Int4,
        /// The next offset to read.
        next_offset -> Int8,
        /// Where reading starts to rebuild the stored state (`NULL`: at `next_offset`).
        replay_from -> Nullable<Int8>,
    }
}

diesel::table! {
    /// The detector's state per source partition, stored with the offsets.
    stream_state (consumer_group, topic, partition_id) {
        /// The consumer group that owns the state.
        consumer_group -> Text,
        /// Source topic.
        topic -> Text,
        /// Source partition.
        partition_id -> Int4,
        /// Every record below this offset is reflected in the state.
        state_offset -> Int8,
        /// The encoded state.
        state -> Bytea,
    }
}

diesel::table! {
    /// The model versions of each consumer group, packed and checksummed.
    model_versions (model_group, version) {
        /// The consumer group whose instances score with the model.
        model_group -> Text,
        /// The model's version.
        version -> Text,
        /// The packed artifact (`anomaly_model::ModelPackage`).
        artifact -> Bytea,
        /// SHA-256 of `artifact`, hex.
        sha256 -> Text,
        /// When the version was stored, ms since the Unix epoch.
        created_at_ms -> Int8,
    }
}

diesel::table! {
    /// The version each consumer group scores with.
    model_current (model_group) {
        /// The consumer group.
        model_group -> Text,
        /// Its current model version.
        version -> Text,
    }
}
