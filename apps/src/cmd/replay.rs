//! `anomaly replay`: publish timestamped samples into a topic at a chosen rate, from a labelled
//! dataset entity or from synthetic hosts, for end-to-end evaluation and load.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anomaly_core::Sample;
use anomaly_core::dataset::{self, DatasetKind};
use anomaly_core::synthetic::{Injection, SyntheticHost};
use anomaly_stream::kafka::AsyncProducer;
use anyhow::{Context, bail};
use rdkafka::producer::FutureRecord;

use crate::collect::SampleFormat;
use crate::kafka_options::{KafkaOptions, idempotent_producer};

/// Arguments of `anomaly replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Kafka bootstrap servers (`host:port,...`).
    #[arg(long, env = "ANOMALY_BROKERS")]
    pub brokers: String,
    /// librdkafka properties for the producer.
    #[command(flatten)]
    pub kafka: KafkaOptions,
    /// Topic to publish to (keyed by host).
    #[arg(long, env = "ANOMALY_METRICS_TOPIC", default_value = "metrics")]
    pub topic: String,
    /// Encoding of the samples: json or postcard.
    #[arg(long, env = "ANOMALY_SAMPLE_FORMAT", value_enum, default_value_t = SampleFormat::Json)]
    pub format: SampleFormat,
    /// Replay the test part of this labelled dataset's `--entity` (smd, asd, nab).
    #[arg(long, requires = "entity", conflicts_with = "synthetic")]
    pub dataset: Option<DatasetKind>,
    /// The entity of `--dataset`; it is also the samples' host name.
    #[arg(long, requires = "dataset")]
    pub entity: Option<String>,
    /// Folder that contains SMD/, ASD/ or NAB/, for `--dataset`.
    #[arg(long, env = "ANOMALY_DATA_DIR", default_value = "../shared/data")]
    pub data_dir: PathBuf,
    /// Publish synthetic hosts (the collector's seven metrics) instead of a dataset.
    #[arg(long)]
    pub synthetic: bool,
    /// Number of synthetic hosts, named `host-0` ...
    #[arg(long, default_value = "10")]
    pub hosts: u64,
    /// Samples per host per second (0: as fast as the broker takes them). Timestamps always
    /// advance by one `--step-ms` per sample, whatever the pace.
    #[arg(long, default_value = "1")]
    pub rate: f64,
    /// Event-time distance between consecutive samples of a host, in milliseconds.
    #[arg(long, default_value = "1000")]
    pub step_ms: i64,
    /// Stamp each sample with the wall-clock time it is published instead (live load, so that
    /// the detector's end-to-end latency is the real delay since the sample was taken).
    #[arg(long)]
    pub wall_clock: bool,
    /// Samples per host to publish (a dataset defaults to its whole test part).
    #[arg(long)]
    pub count: Option<u64>,
    /// For synthetic hosts: every this many steps, one host (in turn) gets a 30-step anomaly
    /// (0: never).
    #[arg(long, default_value = "0")]
    pub anomaly_every: u64,
    /// How many hosts (consecutive, in turn) get an anomaly in each round of `--anomaly-every`.
    #[arg(long, default_value = "1")]
    pub anomaly_hosts: u64,
}

/// How many steps an injected synthetic anomaly lasts.
const INJECTION_STEPS: u64 = 30;

/// Publishes the samples; returns after every one was acknowledged by the broker.
pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(replay(args))
}

