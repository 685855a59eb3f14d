//! Host metrics from Linux kernel statistics, without I/O: the pure half of `anomaly collect`.
//!
//! * [`procfs`]: parsers for the texts of `/proc/stat`, `/proc/meminfo`, `/proc/loadavg`,
//!   `/proc/diskstats` and `/proc/net/dev`, and the whole-device rule for disks ([`BlockDevices`]).
//! * [`sampler`]: [`HostSampler`] turns successive counter snapshots into the seven metrics of
//!   [`MetricSchema::host`](crate::MetricSchema::host), with an explicit policy for counters that
//!   go backwards.
//! * [`buffer`]: [`DeliveryBuffer`], the bounded drop-oldest buffer that holds samples while the
//!   broker is unreachable.
//!
//! The caller reads the files (the functions here take their contents) and supplies the monotonic
//! time of each snapshot.
//!
//! ```
//! use std::time::Duration;
//! use anomaly_core::host::{BlockDevices, HostSampler, HostSnapshot, Observation, ProcTexts};
//!
//! let devices = BlockDevices::from_sys_block(["sda", "loop0"]);
//! let texts = |user: u64, idle: u64, sectors: u64| {
//!     (
//!         format!("cpu  {user} 0 0 {idle} 0 0 0 0 0 0\n"),
//!         format!("   8       0 sda 10 0 {sectors} 5 0 0 0 0 0 5 5\n"),
//!     )
//! };
//! let snapshot = |stat: &str, diskstats: &str| {
//!     HostSnapshot::parse(
//!         &ProcTexts {
//!             stat,
//!             meminfo: "MemTotal: 1000 kB\nMemAvailable: 250 kB\n",
//!             loadavg: "0.50 0.40 0.30 1/100 42\n",
//!             diskstats,
//!             net_dev: "",
//!         },
//!         &devices,
//!     )
//! };
//!
//! let mut sampler = HostSampler::new();
//! let (stat, disk) = texts(100, 300, 0);
//! assert_eq!(sampler.observe(Duration::from_secs(0), snapshot(&stat, &disk)?), Observation::Baseline);
//! // One second later: 25 of 100 CPU ticks busy, 8 sectors (4 KiB) read.
//! let (stat, disk) = texts(125, 375, 8);
//! let Observation::Sample(values) = sampler.observe(Duration::from_secs(1), snapshot(&stat, &disk)?) else {
//!     panic!("expected a sample");
//! };
//! assert_eq!(values.cpu_busy_percent, 25.0);
//! assert_eq!(values.memory_used_percent, 75.0);
//! assert_eq!(values.disk_read_bytes_per_second, 4096.0);
//! # Ok::<(), anomaly_core::Error>(())
//! ```

pub mod buffer;
pub mod procfs;
pub mod sampler;

#[cfg(test)]
mod tests;

pub use buffer::DeliveryBuffer;
pub use procfs::{BlockDevices, CpuTimes, DiskIo, MemInfo, NetIo};
pub use sampler::{HostSampler, HostSnapshot, HostValues, Observation, ProcTexts, SkipReason};
