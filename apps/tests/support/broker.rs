//! A nisshi broker of a test's own (its own port), for tests that kill it or change how it listens.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A private nisshi broker; killed when dropped.
pub(crate) struct PrivateBroker {
    port: u16,
    storage: String,
    /// Listener flags beside the address (TLS's `--cert` and `--key`).
    listener: Vec<String>,
    log: PathBuf,
    process: Option<super::Running>,
}

impl PrivateBroker {
    /// A broker keeping its log in `storage_url` (nisshi's `--storage-engine`), writing its own
    /// output to `log`.
    pub(crate) fn start(storage_url: &str, log: PathBuf) -> Self {
        Self::start_listening(storage_url, Vec::new(), log)
    }

    /// A broker in memory that accepts only TLS, presenting `cert` with `key`.
    pub(crate) fn start_with_tls(cert: &Path, key: &Path, log: PathBuf) -> Self {
        let listener = vec![
            "--cert".to_string(),
            cert.display().to_string(),
            "--key".to_string(),
            key.display().to_string(),
        ];
        Self::start_listening("memory://nisshi/", listener, log)
    }

    /// A broker that accepts only TLS (presenting `cert` with `key`) and only clients that log in
    /// with SCRAM-SHA-512 as one of `users` (name, password). It keeps its log and users in SQLite
    /// beside `log`.
    pub(crate) fn start_with_tls_and_users(
        cert: &Path,
        key: &Path,
        users: &[(&str, &str)],
        log: PathBuf,
    ) -> Self {
        // nisshi keeps SCRAM users only in durable storage and creates them only through a
        // broker: a first start, open, creates them; the second serves with TLS and logins.
        let mut broker = Self::start_listening("sqlite://nisshi.db", Vec::new(), log);
        for (name, password) in users {
            let created = Command::new("nisshi")
                .args(["user", "create", "--broker"])
                .arg(format!("tcp://127.0.0.1:{}", broker.port))
                .args([name, password, "--mechanism", "scram512"])
                .output()
                .expect("nisshi user create");
            assert!(
                created.status.success(),
                "nisshi user create {name}: {}",
                String::from_utf8_lossy(&created.stderr)
            );
        }
        broker.kill();
        broker.listener = vec![
            "--authentication".to_string(),
            "--cert".to_string(),
            cert.display().to_string(),
            "--key".to_string(),
            key.display().to_string(),
        ];
        broker.restart();
        broker
    }

    fn start_listening(storage_url: &str, listener: Vec<String>, log: PathBuf) -> Self {
        let mut broker = Self {
            port: super::free_port(),
            storage: storage_url.to_string(),
            listener,
            log,
            process: None,
        };
        broker.restart();
        broker
    }

    /// Its bootstrap address.
    pub(crate) fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts it (again), on the same port and storage; returns once the port accepts.
    pub(crate) fn restart(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut args = vec![
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            &self.storage,
            "--group-initial-rebalance-delay",
            "0s",
        ];
        args.extend(self.listener.iter().map(String::as_str));
        let output = super::log_file(&self.log);
        let started = Command::new("nisshi")
            .args(&args)
            // Where a `sqlite://` storage keeps its file.
            .current_dir(self.log.parent().expect("the log is in a folder"))
            .stdout(output())
            .stderr(output())
            .spawn()
            .expect("cannot start nisshi (scripts/services installs it)");
        self.process = Some(super::Running(started));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the private broker did not start:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL.
    pub(crate) fn kill(&mut self) {
        let mut running = self.process.take().expect("running");
        running.0.kill().unwrap();
        running.0.wait().unwrap();
    }
}
