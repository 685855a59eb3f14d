//! Database outages under a running detector: a private PostgreSQL cluster (its own `initdb` on
//! a free port, so stopping it touches nothing else) is cut with `pg_ctl stop -m immediate`, or
//! frozen with SIGSTOP (a server that hangs: connections open but nothing answers), while an
//! anomaly is being detected. The detector process must not exit, must say why on `/health`
//! (503), must name no password anywhere, and once the server is back must store the event
//! exactly once.

mod support;

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use anomaly_core::Sample;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use rdkafka::producer::{FutureProducer, FutureRecord};

use support::postgres::{PASSWORD, PrivatePostgres};
use support::{health, wait_for};

#[derive(Debug, QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(Debug, QueryableByName)]
struct Host {
    #[diesel(sql_type = Text)]
    host: String,
}

fn produce(producer: &FutureProducer, topic: &str, samples: &[Sample]) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        for sample in samples {
            let payload = serde_json::to_vec(sample).unwrap();
            producer
                .send(
                    FutureRecord::to(topic)
                        .key(sample.entity.as_str())
                        .payload(&payload),
                    Duration::from_secs(15),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("delivery failed: {e}"));
        }
    });
}

/// A reference-model detector running as a process against `postgres` and the shared broker,
/// its output in `log`.
struct Scenario {
    detector: support::Running,
    port: u16,
    log: PathBuf,
    dir: PathBuf,
    topic: String,
    producer: FutureProducer,
    now: i64,
}

impl Scenario {
    /// Starts the detector and waits until `/health` answers 200.
    fn start(postgres: &PrivatePostgres) -> Self {
        let brokers = support::kafka_brokers();
        let topic = support::unique_name("outage_metrics");
        let (anomalies, dead) = (
            support::unique_name("outage_anomalies"),
            support::unique_name("outage_dead"),
        );
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(support::create_topics(
                &brokers,
                &[&topic, &anomalies, &dead],
                1,
            ));
        let dir = std::env::temp_dir().join(support::unique_name("outage"));
        std::fs::create_dir_all(&dir).unwrap();
        let model_dir = dir.join("model");
        support::save_reference_model(&model_dir);
        let log = dir.join("detector.log");
        let port = support::free_port();
        let detector = support::spawn(
            env!("CARGO_BIN_EXE_anomaly"),
            &[
                "detect",
                "--brokers",
                &brokers,
                "--topic",
                &topic,
                "--anomalies-topic",
                &anomalies,
                "--dead-letter-topic",
                &dead,
                "--group",
                &support::unique_name("outage_detector"),
                "--database-url",
                &postgres.url(),
                "--model-dir",
                model_dir.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ],
            support::log_file(&log),
        );
        wait_for("a healthy start", Duration::from_secs(30), &[&log], || {
            TcpStream::connect(("127.0.0.1", port)).is_ok() && health(port).0 == 200
        });
        let producer: FutureProducer = support::ordered_producer(&brokers);
        Self {
            detector,
            port,
            log,
            dir,
            topic,
            producer,
            now: chrono::Utc::now().timestamp_millis(),
        }
    }

    /// Publishes rows `rows` of one host, those in `anomalous` with a CPU spike.
    fn publish(&self, rows: std::ops::Range<usize>, anomalous: std::ops::Range<usize>) {
        let samples: Vec<Sample> = rows
            .map(|i| {
                let mut values = anomaly_core::synthetic::cyclic_host_row(3000 + i as u64).to_vec();
                if anomalous.contains(&i) {
                    values[1] = 97.0;
                }
                Sample::new("web-1", self.now - 600_000 + i as i64 * 1000, values)
            })
            .collect();
        produce(&self.producer, &self.topic, &samples);
    }

    /// Waits for `/health` to answer 503 naming the database, and checks that the process stays
    /// up and unhealthy a while.
    fn expect_unhealthy_and_alive(&mut self) {
        let port = self.port;
        wait_for(
            "/health answering 503",
            Duration::from_secs(45),
            &[&self.log],
            || health(port).0 == 503,
        );
        let (_, body) = health(port);
        assert!(body.contains("database"), "{body}");
        std::thread::sleep(Duration::from_secs(10));
        assert!(
            self.detector.0.try_wait().unwrap().is_none(),
            "the detector exited during the outage:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        assert_eq!(health(port).0, 503);
    }

    /// Once the server is back: healthy again, exactly the one event stored, no password logged.
    fn expect_recovered_with_one_event(self, postgres: &PrivatePostgres) {
        let port = self.port;
        wait_for(
            "/health answering 200 again",
            Duration::from_secs(60),
            &[&self.log],
            || health(port).0 == 200,
        );
        let mut connection = PgConnection::establish(&postgres.url()).unwrap();
        let mut events = || -> Vec<Host> {
            diesel::sql_query("SELECT host FROM anomalies")
                .load(&mut connection)
                .unwrap()
        };
        // The samples that waited behind the outage are scored once the store answers again.
        wait_for(
            "the event stored",
            Duration::from_secs(30),
            &[&self.log],
            || !events().is_empty(),
        );
        // Time for a duplicate, if there were one, to land.
        std::thread::sleep(Duration::from_secs(2));
        let rows = events();
        assert_eq!(rows.len(), 1, "exactly the one event: {rows:?}");
        assert_eq!(rows[0].host, "web-1");
        let Count { n } = diesel::sql_query("SELECT count(*) AS n FROM anomalies")
            .get_result(&mut connection)
            .unwrap();
        assert_eq!(n, 1);

        let logged = std::fs::read_to_string(&self.log).unwrap();
        assert!(
            !logged.contains(PASSWORD),
            "the password appears in the log:\n{logged}"
        );
        assert!(
            logged.contains("127.0.0.1"),
            "the log names the unreachable server"
        );
        std::fs::remove_dir_all(&self.dir).unwrap();
    }
}

#[test]
fn the_detector_waits_out_a_database_outage_and_stores_the_event_once_it_is_back() {
    let postgres = PrivatePostgres::start();
    let mut scenario = Scenario::start(&postgres);
    // A normal stretch (nothing to store), then the cut, then the anomaly.
    scenario.publish(0..100, 0..0);
    std::thread::sleep(Duration::from_secs(2));
    postgres.ctl("stop");
    scenario.publish(100..160, 110..140);
    scenario.expect_unhealthy_and_alive();
    postgres.ctl("start");
    scenario.expect_recovered_with_one_event(&postgres);
}

#[test]
fn the_detector_does_not_stall_silently_on_a_hanging_database() {
    let postgres = PrivatePostgres::start();
    let mut scenario = Scenario::start(&postgres);
    scenario.publish(0..100, 0..0);
    std::thread::sleep(Duration::from_secs(2));
    // Frozen, not stopped: the open connection and new ones are accepted by the kernel, and
    // nothing ever answers. Only the writer's timeout can notice.
    assert!(postgres.signal_all("STOP"), "cannot freeze the server");
    scenario.publish(100..160, 110..140);
    scenario.expect_unhealthy_and_alive();
    // The abandoned writes complete when the server thaws: the event must still be stored once.
    assert!(postgres.signal_all("CONT"), "cannot thaw the server");
    scenario.expect_recovered_with_one_event(&postgres);
}