async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let source = Source::new(&args)?;
    let producer: AsyncProducer = args
        .kafka
        .apply(idempotent_producer(&args.brokers).set("linger.ms", "5"))
        .create()
        .context("cannot create the producer")?;
    let codec = args.format.codec();
    let start_ms = chrono::Utc::now().timestamp_millis() - source.steps as i64 * args.step_ms;
    let started = Instant::now();
    let mut buf = Vec::new();
    let mut in_flight = Vec::new();
    let mut sent = 0u64;
    for step in 0..source.steps {
        if args.rate > 0.0 {
            let due = started + Duration::from_secs_f64(step as f64 / args.rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let timestamp_ms = if args.wall_clock {
            chrono::Utc::now().timestamp_millis()
        } else {
            start_ms + step as i64 * args.step_ms
        };
        for sample in source.samples(step, timestamp_ms) {
            buf.clear();
            codec.encode(&sample, &mut buf)?;
            let record = FutureRecord::to(&args.topic)
                .key(sample.entity.as_str())
                .payload(&buf);
            in_flight.push(
                producer
                    .send_result(record)
                    .map_err(|(e, _)| anyhow::anyhow!("cannot enqueue: {e}"))?,
            );
            sent += 1;
        }
        // Await acknowledgements in chunks: bounded memory, and delivery errors surface early.
        if in_flight.len() >= 10_000 || step + 1 == source.steps {
            for delivery in in_flight.drain(..) {
                delivery
                    .await
                    .context("producer dropped")?
                    .map_err(|(e, _)| anyhow::anyhow!("delivery failed: {e}"))?;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "published {sent} samples to {} in {secs:.1} s ({:.0} samples/s)",
        args.topic,
        sent as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// Where samples come from.
struct Source {
    kind: SourceKind,
    steps: u64,
}

enum SourceKind {
    Dataset {
        entity: String,
        rows: anomaly_core::dataset::Series,
    },
    Synthetic {
        hosts: Vec<(String, SyntheticHost)>,
        injections: Injections,
    },
}

impl Source {
    fn new(args: &ReplayArgs) -> anyhow::Result<Self> {
        match (&args.dataset, &args.entity, args.synthetic) {
            (Some(kind), Some(entity), false) => {
                let e = dataset::load_entity(&args.data_dir, *kind, entity)?;
                let steps = args
                    .count
                    .unwrap_or(e.test.rows() as u64)
                    .min(e.test.rows() as u64);
                Ok(Self {
                    kind: SourceKind::Dataset {
                        entity: entity.clone(),
                        rows: e.test,
                    },
                    steps,
                })
            }
            (None, None, true) => {
                let Some(steps) = args.count else {
                    bail!("--synthetic needs --count (samples per host)")
                };
                let hosts = (0..args.hosts)
                    .map(|i| (format!("host-{i}"), SyntheticHost::new(i)))
                    .collect();
                Ok(Self {
                    kind: SourceKind::Synthetic {
                        hosts,
                        injections: Injections {
                            every: args.anomaly_every,
                            hosts_per_round: args.anomaly_hosts,
                        },
                    },
                    steps,
                })
            }
            _ => bail!("give either --dataset KIND --entity NAME or --synthetic"),
        }
    }

    fn samples(&self, step: u64, timestamp_ms: i64) -> Vec<Sample> {
        match &self.kind {
            SourceKind::Dataset { entity, rows } => {
                vec![Sample::new(
                    entity.clone(),
                    timestamp_ms,
                    rows.row(step as usize).to_vec(),
                )]
            }
            SourceKind::Synthetic { hosts, injections } => hosts
                .iter()
                .enumerate()
                .map(|(i, (name, host))| {
                    let values = match injections.at(step, i as u64, hosts.len() as u64) {
                        Some(kind) => host.anomalous_sample(step, kind),
                        None => host.sample(step),
                    };
                    Sample::new(name.clone(), timestamp_ms, values.to_vec())
                })
                .collect(),
        }
    }
}

/// Which synthetic hosts get anomalies, and when.
#[derive(Debug, Clone, Copy)]
struct Injections {
    /// A round of anomalies starts every this many steps (0: never).
    every: u64,
    /// Hosts that get one in each round.
    hosts_per_round: u64,
}

impl Injections {
    /// The anomaly `host` (of `hosts`) carries at `step`, if any: every `every` steps the next
    /// `hosts_per_round` hosts in turn get one for [`INJECTION_STEPS`] steps, cycling through
    /// the kinds.
    fn at(self, step: u64, host: u64, hosts: u64) -> Option<Injection> {
        if self.every == 0 || step < self.every || hosts == 0 {
            return None;
        }
        let round = step / self.every;
        let first = (round * self.hosts_per_round) % hosts;
        let in_round = (host + hosts - first) % hosts < self.hosts_per_round;
        (in_round && step % self.every < INJECTION_STEPS).then(|| {
            [
                Injection::CpuSaturation,
                Injection::MemoryLeak,
                Injection::NetworkFlood,
            ][(round % 3) as usize]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injections_visit_hosts_in_turn_and_last_their_length() {
        let one = Injections {
            every: 100,
            hosts_per_round: 1,
        };
        let never = Injections { every: 0, ..one };
        assert_eq!(never.at(50, 0, 3), None);
        assert_eq!(one.at(50, 0, 3), None, "nothing before the first round");
        // Round 1 (steps 100..200) belongs to host 1, for 30 steps.
        assert!(one.at(100, 1, 3).is_some());
        assert!(one.at(129, 1, 3).is_some());
        assert_eq!(one.at(130, 1, 3), None);
        assert_eq!(one.at(100, 0, 3), None);
        assert!(one.at(200, 2, 3).is_some());
    }

    #[test]
    fn several_hosts_per_round_take_consecutive_turns_and_wrap() {
        let two = Injections {
            every: 100,
            hosts_per_round: 2,
        };
        let hit = |step| {
            (0..5)
                .filter(|&h| two.at(step, h, 5).is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(hit(100), vec![2, 3]);
        assert_eq!(hit(200), vec![0, 4], "hosts 4 and 0: the round wraps");
        assert_eq!(hit(300), vec![1, 2]);
        assert_eq!(hit(150), Vec::<u64>::new());
    }
}
