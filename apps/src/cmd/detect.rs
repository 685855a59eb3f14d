//! `anomaly detect`: consume host samples in a consumer group, score every host's windows, and
//! write anomaly events to the store (PostgreSQL or SQLite) and to the anomalies topic. Without a
//! model it first collects a baseline and trains one, without pausing consumption.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anomaly_core::alerting::EventRule;
use anomaly_core::{MetricSchema, Sample, SampleLimits};
use anomaly_model::{BaselinePlan, DetectorKind, DetectorLifecycle, ModelStore};
use anomaly_stream::kafka::KafkaRuntime;
use anomaly_stream::{
    Codec, JsonCodec, PostcardCodec, Record, Rejection, SkipCodec, TopologyBuilder,
    TransactionalSink,
};
use anyhow::Context;
use tokio::net::TcpListener;

use super::collect::parse_duration;
use crate::collect::SampleFormat;
use crate::detect::event_topic::EventTopic;
use crate::detect::group_model::{Followed, GroupModelFollower};
use crate::detect::metric_names;
use crate::detect::sink::{DetectorCounters, DetectorSink};
use crate::detect::trainer::GroupTrainer;
use crate::kafka_options::{KafkaOptions, idempotent_producer};
use crate::store::StoreWriter;
use crate::telemetry;

