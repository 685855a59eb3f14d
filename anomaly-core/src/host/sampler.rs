//! The host sampler: successive counter snapshots in, the seven host metrics out.
//!
//! [`HostSampler`] is a pure state machine. The caller reads the kernel texts, parses them into a
//! [`HostSnapshot`] and passes it with a monotonic time; the sampler compares it with the previous
//! snapshot and returns an [`Observation`]:
//!
//! * the first snapshot is only a [`Observation::Baseline`]: rates need two;
//! * a [`Observation::Sample`] carries [`HostValues`] in the order of
//!   [`MetricSchema::host`](crate::MetricSchema::host);
//! * a [`Observation::Skipped`] step produces nothing, with a [`SkipReason`] the caller counts.
//!
//! # Counter policy
//!
//! Rates are deltas of cumulative counters divided by the measured time between snapshots (not the
//! nominal interval, so a late tick does not inflate a rate).
//!
//! * **A counter that goes backwards skips the whole step.** A lower value means a reset, a wrap or a
//!   device replaced under the same name; its true delta is unknown. Reporting a huge rate (the
//!   unsigned wrap-around) or an invented one would be wrong, and dropping only that device would
//!   under-report without saying so. The step yields [`SkipReason::CounterWentBackwards`], the
//!   snapshot becomes the new baseline, and the next step is normal again.
//! * **Devices and interfaces are tracked by name.** A rate sums the deltas of the names present in
//!   both snapshots; a device that appears starts counting from the next step and one that
//!   disappears stops counting, so neither produces a jump.
//! * **CPU busy** is `1 - Δ(idle + iowait) / Δtotal` over all online CPUs, in percent. `iowait` may
//!   decrease by the kernel's own account, so it is only judged together with `idle`; every other
//!   CPU field going backwards (a CPU taken offline removes its time from the aggregate) skips the
//!   step. No CPU time elapsed at all ([`SkipReason::NoCpuTime`]) also skips: busy % is undefined.
//!
//! Every value of a sample is finite.

use std::collections::BTreeMap;
use std::time::Duration;

use super::procfs::{
    BlockDevices, CpuTimes, DiskIo, MemInfo, NetIo, is_loopback, parse_diskstats, parse_loadavg,
    parse_meminfo, parse_net_dev, parse_stat,
};
use crate::{Entity, Result, Sample};

/// The texts of the kernel files one snapshot is made of.
#[derive(Debug, Clone, Copy)]
pub struct ProcTexts<'a> {
    /// Contents of `/proc/stat`.
    pub stat: &'a str,
    /// Contents of `/proc/meminfo`.
    pub meminfo: &'a str,
    /// Contents of `/proc/loadavg`.
    pub loadavg: &'a str,
    /// Contents of `/proc/diskstats`.
    pub diskstats: &'a str,
    /// Contents of `/proc/net/dev`.
    pub net_dev: &'a str,
}

/// Every raw reading of one instant: cumulative counters plus the instantaneous memory and load.
#[derive(Debug, Clone, PartialEq)]
pub struct HostSnapshot {
    /// Aggregate CPU time of all online CPUs.
    pub cpu: CpuTimes,
    /// Memory totals.
    pub memory: MemInfo,
    /// One-minute load average.
    pub load1: f64,
    /// Cumulative I/O of every counted block device (see [`BlockDevices`]), by name.
    pub disks: BTreeMap<String, DiskIo>,
    /// Cumulative traffic of every non-loopback interface, by name.
    pub interfaces: BTreeMap<String, NetIo>,
}

impl HostSnapshot {
    /// Parses the kernel texts into a snapshot; disks are filtered by `block_devices`, the loopback
    /// interface is dropped. Any malformed text is an error for the whole snapshot.
    pub fn parse(texts: &ProcTexts<'_>, block_devices: &BlockDevices) -> Result<Self> {
        let mut interfaces = parse_net_dev(texts.net_dev)?;
        interfaces.retain(|name, _| !is_loopback(name));
        Ok(Self {
            cpu: parse_stat(texts.stat)?,
            memory: parse_meminfo(texts.meminfo)?,
            load1: parse_loadavg(texts.loadavg)?,
            disks: parse_diskstats(texts.diskstats, block_devices)?,
            interfaces,
        })
    }
}

/// The seven host metrics of one step, in the units of [`MetricSchema::host`](crate::MetricSchema::host).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostValues {
    /// CPU busy time over the step, percent of all online CPUs, `[0, 100]`.
    pub cpu_busy_percent: f64,
    /// Memory in use at the end of the step, percent, `[0, 100]`.
    pub memory_used_percent: f64,
    /// One-minute load average at the end of the step.
    pub load1: f64,
    /// Bytes read from counted disks per second over the step.
    pub disk_read_bytes_per_second: f64,
    /// Bytes written to counted disks per second over the step.
    pub disk_write_bytes_per_second: f64,
    /// Bytes received on non-loopback interfaces per second over the step.
    pub net_rx_bytes_per_second: f64,
    /// Bytes transmitted on non-loopback interfaces per second over the step.
    pub net_tx_bytes_per_second: f64,
}

impl HostValues {
    /// The values in schema order: cpu_busy, memory_used, load1, disk_read, disk_write, net_rx, net_tx.
    pub fn to_array(&self) -> [f64; 7] {
        [
            self.cpu_busy_percent,
            self.memory_used_percent,
            self.load1,
            self.disk_read_bytes_per_second,
            self.disk_write_bytes_per_second,
            self.net_rx_bytes_per_second,
            self.net_tx_bytes_per_second,
        ]
    }

