//! Golden runs of the detector process against the real broker and PostgreSQL: one fixed replay
//! (200 hosts x 300 steps on a 3-partition topic, anomalies injected, some still open at the end)
//! straight through gives a set R of event rows. Each variant must give exactly R (scores to
//! 1e-6), no row missing, none duplicated, and its anomalies topic the same events once
//! deduplicated by event id:
//! 1. the detector SIGKILLed at three random points and restarted;
//! 2. two detectors in one group, one SIGKILLed mid-stream (its partitions move to the other);
//! 3. PostgreSQL (a private cluster) stopped for 60 s in the middle of an anomaly: the detector
//!    never exits, `/health` says why meanwhile;
//! 4. the same replay with 10,000 poison records of every kind mixed in, each dead-lettered with
//!    its reason.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anomaly_apps::detect::event_topic::{EVENT_ID_HEADER, EVENT_STATE_HEADER};
use anomaly_core::Sample;
use anomaly_stream::topology::DLQ_REASON_HEADER;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Text};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use support::postgres::PrivatePostgres;
use support::{health, log_of};

const HOSTS: usize = 200;
const STEPS: usize = 300;
const PARTITIONS: i32 = 3;

/// Host `h`'s sample at `step`: the reference host's cycle at a phase of its own, with memory
/// pinned high on every tenth host for 30 steps, and CPU pinned on every 25th host from step 250
/// to the end (an event still open when the replay ends).
fn sample(h: usize, step: usize, base_ms: i64) -> Sample {
    let mut values =
        anomaly_core::synthetic::cyclic_host_row(3000 + (step + h * 7) as u64).to_vec();
    if h % 10 == 3 && (150..180).contains(&step) {
        values[1] = 97.0;
    }
    if h % 25 == 5 && step >= 250 {
        values[0] = 99.0;
    }
    Sample::new(format!("host-{h:03}"), base_ms + step as i64 * 1000, values)
}

#[derive(QueryableByName)]
struct Total {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName, Debug)]
struct EventRow {
    #[diesel(sql_type = Text)]
    host: String,
    #[diesel(sql_type = BigInt)]
    start_ms: i64,
    #[diesel(sql_type = BigInt)]
    end_ms: i64,
    #[diesel(sql_type = Double)]
    score: f64,
    #[diesel(sql_type = Text)]
    model_version: String,
}

/// The fixture shared by the runs: the replays on the broker, the model.
struct Fixture {
    dir: PathBuf,
    brokers: String,
    /// The clean replay.
    topic: String,
    /// The same replay with poison mixed in.
    poisoned: String,
    /// Poison records sent, by the dead-letter reason they must get.
    poison: BTreeMap<&'static str, usize>,
    model_dir: PathBuf,
}

/// One detector run: its input, group, database, output topics and log.
struct Run<'a> {
    fixture: &'a Fixture,
    name: &'static str,
    topic: String,
    group: String,
    anomalies: String,
    dead: String,
    url: String,
    /// The scratch database on the shared server, dropped with the run (none on a private one).
    _database: Option<support::ScratchDatabase>,
    log: PathBuf,
}

impl<'a> Run<'a> {
    /// A run storing into a scratch database of the shared PostgreSQL server.
    fn new(fixture: &'a Fixture, name: &'static str, topic: &str) -> Self {
        let (database, url) = support::ScratchDatabase::create();
        Self::storing_in(fixture, name, topic, url, Some(database))
    }

    /// A run storing into the database at `url`.
    fn storing_in(
        fixture: &'a Fixture,
        name: &'static str,
        topic: &str,
        url: String,
        database: Option<support::ScratchDatabase>,
    ) -> Self {
        let anomalies = support::unique_name(&format!("golden_anomalies_{name}"));
        let dead = support::unique_name(&format!("golden_dead_{name}"));
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(support::create_topics(
                &fixture.brokers,
                &[&anomalies, &dead],
                1,
            ));
        Self {
            fixture,
            name,
            topic: topic.to_string(),
            group: support::unique_name(&format!("golden_{name}")),
            anomalies,
            dead,
            url,
            _database: database,
            log: fixture.dir.join(format!("{name}.log")),
        }
    }

    fn start(&self) -> support::Running {
        self.start_listening(support::free_port())
    }

