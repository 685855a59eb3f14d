//! Parsers for the kernel statistics texts the collector reads: `/proc/stat`, `/proc/meminfo`,
//! `/proc/loadavg`, `/proc/diskstats` and `/proc/net/dev`.
//!
//! Every function takes the text of one file and never touches the file system; reading is the
//! caller's job. Malformed text is an [`Error::HostStats`] naming the file and the line, never a
//! panic: the text comes from a kernel we do not control (or from a container runtime that fakes it).
//!
//! The parsers return raw, ever-growing counters. Turning them into rates is
//! [`super::sampler::HostSampler`]'s job.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Error, Result};

/// The kernel's name of the CPU statistics file, as used in errors.
pub const STAT: &str = "/proc/stat";
/// The kernel's name of the memory statistics file, as used in errors.
pub const MEMINFO: &str = "/proc/meminfo";
/// The kernel's name of the load average file, as used in errors.
pub const LOADAVG: &str = "/proc/loadavg";
/// The kernel's name of the block device statistics file, as used in errors.
pub const DISKSTATS: &str = "/proc/diskstats";
/// The kernel's name of the network interface statistics file, as used in errors.
pub const NET_DEV: &str = "/proc/net/dev";

/// Bytes per sector in `/proc/diskstats`. The kernel always counts 512-byte units there, whatever the
/// device's logical or physical sector size (see the kernel's `Documentation/block/stat.rst`).
pub const DISKSTATS_SECTOR_BYTES: u64 = 512;

/// Name prefixes of block devices that are never counted as disk I/O, even though they are listed in
/// `/sys/block`:
///
/// * `loop`, `ram`, `zram`: backed by files or memory, not by a disk;
/// * `dm-`, `md`: device-mapper (LVM, dm-crypt, multipath) and software RAID devices are stacked on
///   the physical disks, which already count every byte that reaches them; counting both would
///   double (or, for RAID 1, triple) the reported I/O.
pub const EXCLUDED_DISK_PREFIXES: [&str; 5] = ["loop", "ram", "zram", "dm-", "md"];

/// The interface name of the loopback device, excluded from network rates: its traffic never leaves
/// the machine.
pub const LOOPBACK_INTERFACE: &str = "lo";

fn error(file: &'static str, message: impl Into<String>) -> Error {
    Error::HostStats {
        file,
        message: message.into(),
    }
}

fn line_error(file: &'static str, line: usize, message: impl std::fmt::Display) -> Error {
    error(file, format!("line {line}: {message}"))
}

fn parse_u64(file: &'static str, line: usize, what: &str, token: &str) -> Result<u64> {
    token.parse().map_err(|_| {
        line_error(
            file,
            line,
            format!("{what} `{token}` is not a whole number"),
        )
    })
}

/// Aggregate CPU time over all online CPUs, from the `cpu` line of `/proc/stat`, in clock ticks
/// (`USER_HZ`, usually 1/100 s). The unit cancels out: only ratios of deltas are used.
///
/// `guest` and `guest_nice` are not kept: the kernel already includes them in `user` and `nice`, so
/// adding them would count guest time twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Time in user mode (including guest time).
    pub user: u64,
    /// Time in user mode at low priority (including niced guest time).
    pub nice: u64,
    /// Time in kernel mode.
    pub system: u64,
    /// Time idle.
    pub idle: u64,
    /// Time idle while I/O was outstanding. Unreliable by the kernel's own account (`proc(5)`): it can
    /// decrease, so it is only ever used together with `idle`.
    pub iowait: u64,
    /// Time servicing hardware interrupts.
    pub irq: u64,
    /// Time servicing soft interrupts.
    pub softirq: u64,
    /// Time stolen by the hypervisor for other virtual machines.
    pub steal: u64,
}

impl CpuTimes {
    /// All CPU time: the sum of every field (saturating, so absurd input cannot overflow).
    pub fn total(&self) -> u64 {
        [
            self.user,
            self.nice,
            self.system,
            self.idle,
            self.iowait,
            self.irq,
            self.softirq,
            self.steal,
        ]
        .iter()
        .fold(0u64, |acc, v| acc.saturating_add(*v))
    }

    /// Time the CPUs did no work: `idle + iowait`.
    pub fn idle_total(&self) -> u64 {
        self.idle.saturating_add(self.iowait)
    }

    /// Time the CPUs were busy: `total - idle - iowait`. Steal counts as busy: the time was not
    /// available to this machine.
    pub fn busy(&self) -> u64 {
        self.total() - self.idle_total()
    }
}

