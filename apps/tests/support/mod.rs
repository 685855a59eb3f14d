//! Shared helpers for the integration tests: where the real services are, and fresh namespaces on them.
#![allow(dead_code)] // Each test binary uses its own subset of these helpers.

pub(crate) mod broker;
pub(crate) mod postgres;
pub(crate) mod tls;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use diesel::prelude::*;

/// Kafka bootstrap servers of the real broker (`scripts/services start` runs one on 127.0.0.1:9092).
pub(crate) fn kafka_brokers() -> String {
    std::env::var("ANOMALY_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_string())
}

/// Creates `topics` with `partitions` each on the real broker at `brokers`; fails loudly when no
/// broker answers.
pub(crate) async fn create_topics(brokers: &str, topics: &[&str], partitions: i32) {
    create_topics_with(brokers, &Default::default(), topics, partitions).await
}

/// [`create_topics`] with these librdkafka options (TLS, say).
pub(crate) async fn create_topics_with(
    brokers: &str,
    options: &anomaly_apps::kafka_options::KafkaOptions,
    topics: &[&str],
    partitions: i32,
) {
    anomaly_apps::cmd::topics::create(brokers, options, topics, partitions, 1)
        .await
        .unwrap_or_else(|e| {
            panic!("a Kafka broker must run at {brokers} (scripts/services start): {e:#}")
        });
}

/// Trains the PCA baseline on 3,000 steps of the cyclic reference host
/// ([`anomaly_core::synthetic::cyclic_host_row`]) and saves it in `dir`, for tests that need a
/// detector with a model from the start.
pub(crate) fn save_reference_model(dir: &std::path::Path) {
    let rows: Vec<[f64; 7]> = (0..3000)
        .map(anomaly_core::synthetic::cyclic_host_row)
        .collect();
    anomaly_model::Model::train(
        &anomaly_core::MetricSchema::host(),
        &anomaly_core::dataset::Series::from_rows(&rows).unwrap(),
        anomaly_model::DetectorKind::Pca,
        &anomaly_model::TrainingConfig::default(),
        &mut |_| {},
    )
    .expect("training the reference model")
    .save(dir)
    .expect("saving the reference model");
}

/// Base URL of the real PostgreSQL server, without a database name.
pub(crate) fn postgres_base_url() -> String {
    std::env::var("ANOMALY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string())
}

/// A name no other test (or earlier run) has used: tests share one broker and one server.
pub(crate) fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh database for one test, dropped when the guard goes; `create` also returns its URL.
pub(crate) struct ScratchDatabase {
    name: String,
}

impl ScratchDatabase {
    pub(crate) fn create() -> (Self, String) {
        let base = postgres_base_url();
        let mut admin = PgConnection::establish(&format!("{base}/postgres")).unwrap_or_else(|e| {
            panic!("PostgreSQL must run at {base} (scripts/services start): {e}")
        });
        let name = unique_name("anomaly_test");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .expect("create database");
        (Self { name: name.clone() }, format!("{base}/{name}"))
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let base = postgres_base_url();
        if let Ok(mut admin) = PgConnection::establish(&format!("{base}/postgres")) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin);
        }
    }
}

/// A child process, killed when the guard goes, however the test ends.
pub(crate) struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `program` with `args`, its stdout and stderr going to `output`.
pub(crate) fn spawn(program: &str, args: &[&str], output: impl Fn() -> Stdio) -> Running {
    Running(
        Command::new(program)
            .args(args)
            .stdout(output())
            .stderr(output())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} (scripts/test installs it): {e}")),
    )
}

/// Opens `path` for appending on each call: the stdout and stderr of a child process started by
/// [`spawn`], so its whole log is there however often it is restarted.
pub(crate) fn log_file(path: &std::path::Path) -> impl Fn() -> Stdio + '_ {
    move || {
        std::fs::File::options()
            .create(true)
            .append(true)
            .open(path)
            .expect("log file")
            .into()
    }
}

/// A local TCP port free right now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The tests' producer on the real broker: acks=all, one request in flight per connection (so
/// records keep their order across retries), and not idempotent. nisshi 0.8.1 can check an
/// idempotent batch's sequence against a stale copy of its producer state when other clients
/// produce at the same moment, and answers OutOfOrderSequenceNumber, which is fatal to an
/// idempotent librdkafka producer: a test's input must not depend on that race.
pub(crate) fn ordered_producer(brokers: &str) -> rdkafka::producer::FutureProducer {
    ordered_producer_with(brokers, &Default::default())
}

/// [`ordered_producer`] with these librdkafka options (TLS, say).
pub(crate) fn ordered_producer_with(
    brokers: &str,
    options: &anomaly_apps::kafka_options::KafkaOptions,
) -> rdkafka::producer::FutureProducer {
    options
        .apply(
            rdkafka::config::ClientConfig::new()
                .set("bootstrap.servers", brokers)
                .set("enable.idempotence", "false")
                .set("acks", "all")
                .set("max.in.flight.requests.per.connection", "1"),
        )
        .create()
        .expect("a producer")
}

/// The status line's code of `GET /health` on `port`.
pub(crate) fn health(port: u16) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("the detector's HTTP port");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, response)
}

/// What a child process wrote to its log file so far (nothing if there is none yet).
pub(crate) fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits until `done`, failing after `limit` with what happened and the child processes' `logs`.
pub(crate) fn wait_for(
    what: &str,
    limit: Duration,
    logs: &[&Path],
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            let logs: Vec<String> = logs
                .iter()
                .map(|l| format!("--- {} ---\n{}", l.display(), log_of(l)))
                .collect();
            panic!(
                "{what} did not happen within {limit:?}\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