    /// A [`Sample`] of `entity` at `timestamp_ms` carrying these values in schema order.
    pub fn to_sample(&self, entity: impl Into<Entity>, timestamp_ms: i64) -> Sample {
        Sample::new(entity, timestamp_ms, &self.to_array()[..])
    }
}

/// Why a step produced no sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// The monotonic time did not advance past the previous snapshot's, so no rate exists.
    ClockNotAdvanced,
    /// A cumulative counter is lower than in the previous snapshot (reset, wrap or replaced device).
    CounterWentBackwards {
        /// Which counter: `cpu user`, `disk sda`, `interface eth0`, ...
        counter: String,
    },
    /// The CPU time counters did not move, so CPU busy % is undefined.
    NoCpuTime,
}

impl SkipReason {
    /// A short stable label for metrics and logs: `clock`, `counter_reset` or `no_cpu_time`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::ClockNotAdvanced => "clock",
            Self::CounterWentBackwards { .. } => "counter_reset",
            Self::NoCpuTime => "no_cpu_time",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ClockNotAdvanced => {
                f.write_str("the clock did not advance since the previous snapshot")
            }
            Self::CounterWentBackwards { counter } => {
                write!(f, "counter `{counter}` went backwards")
            }
            Self::NoCpuTime => f.write_str("no CPU time elapsed since the previous snapshot"),
        }
    }
}

/// What one snapshot produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// The first snapshot: stored as the baseline, no sample yet.
    Baseline,
    /// A sample of the step since the previous snapshot.
    Sample(HostValues),
    /// No sample for this step; the snapshot is the new baseline.
    Skipped(SkipReason),
}

/// Turns successive [`HostSnapshot`]s into [`HostValues`]; see the [module docs](self) for the
/// counter policy.
#[derive(Debug, Clone, Default)]
pub struct HostSampler {
    previous: Option<(Duration, HostSnapshot)>,
}

impl HostSampler {
    /// A sampler with no baseline yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the snapshot taken at monotonic time `at` (any fixed origin, e.g. the collector's start)
    /// and returns what the step since the previous snapshot produced. The snapshot always becomes
    /// the baseline of the next step.
    pub fn observe(&mut self, at: Duration, snapshot: HostSnapshot) -> Observation {
        let observation = match &self.previous {
            None => Observation::Baseline,
            Some((previous_at, previous)) => match at.checked_sub(*previous_at) {
                Some(dt) if !dt.is_zero() => match step(previous, &snapshot, dt) {
                    Ok(values) => Observation::Sample(values),
                    Err(reason) => Observation::Skipped(reason),
                },
                _ => Observation::Skipped(SkipReason::ClockNotAdvanced),
            },
        };
        self.previous = Some((at, snapshot));
        observation
    }
}

fn backwards(counter: impl Into<String>) -> SkipReason {
    SkipReason::CounterWentBackwards {
        counter: counter.into(),
    }
}

/// CPU busy fraction in `[0, 1]` between two readings.
fn cpu_busy_fraction(previous: &CpuTimes, current: &CpuTimes) -> Result<f64, SkipReason> {
    let monotone = [
        ("user", previous.user, current.user),
        ("nice", previous.nice, current.nice),
        ("system", previous.system, current.system),
        ("idle+iowait", previous.idle_total(), current.idle_total()),
        ("irq", previous.irq, current.irq),
        ("softirq", previous.softirq, current.softirq),
        ("steal", previous.steal, current.steal),
    ];
    if let Some((name, _, _)) = monotone.iter().find(|(_, before, now)| now < before) {
        return Err(backwards(format!("cpu {name}")));
    }
    // Every part grew, so both deltas are non-negative and busy <= total.
    let total = current.total() - previous.total();
    if total == 0 {
        return Err(SkipReason::NoCpuTime);
    }
    let idle = current.idle_total() - previous.idle_total();
    Ok(((total - idle) as f64 / total as f64).clamp(0.0, 1.0))
}

/// Sums the deltas of two counters per name over the names present in both maps.
fn summed_deltas<T>(
    kind: &str,
    previous: &BTreeMap<String, T>,
    current: &BTreeMap<String, T>,
    counters: impl Fn(&T) -> (u64, u64),
) -> Result<(u64, u64), SkipReason> {
    let mut sums = (0u64, 0u64);
    for (name, now) in current {
        let Some(before) = previous.get(name) else {
            continue; // appeared during the step: counts from the next one
        };
        let (a_now, b_now) = counters(now);
        let (a_before, b_before) = counters(before);
        if a_now < a_before || b_now < b_before {
            return Err(backwards(format!("{kind} {name}")));
        }
        sums.0 = sums.0.saturating_add(a_now - a_before);
        sums.1 = sums.1.saturating_add(b_now - b_before);
    }
    Ok(sums)
}

fn step(
    previous: &HostSnapshot,
    current: &HostSnapshot,
    dt: Duration,
) -> Result<HostValues, SkipReason> {
    let busy = cpu_busy_fraction(&previous.cpu, &current.cpu)?;
    let (read, written) = summed_deltas("disk", &previous.disks, &current.disks, |d| {
        (d.read_bytes, d.written_bytes)
    })?;
    let (rx, tx) = summed_deltas(
        "interface",
        &previous.interfaces,
        &current.interfaces,
        |n| (n.rx_bytes, n.tx_bytes),
    )?;
    let seconds = dt.as_secs_f64();
    Ok(HostValues {
        cpu_busy_percent: 100.0 * busy,
        memory_used_percent: current.memory.used_percent(),
        load1: current.load1,
        disk_read_bytes_per_second: read as f64 / seconds,
        disk_write_bytes_per_second: written as f64 / seconds,
        net_rx_bytes_per_second: rx as f64 / seconds,
        net_tx_bytes_per_second: tx as f64 / seconds,
    })
}
