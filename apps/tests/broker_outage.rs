//! The broker down under a running detector: a private nisshi broker (its own port, its log kept
//! in a scratch PostgreSQL database so that it survives its own death) is SIGKILLed in the middle
//! of an anomaly and started again 20 s later. The detector process must not exit, must say why
//! on `/health` (503, component `kafka`), and once the broker is back must carry on and store the
//! event exactly once.

mod support;

use std::time::{Duration, Instant};

use anomaly_core::Sample;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::broker::PrivateBroker;
use support::{health, wait_for};

#[derive(QueryableByName)]
struct Total {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(Debug, QueryableByName)]
struct Event {
    #[diesel(sql_type = Text)]
    host: String,
    #[diesel(sql_type = BigInt)]
    end_ms: i64,
}

fn stored_offsets(url: &str) -> i64 {
    let Ok(mut conn) = PgConnection::establish(url) else {
        return 0;
    };
    diesel::sql_query("SELECT COALESCE(SUM(next_offset), 0)::BIGINT AS n FROM stream_offsets")
        .get_result::<Total>(&mut conn)
        .map_or(0, |t| t.n)
}

fn events(url: &str) -> Vec<Event> {
    let mut conn = PgConnection::establish(url).unwrap();
    diesel::sql_query(
        "SELECT host, (EXTRACT(EPOCH FROM window_end) * 1000)::BIGINT AS end_ms FROM anomalies",
    )
    .load(&mut conn)
    .unwrap()
}

/// Publishes rows `rows` of host `web-1`, those in 110..140 with memory pinned high.
fn publish(producer: &FutureProducer, topic: &str, rows: std::ops::Range<usize>, start_ms: i64) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        for i in rows {
            let mut values = anomaly_core::synthetic::cyclic_host_row(3000 + i as u64).to_vec();
            if (110..140).contains(&i) {
                values[1] = 97.0;
            }
            let sample = Sample::new("web-1", start_ms + i as i64 * 1000, values);
            let payload = serde_json::to_vec(&sample).unwrap();
            producer
                .send(
                    FutureRecord::to(topic).key("web-1").payload(&payload),
                    Duration::from_secs(30),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("delivery failed: {e}"));
        }
    });
}

#[test]
fn the_detector_waits_out_a_broker_outage_and_stores_the_event_once_it_is_back() {
    let dir = std::env::temp_dir().join(support::unique_name("broker_outage"));
    std::fs::create_dir_all(&dir).unwrap();
    let (_broker_storage, storage_url) = support::ScratchDatabase::create();
    let mut broker = PrivateBroker::start(
        // The server's certificate names `localhost`, not the address; the log needs no TLS.
        &format!("{storage_url}?sslmode=disable"),
        dir.join("broker.log"),
    );
    let brokers = broker.brokers();
    let (topic, anomalies, dead) = ("metrics", "anomalies", "metrics.dead-letter");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(support::create_topics(
        &brokers,
        &[topic, anomalies, dead],
        1,
    ));

    let (_database, url) = support::ScratchDatabase::create();
    let model_dir = dir.join("model");
    support::save_reference_model(&model_dir);
    let log = dir.join("detector.log");
    let port = support::free_port();
    let mut detector = support::spawn(
        env!("CARGO_BIN_EXE_anomaly"),
        &[
            "detect",
            "--brokers",
            &brokers,
            "--topic",
            topic,
            "--anomalies-topic",
            anomalies,
            "--dead-letter-topic",
            dead,
            "--group",
            "outage_detector",
            "--database-url",
            &url,
            "--model-dir",
            model_dir.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--retrain-every",
            "0",
        ],
        support::log_file(&log),
    );
    let start_ms = chrono::Utc::now().timestamp_millis() - 600_000;
    let producer = support::ordered_producer(&brokers);
    // Normal rows, then the first part of the anomaly; the broker dies mid-event.
    publish(&producer, topic, 0..125, start_ms);
    wait_for(
        "the first rows stored",
        Duration::from_secs(60),
        &[&log],
        || stored_offsets(&url) == 125,
    );
    assert_eq!(events(&url).len(), 1, "the event is open before the cut");
    broker.kill();
    drop(producer);

    wait_for(
        "/health answering 503",
        Duration::from_secs(45),
        &[&log],
        || health(port).0 == 503,
    );
    let (_, body) = health(port);
    assert!(body.contains("kafka"), "{body}");
    let cut = Instant::now();
    while cut.elapsed() < Duration::from_secs(20) {
        assert!(
            detector.0.try_wait().unwrap().is_none(),
            "the detector exited during the broker outage:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    broker.restart();
    let producer = support::ordered_producer(&brokers);
    publish(&producer, topic, 125..200, start_ms);
    wait_for("every row stored", Duration::from_secs(90), &[&log], || {
        stored_offsets(&url) == 200
    });
    wait_for(
        "/health answering 200 again",
        Duration::from_secs(30),
        &[&log],
        || health(port).0 == 200,
    );
    let stored = events(&url);
    assert_eq!(stored.len(), 1, "exactly the one event: {stored:?}");
    assert_eq!(stored[0].host, "web-1");
    let last_anomalous_ms = start_ms + 139 * 1000;
    assert!(
        stored[0].end_ms >= last_anomalous_ms,
        "the event carried on after the outage and closed after its last row: {stored:?}"
    );
    assert!(
        detector.0.try_wait().unwrap().is_none(),
        "the detector is still running"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
