//! `anomaly replay` through the binary against the real broker: synthetic hosts arrive complete,
//! keyed by host, with increasing timestamps and the injected anomaly where it was asked for.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use anomaly_core::Sample;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthetic_hosts_are_published_keyed_complete_and_with_their_anomaly() {
    let brokers = support::kafka_brokers();
    let topic = support::unique_name("replay");
    support::create_topics(&brokers, &[&topic], 2).await;

    let out = Command::new(env!("CARGO_BIN_EXE_anomaly"))
        .args([
            "replay",
            "--synthetic",
            "--hosts",
            "3",
            "--count",
            "40",
            "--rate",
            "0",
            "--anomaly-every",
            "10",
        ])
        .args(["--brokers", &brokers, "--topic", &topic])
        .output()
        .expect("run anomaly replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", support::unique_name("replay_reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut by_host: HashMap<String, Vec<Sample>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for _ in 0..120 {
        let msg = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .expect("120 samples within 30 s")
            .unwrap();
        let sample: Sample = serde_json::from_slice(msg.payload().unwrap()).unwrap();
        assert_eq!(msg.key().unwrap(), sample.entity.as_bytes());
        by_host
            .entry(sample.entity.to_string())
            .or_default()
            .push(sample);
    }
    consumer.unsubscribe();
    assert_eq!(by_host.len(), 3);
    for samples in by_host.values() {
        assert_eq!(samples.len(), 40);
        assert!(
            samples
                .windows(2)
                .all(|w| w[1].timestamp_ms - w[0].timestamp_ms == 1000)
        );
    }
    // Round 1 (steps 10..19 of 40) injects a memory leak (round 1 -> kind 1) into host-1.
    assert_eq!(by_host["host-1"][10].values[1], 97.0);
    assert_ne!(by_host["host-0"][10].values[1], 97.0);
}
