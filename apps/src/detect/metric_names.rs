//! Every Prometheus metric of `anomaly detect`, named and described in one place.
//!
//! Conventions follow the collector's ([`crate::collect::metric_names`]): base units, `_total` on
//! counters, our own `anomaly_detector_` prefix. Per-host series carry a `host` label ([`HOST`]).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Label of per-host series.
pub const HOST: &str = "host";
/// Label of [`MODEL_INFO`]: the version of the model in use.
pub const MODEL_VERSION: &str = "model_version";

/// Gauge, per host: the latest smoothed anomaly score (about 1 on normal data).
pub const SCORE: &str = "anomaly_detector_score";
/// Gauge: the calibrated threshold the smoothed score is compared with.
pub const THRESHOLD: &str = "anomaly_detector_threshold";
/// Counter: samples consumed.
pub const SAMPLES_TOTAL: &str = "anomaly_detector_samples_total";
/// Counter: windows scored.
pub const WINDOWS_SCORED_TOTAL: &str = "anomaly_detector_windows_scored_total";
/// Counter, per host: anomaly events opened.
pub const ANOMALIES_TOTAL: &str = "anomaly_detector_anomalies_total";
/// Gauge: anomaly events currently open.
pub const OPEN_EVENTS: &str = "anomaly_detector_open_events";
/// Gauge: hosts with a window in memory.
pub const TRACKED_HOSTS: &str = "anomaly_detector_tracked_hosts";
/// Counter: hosts forgotten because they sent nothing for `--idle-host-timeout`.
pub const EVICTED_HOSTS_TOTAL: &str = "anomaly_detector_evicted_hosts_total";
/// Histogram: seconds from a sample's timestamp to the moment its window was scored.
pub const END_TO_END_LATENCY_SECONDS: &str = "anomaly_detector_end_to_end_latency_seconds";
/// Histogram: seconds from the newest sample of the window that opened an anomaly event to the
/// event's row committed in the store and published on the anomalies topic.
pub const EVENT_LATENCY_SECONDS: &str = "anomaly_detector_event_latency_seconds";
/// Histogram: seconds to encode and store one partition's state (off the events' path).
pub const STATE_SAVE_SECONDS: &str = "anomaly_detector_state_save_seconds";
/// Gauge: ratio of the baseline collected before the first model is trained (1 once trained).
pub const BASELINE_PROGRESS_RATIO: &str = "anomaly_detector_baseline_progress_ratio";
/// Gauge, always 1, labelled with the model version in use.
pub const MODEL_INFO: &str = "anomaly_detector_model_info";

/// Registers the help text and unit of every metric above with the installed recorder.
pub fn describe() {
    describe_gauge!(
        SCORE,
        "Latest smoothed anomaly score of the host (about 1 on normal data)."
    );
    describe_gauge!(
        THRESHOLD,
        "Calibrated threshold the smoothed score is compared with."
    );
    describe_counter!(SAMPLES_TOTAL, "Samples consumed.");
    describe_counter!(WINDOWS_SCORED_TOTAL, "Windows scored.");
    describe_counter!(ANOMALIES_TOTAL, "Anomaly events opened, per host.");
    describe_gauge!(OPEN_EVENTS, "Anomaly events currently open.");
    describe_gauge!(TRACKED_HOSTS, "Hosts with a window in memory.");
    describe_counter!(
        EVICTED_HOSTS_TOTAL,
        "Hosts forgotten because they sent nothing for the idle-host timeout."
    );
    describe_histogram!(
        END_TO_END_LATENCY_SECONDS,
        Unit::Seconds,
        "Seconds from a sample's timestamp to the scoring of its window."
    );
    describe_histogram!(
        EVENT_LATENCY_SECONDS,
        Unit::Seconds,
        "Seconds from the newest sample of the window that opened an anomaly event to its row committed and published."
    );
    describe_histogram!(
        STATE_SAVE_SECONDS,
        Unit::Seconds,
        "Seconds to encode and store one partition's host state, in the background of the events' path."
    );
    describe_gauge!(
        BASELINE_PROGRESS_RATIO,
        "Share of the training baseline collected (1 once a model is in use)."
    );
    describe_gauge!(
        MODEL_INFO,
        "Always 1, labelled with the version of the model in use."
    );
}
