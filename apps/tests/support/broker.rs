//! A nisshi broker of a test's own (its own port), for tests that kill it or change how it listens.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
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
        self.process = Some(super::spawn("nisshi", &args, super::log_file(&self.log)));
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
