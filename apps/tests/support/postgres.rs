//! A PostgreSQL cluster of a test's own (its own `initdb` on a free port), so that stopping or
//! freezing it touches nothing else.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The password in [`PrivatePostgres::url`] (the cluster trusts every local connection, so any
/// would do): no log line or error may show it.
pub(crate) const PASSWORD: &str = "never-print-me";

/// A PostgreSQL cluster of this test's own, stopped and removed when dropped.
pub(crate) struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    pub(crate) fn start() -> Self {
        let cluster = Self::init();
        cluster.ctl("start");
        cluster
    }

    /// A cluster serving TLS with a certificate for 127.0.0.1 signed by a CA of its own
    /// ([`tls_file`](Self::tls_file) `ca.pem`; `other-ca.pem` is a CA it does not use).
    pub(crate) fn start_with_tls() -> Self {
        let cluster = Self::init();
        let tls = super::tls::TestCa::create(&cluster.dir.join("tls"));
        // The server reads them as its own user, and refuses a key others can read.
        for file in ["server.pem", "server.key"] {
            std::fs::copy(tls.file(file), cluster.data().join(file)).unwrap();
        }
        let data = cluster.data();
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "chown postgres:postgres {d}/server.pem {d}/server.key && chmod 600 {d}/server.key",
                d = data.display()
            ))
            .status()
            .expect("chown");
        assert!(status.success(), "hand the certificate to postgres");
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(cluster.data().join("postgresql.conf"))
            .unwrap();
        use std::io::Write;
        writeln!(
            conf,
            "ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'"
        )
        .unwrap();
        cluster.ctl("start");
        cluster
    }

    /// A file of [`start_with_tls`](Self::start_with_tls)'s certificates.
    pub(crate) fn tls_file(&self, name: &str) -> PathBuf {
        self.dir.join("tls").join(name)
    }

    fn init() -> Self {
        let dir = std::env::temp_dir().join(super::unique_name("pg_outage"));
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("chown")
            .args(["postgres:postgres", dir.to_str().unwrap()])
            .status()
            .expect("chown");
        assert!(status.success(), "chown the cluster folder to postgres");
        let bindir = String::from_utf8(
            Command::new("pg_config")
                .arg("--bindir")
                .output()
                .expect("pg_config (package postgresql) must be installed")
                .stdout,
        )
        .unwrap();
        let cluster = Self {
            dir,
            port: super::free_port(),
        };
        cluster.as_postgres(&format!(
            "{}/initdb -D {} -A trust -U postgres",
            bindir.trim(),
            cluster.data().display()
        ));
        cluster
    }

    pub(crate) fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub(crate) fn url(&self) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// `pg_ctl start` (waiting until it accepts connections) or `pg_ctl stop -m immediate`.
    pub(crate) fn ctl(&self, action: &str) {
        let bindir = String::from_utf8(
            Command::new("pg_config")
                .arg("--bindir")
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let data = self.data();
        let command = match action {
            "start" => format!(
                "{}/pg_ctl -D {} -w -o '-p {} -k {} -c listen_addresses=127.0.0.1' -l {}/log start",
                bindir.trim(),
                data.display(),
                self.port,
                self.dir.display(),
                self.dir.display()
            ),
            _ => format!(
                "{}/pg_ctl -D {} -m immediate stop",
                bindir.trim(),
                data.display()
            ),
        };
        self.as_postgres(&command);
    }

    /// Sends `signal` (`STOP` or `CONT`) to the server and every backend it forked; false when
    /// the server is not running.
    pub(crate) fn signal_all(&self, signal: &str) -> bool {
        let Some(postmaster) = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()
            .and_then(|pid_file| pid_file.lines().next().map(|pid| pid.trim().to_string()))
        else {
            return false;
        };
        // The shell's own `kill`: no package needed.
        let kill = |pids: &[String]| {
            Command::new("sh")
                .args(["-c", &format!("kill -{signal} {}", pids.join(" "))])
                .status()
                .is_ok_and(|status| status.success())
        };
        // The server first, so that no backend is forked after its children are listed.
        kill(std::slice::from_ref(&postmaster)) && {
            let backends = children_of(&postmaster);
            backends.is_empty() || kill(&backends)
        }
    }

    fn as_postgres(&self, command: &str) {
        let status = Command::new("su")
            .args(["postgres", "-c", command])
            .stdout(Stdio::null())
            .status()
            .expect("su postgres");
        assert!(status.success(), "`{command}` failed");
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // A frozen server (a test that failed mid-way) would ignore the stop below.
        self.signal_all("CONT");
        let _ = Command::new("su")
            .args([
                "postgres",
                "-c",
                &format!(
                    "$(pg_config --bindir)/pg_ctl -D {} -m immediate stop",
                    self.data().display()
                ),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The processes whose parent is `pid`, from /proc.
fn children_of(pid: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{name}/stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may hold spaces, so split after its `)`.
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
            (ppid == pid).then_some(name)
        })
        .collect()
}
