//! Every Prometheus metric of `anomaly collect`, named and described in one place.
//!
//! Conventions follow node_exporter (base units, ratios in `0..=1`, `_total` on counters), under our
//! own prefixes: `anomaly_host_` for what the collector measures on the host and
//! `anomaly_collector_` for the collector itself. Every series carries a `host` label ([`HOST`]).
//!
//! The host gauges mirror the samples streamed to Kafka, except that the two percentages of the
//! sample schema are exposed as ratios (`cpu_busy` 40 % is `anomaly_host_cpu_busy_ratio 0.4`).

use metrics::{Unit, describe_counter, describe_gauge};

/// Most devices of each kind (disks, interfaces) exported per collector: a host with thousands of
/// short-lived virtual interfaces must not grow the series without bound.
pub const MAX_DEVICES: usize = 64;

/// Label on every series: the host the collector samples (`--host`).
pub const HOST: &str = "host";
/// Label of the per-device counters: the disk or network interface.
pub const DEVICE: &str = "device";
/// Label of [`SKIPPED_SAMPLES_TOTAL`]: why a step produced no sample.
pub const REASON: &str = "reason";

/// Gauge: CPU busy time over the last step, ratio of all online CPUs' time (0..=1).
pub const CPU_BUSY_RATIO: &str = "anomaly_host_cpu_busy_ratio";
/// Gauge: memory in use, `1 - MemAvailable / MemTotal` (0..=1).
pub const MEMORY_USED_RATIO: &str = "anomaly_host_memory_used_ratio";
/// Gauge: one-minute load average.
pub const LOAD1: &str = "anomaly_host_load1";
/// Gauge: bytes read per second from whole physical disks over the last step.
pub const DISK_READ_BYTES_PER_SECOND: &str = "anomaly_host_disk_read_bytes_per_second";
/// Gauge: bytes written per second to whole physical disks over the last step.
pub const DISK_WRITE_BYTES_PER_SECOND: &str = "anomaly_host_disk_write_bytes_per_second";
/// Gauge: bytes received per second on non-loopback interfaces over the last step.
pub const NETWORK_RECEIVE_BYTES_PER_SECOND: &str = "anomaly_host_network_receive_bytes_per_second";
/// Gauge: bytes transmitted per second on non-loopback interfaces over the last step.
pub const NETWORK_TRANSMIT_BYTES_PER_SECOND: &str =
    "anomaly_host_network_transmit_bytes_per_second";

/// Counter, per `device`: bytes read from a whole physical disk since boot (the kernel's own
/// counter, so `rate()` loses no traffic between scrapes; as node_exporter's
/// `node_disk_read_bytes_total`).
pub const DISK_READ_BYTES_TOTAL: &str = "anomaly_host_disk_read_bytes_total";
/// Counter, per `device`: bytes written to a whole physical disk since boot.
pub const DISK_WRITTEN_BYTES_TOTAL: &str = "anomaly_host_disk_written_bytes_total";
/// Counter, per `device`: bytes received on a non-loopback interface since boot.
pub const NETWORK_RECEIVE_BYTES_TOTAL: &str = "anomaly_host_network_receive_bytes_total";
/// Counter, per `device`: bytes transmitted on a non-loopback interface since boot.
pub const NETWORK_TRANSMIT_BYTES_TOTAL: &str = "anomaly_host_network_transmit_bytes_total";

/// Counter: samples produced (each is served here and, with `--brokers`, queued for Kafka).
pub const SAMPLES_TOTAL: &str = "anomaly_collector_samples_total";
/// Counter: steps that produced no sample, by `reason` (`read_error`, `counter_reset`, `clock`,
/// `no_cpu_time`).
pub const SKIPPED_SAMPLES_TOTAL: &str = "anomaly_collector_skipped_samples_total";
/// Counter: samples the broker acknowledged.
pub const DELIVERED_SAMPLES_TOTAL: &str = "anomaly_collector_delivered_samples_total";
/// Counter: failed attempts to deliver a sample (it stays buffered and is retried).
pub const DELIVERY_ERRORS_TOTAL: &str = "anomaly_collector_delivery_errors_total";
/// Counter: samples evicted, oldest first, because the buffer was full while the broker was down.
pub const DROPPED_SAMPLES_TOTAL: &str = "anomaly_collector_dropped_samples_total";
/// Gauge: samples buffered and not yet acknowledged by the broker.
pub const BUFFER_DEPTH: &str = "anomaly_collector_buffer_depth";

/// The `reason` of [`SKIPPED_SAMPLES_TOTAL`] when the kernel files could not be read or parsed.
pub const REASON_READ_ERROR: &str = "read_error";

/// Registers the help text and unit of every metric above with the installed recorder. Call it
/// once after installing the recorder; calling it again is harmless.
pub fn describe() {
    describe_gauge!(
        CPU_BUSY_RATIO,
        "CPU busy time over the last sampling step, ratio of all online CPUs (busy = total - idle - iowait)."
    );
    describe_gauge!(
        MEMORY_USED_RATIO,
        "Memory in use, 1 - MemAvailable / MemTotal."
    );
    describe_gauge!(LOAD1, "One-minute load average.");
    describe_gauge!(
        DISK_READ_BYTES_PER_SECOND,
        Unit::Bytes,
        "Bytes read per second from whole physical disks (partitions, loop, ram, zram, dm and md devices excluded)."
    );
    describe_gauge!(
        DISK_WRITE_BYTES_PER_SECOND,
        Unit::Bytes,
        "Bytes written per second to whole physical disks (partitions, loop, ram, zram, dm and md devices excluded)."
    );
    describe_gauge!(
        NETWORK_RECEIVE_BYTES_PER_SECOND,
        Unit::Bytes,
        "Bytes received per second on all interfaces but loopback."
    );
    describe_gauge!(
        NETWORK_TRANSMIT_BYTES_PER_SECOND,
        Unit::Bytes,
        "Bytes transmitted per second on all interfaces but loopback."
    );
    describe_counter!(
        DISK_READ_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes read from the whole physical disk since boot."
    );
    describe_counter!(
        DISK_WRITTEN_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes written to the whole physical disk since boot."
    );
    describe_counter!(
        NETWORK_RECEIVE_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes received on the interface since boot."
    );
    describe_counter!(
        NETWORK_TRANSMIT_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes transmitted on the interface since boot."
    );
    describe_counter!(SAMPLES_TOTAL, Unit::Count, "Host samples produced.");
    describe_counter!(
        SKIPPED_SAMPLES_TOTAL,
        Unit::Count,
        "Sampling steps that produced no sample, by reason."
    );
    describe_counter!(
        DELIVERED_SAMPLES_TOTAL,
        Unit::Count,
        "Samples acknowledged by the Kafka broker."
    );
    describe_counter!(
        DELIVERY_ERRORS_TOTAL,
        Unit::Count,
        "Failed attempts to deliver a sample to Kafka; the sample stays buffered and is retried."
    );
    describe_counter!(
        DROPPED_SAMPLES_TOTAL,
        Unit::Count,
        "Samples evicted, oldest first, because the delivery buffer was full."
    );
    describe_gauge!(
        BUFFER_DEPTH,
        Unit::Count,
        "Samples buffered and not yet acknowledged by the Kafka broker."
    );
}
