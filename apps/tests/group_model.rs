//! One model for a consumer group, with real detector processes, the real broker and the real
//! PostgreSQL:
//! - two instances of one group without a model: exactly one trains, both score with its model,
//!   and both keep it in their model directories;
//! - a detector SIGKILLed while it trains its first model leaves nothing half-written: the
//!   restarted one collects its baseline again, takes the training lease the dead one held, and
//!   publishes a complete model;
//! - a detector SIGKILLed while it retrains: the restarted one scores with the previous model,
//!   intact.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anomaly_apps::store::Store;
use anomaly_core::Sample;
use anomaly_model::ModelStore;
use rdkafka::producer::FutureRecord;
use support::{log_of, wait_for};

const PARTITIONS: i32 = 3;
const HOSTS: usize = 20;

/// A topic, a database and a consumer group for one scenario.
struct Group {
    brokers: String,
    topic: String,
    anomalies: String,
    dead: String,
    group: String,
    url: String,
    _database: support::ScratchDatabase,
    dir: PathBuf,
}

impl Group {
    fn new(name: &str) -> Self {
        let brokers = support::kafka_brokers();
        let topic = support::unique_name(&format!("{name}_metrics"));
        let anomalies = support::unique_name(&format!("{name}_anomalies"));
        let dead = support::unique_name(&format!("{name}_dead"));
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(support::create_topics(&brokers, &[&topic], PARTITIONS));
        runtime.block_on(support::create_topics(&brokers, &[&anomalies, &dead], 1));
        let (database, url) = support::ScratchDatabase::create();
        let dir = std::env::temp_dir().join(support::unique_name(name));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            brokers,
            topic,
            anomalies,
            dead,
            group: support::unique_name(name),
            url,
            _database: database,
            dir,
        }
    }

    /// Publishes `steps` normal samples of every host, stamped up to about now.
    fn publish(&self, steps: std::ops::Range<usize>) {
        let producer = support::ordered_producer(&self.brokers);
        let now = chrono::Utc::now().timestamp_millis();
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let mut deliveries = Vec::new();
            for step in steps.clone() {
                for h in 0..HOSTS {
                    let values =
                        anomaly_core::synthetic::cyclic_host_row(3000 + (step + h * 7) as u64);
                    let at = now - (steps.end - step) as i64 * 1000;
                    let sample = Sample::new(format!("host-{h:02}"), at, values.to_vec());
                    let payload = serde_json::to_vec(&sample).unwrap();
                    let record = FutureRecord::to(&self.topic)
                        .key(sample.entity.as_str())
                        .payload(&payload);
                    deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
                }
            }
            for delivery in deliveries {
                delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
            }
        });
    }

    /// Starts a detector of the group with its model directory `model_dir`, logging to `log`,
    /// with `extra` flags.
    fn start(&self, model_dir: &Path, log: &Path, extra: &[&str]) -> support::Running {
        let listen = format!("127.0.0.1:{}", support::free_port());
        let mut args = vec![
            "detect",
            "--brokers",
            &self.brokers,
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
            model_dir.to_str().unwrap(),
            "--listen",
            &listen,
            "--baseline-samples",
            "1500",
            "--kafka-option",
            "session.timeout.ms=6000",
            "--kafka-option",
            "heartbeat.interval.ms=1000",
        ];
        args.extend_from_slice(extra);
        support::spawn(env!("CARGO_BIN_EXE_anomaly"), &args, support::log_file(log))
    }

    /// The group's current version in the store, if any.
    fn current(&self) -> Option<String> {
        Store::open(&self.url)
            .unwrap()
            .current_model_version(&self.group)
            .unwrap()
    }

    /// The group's stored versions.
    fn versions(&self) -> Vec<String> {
        Store::open(&self.url)
            .unwrap()
            .model_versions(&self.group)
            .unwrap()
    }

    /// The group's current version, unpacked: a complete, intact model.
    fn current_model_is_intact(&self) -> String {
        let version = self.current().expect("a current version");
        let package = Store::open(&self.url)
            .unwrap()
            .model_package(&self.group, &version)
            .unwrap()
            .expect("the current version is stored");
        let model = package.unpack().expect("the current version is intact");
        assert_eq!(model.manifest().model_version, version);
        version
    }
}

/// Training settings that keep an autoencoder busy for minutes: time to kill it mid-training.
fn slow_training_config(dir: &Path) -> PathBuf {
    let path = dir.join("slow.json");
    std::fs::write(
        &path,
        r#"{"autoencoder": {"hidden": [256, 256], "latent": 8, "max_epochs": 5000,
            "batch_size": 8, "learning_rate": 0.0001, "patience": 5000, "seed": 7}}"#,
    )
    .unwrap();
    path
}

/// The local store's current model version at `dir` (or a plain artifact's), loaded and checked.
fn local_version(dir: &Path) -> Option<String> {
    let loaded = ModelStore::new(dir)
        .load_current()
        .expect("the local model store loads");
    loaded.map(|l| {
        assert!(l.refused.is_empty(), "no version refused: {:?}", l.refused);
        l.model.manifest().model_version.clone()
    })
}

