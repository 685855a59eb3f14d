//! Reading the kernel statistics files under `--proc-root` and `--sys-root`. Parsing is
//! [`anomaly_core::host`]'s job; this module only does the I/O.

use std::path::{Path, PathBuf};

use anomaly_core::host::{BlockDevices, HostSnapshot, ProcTexts};
use anyhow::Context;

/// Where the collector reads the kernel's statistics: `/proc` and `/sys`, or fixture folders laid
/// out the same way.
#[derive(Debug, Clone)]
pub struct ProcSource {
    proc_root: PathBuf,
    sys_root: PathBuf,
}

impl ProcSource {
    /// A source reading `<proc_root>/stat`, ... and listing `<sys_root>/block`.
    pub fn new(proc_root: impl Into<PathBuf>, sys_root: impl Into<PathBuf>) -> Self {
        Self {
            proc_root: proc_root.into(),
            sys_root: sys_root.into(),
        }
    }

    /// Reads every file of one snapshot and parses it. Errors name the real path that failed.
    ///
    /// `/sys/block` is listed on every call, so disks plugged in or removed while the collector runs
    /// are picked up.
    pub fn read(&self) -> anyhow::Result<HostSnapshot> {
        let stat = self.proc_file("stat")?;
        let meminfo = self.proc_file("meminfo")?;
        let loadavg = self.proc_file("loadavg")?;
        let diskstats = self.proc_file("diskstats")?;
        let net_dev = self.proc_file("net/dev")?;
        let block_devices = self.block_devices()?;
        let texts = ProcTexts {
            stat: &stat,
            meminfo: &meminfo,
            loadavg: &loadavg,
            diskstats: &diskstats,
            net_dev: &net_dev,
        };
        HostSnapshot::parse(&texts, &block_devices).with_context(|| {
            format!(
                "cannot parse the statistics under {}",
                self.proc_root.display()
            )
        })
    }

    /// The machine's host name, from `<proc_root>/sys/kernel/hostname`.
    pub fn hostname(&self) -> anyhow::Result<String> {
        let name = self.proc_file("sys/kernel/hostname")?;
        let name = name.trim();
        anyhow::ensure!(
            !name.is_empty(),
            "{} is empty: pass --host",
            self.proc_root.join("sys/kernel/hostname").display()
        );
        Ok(name.to_string())
    }

    fn proc_file(&self, name: &str) -> anyhow::Result<String> {
        read_to_string(&self.proc_root.join(name))
    }

    /// The whole block devices: the entry names of `<sys_root>/block`.
    fn block_devices(&self) -> anyhow::Result<BlockDevices> {
        let dir = self.sys_root.join("block");
        let entries = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot list {} (whole block devices)", dir.display()))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        Ok(BlockDevices::from_sys_block(names))
    }
}

fn read_to_string(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}
