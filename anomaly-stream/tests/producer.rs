//! `AsyncProducer` against a real Kafka-protocol broker (`ANOMALY_TEST_KAFKA`, default
//! 127.0.0.1:9092): every record's delivery report arrives, in order, and between reports its
//! thread sleeps instead of polling (rdkafka's `FutureProducer` spins about a millisecond in
//! every 100). A test binary of its own: it looks for its producer's thread among the process's.

use std::time::Duration;

use anomaly_stream::kafka::AsyncProducer;
use rdkafka::ClientConfig;
use rdkafka::producer::FutureRecord;

mod support;
use support::{brokers, cpu_ns, create_topics, threads};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_reported_in_order_and_the_idle_producer_sleeps() {
    let topic = format!("producer-test-{}", std::process::id());
    create_topics(&[&topic], 1).await;

    let before = threads("kafka deliv");
    let producer: AsyncProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .unwrap();
    // The new thread names itself once it runs, so it may not carry its name yet.
    let mut mine: Vec<u64> = Vec::new();
    for _ in 0..500 {
        mine = threads("kafka deliv")
            .into_iter()
            .filter(|t| !before.contains(t))
            .collect();
        if !mine.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(mine.len(), 1, "one delivery thread per producer");
    let thread = mine[0];

    let mut deliveries = Vec::new();
    for i in 0..200u32 {
        let payload = i.to_be_bytes();
        let record = FutureRecord::to(&topic).key("k").payload(&payload[..]);
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    let mut offsets = Vec::new();
    for delivery in deliveries {
        let delivered = tokio::time::timeout(Duration::from_secs(30), delivery)
            .await
            .expect("a delivery report within 30 s")
            .expect("the producer kept the report")
            .expect("delivered");
        offsets.push(delivered.offset);
    }
    assert_eq!(
        offsets,
        (0..200).collect::<Vec<i64>>(),
        "in order, none lost"
    );
    let sent = producer
        .send(
            FutureRecord::to(&topic).key("k").payload("last"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(sent.offset, 200);

    // Idle: rdkafka's polling thread would spend about 20 ms of CPU in these 2 s.
    let start = cpu_ns(thread);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_ns = cpu_ns(thread) - start;
    assert!(
        idle_ns < 5_000_000,
        "the idle delivery thread used {idle_ns} ns of CPU in 2 s"
    );

    drop(producer);
    assert!(
        !std::path::Path::new(&format!("/proc/self/task/{thread}")).exists(),
        "the last handle dropped stops the thread"
    );
}