/// Arguments of `anomaly detect`.
#[derive(Debug, Clone, clap::Args)]
pub struct DetectArgs {
    /// Kafka bootstrap servers (`host:port,...`).
    #[arg(long, env = "ANOMALY_BROKERS")]
    pub brokers: String,
    /// Topic of the host samples (keyed by host).
    #[arg(long, env = "ANOMALY_METRICS_TOPIC", default_value = "metrics")]
    pub topic: String,
    /// Encoding of the samples on the topic: json or postcard.
    #[arg(long, env = "ANOMALY_SAMPLE_FORMAT", value_enum, default_value_t = SampleFormat::Json)]
    pub format: SampleFormat,
    /// Topic the anomaly events are published to (keyed by host, JSON).
    #[arg(long, env = "ANOMALY_ANOMALIES_TOPIC", default_value = "anomalies")]
    pub anomalies_topic: String,
    /// Topic for samples that cannot be decoded, with the error and source position in headers.
    #[arg(
        long,
        env = "ANOMALY_DEAD_LETTER_TOPIC",
        default_value = "metrics.dead-letter"
    )]
    pub dead_letter_topic: String,
    /// Consumer group; instances of one group share the partitions and one model.
    #[arg(long, env = "ANOMALY_GROUP", default_value = "anomaly-detector")]
    pub group: String,
    /// Where anomaly events are stored: a `postgres://` URL or an SQLite file path.
    #[arg(long, env = "ANOMALY_DATABASE_URL", default_value = "anomalies.db")]
    pub database_url: String,
    /// The model directory: a store of versions whose current one is loaded at start (or a
    /// plain artifact written by `anomaly train --out`), checksummed and switched to
    /// atomically, so a process killed while saving leaves the previous version current; a
    /// damaged current version is refused with the reason and the newest intact earlier one
    /// serves instead.
    ///
    /// The instances of a consumer group score with one model: the group's versions are kept
    /// in the database (`--database-url`), and each instance adopts the current one within
    /// seconds (saving it here too). The first instance to start with a model offers it as the
    /// group's first version. Without any, one instance (the holder of the group's training
    /// lease) trains on its baseline and publishes the model, and the others wait for it; it
    /// is the same for scheduled retraining.
    #[arg(long, env = "ANOMALY_MODEL_DIR", default_value = "model")]
    pub model_dir: PathBuf,
    /// Samples (over all hosts) collected as a baseline before training, when there is no model.
    #[arg(long, env = "ANOMALY_BASELINE_SAMPLES", default_value = "3600")]
    pub baseline_samples: usize,
    /// Retrain on the rolling baseline (the latest `--baseline-samples` samples outside anomaly
    /// events) after this many samples; 0 never retrains.
    #[arg(long, env = "ANOMALY_RETRAIN_EVERY", default_value = "86400")]
    pub retrain_every: usize,
    /// Detector trained on the baseline.
    #[arg(long, env = "ANOMALY_DETECTOR", default_value_t = DetectorKind::default())]
    pub detector: DetectorKind,
    /// Training settings as JSON (any subset of `TrainingConfig`'s fields).
    #[arg(long, env = "ANOMALY_TRAINING_CONFIG")]
    pub config: Option<PathBuf>,
    /// An event opens when this many of the last `--event-windows` windows exceed the threshold.
    #[arg(long, env = "ANOMALY_EVENT_OVER", default_value_t = EventRule::default().k)]
    pub event_over: usize,
    /// The windows looked at for opening an event.
    #[arg(long, env = "ANOMALY_EVENT_WINDOWS", default_value_t = EventRule::default().n)]
    pub event_windows: usize,
    /// An event closes after this many consecutive quiet windows.
    #[arg(long, env = "ANOMALY_EVENT_QUIET", default_value_t = EventRule::default().m)]
    pub event_quiet: usize,
    /// One of the windows that open an event must be at least this many times the threshold
    /// (1: merely over it).
    #[arg(long, env = "ANOMALY_EVENT_CONFIRM", default_value_t = EventRule::default().confirm)]
    pub event_confirm: f64,
    /// This many windows over the threshold in a row open an event whatever their height
    /// (0: never).
    #[arg(long, env = "ANOMALY_EVENT_SUSTAIN", default_value_t = EventRule::default().sustain)]
    pub event_sustain: usize,
    /// Address serving /metrics (Prometheus text format) and /health.
    #[arg(long, env = "ANOMALY_DETECT_LISTEN", default_value = "127.0.0.1:9102")]
    pub listen: SocketAddr,
    /// Longest host name accepted, in bytes; samples of longer names go to the dead-letter
    /// topic (reason `entity_name`), so no sender can grow the detector's per-host state.
    #[arg(long, env = "ANOMALY_MAX_HOST_BYTES", default_value = "253")]
    pub max_host_bytes: usize,
    /// Samples stamped further ahead of this machine's clock go to the dead-letter topic
    /// (reason `timestamp`).
    #[arg(long, env = "ANOMALY_MAX_SAMPLE_LEAD", default_value = "5m", value_parser = parse_duration)]
    pub max_sample_lead: Duration,
    /// Samples stamped further behind it go to the dead-letter topic (reason `timestamp`).
    #[arg(long, env = "ANOMALY_MAX_SAMPLE_AGE", default_value = "7d", value_parser = parse_duration)]
    pub max_sample_age: Duration,
    /// Records larger than this many bytes (key and value) go to the dead-letter topic undecoded
    /// (reason `oversized`).
    #[arg(long, env = "ANOMALY_MAX_RECORD_BYTES", default_value_t = DEFAULT_MAX_RECORD_BYTES)]
    pub max_record_bytes: usize,
    /// Hosts that send nothing for this long (in event time) are forgotten: their window,
    /// scoring state and score gauge go, and an event still open on them closes; 0 never.
    #[arg(long, env = "ANOMALY_IDLE_HOST_TIMEOUT", default_value = "1h", value_parser = parse_duration)]
    pub idle_host_timeout: Duration,
    /// librdkafka properties for the detector's consumer and producers.
    #[command(flatten)]
    pub kafka: KafkaOptions,
}

/// Far more than a host sample needs (about 130 bytes of JSON), far less than a runaway
/// producer could send.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 64 * 1024;

impl DetectArgs {
    /// What a sample of `width` values must satisfy, from the flags.
    pub fn sample_limits(&self, width: usize) -> SampleLimits {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        SampleLimits {
            width,
            max_entity_bytes: self.max_host_bytes,
            max_lead_ms: ms(self.max_sample_lead),
            max_age_ms: ms(self.max_sample_age),
        }
    }
}

