//! Integration tests against a real Kafka-protocol broker (127.0.0.1:9092, or
//! `ANOMALY_TEST_KAFKA`). They fail when the broker is absent; each is bounded in time and uses
//! topics with unique names.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anomaly_stream::kafka::{KafkaRuntime, RunningRuntime};
use anomaly_stream::topology::{
    DLQ_ERROR_HEADER, DLQ_OFFSET_HEADER, DLQ_PARTITION_HEADER, DLQ_TOPIC_HEADER,
};
use anomaly_stream::window::{Sum, TimeWindowConfig, TimeWindowSpec};
use anomaly_stream::{
    Codec, JsonCodec, MemorySink, Record, Sink, TestDriver, Topology, TopologyBuilder, Utf8Codec,
};
use futures::future::BoxFuture;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

mod support;
use support::{brokers, create_topics};

const PARTITIONS: i32 = 4;

fn unique(name: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{name}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// One input record: partition, key, value bytes, timestamp.
type Input = (i32, String, Vec<u8>, i64);

async fn produce(topic: &str, records: &[Input]) {
    // Not idempotent: nisshi 0.8.1 can answer OutOfOrderSequenceNumber to an idempotent batch
    // when other clients produce at the same moment (a stale cached producer state), which is
    // fatal to the producer. One request in flight keeps the records' order across retries.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "false")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "1")
        .create()
        .expect("producer");
    let deliveries: Vec<_> = records
        .iter()
        .map(|(p, k, v, t)| {
            producer
                .send_result(
                    FutureRecord::to(topic)
                        .partition(*p)
                        .key(k)
                        .payload(v)
                        .timestamp(*t),
                )
                .map_err(|(e, _)| e)
                .expect("enqueue")
        })
        .collect();
    for d in deliveries {
        d.await
            .expect("delivery")
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
}

/// A consumed output: key, value, headers.
type Output = (String, Vec<u8>, BTreeMap<String, String>);

/// Reads `topic` from the beginning until `done` holds for what was read, then `linger` longer
/// (to catch duplicates), at most `timeout`.
async fn read_topic(
    topic: &str,
    partitions: i32,
    timeout: Duration,
    linger: Duration,
    done: impl Fn(&[Output]) -> bool + Send + 'static,
) -> Vec<Output> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", unique("reader"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("reader");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).expect("assign");
        let started = Instant::now();
        let mut done_at: Option<Instant> = None;
        let mut out = Vec::new();
        while started.elapsed() < timeout && done_at.is_none_or(|t| t.elapsed() < linger) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((
                    String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    m.payload().unwrap_or_default().to_vec(),
                    headers,
                ));
            }
            if done_at.is_none() && done(&out) {
                done_at = Some(Instant::now());
            }
        }
        consumer.unassign().ok();
        drop(consumer);
        out
    })
    .await
    .expect("reader thread")
}

/// A window summary as written to the output topic: (start_ms, count, sum).
type Summary = (i64, u64, f64);

/// metrics (String -> f64) -> 1 s tumbling sums -> `out` as (start, count, sum).
fn window_topology(source: &str, out: &str, dlq: &str) -> Topology {
    let builder = TopologyBuilder::new().dead_letter_topic(dlq);
    builder
        .stream_with::<String, f64>(source, Utf8Codec, JsonCodec)
        .time_windows(
            TimeWindowConfig::new(TimeWindowSpec::Tumbling { size_ms: 1_000 }),
            Sum::new(|v: &f64| *v),
        )
        .unwrap()
        .map_values(|w| -> Summary { (w.start_ms, w.count, w.aggregate) })
        .to_topic_with(out, Utf8Codec, JsonCodec);
    builder.build().unwrap()
}

/// Keys spread over the partitions, records interleaved in time, then one far-future record
/// per partition that closes every window.
fn window_inputs(keys: usize, per_key: usize, from: usize) -> Vec<Input> {
    let mut inputs = Vec::new();
    for i in from..per_key {
        for k in 0..keys {
            let value = (k * 1000 + i) as f64;
            inputs.push((
                (k as i32) % PARTITIONS,
                format!("host-{k}"),
                serde_json::to_vec(&value).unwrap(),
                1_000_000 + (i as i64) * 150,
            ));
        }
    }
    inputs
}

fn flush_inputs() -> Vec<Input> {
    (0..PARTITIONS)
        .map(|p| (p, format!("flush-{p}"), b"0.0".to_vec(), 9_000_000))
        .collect()
}