/// Parses the aggregate `cpu` line of `/proc/stat`.
///
/// Needs at least the four fields every kernel has (`user nice system idle`); fields added by later
/// kernels (`iowait`, `irq`, `softirq`, `steal`) count as 0 when absent, and `guest`, `guest_nice` and
/// anything after them are ignored.
pub fn parse_stat(text: &str) -> Result<CpuTimes> {
    for (i, line) in text.lines().enumerate() {
        let mut tokens = line.split_whitespace();
        if tokens.next() != Some("cpu") {
            continue;
        }
        let line_no = i + 1;
        const NAMES: [&str; 8] = [
            "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
        ];
        let mut values = [0u64; 8];
        let mut found = 0;
        for (slot, (name, token)) in values.iter_mut().zip(NAMES.iter().zip(tokens)) {
            *slot = parse_u64(STAT, line_no, name, token)?;
            found += 1;
        }
        if found < 4 {
            return Err(line_error(
                STAT,
                line_no,
                format!(
                    "the `cpu` line has {found} fields, at least 4 (user nice system idle) are needed"
                ),
            ));
        }
        if values
            .iter()
            .try_fold(0u64, |acc, v| acc.checked_add(*v))
            .is_none()
        {
            return Err(line_error(
                STAT,
                line_no,
                "the `cpu` fields overflow when summed",
            ));
        }
        let [user, nice, system, idle, iowait, irq, softirq, steal] = values;
        return Ok(CpuTimes {
            user,
            nice,
            system,
            idle,
            iowait,
            irq,
            softirq,
            steal,
        });
    }
    Err(error(STAT, "no aggregate `cpu` line"))
}

/// Memory totals from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`: usable RAM.
    pub total_bytes: u64,
    /// `MemAvailable`: the kernel's estimate of memory available to new work without swapping
    /// (free memory plus reclaimable caches).
    pub available_bytes: u64,
}

impl MemInfo {
    /// Memory in use, in percent: `100 * (1 - available / total)`, within `[0, 100]` for any value
    /// [`parse_meminfo`] returns.
    pub fn used_percent(&self) -> f64 {
        if self.total_bytes == 0 {
            return 0.0;
        }
        let available = self.available_bytes.min(self.total_bytes);
        100.0 * (1.0 - available as f64 / self.total_bytes as f64)
    }
}

/// Parses `MemTotal` and `MemAvailable` from `/proc/meminfo` (`kB` means KiB there).
///
/// `MemAvailable` exists since Linux 3.14; older kernels are an error rather than a guess. Lines of
/// other keys are not inspected. `MemTotal` must be positive and at least `MemAvailable`.
pub fn parse_meminfo(text: &str) -> Result<MemInfo> {
    let mut total = None;
    let mut available = None;
    for (i, line) in text.lines().enumerate() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let slot = match key.trim() {
            "MemTotal" => &mut total,
            "MemAvailable" => &mut available,
            _ => continue,
        };
        if slot.is_some() {
            continue;
        }
        let line_no = i + 1;
        let mut tokens = rest.split_whitespace();
        let Some(number) = tokens.next() else {
            return Err(line_error(
                MEMINFO,
                line_no,
                format!("{} has no value", key.trim()),
            ));
        };
        let value = parse_u64(MEMINFO, line_no, key.trim(), number)?;
        let bytes = match (tokens.next(), tokens.next()) {
            (None, None) => Some(value),
            (Some("kB"), None) => value.checked_mul(1024),
            (unit, _) => {
                return Err(line_error(
                    MEMINFO,
                    line_no,
                    format!(
                        "unexpected unit `{}` after {}",
                        unit.unwrap_or_default(),
                        key.trim()
                    ),
                ));
            }
        };
        *slot = Some(bytes.ok_or_else(|| {
            line_error(
                MEMINFO,
                line_no,
                format!("{} overflows in bytes", key.trim()),
            )
        })?);
    }
    let total_bytes = total.ok_or_else(|| error(MEMINFO, "no MemTotal line"))?;
    let available_bytes = available
        .ok_or_else(|| error(MEMINFO, "no MemAvailable line (it exists since Linux 3.14)"))?;
    if total_bytes == 0 {
        return Err(error(MEMINFO, "MemTotal is 0"));
    }
    if available_bytes > total_bytes {
        return Err(error(
            MEMINFO,
            format!("MemAvailable ({available_bytes} B) exceeds MemTotal ({total_bytes} B)"),
        ));
    }
    Ok(MemInfo {
        total_bytes,
        available_bytes,
    })
}

/// Parses the one-minute load average: the first field of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Result<f64> {
    let token = text
        .split_whitespace()
        .next()
        .ok_or_else(|| error(LOADAVG, "empty"))?;
    match token.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(line_error(
            LOADAVG,
            1,
            format!("load1 `{token}` is not a non-negative number"),
        )),
    }
}

/// Cumulative I/O of one block device since boot, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskIo {
    /// Bytes read (sectors read × 512).
    pub read_bytes: u64,
    /// Bytes written (sectors written × 512).
    pub written_bytes: u64,
}