/// Runs the detector until SIGINT or SIGTERM.
pub fn run(args: DetectArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("anomaly-detect")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(async {
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let counters = run_until(
            args,
            Some(listener),
            super::collect::shutdown_signal(),
            |_| {},
        )
        .await?;
        tracing::info!(?counters, "detector stopped");
        Ok(())
    });
    // A write abandoned on a hanging database may still block a thread; dropping the runtime
    // would wait for it forever, so the process could not stop. What it holds was not
    // acknowledged, so it is consumed again after the restart.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    outcome
}

/// The `/health` component the consumer's broker problems are reported under.
const BROKER_COMPONENT: &str = "kafka";

/// How long a stopping detector waits for threads still blocked on the store.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A running detector's view for callers that report on it (the demo).
pub struct DetectorView<'a> {
    /// The sink holding the detector's state.
    pub sink: &'a DetectorSink,
}

/// Runs the detector until `shutdown` completes, serving HTTP on `listener` when given, calling
/// `every_second` once a second; then stops consuming gracefully (committing what was written)
/// and returns the counters.
pub async fn run_until(
    args: DetectArgs,
    listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
    mut every_second: impl FnMut(DetectorView<'_>),
) -> anyhow::Result<DetectorCounters> {
    let handle = telemetry::prometheus_recorder()?;
    metric_names::describe();
    let config = super::training_config(args.config.as_deref())?;
    let rule = EventRule::new(args.event_over, args.event_windows, args.event_quiet)?
        .confirmed(args.event_confirm, args.event_sustain)?;
    // Refused up front: otherwise the mistake shows only after the whole baseline was collected.
    let needed = config.min_training_rows();
    anyhow::ensure!(
        args.baseline_samples >= needed,
        "--baseline-samples {} is too few: training needs at least {needed}",
        args.baseline_samples
    );
    let trainer = Arc::new(GroupTrainer {
        detector: args.detector,
        config,
        model_dir: args.model_dir.clone(),
        database_url: args.database_url.clone(),
        group: args.group.clone(),
    });
    let plan = BaselinePlan {
        samples: args.baseline_samples,
        retrain_every: (args.retrain_every > 0).then_some(args.retrain_every),
        idle_host_ms: i64::try_from(args.idle_host_timeout.as_millis()).unwrap_or(i64::MAX),
    };
    let health = telemetry::Health::default();
    let store = Arc::new(StoreWriter::new(args.database_url.clone(), health.clone()));
    let connected = store.connect().await;
    if let Err(e) = &connected {
        // Not fatal: writes retry until the store answers, and /health says why meanwhile.
        tracing::warn!(error = %format!("{e:#}"), "the event store is unreachable for now");
        health.problem("database", format!("{e:#}"));
        // Keep trying without waiting for an event to write, so that /health turns 200 as soon
        // as the store is back.
        let reconnecting = Arc::clone(&store);
        tokio::spawn(async move { reconnecting.upsert(Vec::new()).await });
    }
    let loaded = ModelStore::new(&args.model_dir)
        .load_current()
        .with_context(|| format!("cannot load the model in {}", args.model_dir.display()))?;
    let mut model = loaded.map(|loaded| {
        for (version, problem) in &loaded.refused {
            tracing::error!(%version, %problem, "model version refused");
        }
        tracing::info!(model_version = %loaded.model.manifest().model_version, "model loaded");
        loaded.model
    });
    let follower = GroupModelFollower::new(args.model_dir.clone());
    if connected.is_ok() {
        // The group's current model from the start, rather than a stale local one replaced a
        // few seconds later (each replacement starts every host afresh).
        let (look, group) = (follower.clone(), args.group.clone());
        let in_use = model.as_ref().map(|m| m.manifest().model_version.clone());
        match store
            .attempt(move |store| look.look(store, &group, in_use.as_deref()))
            .await
        {
            Ok(Followed::Adopt(group_model)) => model = Some(*group_model),
            Ok(Followed::Nothing | Followed::Same) => {}
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot read the group's model for now")
            }
        }
    }
    let state = if let Some(model) = model {
        tracing::info!(model_version = %model.manifest().model_version, group = %args.group, "starting with this model");
        DetectorLifecycle::live(model, rule, plan, trainer)?
    } else {
        tracing::info!(
            samples = args.baseline_samples,
            "no model yet: collecting a baseline"
        );
        DetectorLifecycle::baseline(MetricSchema::host(), rule, plan, trainer)
    };
    let producer = args
        .kafka
        .apply(
            // An unreachable broker or a missing topic must surface as an error within seconds,
            // not stall the detector for librdkafka's default five minutes.
            idempotent_producer(&args.brokers).set("message.timeout.ms", "30000"),
        )
        .create()
        .context("cannot create the anomalies producer")?;
    let sink = DetectorSink::new(
        state,
        &args.group,
        store,
        Some(EventTopic {
            producer,
            topic: args.anomalies_topic.clone(),
        }),
        health.clone(),
    )
    .following(follower);

    let topology = match args.format {
        SampleFormat::Json => topology(&args, JsonCodec, sink.clone())?,
        SampleFormat::Postcard => topology(&args, PostcardCodec, sink.clone())?,
    };
    let mut runtime = KafkaRuntime::builder(topology)
        .brokers(args.brokers.clone())
        .group_id(args.group.clone())
        // Each batch is one database transaction (events, offset, now and then the partition's
        // state): under a backlog, fewer and larger ones. A quiet fleet's batches still go every
        // commit interval (200 ms), so latency does not wait for a batch to fill.
        .sink_batch(4096);
    for (key, value) in args.kafka.pairs() {
        runtime = runtime.set(key, value);
    }
    let running = runtime.build()?.start()?;

    let (stop_http, http_stopped) = tokio::sync::watch::channel(false);
    let server = listener.map(|l| {
        let mut stopped = http_stopped.clone();
        tokio::spawn(telemetry::serve_http(
            l,
            handle,
            health.clone(),
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        ))
    });

    let mut shutdown = std::pin::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let outcome = loop {
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            _ = tick.tick() => {
                if running.is_finished() {
                    break Err(anyhow::anyhow!("the stream runtime stopped: {:?}", running.stats().fatal()));
                }
                // The consumer waits for the brokers by itself; /health says why meanwhile.
                match running.stats().broker_problem() {
                    Some(problem) => health.problem(BROKER_COMPONENT, problem),
                    None => health.recovered(BROKER_COMPONENT),
                }
                // A poll may wait for the store (an outage): a stop request must still stop.
                tokio::select! {
                    polled = sink.poll() => {
                        if let Err(e) = polled {
                            // Kept as the source: `{:#}` shows the model's error under it.
                            break Err(anyhow::Error::new(e).context("the detector failed"));
                        }
                    }
                    _ = &mut shutdown => break Ok(()),
                }
                every_second(DetectorView { sink: &sink });
            }
        }
    };
    match health.report() {
        None => running.shutdown().await?,
        Some(problems) => {
            // A graceful stop would wait for writes that cannot complete. Nothing is lost by
            // not waiting: what was not committed is consumed again after the restart.
            tracing::warn!(%problems, "stopping without waiting for pending writes");
            running.kill().await?;
        }
    }
    let _ = stop_http.send(true);
    if let Some(server) = server {
        let _ = server.await;
    }
    outcome?;
    Ok(sink.counters())
}

