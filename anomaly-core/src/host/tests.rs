//! Tests of the host parsers and sampler against real-looking kernel texts. Expected values are
//! computed by hand in the comments.

use std::collections::BTreeMap;
use std::time::Duration;

use super::procfs::{
    BlockDevices, CpuTimes, DiskIo, MemInfo, NetIo, parse_diskstats, parse_loadavg, parse_meminfo,
    parse_net_dev, parse_stat,
};
use super::sampler::{HostSampler, HostSnapshot, HostValues, Observation, ProcTexts, SkipReason};
use crate::Error;
use crate::schema::{HOST_METRIC_NAMES, MetricSchema};

// ---------------------------------------------------------------------------------------------
// Fixtures: a two-CPU machine with a SATA disk, an NVMe disk, a loop device, an LVM volume, a RAM
// disk, Ethernet, Wi-Fi and loopback. Counters are parameters so steps can move them.
// ---------------------------------------------------------------------------------------------

/// `/proc/stat` of kernel 6.x with the aggregate line built from `cpu` and guest time `guest`.
fn stat(cpu: &CpuTimes, guest: u64) -> String {
    format!(
        "cpu  {} {} {} {} {} {} {} {} {guest} 0\n\
         cpu0 5066076 145348 1542359 23414241 8341 0 12597 0 87814 0\n\
         cpu1 5066077 145348 1542360 23414242 8342 0 12598 0 87814 0\n\
         intr 1462898 39 2 0 0 0 0 0 0 1 0 0 0 4 0 0 0\n\
         ctxt 1990473\n\
         btime 1700000000\n\
         processes 2915\n\
         procs_running 1\n\
         procs_blocked 0\n\
         softirq 183433 0 21755 12 39 1137 231 21459 2263 0 136537\n",
        cpu.user, cpu.nice, cpu.system, cpu.idle, cpu.iowait, cpu.irq, cpu.softirq, cpu.steal
    )
}

fn cpu0() -> CpuTimes {
    CpuTimes {
        user: 10_132_153,
        nice: 290_696,
        system: 3_084_719,
        idle: 46_828_483,
        iowait: 16_683,
        irq: 0,
        softirq: 25_195,
        steal: 0,
    }
}

const MEMINFO: &str = "\
MemTotal:       16384000 kB
MemFree:         2048000 kB
MemAvailable:   12288000 kB
Buffers:          512000 kB
Cached:          8192000 kB
SwapCached:            0 kB
Active:          6291456 kB
Inactive:        4194304 kB
SwapTotal:       2097148 kB
SwapFree:        2097148 kB
Dirty:               148 kB
HugePages_Total:       0
HugePages_Free:        0
Hugepagesize:       2048 kB
";

const LOADAVG: &str = "1.25 0.80 0.55 3/712 45321\n";