/// The outputs of an uninterrupted run, from the in-memory driver.
fn golden(inputs: &[Input]) -> Vec<(String, String)> {
    let mut driver = TestDriver::new(window_topology("in", "out", "dlq"));
    for (p, k, v, t) in inputs {
        driver
            .send_raw("in", *p, Some(k.as_bytes()), v, *t)
            .unwrap();
    }
    let mut out: Vec<(String, String)> = driver
        .read_topic("out", &Utf8Codec, &JsonCodec)
        .unwrap()
        .into_iter()
        .map(|r: Record<String, Summary>| (r.key, format!("{:?}", r.value)))
        .collect();
    out.sort();
    out
}

fn decoded(outputs: &[Output]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = outputs
        .iter()
        .map(|(k, v, _)| {
            let s: Summary = JsonCodec.decode(v).unwrap();
            (k.clone(), format!("{s:?}"))
        })
        .collect();
    out.sort();
    out
}

fn runtime(topology: Topology, group: &str, commit_ms: u64) -> RunningRuntime {
    KafkaRuntime::builder(topology)
        .brokers(brokers())
        .group_id(group)
        .set("session.timeout.ms", "6000")
        .commit_interval(Duration::from_millis(commit_ms))
        .build()
        .unwrap()
        .start()
        .unwrap()
}

async fn wait_until(what: &str, timeout: Duration, cond: impl Fn() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_split_partitions_and_emit_every_window_once() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let (source, out, dlq) = (unique("in"), unique("out"), unique("dlq"));
        create_topics(&[&source, &out, &dlq], PARTITIONS).await;
        let group = unique("group");
        let a = runtime(window_topology(&source, &out, &dlq), &group, 100);
        let b = runtime(window_topology(&source, &out, &dlq), &group, 100);
        wait_until(
            "both instances to own partitions",
            Duration::from_secs(30),
            || {
                let (sa, sb) = (a.stats().assigned(), b.stats().assigned());
                !sa.is_empty() && !sb.is_empty() && sa.len() + sb.len() == PARTITIONS as usize
            },
        )
        .await;
        let mut inputs = window_inputs(8, 40, 0);
        inputs.extend(flush_inputs());
        produce(&source, &inputs).await;
        let expected = golden(&inputs);
        assert!(expected.len() > 8 * 4, "{} windows", expected.len());
        let n = expected.len();
        let got = read_topic(
            &out,
            PARTITIONS,
            Duration::from_secs(40),
            Duration::from_secs(1),
            move |o| o.len() >= n,
        )
        .await;
        assert!(a.stats().processed() > 0 && b.stats().processed() > 0);
        assert_eq!(decoded(&got), expected, "every window exactly once");
        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_instance_restarts_and_the_union_of_outputs_matches_a_clean_run() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let (source, out, dlq) = (unique("in"), unique("out"), unique("dlq"));
        create_topics(&[&source, &out, &dlq], PARTITIONS).await;
        let group = unique("group");
        let first = window_inputs(8, 30, 0);
        let mut rest = window_inputs(8, 60, 30);
        rest.extend(flush_inputs());
        let all: Vec<Input> = first.iter().chain(&rest).cloned().collect();
        let expected = golden(&all);

        let a = runtime(window_topology(&source, &out, &dlq), &group, 150);
        produce(&source, &first).await;
        let half = first.len() as u64 / 2;
        wait_until(
            "the first instance to process half",
            Duration::from_secs(30),
            || a.stats().processed() >= half,
        )
        .await;
        // Let some commits happen, then crash mid-stream.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(a.stats().commits() > 0, "no commit before the crash");
        a.kill().await.unwrap();

        let b = runtime(window_topology(&source, &out, &dlq), &group, 150);
        produce(&source, &rest).await;
        let want: BTreeSet<(String, String)> = expected.iter().cloned().collect();
        let want_n = want.len();
        let got = read_topic(
            &out,
            PARTITIONS,
            Duration::from_secs(40),
            Duration::from_millis(500),
            move |o| decoded(o).into_iter().collect::<BTreeSet<_>>().len() >= want_n,
        )
        .await;
        let got_set: BTreeSet<(String, String)> = decoded(&got).into_iter().collect();
        assert_eq!(
            got_set, want,
            "union of outputs equals the uninterrupted run"
        );
        b.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_record_goes_to_the_dead_letter_topic_with_headers() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let (source, out, dlq) = (unique("in"), unique("out"), unique("dlq"));
        create_topics(&[&source, &out, &dlq], 1).await;
        let builder = TopologyBuilder::new().dead_letter_topic(&dlq);
        builder
            .stream_with::<String, f64>(&source, Utf8Codec, JsonCodec)
            .map_values(|v| v * 2.0)
            .to_topic_with(&out, Utf8Codec, JsonCodec);
        let running = KafkaRuntime::builder(builder.build().unwrap())
            .brokers(brokers())
            .group_id(unique("group"))
            .build()
            .unwrap()
            .start()
            .unwrap();
        produce(
            &source,
            &[
                (0, "a".into(), b"1.5".to_vec(), 1_000),
                (0, "a".into(), b"{poison".to_vec(), 2_000),
                (0, "a".into(), b"2.5".to_vec(), 3_000),
            ],
        )
        .await;
        let dead = read_topic(
            &dlq,
            1,
            Duration::from_secs(20),
            Duration::from_millis(300),
            |o| !o.is_empty(),
        )
        .await;
        assert_eq!(dead.len(), 1, "{dead:?}");
        let (key, value, headers) = &dead[0];
        assert_eq!((key.as_str(), value.as_slice()), ("a", &b"{poison"[..]));
        assert_eq!(headers[DLQ_TOPIC_HEADER], source);
        assert_eq!(headers[DLQ_PARTITION_HEADER], "0");
        assert_eq!(headers[DLQ_OFFSET_HEADER], "1");
        assert!(
            headers[DLQ_ERROR_HEADER].contains("json decode failed"),
            "{headers:?}"
        );
        let good = read_topic(
            &out,
            1,
            Duration::from_secs(20),
            Duration::from_millis(300),
            |o| o.len() >= 2,
        )
        .await;
        let values: Vec<f64> = good
            .iter()
            .map(|(_, v, _)| JsonCodec.decode(v).unwrap())
            .collect();
        assert_eq!(values, vec![3.0, 5.0]);
        wait_until(
            "the dead letter to be counted",
            Duration::from_secs(5),
            || running.stats().dead_letters() == 1,
        )
        .await;
        running.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}

