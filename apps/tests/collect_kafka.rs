//! `anomaly collect` producing to Kafka: to the real broker (127.0.0.1:9092 or
//! `$ANOMALY_TEST_KAFKA`; the test fails when it is absent), in both encodings, and through a broker
//! outage (rdkafka's mock cluster, which can be taken down and brought back).

mod host_fixture;
mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anomaly_apps::cmd::collect::{CollectReport, run_until};
use anomaly_apps::collect::SampleFormat;
use anomaly_apps::collect::metric_names as names;
use anomaly_apps::telemetry;
use anomaly_core::Sample;
use host_fixture::{FakeHost, series_value};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, Timestamp};
use rdkafka::mocking::MockCluster;

/// One record read back: key, partition, record timestamp, decoded sample.
struct Received {
    key: String,
    partition: i32,
    timestamp: Option<i64>,
    sample: Sample,
}

/// Reads exactly `expected` records of `topic` from the beginning (30 s at most), then checks for
/// 1 s that no other record follows.
async fn read_back(
    brokers: &str,
    topic: &str,
    expected: usize,
    format: SampleFormat,
) -> Vec<Received> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", support::unique_name("collect_reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let codec = format.codec();
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let decode = |msg: rdkafka::message::BorrowedMessage<'_>| Received {
        key: String::from_utf8(msg.key().expect("keyed record").to_vec()).unwrap(),
        partition: msg.partition(),
        timestamp: match msg.timestamp() {
            Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
            Timestamp::NotAvailable => None,
        },
        sample: codec
            .decode(msg.payload().expect("payload"))
            .expect("a Sample in the configured format"),
    };
    while received.len() < expected {
        let msg = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {expected} samples came back from {topic} within 30 s",
                    received.len()
                )
            })
            .expect("consume");
        received.push(decode(msg));
    }
    if let Ok(extra) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
        let extra = decode(extra.expect("consume"));
        panic!(
            "more than {expected} records on {topic}: {:?}",
            extra.sample
        );
    }
    received
}

/// Runs a collector over a busy fixture host for `run_for`, then stops it.
async fn collect_for(
    fake: &std::sync::Arc<FakeHost>,
    host: &str,
    brokers: &str,
    topic: &str,
    format: SampleFormat,
    run_for: Duration,
) -> CollectReport {
    let mut args = fake.args(host, Duration::from_millis(50));
    args.brokers = Some(brokers.to_string());
    args.topic = topic.to_string();
    args.format = format;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _activity = fake.keep_busy(Duration::from_millis(20));
    tokio::time::timeout(
        run_for + Duration::from_secs(20),
        run_until(args, listener, tokio::time::sleep(run_for)),
    )
    .await
    .expect("the collector stops within its flush timeout")
    .expect("the collector starts")
}

