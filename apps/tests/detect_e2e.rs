//! The detector end to end against the real broker and the real PostgreSQL, with a pre-trained
//! artifact: an anomaly injected into one host's replayed samples produces exactly one anomaly
//! event with the right host and time; the other host's normal samples produce none. Then the
//! same over TLS with a SCRAM login: a private broker that accepts only TLS, with a certificate
//! from the test's own CA, and only clients that log in; every Kafka client (the detector's
//! consumer and producers, the test's) trusts that CA and logs in through `--kafka-option`. A
//! client that trusts another CA, or gives the wrong password, is refused and says why.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anomaly_apps::cmd::detect::{self, DEFAULT_MAX_RECORD_BYTES, DetectArgs};
use anomaly_apps::collect::SampleFormat;
use anomaly_apps::kafka_options::KafkaOptions;
use anomaly_apps::store::Store;
use anomaly_core::Sample;
use anomaly_model::DetectorKind;
use rdkafka::producer::{FutureProducer, FutureRecord};

const HOSTS: [&str; 2] = ["web-1", "web-2"];
const SAMPLES_PER_HOST: usize = 300;
/// Rows of web-1 whose memory jumps to 97 %: seconds 150..180 of the replay.
const INJECTED: std::ops::Range<usize> = 150..180;

fn normal_row(i: usize) -> Vec<f64> {
    anomaly_core::synthetic::cyclic_host_row(i as u64).to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_anomaly_becomes_exactly_one_event_with_its_host_and_time() {
    injected_anomaly_becomes_one_event(&support::kafka_brokers(), KafkaOptions::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_a_scram_login_the_anomaly_becomes_one_event_and_bad_clients_are_refused() {
    let dir = std::env::temp_dir().join(support::unique_name("kafka_tls"));
    let ca = support::tls::TestCa::create(&dir);
    let broker = support::broker::PrivateBroker::start_with_tls_and_users(
        &ca.file("server.pem"),
        &ca.file("server.key"),
        &[("detector", "s3cret")],
        dir.join("broker.log"),
    );
    let brokers = broker.brokers();
    let client = |ca_file: std::path::PathBuf, password: &str| KafkaOptions {
        kafka_options: [
            ("security.protocol", "sasl_ssl"),
            ("ssl.ca.location", &ca_file.display().to_string()),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "detector"),
            ("sasl.password", password),
        ]
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .to_vec(),
    };
    let refused = |options: KafkaOptions, why: &'static str| {
        let brokers = brokers.clone();
        async move {
            let error = anomaly_apps::cmd::topics::create(&brokers, &options, &["refused"], 1, 1)
                .await
                .expect_err("a bad client must not reach the broker");
            let message = format!("{error:#}");
            assert!(
                message.contains(why),
                "the error must say why ({why}): {message}"
            );
        }
    };
    tokio::join!(
        refused(
            client(ca.file("other-ca.pem"), "s3cret"),
            "certificate verify failed"
        ),
        refused(client(ca.file("ca.pem"), "wrong"), "authentication failed"),
        injected_anomaly_becomes_one_event(&brokers, client(ca.file("ca.pem"), "s3cret")),
    );
    drop(broker);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Replays two hosts, one with an injected anomaly, through the broker at `brokers` with `kafka`
/// options on every client, and checks the one stored event.
async fn injected_anomaly_becomes_one_event(brokers: &str, kafka: KafkaOptions) {
    let brokers = brokers.to_string();
    let (_db, database_url) = support::ScratchDatabase::create();
    let model_dir = std::env::temp_dir().join(support::unique_name("detect_model"));
    support::save_reference_model(&model_dir);

    let topic = support::unique_name("metrics");
    let anomalies_topic = support::unique_name("anomalies");
    let dead_letters = support::unique_name("dead_letters");
    support::create_topics_with(
        &brokers,
        &kafka,
        &[&topic, &anomalies_topic, &dead_letters],
        3,
    )
    .await;

    let producer: FutureProducer = support::ordered_producer_with(&brokers, &kafka);
    // Event time ends about now: the detector refuses samples far from its clock.
    let start_ms = chrono::Utc::now().timestamp_millis() - SAMPLES_PER_HOST as i64 * 1000;
    for i in 0..SAMPLES_PER_HOST {
        for host in HOSTS {
            let mut values = normal_row(3000 + i);
            if host == "web-1" && INJECTED.contains(&i) {
                values[1] = 97.0;
            }
            let sample = Sample::new(host, start_ms + i as i64 * 1000, values);
            let payload = serde_json::to_vec(&sample).unwrap();
            producer
                .send(
                    FutureRecord::to(&topic).key(host).payload(&payload),
                    Duration::from_secs(15),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("delivery to {brokers} failed: {e}"));
        }
    }

    let limits = anomaly_core::SampleLimits::new(0);
    let args = DetectArgs {
        brokers: brokers.clone(),
        topic,
        format: SampleFormat::Json,
        anomalies_topic,
        dead_letter_topic: dead_letters,
        group: support::unique_name("detector"),
        database_url: database_url.clone(),
        model_dir: model_dir.clone(),
        baseline_samples: 1000,
        retrain_every: 0,
        detector: DetectorKind::Pca,
        config: None,
        event_over: 2,
        event_windows: 3,
        event_quiet: 5,
        event_confirm: 1.0,
        event_sustain: 0,
        listen: "127.0.0.1:0".parse().unwrap(),
        max_host_bytes: limits.max_entity_bytes,
        max_sample_lead: Duration::from_millis(limits.max_lead_ms.unsigned_abs()),
        max_sample_age: Duration::from_millis(limits.max_age_ms.unsigned_abs()),
        max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        idle_host_timeout: Duration::from_secs(3600),
        kafka,
    };
    // Stop once every sample is consumed, or after 60 s at the latest.
    let seen = Arc::new(Mutex::new(0u64));
    let seen_by_shutdown = Arc::clone(&seen);
    let shutdown = async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while *seen_by_shutdown.lock().unwrap() < (HOSTS.len() * SAMPLES_PER_HOST) as u64
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let counters = detect::run_until(args, None, shutdown, |view| {
        *seen.lock().unwrap() = view.sink.counters().samples;
    })
    .await
    .expect("detector run");
    assert_eq!(
        counters.samples,
        (HOSTS.len() * SAMPLES_PER_HOST) as u64,
        "not every sample was consumed"
    );
    assert_eq!(
        counters.windows_scored,
        (HOSTS.len() * (SAMPLES_PER_HOST - 9)) as u64
    );

    let events =
        tokio::task::spawn_blocking(move || Store::open(&database_url).unwrap().events().unwrap())
            .await
            .unwrap();
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event.host, "web-1");
    let start = event.window_start.timestamp_millis();
    let first_injected = start_ms + INJECTED.start as i64 * 1000;
    // The event's first window holds the first injected sample.
    assert!(
        (first_injected - 9_000..=first_injected).contains(&start),
        "{event:?}"
    );
    assert!(
        event.window_end.timestamp_millis() >= first_injected,
        "{event:?}"
    );
    assert_eq!(event.top_metrics[0]["metric"], "memory_used", "{event:?}");
    std::fs::remove_dir_all(&model_dir).unwrap();
}