/// A sink that takes 5 ms per batch and records what it got.
#[derive(Clone, Default)]
struct SlowSink {
    got: Arc<std::sync::Mutex<Vec<f64>>>,
}

impl Sink<Record<String, f64>> for SlowSink {
    fn write(&self, batch: Vec<Record<String, f64>>) -> BoxFuture<'_, anomaly_stream::Result<()>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.got
                .lock()
                .unwrap()
                .extend(batch.into_iter().map(|r| r.value));
            Ok(())
        })
    }
}

/// Streams 1,500 records through a sink slower than the broker with tiny queues and the given
/// backpressure wait; checks that nothing is lost or repeated and that buffers stay bounded, and
/// returns how many times a partition was paused.
async fn run_slow_sink(backpressure_wait: Duration) -> u64 {
    tokio::time::timeout(Duration::from_secs(90), async {
        let source = unique("in");
        let partitions = 2;
        create_topics(&[&source], partitions).await;
        let sink = SlowSink::default();
        let builder = TopologyBuilder::new();
        builder
            .stream_with::<String, f64>(&source, Utf8Codec, JsonCodec)
            .to_sink("slow", sink.clone());
        let (queue, sink_capacity, batch) = (16, 8, 4);
        let running = KafkaRuntime::builder(builder.build().unwrap())
            .brokers(brokers())
            .group_id(unique("group"))
            // Resuming re-fetches from the broker: keep its fetch wait short so the test is quick.
            .set("fetch.wait.max.ms", "10")
            .queue_capacity(queue)
            .backpressure_wait(backpressure_wait)
            .sink_capacity(sink_capacity)
            .sink_batch(batch)
            .build()
            .unwrap()
            .start()
            .unwrap();
        let n = 1500;
        let inputs: Vec<Input> = (0..n)
            .map(|i| {
                (
                    (i % partitions as usize) as i32,
                    "k".into(),
                    format!("{i}.0").into_bytes(),
                    1_000 + i as i64,
                )
            })
            .collect();
        produce(&source, &inputs).await;
        let got = Arc::clone(&sink.got);
        wait_until(
            "every record to reach the slow sink",
            Duration::from_secs(60),
            || got.lock().unwrap().len() >= n,
        )
        .await;
        let stats = running.stats();
        // Per partition: its full queue plus the batch waiting for room (at most half a queue);
        // then the sink's channel and the batch it holds.
        let bound = (partitions as usize * (queue + queue / 2) + sink_capacity + batch) as i64;
        assert!(
            stats.max_buffered() <= bound,
            "buffered {} records, bound {bound}",
            stats.max_buffered()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut values = sink.got.lock().unwrap().clone();
        values.sort_by(f64::total_cmp);
        let expected: Vec<f64> = (0..n).map(|i| i as f64).collect();
        assert_eq!(
            values, expected,
            "no record lost or repeated across pause/resume"
        );
        let pauses = stats.pauses();
        running.shutdown().await.unwrap();
        pauses
    })
    .await
    .expect("test timed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_worker_gets_its_partition_paused_and_resumed_without_loss() {
    // No wait at all: every full queue pauses its partition.
    let pauses = run_slow_sink(Duration::ZERO).await;
    assert!(pauses > 0, "the slow sink never caused a pause");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merely_slow_worker_is_waited_for_instead_of_paused() {
    // The sink takes 5 ms per batch: far less than the default 100 ms wait.
    let pauses = run_slow_sink(Duration::from_millis(100)).await;
    assert_eq!(
        pauses, 0,
        "a slow but moving worker should not cost re-fetches"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_sink_gives_exactly_once_across_a_crash() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let source = unique("in");
        create_topics(&[&source], PARTITIONS).await;
        let group = unique("group");
        let db: MemorySink<Record<String, Summary>> = MemorySink::new();
        let topology = |db: &MemorySink<Record<String, Summary>>| {
            let builder = TopologyBuilder::new();
            builder
                .stream_with::<String, f64>(&source, Utf8Codec, JsonCodec)
                .time_windows(
                    TimeWindowConfig::new(TimeWindowSpec::Tumbling { size_ms: 1_000 }),
                    Sum::new(|v: &f64| *v),
                )
                .unwrap()
                .map_values(|w| -> Summary { (w.start_ms, w.count, w.aggregate) })
                .to_transactional("db", db.clone());
            builder.build().unwrap()
        };
        let first = window_inputs(8, 30, 0);
        let mut rest = window_inputs(8, 60, 30);
        rest.extend(flush_inputs());
        let all: Vec<Input> = first.iter().chain(&rest).cloned().collect();
        let expected = golden(&all);

        let a = runtime(topology(&db), &group, 100);
        produce(&source, &first).await;
        let half = first.len() as u64 / 2;
        wait_until(
            "the first instance to process half",
            Duration::from_secs(30),
            || a.stats().processed() >= half,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        a.kill().await.unwrap();
        assert!(!db.offsets().is_empty(), "no transaction before the crash");

        let b = runtime(topology(&db), &group, 100);
        produce(&source, &rest).await;
        wait_until("every window in the sink", Duration::from_secs(40), || {
            db.records().len() >= expected.len()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut got: Vec<(String, String)> = db
            .records()
            .into_iter()
            .map(|r| (r.key, format!("{:?}", r.value)))
            .collect();
        got.sort();
        assert_eq!(got, expected, "every window exactly once despite the crash");
        b.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_mid_stream_moves_window_state_without_duplicates() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let (source, out, dlq) = (unique("in"), unique("out"), unique("dlq"));
        create_topics(&[&source, &out, &dlq], PARTITIONS).await;
        let group = unique("group");
        let first = window_inputs(8, 30, 0);
        let mut rest = window_inputs(8, 60, 30);
        rest.extend(flush_inputs());
        let all: Vec<Input> = first.iter().chain(&rest).cloned().collect();
        let expected = golden(&all);

        let a = runtime(window_topology(&source, &out, &dlq), &group, 100);
        produce(&source, &first).await;
        let n_first = first.len() as u64;
        wait_until(
            "the first instance to process the first half",
            Duration::from_secs(30),
            || a.stats().processed() >= n_first,
        )
        .await;
        // A second instance joins: the first revokes, commits (offset and replay position)
        // and both rebuild their partitions' open windows by replay.
        let b = runtime(window_topology(&source, &out, &dlq), &group, 100);
        wait_until(
            "the partitions to be split",
            Duration::from_secs(30),
            || {
                !b.stats().assigned().is_empty()
                    && a.stats().assigned().len() + b.stats().assigned().len()
                        == PARTITIONS as usize
            },
        )
        .await;
        produce(&source, &rest).await;
        let n = expected.len();
        let got = read_topic(
            &out,
            PARTITIONS,
            Duration::from_secs(40),
            Duration::from_secs(1),
            move |o| o.len() >= n,
        )
        .await;
        assert_eq!(
            decoded(&got),
            expected,
            "every window exactly once across the rebalance"
        );
        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}