/// Polls `done` every 50 ms; fails the test after `limit`.
async fn wait_for(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn check_samples(received: &[Received], host: &str) {
    let partitions: HashSet<i32> = received.iter().map(|r| r.partition).collect();
    assert_eq!(
        partitions.len(),
        1,
        "samples of one host spread over {partitions:?}"
    );
    let mut previous = i64::MIN;
    for r in received {
        assert_eq!(r.key, host);
        assert_eq!(r.sample.entity, host);
        assert_eq!(r.timestamp, Some(r.sample.timestamp_ms));
        assert!(
            r.sample.timestamp_ms > previous,
            "samples out of order: {} after {previous}",
            r.sample.timestamp_ms
        );
        previous = r.sample.timestamp_ms;
        let v = &r.sample.values;
        assert_eq!(v.len(), 7, "{v:?}");
        assert!(v.iter().all(|x| x.is_finite() && *x >= 0.0), "{v:?}");
        // Every fixture step is 40 % busy; memory and load are fixed.
        assert!((v[0] - 40.0).abs() < 1e-9, "{v:?}");
        assert_eq!(v[1], 25.0);
        assert_eq!(v[2], 1.25);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_reach_the_real_broker_keyed_by_host_in_order() {
    let brokers = support::kafka_brokers();
    for format in [SampleFormat::Json, SampleFormat::Postcard] {
        let topic = support::unique_name("collect_samples");
        support::create_topics(&brokers, &[&topic], 3).await;
        let fake = FakeHost::new("collect_kafka");
        let host = format!("fixture-kafka-{format:?}");
        let report = collect_for(
            &fake,
            &host,
            &brokers,
            &topic,
            format,
            Duration::from_millis(1500),
        )
        .await;

        assert!(report.samples >= 5, "{format:?}: {report:?}");
        let delivery = report.delivery.expect("brokers were given");
        assert_eq!(delivery.delivered, report.samples, "{format:?}: {report:?}");
        assert_eq!(
            (delivery.errors, delivery.dropped, delivery.undelivered),
            (0, 0, 0),
            "{format:?}: {report:?}"
        );

        let received = read_back(&brokers, &topic, report.samples as usize, format).await;
        check_samples(&received, &host);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_samples_survive_a_broker_outage_in_order() {
    const BUFFER: usize = 5;
    let handle = telemetry::prometheus_recorder().unwrap();
    let cluster = MockCluster::new(1).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    let topic = support::unique_name("collect_outage");
    cluster.create_topic(&topic, 1, 1).expect("mock topic");
    cluster.broker_down(-1).expect("broker down");

    let fake = FakeHost::new("collect_outage");
    let host = "fixture-outage";
    let mut args = fake.args(host, Duration::from_millis(50));
    args.brokers = Some(brokers.clone());
    args.topic = topic.clone();
    args.buffer = BUFFER;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let activity = fake.keep_busy(Duration::from_millis(20));
    let collector = tokio::spawn(run_until(args, listener, async {
        let _ = stopped.await;
    }));

    let series = |name: &str| {
        handle.run_upkeep();
        series_value(&handle.render(), name, host, "")
    };
    // Broker down: the buffer fills up to its bound, then the oldest samples are dropped.
    wait_for(
        "buffer full and samples dropped",
        Duration::from_secs(20),
        || {
            series(names::BUFFER_DEPTH) == Some(BUFFER as f64)
                && series(names::DROPPED_SAMPLES_TOTAL).unwrap_or(0.0) >= 3.0
        },
    )
    .await;
    assert_eq!(series(names::DELIVERED_SAMPLES_TOTAL), Some(0.0));
    // Freeze the host: from now on every step is skipped (no CPU time), so what reaches the broker
    // is exactly what the buffer held when it came back.
    drop(activity);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let outage_ended_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    cluster.broker_up(-1).expect("broker up");

    // Broker back: the buffer drains.
    wait_for("buffer drained", Duration::from_secs(30), || {
        series(names::DELIVERED_SAMPLES_TOTAL).unwrap_or(0.0) >= BUFFER as f64
            && series(names::BUFFER_DEPTH) == Some(0.0)
    })
    .await;
    stop.send(()).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(20), collector)
        .await
        .expect("the collector stops within its flush timeout")
        .unwrap()
        .unwrap();
    let delivery = report.delivery.unwrap();
    assert_eq!(delivery.undelivered, 0, "{report:?}");
    assert!(delivery.dropped >= 3, "{report:?}");

    let received = read_back(
        &brokers,
        &topic,
        delivery.delivered as usize,
        SampleFormat::Json,
    )
    .await;
    check_samples(&received, host);
    // What arrived is the BUFFER newest samples of the outage, plus at most the one sample that was
    // already in the producer's hands when it was evicted.
    assert!(
        received
            .iter()
            .all(|r| r.sample.timestamp_ms < outage_ended_ms),
        "a sample after the outage: {report:?}"
    );
    assert!(
        (BUFFER..=BUFFER + 1).contains(&received.len()),
        "{} samples arrived: {report:?}",
        received.len()
    );
    assert_eq!(
        delivery.delivered + delivery.dropped,
        report.samples + (received.len() - BUFFER) as u64,
        "every sample is either delivered or dropped: {report:?}"
    );
}
