//! Shared helpers for the broker tests: where the real broker is, topics on it, and this
//! process's threads as /proc shows them.
#![allow(dead_code)] // Each test binary uses its own subset of these helpers.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

/// Bootstrap servers of the real broker (`ANOMALY_TEST_KAFKA`, default 127.0.0.1:9092).
pub(crate) fn brokers() -> String {
    std::env::var("ANOMALY_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Creates the topics, failing loudly if the broker is unreachable.
pub(crate) async fn create_topics(names: &[&str], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("admin client");
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = tokio::time::timeout(
        Duration::from_secs(15),
        admin.create_topics(&topics, &options),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no Kafka broker answered at {} (set ANOMALY_TEST_KAFKA): these tests need one",
            brokers()
        )
    })
    .unwrap_or_else(|e| panic!("creating topics on {}: {e}", brokers()));
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

/// Threads of this process whose name starts with `prefix`, by id.
pub(crate) fn threads(prefix: &str) -> Vec<u64> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| {
            let task = task.ok()?;
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            name.starts_with(prefix)
                .then(|| task.file_name().to_str()?.parse().ok())
                .flatten()
        })
        .collect()
}

/// Nanoseconds thread `tid` has spent on a CPU.
pub(crate) fn cpu_ns(tid: u64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).unwrap();
    stat.split_whitespace().next().unwrap().parse().unwrap()
}
