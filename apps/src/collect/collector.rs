//! One sampling step of the collector: snapshot in, Prometheus series updated, sample out.

use std::collections::BTreeMap;
use std::time::Duration;

use anomaly_core::Sample;
use anomaly_core::host::{HostSampler, HostSnapshot, HostValues, Observation, SkipReason};
use metrics::{Counter, Gauge, counter, gauge};

use super::metric_names as names;

/// What one step produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The first readable snapshot: the baseline of the next step, no sample yet.
    Baseline,
    /// A sample, already recorded in the Prometheus series.
    Sample(Sample),
    /// No sample; `reason` is the label counted in
    /// [`SKIPPED_SAMPLES_TOTAL`](names::SKIPPED_SAMPLES_TOTAL).
    Skipped {
        /// `read_error`, `counter_reset`, `clock` or `no_cpu_time`.
        reason: &'static str,
    },
}

/// The host series, with the `host` label already applied.
struct HostGauges {
    cpu_busy: Gauge,
    memory_used: Gauge,
    load1: Gauge,
    disk_read: Gauge,
    disk_write: Gauge,
    net_rx: Gauge,
    net_tx: Gauge,
}

impl HostGauges {
    fn new(host: &str) -> Self {
        let g = |name: &'static str| gauge!(name, names::HOST => host.to_string());
        Self {
            cpu_busy: g(names::CPU_BUSY_RATIO),
            memory_used: g(names::MEMORY_USED_RATIO),
            load1: g(names::LOAD1),
            disk_read: g(names::DISK_READ_BYTES_PER_SECOND),
            disk_write: g(names::DISK_WRITE_BYTES_PER_SECOND),
            net_rx: g(names::NETWORK_RECEIVE_BYTES_PER_SECOND),
            net_tx: g(names::NETWORK_TRANSMIT_BYTES_PER_SECOND),
        }
    }

    fn set(&self, v: &HostValues) {
        // The sample schema counts in percent; Prometheus' convention is a 0..=1 ratio.
        self.cpu_busy.set(v.cpu_busy_percent / 100.0);
        self.memory_used.set(v.memory_used_percent / 100.0);
        self.load1.set(v.load1);
        self.disk_read.set(v.disk_read_bytes_per_second);
        self.disk_write.set(v.disk_write_bytes_per_second);
        self.net_rx.set(v.net_rx_bytes_per_second);
        self.net_tx.set(v.net_tx_bytes_per_second);
    }
}

/// The kernel's cumulative byte counters of each disk and interface, exported as counters
/// (`rate()` in Prometheus then loses no traffic between scrapes). A kernel counter that restarts
/// (a driver reloaded) continues the exported one from where it was, since the exporter's
/// counters never go down. Handles are kept for the devices of the latest snapshot only, at most
/// [`MAX_DEVICES`](names::MAX_DEVICES) of each kind.
struct DeviceCounters {
    host: String,
    disks: BTreeMap<String, [KernelCounter; 2]>,
    interfaces: BTreeMap<String, [KernelCounter; 2]>,
}

/// An exported counter following one kernel counter.
struct KernelCounter {
    exported: Counter,
    /// The kernel's value at the last step.
    last: u64,
}

impl KernelCounter {
    fn new(name: &'static str, host: &str, device: &str, value: u64) -> Self {
        let exported =
            counter!(name, names::HOST => host.to_string(), names::DEVICE => device.to_string());
        exported.absolute(value);
        Self {
            exported,
            last: value,
        }
    }

    fn follow(&mut self, value: u64) {
        // Below the last value, the kernel's counter restarted from zero: all of it is new.
        let delta = value.checked_sub(self.last).unwrap_or(value);
        self.exported.increment(delta);
        self.last = value;
    }
}

impl DeviceCounters {
    fn record(&mut self, snapshot: &HostSnapshot) {
        let host = self.host.as_str();
        follow(
            &mut self.disks,
            snapshot
                .disks
                .iter()
                .map(|(d, io)| (d, [io.read_bytes, io.written_bytes])),
            [
                names::DISK_READ_BYTES_TOTAL,
                names::DISK_WRITTEN_BYTES_TOTAL,
            ],
            host,
        );
        follow(
            &mut self.interfaces,
            snapshot
                .interfaces
                .iter()
                .map(|(d, io)| (d, [io.rx_bytes, io.tx_bytes])),
            [
                names::NETWORK_RECEIVE_BYTES_TOTAL,
                names::NETWORK_TRANSMIT_BYTES_TOTAL,
            ],
            host,
        );
    }
}

