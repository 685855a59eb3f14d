//! A fake host for the collector tests: `proc/` and `sys/` folders laid out like the kernel's, with
//! counters the test moves between ticks (by hand, or from a background thread).
#![allow(dead_code)] // Each test binary uses its own subset of these helpers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anomaly_apps::cmd::collect::CollectArgs;
use anomaly_apps::collect::SampleFormat;

/// Every counter the fixture files carry.
#[derive(Debug, Clone)]
pub(crate) struct Counters {
    pub user: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    /// (sectors read, sectors written) of the whole disk `sda`.
    pub sda: (u64, u64),
    /// Its partition: never counted.
    pub sda1: (u64, u64),
    /// A loop device, listed in /sys/block but excluded.
    pub loop0: (u64, u64),
    /// (rx bytes, tx bytes) of `eth0`.
    pub eth0: (u64, u64),
    /// Loopback: never counted.
    pub lo: (u64, u64),
    pub mem_available_kb: u64,
    pub load1: &'static str,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            user: 1_000_000,
            system: 300_000,
            idle: 4_000_000,
            iowait: 10_000,
            sda: (9_632_040, 13_720_328),
            sda1: (9_620_000, 13_720_000),
            loop0: (2_104, 0),
            eth0: (987_654_321, 123_456_789),
            lo: (5_242_880, 5_242_880),
            // 1 - 12288000 / 16384000 = 25 % used
            mem_available_kb: 12_288_000,
            load1: "1.25",
        }
    }
}

impl Counters {
    /// One step of activity: 100 CPU ticks of which 40 busy, 8 sectors (4 KiB) read and 16 (8 KiB)
    /// written on sda, 1000 B received and 500 B sent on eth0; noise on sda1, loop0 and lo.
    pub(crate) fn advance(&mut self) {
        self.user += 30;
        self.system += 10;
        self.idle += 55;
        self.iowait += 5;
        self.sda.0 += 8;
        self.sda.1 += 16;
        self.sda1.0 += 8;
        self.sda1.1 += 16;
        self.loop0.0 += 1_000;
        self.eth0.0 += 1_000;
        self.eth0.1 += 500;
        self.lo.0 += 1_000_000;
        self.lo.1 += 1_000_000;
    }
}

/// A fixture host under the system's temporary folder, removed on drop.
pub(crate) struct FakeHost {
    root: PathBuf,
    counters: Mutex<Counters>,
}

impl FakeHost {
    pub(crate) fn new(name: &str) -> Arc<Self> {
        let root = std::env::temp_dir().join(crate::support::unique_name(name));
        for dir in [
            "proc/net",
            "proc/sys/kernel",
            "sys/block/sda",
            "sys/block/loop0",
        ] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join("proc/sys/kernel/hostname"), "fixture-host\n").unwrap();
        let host = Arc::new(Self {
            root,
            counters: Mutex::new(Counters::default()),
        });
        host.write();
        host
    }

    pub(crate) fn proc_root(&self) -> PathBuf {
        self.root.join("proc")
    }

    pub(crate) fn sys_root(&self) -> PathBuf {
        self.root.join("sys")
    }

    /// Changes the counters and rewrites the files.
    pub(crate) fn update(&self, change: impl FnOnce(&mut Counters)) {
        change(&mut self.counters.lock().unwrap());
        self.write();
    }

    pub(crate) fn remove(&self, proc_file: &str) {
        std::fs::remove_file(self.proc_root().join(proc_file)).unwrap();
    }

    /// Rewrites every file from the current counters, each atomically (write, then rename), so a
    /// concurrent reader never sees half a file.
    pub(crate) fn write(&self) {
        let c = self.counters.lock().unwrap().clone();
        let disk = |major: u32, minor: u32, name: &str, (read, written): (u64, u64)| {
            format!(
                "{major:>4} {minor:>7} {name} 148236 43512 {read} 60312 227812 198301 {written} 402544 0 251668 462856 0 0 0 0 5215 1380\n"
            )
        };
        let net = |name: &str, (rx, tx): (u64, u64)| {
            format!("{name:>6}: {rx} 812345 0 12 0 0 0 1234 {tx} 456789 0 0 0 0 0 0\n")
        };
        let files = [
            (
                "stat",
                format!(
                    "cpu  {} 0 {} {} {} 0 0 0 0 0\ncpu0 1 0 1 1 0 0 0 0 0 0\nintr 1\nctxt 2\nbtime 1700000000\n",
                    c.user, c.system, c.idle, c.iowait
                ),
            ),
            (
                "meminfo",
                format!(
                    "MemTotal:       16384000 kB\nMemFree:         2048000 kB\nMemAvailable:   {} kB\nBuffers:          512000 kB\nCached:          8192000 kB\n",
                    c.mem_available_kb
                ),
            ),
            ("loadavg", format!("{} 0.80 0.55 3/712 45321\n", c.load1)),
            (
                "diskstats",
                [
                    disk(7, 0, "loop0", c.loop0),
                    disk(8, 0, "sda", c.sda),
                    disk(8, 1, "sda1", c.sda1),
                ]
                .concat(),
            ),
            (
                "net/dev",
                format!(
                    "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n{}{}",
                    net("lo", c.lo),
                    net("eth0", c.eth0)
                ),
            ),
        ];
        for (name, text) in files {
            write_atomically(&self.proc_root().join(name), &text);
        }
    }

    /// Collector arguments reading this host, sampling every `interval`, without Kafka.
    pub(crate) fn args(&self, host: &str, interval: Duration) -> CollectArgs {
        CollectArgs {
            interval,
            host: Some(host.to_string()),
            brokers: None,
            kafka: Default::default(),
            topic: "metrics".to_string(),
            format: SampleFormat::Json,
            listen: "127.0.0.1:0".parse().unwrap(),
            buffer: 10_000,
            flush_timeout: Duration::from_secs(10),
            proc_root: self.proc_root(),
            sys_root: self.sys_root(),
        }
    }

    /// Advances the counters every `every` from a background thread until the returned guard drops.
    pub(crate) fn keep_busy(self: &Arc<Self>, every: Duration) -> Activity {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let host = self.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(every);
                    host.update(Counters::advance);
                }
            })
        };
        Activity {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Stops the background activity of [`FakeHost::keep_busy`] when dropped.
pub(crate) struct Activity {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Activity {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The value of the series `name{host="<host>"...}` in Prometheus text, if present. `extra` is
/// matched against the rest of the label set (e.g. `reason="counter_reset"`).
pub(crate) fn series_value(text: &str, name: &str, host: &str, extra: &str) -> Option<f64> {
    let prefix = format!("{name}{{host=\"{host}\"");
    text.lines()
        .filter(|line| line.starts_with(&prefix))
        .find(|line| line.contains(extra))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A blocking HTTP/1.1 GET; returns the status code and the body.
pub(crate) fn http_get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: */*\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_string())
}
