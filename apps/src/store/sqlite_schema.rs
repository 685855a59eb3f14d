//! Diesel table definitions for the SQLite store; they mirror `migrations/sqlite`.

diesel::table! {
    /// Anomaly events, one row per event.
    anomalies (id) {
        /// Surrogate key.
        id -> Integer,
        /// The host (entity) the event is about.
        host -> Text,
        /// Start of the first window of the event.
        window_start -> TimestamptzSqlite,
        /// End of the last window of the event.
        window_end -> TimestamptzSqlite,
        /// Peak score over the event.
        score -> Double,
        /// The threshold the score was compared with.
        threshold -> Double,
        /// `warning` or `critical`.
        severity -> Text,
        /// The metrics that contributed most, as JSON text.
        top_metrics -> Text,
        /// Version of the model that found the event.
        model_version -> Text,
        /// When the row was written.
        detected_at -> Text,
    }
}
