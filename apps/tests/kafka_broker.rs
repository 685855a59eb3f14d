//! The real loop against a real Kafka-protocol broker: keyed records produced with rdkafka come back,
//! complete and in per-key order, to a consumer group that commits its offsets.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

const PARTITIONS: i32 = 3;
const KEYS: usize = 5;
const PER_KEY: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_round_trip_through_a_consumer_group() {
    let brokers = support::kafka_brokers();
    let topic = support::unique_name("roundtrip");
    support::create_topics(&brokers, &[&topic], PARTITIONS).await;

    let producer: FutureProducer = support::ordered_producer(&brokers);
    for i in 0..PER_KEY {
        for k in 0..KEYS {
            let key = format!("host-{k}");
            let payload = format!("{i}");
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&payload),
                    Duration::from_secs(15),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("delivery to {brokers} failed: {e}"));
        }
    }

    let group = support::unique_name("group");
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");

    let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
    let mut partition_of: HashMap<String, i32> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut received = 0;
    while received < KEYS * PER_KEY {
        let msg = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {received} of {} records came back within 30 s",
                    KEYS * PER_KEY
                )
            })
            .expect("consume");
        let key = String::from_utf8(msg.key().unwrap().to_vec()).unwrap();
        let value: usize = std::str::from_utf8(msg.payload().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        // Keyed records of one host always land in one partition.
        let p = *partition_of.entry(key.clone()).or_insert(msg.partition());
        assert_eq!(p, msg.partition(), "key {key} moved partitions");
        by_key.entry(key).or_default().push(value);
        consumer
            .commit_message(&msg, CommitMode::Sync)
            .expect("commit");
        received += 1;
    }

    assert_eq!(by_key.len(), KEYS);
    for (key, values) in &by_key {
        assert_eq!(
            values,
            &(0..PER_KEY).collect::<Vec<_>>(),
            "records of {key} out of order or missing"
        );
    }
    // The group's committed position covers everything it read.
    let committed = consumer
        .committed(Duration::from_secs(10))
        .expect("committed offsets");
    let total: i64 = committed
        .elements()
        .iter()
        .filter_map(|e| e.offset().to_raw())
        .sum();
    assert_eq!(total, (KEYS * PER_KEY) as i64);
    consumer.unsubscribe();
}