const TRAINING: &str = "training the group's model";
const STARTED: &str = "starting with this model";

#[test]
fn two_instances_of_a_group_train_one_model_and_both_score_with_it() {
    let group = Group::new("one_model");
    group.publish(0..200);
    let (dir_a, dir_b) = (group.dir.join("model-a"), group.dir.join("model-b"));
    let (log_a, log_b) = (group.dir.join("a.log"), group.dir.join("b.log"));
    let pca = ["--detector", "pca", "--retrain-every", "0"];
    let _a = group.start(&dir_a, &log_a, &pca);
    let _b = group.start(&dir_b, &log_b, &pca);
    wait_for(
        "both instances scoring with the group's model",
        Duration::from_secs(90),
        &[&log_a, &log_b],
        || {
            let Some(current) = group.current() else {
                return false;
            };
            [&dir_a, &dir_b].iter().all(|dir| {
                ModelStore::new(dir).current_version().ok().flatten() == Some(current.clone())
            })
        },
    );
    let version = group.current_model_is_intact();
    assert_eq!(
        group.versions(),
        std::slice::from_ref(&version),
        "one version"
    );
    let trained = [&log_a, &log_b]
        .iter()
        .map(|log| log_of(log).matches(TRAINING).count())
        .sum::<usize>();
    assert_eq!(
        trained,
        1,
        "exactly one instance trains:\n--- a ---\n{}\n--- b ---\n{}",
        log_of(&log_a),
        log_of(&log_b)
    );
    assert_eq!(local_version(&dir_a), Some(version.clone()));
    assert_eq!(local_version(&dir_b), Some(version));
    let _ = std::fs::remove_dir_all(&group.dir);
}

#[test]
fn a_detector_killed_while_it_trains_leaves_no_half_written_model() {
    let group = Group::new("killed_training");
    group.publish(0..200);
    let model_dir = group.dir.join("model");
    let log = group.dir.join("detector.log");
    let config = slow_training_config(&group.dir);
    let slow = [
        "--detector",
        "autoencoder",
        "--config",
        config.to_str().unwrap(),
        "--retrain-every",
        "0",
    ];
    let mut detector = group.start(&model_dir, &log, &slow);
    wait_for(
        "training to start",
        Duration::from_secs(60),
        &[&log],
        || log_of(&log).contains(TRAINING),
    );
    std::thread::sleep(Duration::from_millis(500));
    detector.0.kill().unwrap(); // SIGKILL
    detector.0.wait().unwrap();
    assert_eq!(
        group.current(),
        None,
        "nothing published by the killed trainer"
    );
    assert_eq!(local_version(&model_dir), None, "nothing current locally");

    // Restarted (with a quick detector this time): the baseline is read again from the topic,
    // the lease the dead process held is free, and a complete model is published.
    let _detector = group.start(&model_dir, &log, &["--detector", "pca"]);
    wait_for(
        "a model published after the restart",
        Duration::from_secs(90),
        &[&log],
        || group.current().is_some() && local_version(&model_dir) == group.current(),
    );
    let version = group.current_model_is_intact();
    assert!(version.starts_with("pca-"), "{version}");
    assert_eq!(log_of(&log).matches(TRAINING).count(), 2);
    let _ = std::fs::remove_dir_all(&group.dir);
}

#[test]
fn a_detector_killed_while_it_retrains_keeps_the_previous_model() {
    let group = Group::new("killed_retraining");
    let model_dir = group.dir.join("model");
    support::save_reference_model(&model_dir);
    let reference = local_version(&model_dir).unwrap();
    // Enough for the rolling baseline and the schedule.
    group.publish(0..120);
    let log = group.dir.join("detector.log");
    let config = slow_training_config(&group.dir);
    let retrain = [
        "--detector",
        "autoencoder",
        "--config",
        config.to_str().unwrap(),
        "--retrain-every",
        "2000",
    ];
    let mut detector = group.start(&model_dir, &log, &retrain);
    wait_for(
        "retraining to start",
        Duration::from_secs(60),
        &[&log],
        || log_of(&log).contains(TRAINING),
    );
    wait_for(
        "the model offered as the group's first version",
        Duration::from_secs(30),
        &[&log],
        || group.current() == Some(reference.clone()),
    );
    std::thread::sleep(Duration::from_millis(500));
    detector.0.kill().unwrap(); // SIGKILL
    detector.0.wait().unwrap();
    assert_eq!(group.current_model_is_intact(), reference);
    assert_eq!(local_version(&model_dir), Some(reference.clone()));

    let _detector = group.start(&model_dir, &log, &["--retrain-every", "0"]);
    wait_for(
        "the previous model in use again",
        Duration::from_secs(60),
        &[&log],
        || log_of(&log).matches(STARTED).count() == 2,
    );
    let restarted = log_of(&log);
    let loaded = restarted.rmatch_indices(STARTED).next().unwrap().0;
    assert!(
        restarted[loaded..]
            .lines()
            .next()
            .unwrap()
            .contains(&reference),
        "the restarted detector loads {reference}:\n{restarted}"
    );
    assert_eq!(group.current_model_is_intact(), reference);
    let _ = std::fs::remove_dir_all(&group.dir);
}
