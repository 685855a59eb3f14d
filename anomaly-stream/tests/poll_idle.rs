//! The runtime's poll thread against a real Kafka-protocol broker (`ANOMALY_TEST_KAFKA`, default
//! 127.0.0.1:9092): records reach the sink through the queue the thread takes a batch at a time,
//! and once they stop the thread sleeps on its wake-up socket instead of polling. A test binary of
//! its own: it looks for the runtime's poll thread among the process's.

use std::time::{Duration, Instant};

use anomaly_stream::kafka::KafkaRuntime;
use anomaly_stream::{JsonCodec, MemorySink, Record, TopologyBuilder, Utf8Codec};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

mod support;
use support::{brokers, cpu_ns, create_topics, threads};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_flow_through_the_poll_thread_which_then_sleeps() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let topic = format!("poll-idle-{}", std::process::id());
        create_topics(&[&topic], 2).await;

        let sink: MemorySink<Record<String, f64>> = MemorySink::new();
        let builder = TopologyBuilder::new();
        builder
            .stream_with::<String, f64>(&topic, Utf8Codec, JsonCodec)
            .to_sink("memory", sink.clone());
        let running = KafkaRuntime::builder(builder.build().unwrap())
            .brokers(brokers())
            .group_id(format!("{topic}-group"))
            .build()
            .unwrap()
            .start()
            .unwrap();

        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .create()
            .unwrap();
        let n = 2_000usize;
        let deliveries: Vec<_> = (0..n)
            .map(|i| {
                let value = format!("{i}.0");
                producer
                    .send_result(
                        FutureRecord::to(&topic)
                            .partition((i % 2) as i32)
                            .key("k")
                            .payload(&value),
                    )
                    .map_err(|(e, _)| e)
                    .unwrap()
            })
            .collect();
        for delivery in deliveries {
            delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while sink.records().len() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} records arrived",
                sink.records().len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut values: Vec<f64> = sink.records().into_iter().map(|r| r.value).collect();
        values.sort_by(f64::total_cmp);
        assert_eq!(
            values,
            (0..n).map(|i| i as f64).collect::<Vec<_>>(),
            "each record once"
        );

        // Linux names threads with up to 15 bytes: "anomaly-stream-poll" reads "anomaly-stream-".
        let poll = threads("anomaly-stream-");
        assert_eq!(poll.len(), 1, "one poll thread");
        // Idle: it wakes every 20 ms for its periodic work and serves the consumer's statistics
        // once a second; polling without sleeping would take the whole 2 s.
        let start = cpu_ns(poll[0]);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle_ns = cpu_ns(poll[0]) - start;
        assert!(
            idle_ns < 60_000_000,
            "the idle poll thread used {idle_ns} ns of CPU in 2 s"
        );

        running.shutdown().await.unwrap();
        assert!(
            threads("anomaly-stream-").is_empty(),
            "the poll thread stopped with the runtime"
        );
    })
    .await
    .expect("test timed out");
}
