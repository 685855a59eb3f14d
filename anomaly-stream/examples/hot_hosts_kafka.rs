//! The `hot_hosts` topology (`shared/mod.rs`) on a Kafka-protocol broker: the readings are
//! produced to a new topic, a `KafkaRuntime` consumes them in a consumer group, and the hot
//! windows reach the same in-memory sink; the garbage reading is counted as a dead letter.
//!
//! ```text
//! ANOMALY_BROKERS=127.0.0.1:9092 cargo run -p anomaly-stream --example hot_hosts_kafka
//! ```

mod shared;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anomaly_stream::kafka::KafkaRuntime;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let brokers = std::env::var("ANOMALY_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let (source, dead_letters) = (
        format!("hot-hosts-readings-{now_ms}"),
        format!("hot-hosts-dlq-{now_ms}"),
    );
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()?;
    let topics = [&source, &dead_letters].map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for created in admin.create_topics(&topics, &options).await? {
        created.map_err(|(topic, e)| format!("cannot create {topic}: {e}"))?;
    }

    // The readings, in a minute two minutes ago.
    let minute = (now_ms / 60_000 - 2) * 60_000;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("acks", "all")
        .create()?;
    for (host, secs, cpu) in shared::READINGS {
        let value = serde_json::to_vec(&cpu)?;
        let record = FutureRecord::to(&source)
            .key(host)
            .payload(&value)
            .timestamp(minute + secs * 1_000);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)?;
    }

    let hot = shared::HotHosts::new();
    let running = KafkaRuntime::builder(shared::hot_hosts(&source, &dead_letters, hot.clone())?)
        .brokers(&brokers)
        .group_id(format!("hot-hosts-{now_ms}"))
        .build()?
        .start()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while hot.records().is_empty() || running.stats().dead_letters() == 0 {
        if Instant::now() > deadline {
            return Err("no hot window and dead letter within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dead = running.stats().dead_letters();
    // Closing the consumer explicitly: a dropped one can block inside librdkafka.
    running.shutdown().await?;
    shared::report(&hot);
    println!("dead letters: {dead}");
    assert_eq!(dead, 1);
    Ok(())
}