/// Cumulative sectors per device: (read, written).
#[derive(Clone)]
struct Disks(BTreeMap<&'static str, (u64, u64)>);

fn disks0() -> Disks {
    Disks(BTreeMap::from([
        ("loop0", (2_104, 0)),
        ("sda", (9_632_040, 13_720_328)),
        ("sda1", (9_620_000, 13_720_000)),
        ("sda2", (12_040, 328)),
        ("nvme0n1", (4_200_000, 8_100_000)),
        ("nvme0n1p1", (4_199_000, 8_100_000)),
        ("dm-0", (9_000_000, 13_000_000)),
        ("ram0", (0, 0)),
    ]))
}

/// `/proc/diskstats` of kernel 5.5+ (20 columns) for the devices in `disks`.
fn diskstats(disks: &Disks) -> String {
    let numbers = |name: &str| match name {
        "loop0" => (7, 0),
        "sda" => (8, 0),
        "sda1" => (8, 1),
        "sda2" => (8, 2),
        "sdb" => (8, 16),
        "nvme0n1" => (259, 0),
        "nvme0n1p1" => (259, 1),
        "dm-0" => (253, 0),
        "ram0" => (1, 0),
        _ => (254, 99),
    };
    disks
        .0
        .iter()
        .map(|(name, (read, written))| {
            let (major, minor) = numbers(name);
            format!(
                "{major:>4} {minor:>7} {name} 148236 43512 {read} 60312 227812 198301 {written} 402544 0 251668 462856 0 0 0 0 5215 1380\n"
            )
        })
        .collect()
}

/// `/sys/block` of the fixture machine: whole devices only, virtual ones included.
fn sys_block() -> BlockDevices {
    BlockDevices::from_sys_block(["loop0", "sda", "nvme0n1", "dm-0", "ram0", "sdb"])
}

/// Cumulative bytes per interface: (rx, tx).
#[derive(Clone)]
struct Nets(BTreeMap<&'static str, (u64, u64)>);

fn nets0() -> Nets {
    Nets(BTreeMap::from([
        ("lo", (5_242_880, 5_242_880)),
        ("eth0", (987_654_321, 123_456_789)),
        ("wlan0", (1_000, 2_000)),
    ]))
}

fn net_dev(nets: &Nets) -> String {
    let mut text = String::from(
        "Inter-|   Receive                                                |  Transmit\n \
         face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n",
    );
    for (name, (rx, tx)) in &nets.0 {
        text.push_str(&format!(
            "{name:>6}: {rx} 812345 0 12 0 0 0 1234 {tx} 456789 0 0 0 0 0 0\n"
        ));
    }
    text
}

struct Machine {
    cpu: CpuTimes,
    guest: u64,
    meminfo: String,
    loadavg: String,
    disks: Disks,
    nets: Nets,
}

impl Machine {
    fn new() -> Self {
        Self {
            cpu: cpu0(),
            guest: 175_628,
            meminfo: MEMINFO.to_string(),
            loadavg: LOADAVG.to_string(),
            disks: disks0(),
            nets: nets0(),
        }
    }

    fn snapshot(&self) -> HostSnapshot {
        let stat = stat(&self.cpu, self.guest);
        let diskstats = diskstats(&self.disks);
        let net_dev = net_dev(&self.nets);
        HostSnapshot::parse(
            &ProcTexts {
                stat: &stat,
                meminfo: &self.meminfo,
                loadavg: &self.loadavg,
                diskstats: &diskstats,
                net_dev: &net_dev,
            },
            &sys_block(),
        )
        .expect("fixture parses")
    }

    fn disk(&mut self, name: &'static str, read: u64, written: u64) {
        let entry = self.disks.0.entry(name).or_insert((0, 0));
        entry.0 += read;
        entry.1 += written;
    }

    fn net(&mut self, name: &'static str, rx: u64, tx: u64) {
        let entry = self.nets.0.entry(name).or_insert((0, 0));
        entry.0 += rx;
        entry.1 += tx;
    }

    /// The standard step of [`hand_computed_step`]: 1000 CPU ticks of which 400 busy.
    fn advance_cpu(&mut self) {
        self.cpu.user += 300;
        self.cpu.system += 100;
        self.cpu.idle += 550;
        self.cpu.iowait += 50;
        self.guest += 200; // inside the 300 user ticks already
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn sample(observation: Observation) -> HostValues {
    match observation {
        Observation::Sample(values) => {
            assert!(
                values.to_array().iter().all(|v| v.is_finite()),
                "non-finite value in {values:?}"
            );
            values
        }
        other => panic!("expected a sample, got {other:?}"),
    }
}

fn host_stats_message(result: Result<impl std::fmt::Debug, Error>) -> String {
    match result {
        Err(e @ Error::HostStats { .. }) => e.to_string(),
        other => panic!("expected Error::HostStats, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Parsers
// ---------------------------------------------------------------------------------------------

#[test]
fn stat_reads_the_aggregate_line_and_leaves_guest_out() {
    let cpu = parse_stat(&stat(&cpu0(), 175_628)).unwrap();
    assert_eq!(cpu, cpu0());
    // 10132153 + 290696 + 3084719 + 46828483 + 16683 + 0 + 25195 + 0, guest 175628 not added.
    assert_eq!(cpu.total(), 60_377_929);
    assert_eq!(cpu.idle_total(), 46_845_166);
    assert_eq!(cpu.busy(), 60_377_929 - 46_845_166);
}

#[test]
fn stat_of_an_old_kernel_with_four_fields_parses_with_zeros() {
    let cpu = parse_stat("cpu  100 20 30 400\ncpu0 100 20 30 400\n").unwrap();
    assert_eq!(
        cpu,
        CpuTimes {
            user: 100,
            nice: 20,
            system: 30,
            idle: 400,
            ..CpuTimes::default()
        }
    );
}

#[test]
fn stat_errors_are_clear() {
    let msg = host_stats_message(parse_stat("cpu0 1 2 3 4\nintr 5\n"));
    assert!(
        msg.contains("/proc/stat") && msg.contains("no aggregate `cpu` line"),
        "{msg}"
    );

    let msg = host_stats_message(parse_stat("intr 5\ncpu  1 2 x 4 5 6 7 8\n"));
    assert!(
        msg.contains("line 2") && msg.contains("system `x`"),
        "{msg}"
    );

    let msg = host_stats_message(parse_stat("cpu  1 2 3\n"));
    assert!(msg.contains("3 fields"), "{msg}");

    let msg = host_stats_message(parse_stat("cpu  -1 2 3 4\n"));
    assert!(msg.contains("user `-1`"), "{msg}");

    let max = u64::MAX;
    let msg = host_stats_message(parse_stat(&format!("cpu  {max} {max} 0 0\n")));
    assert!(msg.contains("overflow"), "{msg}");
}

#[test]
fn meminfo_reads_total_and_available_in_bytes() {
    let mem = parse_meminfo(MEMINFO).unwrap();
    assert_eq!(
        mem,
        MemInfo {
            total_bytes: 16_384_000 * 1024,
            available_bytes: 12_288_000 * 1024,
        }
    );
    // 100 * (1 - 12288000 / 16384000) = 100 * (1 - 0.75)
    assert_eq!(mem.used_percent(), 25.0);
}

#[test]
fn meminfo_errors_are_clear() {
    let msg = host_stats_message(parse_meminfo("MemTotal: 1000 kB\nMemFree: 10 kB\n"));
    assert!(
        msg.contains("/proc/meminfo") && msg.contains("no MemAvailable"),
        "{msg}"
    );

    let msg = host_stats_message(parse_meminfo("MemAvailable: 10 kB\n"));
    assert!(msg.contains("no MemTotal"), "{msg}");

    let msg = host_stats_message(parse_meminfo("MemTotal: lots kB\nMemAvailable: 1 kB\n"));
    assert!(msg.contains("line 1") && msg.contains("`lots`"), "{msg}");

    let msg = host_stats_message(parse_meminfo("MemTotal: 10 MB\nMemAvailable: 1 kB\n"));
    assert!(msg.contains("unit `MB`"), "{msg}");

    let msg = host_stats_message(parse_meminfo("MemTotal: 10 kB\nMemAvailable: 11 kB\n"));
    assert!(msg.contains("exceeds MemTotal"), "{msg}");

    let msg = host_stats_message(parse_meminfo("MemTotal: 0 kB\nMemAvailable: 0 kB\n"));
    assert!(msg.contains("MemTotal is 0"), "{msg}");

    let msg = host_stats_message(parse_meminfo("MemTotal:\nMemAvailable: 0 kB\n"));
    assert!(msg.contains("MemTotal has no value"), "{msg}");
}

#[test]
fn loadavg_reads_load1_and_rejects_garbage() {
    assert_eq!(parse_loadavg(LOADAVG).unwrap(), 1.25);
    assert_eq!(parse_loadavg("0.00 0.01 0.05 1/80 7\n").unwrap(), 0.0);
    for bad in [
        "",
        "   \n",
        "abc 0.1 0.1 1/1 1",
        "-1.0 0 0 1/1 1",
        "NaN 0 0",
        "inf 0 0",
    ] {
        let msg = host_stats_message(parse_loadavg(bad));
        assert!(msg.contains("/proc/loadavg"), "{msg}");
    }
}

#[test]
fn diskstats_counts_only_whole_storage_devices() {
    let disks = parse_diskstats(&diskstats(&disks0()), &sys_block()).unwrap();
    // Partitions (sda1, sda2, nvme0n1p1) are not in /sys/block; loop0, dm-0 and ram0 are, but are
    // excluded kinds. Sectors are 512 bytes.
    assert_eq!(
        disks,
        BTreeMap::from([
            (
                "nvme0n1".to_string(),
                DiskIo {
                    read_bytes: 4_200_000 * 512,
                    written_bytes: 8_100_000 * 512,
                }
            ),
            (
                "sda".to_string(),
                DiskIo {
                    read_bytes: 9_632_040 * 512,
                    written_bytes: 13_720_328 * 512,
                }
            ),
        ])
    );
}

#[test]
fn block_devices_apply_the_whole_device_rule() {
    let devices = BlockDevices::from_sys_block([
        "sda",
        "nvme0n1",
        "mmcblk0",
        "vda",
        "xvda",
        "loop7",
        "ram15",
        "zram0",
        "dm-3",
        "md127",
        "cciss!c0d0",
    ]);
    for counted in ["sda", "nvme0n1", "mmcblk0", "vda", "xvda", "cciss/c0d0"] {
        assert!(devices.counts(counted), "{counted} should count");
    }
    for excluded in [
        "sda1",
        "nvme0n1p1",
        "mmcblk0p2",
        "loop7",
        "ram15",
        "zram0",
        "dm-3",
        "md127",
        "sdz",
        "cciss!c0d0",
    ] {
        assert!(!devices.counts(excluded), "{excluded} should not count");
    }
}

#[test]
fn diskstats_accepts_short_partition_lines_of_old_kernels_but_not_short_disk_lines() {
    // Linux before 2.6.25 printed only four statistics for partitions.
    let old = "   8    0 sda 100 0 800 10 50 0 400 20 0 30 30\n   8    1 sda1 90 720 45 360\n";
    let disks = parse_diskstats(old, &BlockDevices::from_sys_block(["sda"])).unwrap();
    assert_eq!(disks["sda"].read_bytes, 800 * 512);
    assert_eq!(disks["sda"].written_bytes, 400 * 512);

    let msg = host_stats_message(parse_diskstats(
        "   8    0 sda 90 720 45 360\n",
        &BlockDevices::from_sys_block(["sda"]),
    ));
    assert!(
        msg.contains("/proc/diskstats") && msg.contains("line 1") && msg.contains("sda"),
        "{msg}"
    );
}

#[test]
fn diskstats_errors_are_clear() {
    let devices = BlockDevices::from_sys_block(["sda"]);
    let msg = host_stats_message(parse_diskstats(
        "   8 0 sda 1 2 many 4 5 6 7 8 9 10 11\n",
        &devices,
    ));
    assert!(msg.contains("sectors read `many`"), "{msg}");

    let msg = host_stats_message(parse_diskstats("\n   8 0\n", &devices));
    assert!(msg.contains("line 2"), "{msg}");

    let line = "   8 0 sda 1 2 3 4 5 6 7 8 9 10 11\n";
    let msg = host_stats_message(parse_diskstats(&format!("{line}{line}"), &devices));
    assert!(msg.contains("listed twice"), "{msg}");

    let huge = format!("   8 0 sda 1 2 {} 4 5 6 7 8 9 10 11\n", u64::MAX);
    let msg = host_stats_message(parse_diskstats(&huge, &devices));
    assert!(msg.contains("overflows"), "{msg}");
}

#[test]
fn net_dev_reads_every_interface_with_rx_and_tx_bytes() {
    let nets = parse_net_dev(&net_dev(&nets0())).unwrap();
    assert_eq!(
        nets,
        BTreeMap::from([
            (
                "eth0".to_string(),
                NetIo {
                    rx_bytes: 987_654_321,
                    tx_bytes: 123_456_789,
                }
            ),
            (
                "lo".to_string(),
                NetIo {
                    rx_bytes: 5_242_880,
                    tx_bytes: 5_242_880,
                }
            ),
            (
                "wlan0".to_string(),
                NetIo {
                    rx_bytes: 1_000,
                    tx_bytes: 2_000,
                }
            ),
        ])
    );
    // Old kernels glue the first counter to the colon.
    let glued = parse_net_dev("  eth0:12345 10 0 0 0 0 0 0 678 9 0 0 0 0 0 0\n").unwrap();
    assert_eq!(
        glued["eth0"],
        NetIo {
            rx_bytes: 12_345,
            tx_bytes: 678,
        }
    );
}

#[test]
fn net_dev_errors_are_clear() {
    let msg = host_stats_message(parse_net_dev("  eth0 1 2 3 4 5 6 7 8 9\n"));
    assert!(
        msg.contains("/proc/net/dev") && msg.contains("line 1"),
        "{msg}"
    );

    let msg = host_stats_message(parse_net_dev("  eth0: 1 2 3 4\n"));
    assert!(msg.contains("4 counters"), "{msg}");

    let msg = host_stats_message(parse_net_dev("  eth0: 1 2 3 4 5 6 7 8 x 0 0 0 0 0 0 0\n"));
    assert!(msg.contains("transmitted bytes `x`"), "{msg}");

    let msg = host_stats_message(parse_net_dev("   : 1 2 3 4 5 6 7 8 9\n"));
    assert!(msg.contains("empty interface name"), "{msg}");

    let line = "  eth0: 1 2 3 4 5 6 7 8 9 0 0 0 0 0 0 0\n";
    let msg = host_stats_message(parse_net_dev(&format!("{line}{line}")));
    assert!(msg.contains("listed twice"), "{msg}");
}

/// Every prefix of every fixture, and some noise, goes through every parser without a panic.
#[test]
fn truncated_or_garbled_text_never_panics() {
    let m = Machine::new();
    let fixtures = [
        stat(&m.cpu, m.guest),
        MEMINFO.to_string(),
        LOADAVG.to_string(),
        diskstats(&m.disks),
        net_dev(&m.nets),
        "\u{0}\u{ff}ü:|: : :\n\n\t".to_string(),
    ];
    let devices = sys_block();
    for text in &fixtures {
        for end in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            let t = &text[..end];
            let _ = parse_stat(t);
            let _ = parse_meminfo(t);
            let _ = parse_loadavg(t);
            let _ = parse_diskstats(t, &devices);
            let _ = parse_net_dev(t);
        }
    }
}

#[test]
fn snapshot_excludes_loopback_and_reports_the_failing_file() {
    let snapshot = Machine::new().snapshot();
    assert_eq!(
        snapshot.interfaces.keys().collect::<Vec<_>>(),
        ["eth0", "wlan0"]
    );
    assert_eq!(
        snapshot.disks.keys().collect::<Vec<_>>(),
        ["nvme0n1", "sda"]
    );
    assert_eq!(snapshot.load1, 1.25);

    let stat = stat(&cpu0(), 0);
    let result = HostSnapshot::parse(
        &ProcTexts {
            stat: &stat,
            meminfo: MEMINFO,
            loadavg: LOADAVG,
            diskstats: "",
            net_dev: "garbage\n",
        },
        &sys_block(),
    );
    let msg = host_stats_message(result);
    assert!(msg.starts_with("/proc/net/dev: line 1"), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// Sampler
// ---------------------------------------------------------------------------------------------

#[test]
fn first_snapshot_is_only_a_baseline() {
    let mut sampler = HostSampler::new();
    assert_eq!(
        sampler.observe(secs(10.0), Machine::new().snapshot()),
        Observation::Baseline
    );
}

#[test]
fn hand_computed_step() {
    let mut m = Machine::new();
    let mut sampler = HostSampler::new();
    sampler.observe(secs(100.0), m.snapshot());

    m.advance_cpu();
    m.disk("sda", 16, 40); // 8192 B read, 20480 B written
    m.disk("nvme0n1", 8, 24); // 4096 B read, 12288 B written
    m.disk("sda1", 16, 40); // partition: already inside sda
    m.disk("loop0", 1_000, 0); // excluded kind
    m.disk("dm-0", 500, 500); // stacked on sda: excluded
    m.net("eth0", 200_000, 50_000);
    m.net("wlan0", 2_000, 1_000);
    m.net("lo", 1_000_000, 1_000_000); // loopback: excluded
    m.loadavg = "2.50 1.00 0.60 4/712 45400\n".into();
    m.meminfo = m
        .meminfo
        .replace("MemAvailable:   12288000", "MemAvailable:    4096000");

    let v = sample(sampler.observe(secs(102.0), m.snapshot()));
    // Δtotal = 300 + 100 + 550 + 50 = 1000 (guest's 200 is inside user), Δ(idle+iowait) = 600.
    assert_eq!(v.cpu_busy_percent, 40.0);
    // 100 * (1 - 4096000 / 16384000)
    assert_eq!(v.memory_used_percent, 75.0);
    assert_eq!(v.load1, 2.5);
    // (8192 + 4096) B / 2 s and (20480 + 12288) B / 2 s
    assert_eq!(v.disk_read_bytes_per_second, 6_144.0);
    assert_eq!(v.disk_write_bytes_per_second, 16_384.0);
    // (200000 + 2000) B / 2 s and (50000 + 1000) B / 2 s
    assert_eq!(v.net_rx_bytes_per_second, 101_000.0);
    assert_eq!(v.net_tx_bytes_per_second, 25_500.0);

    // Schema order, straight into a Sample.
    let s = v.to_sample("web-1", 1_700_000_000_000);
    assert_eq!(s.entity, "web-1");
    assert_eq!(
        s.values.as_slice(),
        [40.0, 75.0, 2.5, 6_144.0, 16_384.0, 101_000.0, 25_500.0]
    );
    assert_eq!(s.values.len(), MetricSchema::host().len());
    assert_eq!(
        HOST_METRIC_NAMES,
        [
            "cpu_busy",
            "memory_used",
            "load1",
            "disk_read",
            "disk_write",
            "net_rx",
            "net_tx"
        ]
    );
}

#[test]
fn rates_use_the_measured_time_between_snapshots() {
    let mut m = Machine::new();
    let mut sampler = HostSampler::new();
    sampler.observe(secs(1.0), m.snapshot());
    m.advance_cpu();
    m.net("eth0", 1_000, 0);
    // A late tick: 1.25 s instead of the nominal 1 s. 1000 B / 1.25 s = 800 B/s.
    let v = sample(sampler.observe(secs(2.25), m.snapshot()));
    assert_eq!(v.net_rx_bytes_per_second, 800.0);
}

#[test]
fn a_counter_that_goes_backwards_skips_the_step_then_sampling_recovers() {
    let mut m = Machine::new();
    let mut sampler = HostSampler::new();
    sampler.observe(secs(0.0), m.snapshot());

    // The NIC driver was reloaded: eth0's counters restart near zero. Without the policy the
    // unsigned delta would be ~1.8e19 B/s.
    m.advance_cpu();
    m.nets.0.insert("eth0", (4_096, 1_024));
    assert_eq!(
        sampler.observe(secs(1.0), m.snapshot()),
        Observation::Skipped(SkipReason::CounterWentBackwards {
            counter: "interface eth0".into()
        })
    );

    // The next step is measured from the reset values.
    m.advance_cpu();
    m.net("eth0", 3_000, 500);
    let v = sample(sampler.observe(secs(2.0), m.snapshot()));
    assert_eq!(v.net_rx_bytes_per_second, 3_000.0);
    assert_eq!(v.net_tx_bytes_per_second, 500.0);
    assert_eq!(v.cpu_busy_percent, 40.0);
}

#[test]
fn a_disk_counter_that_goes_backwards_skips_the_step() {
    let mut m = Machine::new();
    let mut sampler = HostSampler::new();
    sampler.observe(secs(0.0), m.snapshot());
    m.advance_cpu();
    m.disks.0.insert("nvme0n1", (10, 4_294_967_295)); // 32-bit sector counter wrapped
    let observation = sampler.observe(secs(1.0), m.snapshot());
    assert_eq!(
        observation,
        Observation::Skipped(SkipReason::CounterWentBackwards {
            counter: "disk nvme0n1".into()
        })
    );
    if let Observation::Skipped(reason) = observation {
        assert_eq!(reason.label(), "counter_reset");
        assert_eq!(reason.to_string(), "counter `disk nvme0n1` went backwards");
    }
}

#[test]
fn a_cpu_going_offline_skips_the_step() {
    let mut m = Machine::new();
    let mut sampler = HostSampler::new();
    sampler.observe(secs(0.0), m.snapshot());
    // cpu1's share leaves the aggregate: user drops although idle grows.
    m.cpu.user -= 5_000_000;
    m.cpu.idle += 1_000;
    assert_eq!(
        sampler.observe(secs(1.0), m.snapshot()),
        Observation::Skipped(SkipReason::CounterWentBackwards {
            counter: "cpu user".into()
        })
    );
}

#[test]
fn iowait_may_decrease_when_idle_absorbs_it() {
    let mut m = Machine::new();
    let mut sampler = HostSampler::new();
    sampler.observe(secs(0.0), m.snapshot());
    // iowait -10, idle +110, user +100: Δtotal = 200, Δ(idle+iowait) = 100, busy = 50 %.
    m.cpu.iowait -= 10;
    m.cpu.idle += 110;
    m.cpu.user += 100;
    let v = sample(sampler.observe(secs(1.0), m.snapshot()));
    assert_eq!(v.cpu_busy_percent, 50.0);
}

#[test]
fn a_device_appearing_starts_counting_from_the_next_step_without_a_jump() {
    let mut m = Machine::new();
    let mut sampler = HostSampler::new();
    sampler.observe(secs(0.0), m.snapshot());

    // A USB disk with a long history and a new VPN interface are plugged in.
    m.advance_cpu();
    m.disk("sda", 8, 0); // 4096 B
    m.disks.0.insert("sdb", (50_000_000, 70_000_000));
    m.nets.0.insert("tun0", (9_000_000_000, 8_000_000_000));
    let v = sample(sampler.observe(secs(1.0), m.snapshot()));
    assert_eq!(v.disk_read_bytes_per_second, 4_096.0);
    assert_eq!(v.disk_write_bytes_per_second, 0.0);
    assert_eq!(v.net_rx_bytes_per_second, 0.0);

    // From now on they count.
    m.advance_cpu();
    m.disk("sdb", 2, 4); // 1024 B read, 2048 B written
    m.net("tun0", 700, 300);
    let v = sample(sampler.observe(secs(2.0), m.snapshot()));
    assert_eq!(v.disk_read_bytes_per_second, 1_024.0);
    assert_eq!(v.disk_write_bytes_per_second, 2_048.0);
    assert_eq!(v.net_rx_bytes_per_second, 700.0);
    assert_eq!(v.net_tx_bytes_per_second, 300.0);
}

#[test]
fn a_device_disappearing_is_not_a_reset() {
    let mut m = Machine::new();
    let mut sampler = HostSampler::new();
    sampler.observe(secs(0.0), m.snapshot());
    m.advance_cpu();
    m.disks.0.remove("nvme0n1");
    m.nets.0.remove("eth0");
    m.disk("sda", 4, 0); // 2048 B
    m.net("wlan0", 10, 20);
    let v = sample(sampler.observe(secs(1.0), m.snapshot()));
    assert_eq!(v.disk_read_bytes_per_second, 2_048.0);
    assert_eq!(v.net_rx_bytes_per_second, 10.0);
    assert_eq!(v.net_tx_bytes_per_second, 20.0);
}

#[test]
fn a_clock_that_does_not_advance_or_idle_cpu_counters_skip_the_step() {
    let mut m = Machine::new();
    let mut sampler = HostSampler::new();
    sampler.observe(secs(5.0), m.snapshot());
    m.advance_cpu();
    let skipped = sampler.observe(secs(5.0), m.snapshot());
    assert_eq!(skipped, Observation::Skipped(SkipReason::ClockNotAdvanced));
    assert_eq!(
        sampler.observe(secs(4.0), m.snapshot()),
        Observation::Skipped(SkipReason::ClockNotAdvanced)
    );
    // Same CPU counters one (virtual) second later: busy % is 0/0.
    let skipped = sampler.observe(secs(5.0), m.snapshot());
    assert_eq!(skipped, Observation::Skipped(SkipReason::NoCpuTime));
    assert_eq!(SkipReason::NoCpuTime.label(), "no_cpu_time");
    assert_eq!(SkipReason::ClockNotAdvanced.label(), "clock");
}

#[test]
fn a_fully_busy_and_a_fully_idle_step_stay_within_bounds() {
    let mut m = Machine::new();
    let mut sampler = HostSampler::new();
    sampler.observe(secs(0.0), m.snapshot());
    m.cpu.system += 200;
    m.cpu.steal += 50;
    assert_eq!(
        sample(sampler.observe(secs(1.0), m.snapshot())).cpu_busy_percent,
        100.0
    );
    m.cpu.idle += 200;
    assert_eq!(
        sample(sampler.observe(secs(2.0), m.snapshot())).cpu_busy_percent,
        0.0
    );
}