    /// Starts a detector serving `/health` on `port`.
    fn start_listening(&self, port: u16) -> support::Running {
        let f = self.fixture;
        let listen = format!("127.0.0.1:{port}");
        support::spawn(
            env!("CARGO_BIN_EXE_anomaly"),
            &[
                "detect",
                "--brokers",
                &f.brokers,
                "--topic",
                &self.topic,
                "--anomalies-topic",
                &self.anomalies,
                "--dead-letter-topic",
                &self.dead,
                "--group",
                &self.group,
                "--database-url",
                &self.url,
                "--model-dir",
                f.model_dir.to_str().unwrap(),
                "--listen",
                &listen,
                // One model for the whole replay: scheduled retraining would swap it mid-stream.
                "--retrain-every",
                "0",
                // A killed instance's partitions come back after 6 s rather than 45.
                "--kafka-option",
                "session.timeout.ms=6000",
                "--kafka-option",
                "heartbeat.interval.ms=1000",
            ],
            support::log_file(&self.log),
        )
    }

    /// The sum of the partitions' stored next offsets (0 before the tables exist).
    fn stored(&self) -> i64 {
        let Ok(mut conn) = PgConnection::establish(&self.url) else {
            return 0;
        };
        diesel::sql_query(format!(
            "SELECT COALESCE(SUM(next_offset), 0)::BIGINT AS n FROM stream_offsets \
             WHERE consumer_group = '{}'",
            self.group
        ))
        .get_result::<Total>(&mut conn)
        .map_or(0, |t| t.n)
    }