fn topology(
    args: &DetectArgs,
    codec: impl Codec<Sample> + 'static,
    sink: impl TransactionalSink<Record<(), Sample>>,
) -> anyhow::Result<anomaly_stream::Topology> {
    let limits = args.sample_limits(MetricSchema::host().len());
    let builder = TopologyBuilder::new()
        .dead_letter_topic(args.dead_letter_topic.clone())
        .max_record_bytes(args.max_record_bytes);
    builder
        // The sample names its host; the message key only spreads hosts over partitions.
        .stream_with::<(), Sample>(args.topic.clone(), SkipCodec, codec)
        // Poison goes to the dead-letter topic, counted by reason, before it reaches any
        // per-host state; the receiver's clock is the runtime's, read once per batch.
        .validate_at(move |_, sample, now_ms| {
            limits.check(sample, now_ms).map_err(|problem| Rejection {
                reason: problem.reason(),
                message: format!("sample of {:?}: {problem}", truncated(&sample.entity)),
            })
        })
        .to_transactional("detector", sink);
    Ok(builder.build()?)
}

/// At most the first 64 characters of `name`, for messages about names that may be huge.
fn truncated(name: &str) -> &str {
    name.char_indices()
        .nth(64)
        .map_or(name, |(end, _)| &name[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags' defaults, as a command line with only the broker would give them.
    fn default_args() -> DetectArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: DetectArgs,
        }
        Cli::try_parse_from(["detect", "--brokers", "k:9092"])
            .unwrap()
            .args
    }

    #[test]
    fn sample_limit_flags_default_to_the_library_defaults() {
        let args = default_args();
        assert_eq!(args.sample_limits(7), SampleLimits::new(7));
        assert_eq!(args.max_record_bytes, DEFAULT_MAX_RECORD_BYTES);
    }

    #[test]
    fn poison_samples_are_dead_lettered_by_reason_and_only_valid_ones_reach_the_detector() {
        use anomaly_stream::TestDriver;
        use anomaly_stream::topology::DLQ_REASON_HEADER;
        let args = default_args();
        // The detector's own path is tested on its own; here, what reaches it.
        let sink = anomaly_stream::MemorySink::<Record<(), Sample>>::new();
        let mut driver = TestDriver::new(topology(&args, PostcardCodec, sink.clone()).unwrap());
        // The samples' times are checked against the driver's clock.
        let now = 1_800_000_000_000;
        driver.set_time(now).unwrap();
        // Keyed by host as the collector writes them; the detector reads only the value.
        let send = |driver: &mut TestDriver, host: &str, sample: Sample| {
            let mut value = Vec::new();
            PostcardCodec.encode(&sample, &mut value).unwrap();
            driver
                .send_raw(
                    "metrics",
                    0,
                    Some(host.as_bytes()),
                    &value,
                    sample.timestamp_ms,
                )
                .unwrap();
        };
        send(
            &mut driver,
            "web-1",
            Sample::new("web-1", now, vec![1.0; 7]),
        );
        send(
            &mut driver,
            "web-1",
            Sample::new("web-1", now, vec![1.0; 3]),
        );
        let mut broken = vec![1.0; 7];
        broken[2] = f64::NAN;
        send(&mut driver, "web-1", Sample::new("web-1", now, broken));
        let long = "h".repeat(300);
        send(
            &mut driver,
            &long,
            Sample::new(long.clone(), now, vec![1.0; 7]),
        );
        let old = now - 8 * 86_400_000;
        send(
            &mut driver,
            "web-1",
            Sample::new("web-1", old, vec![1.0; 7]),
        );
        let ahead = now + 3_600_000;
        send(
            &mut driver,
            "web-1",
            Sample::new("web-1", ahead, vec![1.0; 7]),
        );
        driver
            .send_raw("metrics", 0, Some(b"web-1"), &vec![0u8; 70_000], now)
            .unwrap();
        driver
            .send_raw("metrics", 0, Some(b"web-1"), b"\xff", now)
            .unwrap();
        send(
            &mut driver,
            "web-2",
            Sample::new("web-2", now, vec![2.0; 7]),
        );

        let reasons: Vec<String> = driver
            .dead_letters()
            .iter()
            .map(|m| m.header(DLQ_REASON_HEADER).unwrap_or("").to_string())
            .collect();
        assert_eq!(
            reasons,
            [
                "wrong_width",
                "non_finite",
                "entity_name",
                "timestamp",
                "timestamp",
                "oversized",
                "undecodable"
            ]
        );
        let reached: Vec<String> = sink
            .records()
            .into_iter()
            .map(|r| r.value.entity.to_string())
            .collect();
        assert_eq!(reached, ["web-1", "web-2"], "only the valid samples");
    }
}