/// The block devices whose I/O counts as disk I/O: whole devices (not partitions) backed by storage.
///
/// "Whole" is decided by the kernel, not by guessing from names: a device is whole when it is listed
/// in `/sys/block` (partitions appear only under their parent there, so `sda1` or `nvme0n1p2` are
/// never listed). Of those, devices whose name starts with one of [`EXCLUDED_DISK_PREFIXES`] are left
/// out (loop, RAM, zram, device-mapper and software RAID devices).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockDevices {
    names: BTreeSet<String>,
}

impl BlockDevices {
    /// The devices named by the entries of `/sys/block`.
    ///
    /// sysfs writes a `/` in a device name as `!` (`cciss!c0d0` is `cciss/c0d0` in
    /// `/proc/diskstats`), so `!` is turned back into `/`.
    pub fn from_sys_block<I, S>(entries: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            names: entries
                .into_iter()
                .map(|s| s.as_ref().replace('!', "/"))
                .collect(),
        }
    }

    /// Whether the `/proc/diskstats` device `name` counts: listed as whole and not of an excluded kind.
    pub fn counts(&self, name: &str) -> bool {
        self.names.contains(name) && !EXCLUDED_DISK_PREFIXES.iter().any(|p| name.starts_with(p))
    }

    /// The whole devices as listed, excluded kinds included.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }
}

/// Parses `/proc/diskstats` and returns the cumulative I/O of every device that
/// [`BlockDevices::counts`], by name.
///
/// A line is `major minor name` followed by the statistics; statistic 3 (1-based) is sectors read
/// and statistic 7 sectors written. Lines of devices that do not count only need a name (old kernels print
/// short lines for partitions); a counted device needs both fields.
pub fn parse_diskstats(text: &str, devices: &BlockDevices) -> Result<BTreeMap<String, DiskIo>> {
    let mut disks = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.is_empty() {
            continue;
        }
        if tokens.len() < 3 {
            return Err(line_error(
                DISKSTATS,
                line_no,
                "expected `major minor name` and statistics",
            ));
        }
        let name = tokens[2];
        if !devices.counts(name) {
            continue;
        }
        if tokens.len() < 10 {
            return Err(line_error(
                DISKSTATS,
                line_no,
                format!(
                    "device {name} has {} fields, at least 10 are needed",
                    tokens.len()
                ),
            ));
        }
        let sectors_read = parse_u64(DISKSTATS, line_no, "sectors read", tokens[5])?;
        let sectors_written = parse_u64(DISKSTATS, line_no, "sectors written", tokens[9])?;
        let to_bytes = |sectors: u64| {
            sectors.checked_mul(DISKSTATS_SECTOR_BYTES).ok_or_else(|| {
                line_error(
                    DISKSTATS,
                    line_no,
                    format!("device {name}: sector count overflows in bytes"),
                )
            })
        };
        let io = DiskIo {
            read_bytes: to_bytes(sectors_read)?,
            written_bytes: to_bytes(sectors_written)?,
        };
        if disks.insert(name.to_string(), io).is_some() {
            return Err(line_error(
                DISKSTATS,
                line_no,
                format!("device {name} is listed twice"),
            ));
        }
    }
    Ok(disks)
}

/// Cumulative traffic of one network interface since it was created, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetIo {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
}

/// Whether an interface is the loopback device ([`LOOPBACK_INTERFACE`]), whose traffic is excluded.
pub fn is_loopback(interface: &str) -> bool {
    interface == LOOPBACK_INTERFACE
}

/// Parses `/proc/net/dev` and returns the cumulative traffic of every interface, loopback included,
/// by name (filter with [`is_loopback`]).
///
/// The two header lines (they contain `|`) are skipped. A data line is `name:` followed by eight
/// receive and eight transmit fields; received bytes are the first field after the colon and
/// transmitted bytes the ninth. Old kernels print no space after the colon; that parses too.
pub fn parse_net_dev(text: &str) -> Result<BTreeMap<String, NetIo>> {
    let mut interfaces = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() || line.contains('|') {
            continue;
        }
        let Some((name, fields)) = line.split_once(':') else {
            return Err(line_error(
                NET_DEV,
                line_no,
                "expected `interface: counters`",
            ));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(line_error(NET_DEV, line_no, "empty interface name"));
        }
        let tokens: Vec<&str> = fields.split_whitespace().collect();
        if tokens.len() < 9 {
            return Err(line_error(
                NET_DEV,
                line_no,
                format!(
                    "interface {name} has {} counters, at least 9 are needed",
                    tokens.len()
                ),
            ));
        }
        let io = NetIo {
            rx_bytes: parse_u64(NET_DEV, line_no, "received bytes", tokens[0])?,
            tx_bytes: parse_u64(NET_DEV, line_no, "transmitted bytes", tokens[8])?,
        };
        if interfaces.insert(name.to_string(), io).is_some() {
            return Err(line_error(
                NET_DEV,
                line_no,
                format!("interface {name} is listed twice"),
            ));
        }
    }
    Ok(interfaces)
}