    /// Waits until the stored offsets reach `target`, failing with the log if the detector
    /// exits or takes too long.
    fn wait_for_offsets(&self, detector: &mut support::Running, target: i64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.stored() < target {
            let log = || std::fs::read_to_string(&self.log).unwrap_or_default();
            assert!(
                detector.0.try_wait().unwrap().is_none(),
                "the {} detector exited:\n{}",
                self.name,
                log()
            );
            assert!(
                Instant::now() < deadline,
                "the {} detector stored {} of {target} offsets in 120 s:\n{}",
                self.name,
                self.stored(),
                log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every stored event, by host and start.
    fn events(&self) -> Vec<EventRow> {
        let mut conn = PgConnection::establish(&self.url).unwrap();
        diesel::sql_query(
            "SELECT host, \
                    (EXTRACT(EPOCH FROM window_start) * 1000)::BIGINT AS start_ms, \
                    (EXTRACT(EPOCH FROM window_end) * 1000)::BIGINT AS end_ms, \
                    score, model_version \
             FROM anomalies ORDER BY host, window_start",
        )
        .load(&mut conn)
        .unwrap()
    }

    /// The anomalies topic's messages as (event id, state) with how often each came.
    fn topic_events(&self) -> BTreeMap<(String, String), usize> {
        read_headers(&self.fixture.brokers, &self.anomalies, |header| {
            (header(EVENT_ID_HEADER), header(EVENT_STATE_HEADER))
        })
    }

    /// The dead-letter topic's messages by reason.
    fn dead_letters(&self) -> BTreeMap<String, usize> {
        read_headers(&self.fixture.brokers, &self.dead, |header| {
            header(DLQ_REASON_HEADER)
        })
    }
}

/// Reads `topic` (one partition) from the start until it is quiet for 3 s, counting messages
/// by what `key` makes of their headers.
fn read_headers<K: Ord>(
    brokers: &str,
    topic: &str,
    key: impl Fn(&dyn Fn(&str) -> String) -> K,
) -> BTreeMap<K, usize> {
    let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", support::unique_name("golden_reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut seen = BTreeMap::new();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(3) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let headers = message.headers().expect("headers");
                let header = |name: &str| {
                    headers
                        .iter()
                        .find(|h| h.key == name)
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_else(|| panic!("no {name} header on {topic}"))
                };
                *seen.entry(key(&header)).or_insert(0) += 1;
                quiet_since = Instant::now();
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    consumer.unassign().unwrap();
    seen
}

/// The `i`-th poison record, rotating through every kind, keyed by host `h` (so it lands
/// among that host's samples), with the reason it must be dead-lettered for.
fn poison(i: usize, h: usize, base_ms: i64) -> (&'static str, String, Vec<u8>) {
    let host = format!("host-{h:03}");
    let json = |sample: &Sample| serde_json::to_vec(sample).unwrap();
    match i % 6 {
        0 => ("undecodable", host, b"\xff{ not a sample".to_vec()),
        1 => (
            "wrong_width",
            host.clone(),
            json(&Sample::new(host, base_ms, vec![1.0; 3])),
        ),
        2 => {
            let long = "h".repeat(300);
            let payload = json(&Sample::new(long.clone(), base_ms, vec![1.0; 7]));
            ("entity_name", long, payload)
        }
        3 => (
            "timestamp",
            host.clone(),
            json(&Sample::new(host, base_ms + 30 * 86_400_000, vec![1.0; 7])),
        ),
        4 => ("oversized", host, vec![b' '; 70_000]),
        _ => {
            let control = format!("{host}\u{7}");
            let payload = json(&Sample::new(control.clone(), base_ms, vec![1.0; 7]));
            ("entity_name", control, payload)
        }
    }
}

/// Poison records mixed into the poisoned replay.
const POISON: usize = 10_000;

/// Topics, the replays and the model, once for all runs; returns the clean replay's length.
fn fixture() -> (Fixture, i64) {
    let brokers = support::kafka_brokers();
    let topic = support::unique_name("golden_metrics");
    let poisoned = support::unique_name("golden_poisoned");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(support::create_topics(
        &brokers,
        &[&topic, &poisoned],
        PARTITIONS,
    ));
    let dir = std::env::temp_dir().join(support::unique_name("golden"));
    std::fs::create_dir_all(&dir).unwrap();
    let model_dir = dir.join("model");
    support::save_reference_model(&model_dir);
    let producer = support::ordered_producer(&brokers);
    let base_ms = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let mut poison_sent: BTreeMap<&'static str, usize> = BTreeMap::new();
    runtime.block_on(async {
        let mut deliveries = Vec::new();
        let mut sent = 0;
        for step in 0..STEPS {
            for h in 0..HOSTS {
                let sample = sample(h, step, base_ms);
                let payload = serde_json::to_vec(&sample).unwrap();
                for topic in [&topic, &poisoned] {
                    let record = FutureRecord::to(topic)
                        .key(sample.entity.as_str())
                        .payload(&payload);
                    deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
                }
                // One poison record after every sixth sample, until there are enough.
                if sent < POISON && (step * HOSTS + h) % 6 == 5 {
                    let (reason, key, payload) = poison(sent, h, base_ms);
                    *poison_sent.entry(reason).or_insert(0) += 1;
                    let record = FutureRecord::to(&poisoned).key(&key).payload(&payload);
                    deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
                    sent += 1;
                }
            }
            for delivery in deliveries.drain(..) {
                delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
            }
        }
        assert_eq!(sent, POISON, "the replay is long enough for the poison");
    });
    let fixture = Fixture {
        dir,
        brokers,
        topic,
        poisoned,
        poison: poison_sent,
        model_dir,
    };
    (fixture, (HOSTS * STEPS) as i64)
}

fn same_rows(straight: &[EventRow], other: &[EventRow], what: &str) {
    let key = |r: &EventRow| {
        (
            r.host.clone(),
            r.start_ms,
            r.end_ms,
            r.model_version.clone(),
        )
    };
    let expected: Vec<_> = straight.iter().map(key).collect();
    let found: Vec<_> = other.iter().map(key).collect();
    assert_eq!(
        found, expected,
        "{what}: event rows differ from the straight run"
    );
    for (a, b) in straight.iter().zip(other) {
        assert!(
            (a.score - b.score).abs() <= 1e-6,
            "{what}: score of {a:?} became {b:?}"
        );
    }
}

/// Pseudo-random fractions of the replay to kill at, from the clock (printed, so a failure
/// can be reasoned about).
fn kill_points(total: i64) -> Vec<i64> {
    let seed = chrono::Utc::now().timestamp_micros() as u64;
    let mut x = seed | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut points: Vec<i64> = (0..3)
        .map(|i| total * (10 + 25 * i + (next() % 20) as i64) / 100)
        .collect();
    points.sort();
    println!("seed {seed}: SIGKILL after {points:?} of {total} stored offsets");
    points
}

#[test]
fn every_golden_run_stores_exactly_what_a_straight_run_stores() {
    let (fixture, total) = fixture();

    let straight = Run::new(&fixture, "straight", &fixture.topic);
    let mut detector = straight.start();
    straight.wait_for_offsets(&mut detector, total);
    drop(detector);
    let expected = straight.events();
    let still_open_at_the_end = expected.iter().any(|r| r.host == "host-005");
    assert!(
        expected.len() >= HOSTS / 10 && still_open_at_the_end,
        "the injected anomalies are found: {expected:?}\n{}",
        log_of(&straight.log)
    );
    println!("straight run: {} event rows", expected.len());
    let straight_topic = straight.topic_events();
    assert!(
        straight_topic.values().all(|&n| n == 1),
        "a straight run publishes each change once: {straight_topic:?}"
    );
    // The topic may repeat an event after a crash, never lose one: once deduplicated by id and
    // state, it holds what the straight run's holds.
    let same_topic = |run: &Run| {
        let seen = run.topic_events();
        println!(
            "{}: {} changes on the anomalies topic, {} messages",
            run.name,
            seen.len(),
            seen.values().sum::<usize>()
        );
        assert_eq!(
            seen.keys().collect::<BTreeSet<_>>(),
            straight_topic.keys().collect::<BTreeSet<_>>(),
            "{}: anomalies topic",
            run.name
        );
    };

    // 1. Killed three times.
    let killed = Run::new(&fixture, "killed", &fixture.topic);
    for point in kill_points(total) {
        let mut detector = killed.start();
        killed.wait_for_offsets(&mut detector, point);
        detector.0.kill().unwrap(); // SIGKILL
        detector.0.wait().unwrap();
    }
    let mut detector = killed.start();
    killed.wait_for_offsets(&mut detector, total);
    drop(detector);
    let log = log_of(&killed.log);
    assert!(
        log.contains("detector state restored"),
        "a restart restores state rather than starting afresh:\n{log}"
    );
    same_rows(&expected, &killed.events(), "killed three times");
    same_topic(&killed);

    // 2. Two instances in one group, one killed mid-stream.
    let pair = Run::new(&fixture, "pair", &fixture.topic);
    let mut survivor = pair.start();
    let mut victim = pair.start();
    let point = kill_points(total)[1];
    pair.wait_for_offsets(&mut victim, point);
    victim.0.kill().unwrap(); // SIGKILL
    victim.0.wait().unwrap();
    pair.wait_for_offsets(&mut survivor, total);
    drop(survivor);
    same_rows(&expected, &pair.events(), "two instances, one killed");
    same_topic(&pair);

    // 3. The database stopped for 60 s in the middle of the memory anomalies (steps 150-180).
    let postgres = PrivatePostgres::start();
    let outage = Run::storing_in(&fixture, "outage", &fixture.topic, postgres.url(), None);
    let port = support::free_port();
    let mut detector = outage.start_listening(port);
    outage.wait_for_offsets(&mut detector, total * 165 / STEPS as i64);
    postgres.ctl("stop");
    let cut = Instant::now();
    let mut said_why = false;
    while cut.elapsed() < Duration::from_secs(60) {
        assert!(
            detector.0.try_wait().unwrap().is_none(),
            "the detector exited during the database outage:\n{}",
            log_of(&outage.log)
        );
        said_why |= health(port).0 == 503;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        said_why,
        "/health never answered 503 during the outage:\n{}",
        log_of(&outage.log)
    );
    postgres.ctl("start");
    outage.wait_for_offsets(&mut detector, total);
    drop(detector);
    same_rows(&expected, &outage.events(), "database stopped for 60 s");
    same_topic(&outage);
    drop(postgres);

    // 4. Poison mixed in: the same rows, every poison record dead-lettered with its reason.
    let poisoned = Run::new(&fixture, "poisoned", &fixture.poisoned);
    let mut detector = poisoned.start();
    poisoned.wait_for_offsets(&mut detector, total + POISON as i64);
    drop(detector);
    same_rows(&expected, &poisoned.events(), "poison mixed in");
    same_topic(&poisoned);
    let expected_dead: BTreeMap<String, usize> = fixture
        .poison
        .iter()
        .map(|(reason, n)| (reason.to_string(), *n))
        .collect();
    assert_eq!(poisoned.dead_letters(), expected_dead);

    let _ = std::fs::remove_dir_all(&fixture.dir);
}