/// Updates `counters` to the `current` devices' values (at most
/// [`MAX_DEVICES`](names::MAX_DEVICES)), forgetting devices that are gone.
fn follow<'a>(
    counters: &mut BTreeMap<String, [KernelCounter; 2]>,
    current: impl Iterator<Item = (&'a String, [u64; 2])>,
    series: [&'static str; 2],
    host: &str,
) {
    let current: BTreeMap<&String, [u64; 2]> = current.take(names::MAX_DEVICES).collect();
    counters.retain(|device, _| current.contains_key(device));
    for (device, values) in current {
        match counters.get_mut(device) {
            Some(pair) => {
                for (counter, value) in pair.iter_mut().zip(values) {
                    counter.follow(value);
                }
            }
            None => {
                let pair = [0, 1].map(|i| KernelCounter::new(series[i], host, device, values[i]));
                counters.insert(device.clone(), pair);
            }
        }
    }
}

/// The sampler of one host and its Prometheus series.
///
/// Series handles are taken from the recorder installed when the collector is created: install the
/// recorder first ([`crate::telemetry::prometheus_recorder`]).
pub struct Collector {
    host: String,
    sampler: HostSampler,
    gauges: HostGauges,
    devices: DeviceCounters,
    samples: Counter,
    last_read_error: Option<String>,
}

impl Collector {
    /// A collector of samples for `host` (the sample entity, Kafka key and `host` label).
    pub fn new(host: impl Into<String>) -> Self {
        let host = host.into();
        // Counters start at 0 rather than appearing at their first increment, so `rate()` and
        // alerts see the first skip.
        for reason in [
            names::REASON_READ_ERROR,
            SkipReason::ClockNotAdvanced.label(),
            SkipReason::CounterWentBackwards {
                counter: String::new(),
            }
            .label(),
            SkipReason::NoCpuTime.label(),
        ] {
            counter!(names::SKIPPED_SAMPLES_TOTAL, names::HOST => host.clone(), names::REASON => reason)
                .increment(0);
        }
        let samples = counter!(names::SAMPLES_TOTAL, names::HOST => host.clone());
        samples.increment(0);
        Self {
            gauges: HostGauges::new(&host),
            devices: DeviceCounters {
                host: host.clone(),
                disks: BTreeMap::new(),
                interfaces: BTreeMap::new(),
            },
            samples,
            sampler: HostSampler::new(),
            host,
            last_read_error: None,
        }
    }

    /// The host this collector samples.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Feeds the snapshot read at monotonic time `at` (or the error reading it) and records the
    /// result; `timestamp_ms` is the wall-clock time the sample carries.
    pub fn step(
        &mut self,
        at: Duration,
        timestamp_ms: i64,
        snapshot: anyhow::Result<HostSnapshot>,
    ) -> Step {
        let snapshot = match snapshot {
            Ok(s) => {
                if self.last_read_error.take().is_some() {
                    tracing::info!(host = %self.host, "host statistics readable again");
                }
                s
            }
            Err(e) => {
                let message = format!("{e:#}");
                // Warn once per distinct error, not once per second while it persists.
                if self.last_read_error.as_deref() != Some(message.as_str()) {
                    tracing::warn!(host = %self.host, error = %message, "cannot sample host statistics");
                    self.last_read_error = Some(message);
                }
                return self.skipped(names::REASON_READ_ERROR);
            }
        };
        self.devices.record(&snapshot);
        match self.sampler.observe(at, snapshot) {
            Observation::Baseline => Step::Baseline,
            Observation::Sample(values) => {
                self.gauges.set(&values);
                self.samples.increment(1);
                Step::Sample(values.to_sample(self.host.clone(), timestamp_ms))
            }
            Observation::Skipped(reason) => {
                tracing::info!(host = %self.host, %reason, "sample skipped");
                self.skipped(reason.label())
            }
        }
    }

    fn skipped(&self, reason: &'static str) -> Step {
        counter!(names::SKIPPED_SAMPLES_TOTAL, names::HOST => self.host.clone(), names::REASON => reason)
            .increment(1);
        Step::Skipped { reason }
    }
}
