//! `anomaly detect`: consume host samples in a consumer group, score every host's windows, and
//! write anomaly events to the store (PostgreSQL or SQLite) and to the anomalies topic. Without a
//! model it first collects a baseline and trains one, without pausing consumption.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anomaly_core::alerting::EventRule;
use anomaly_core::{MetricSchema, Sample};
use anomaly_model::{DetectorKind, Model};
use anomaly_stream::kafka::KafkaRuntime;
use anomaly_stream::{Codec, JsonCodec, PostcardCodec, TopologyBuilder, Utf8Codec};
use anyhow::Context;
use rdkafka::config::ClientConfig;
use tokio::net::TcpListener;

use crate::collect::SampleFormat;
use crate::detect::metric_names;
use crate::detect::sink::{DetectorCounters, DetectorSink, EventTopic};
use crate::detect::state::{BaselinePlan, DetectorState};
use crate::store::Store;
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
    /// Consumer group; instances of one group share the partitions.
    #[arg(long, env = "ANOMALY_GROUP", default_value = "anomaly-detector")]
    pub group: String,
    /// Where anomaly events are stored: a `postgres://` URL or an SQLite file path.
    #[arg(long, env = "ANOMALY_DATABASE_URL", default_value = "anomalies.db")]
    pub database_url: String,
    /// The model artifact: loaded if present, otherwise written after baseline training.
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
}

/// Runs the detector until SIGINT or SIGTERM.
pub fn run(args: DetectArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("anomaly-detect")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
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
    })
}

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
    let plan = BaselinePlan {
        samples: args.baseline_samples,
        detector: args.detector,
        config,
        model_dir: args.model_dir.clone(),
        retrain_every: (args.retrain_every > 0).then_some(args.retrain_every),
    };
    let state = if args
        .model_dir
        .join(anomaly_model::artifact::MANIFEST_FILE)
        .is_file()
    {
        let model = Model::load(&args.model_dir)
            .with_context(|| format!("cannot load the model in {}", args.model_dir.display()))?;
        tracing::info!(model_version = %model.manifest().model_version, "model loaded");
        DetectorState::live(model, rule, plan)?
    } else {
        tracing::info!(
            samples = args.baseline_samples,
            "no model yet: collecting a baseline"
        );
        DetectorState::baseline(MetricSchema::host(), rule, plan)
    };
    let store = Store::open(&args.database_url)?;
    let producer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // An unreachable broker or a missing topic must surface as an error within seconds, not
        // stall the detector for librdkafka's default five minutes.
        .set("message.timeout.ms", "30000")
        .create()
        .context("cannot create the anomalies producer")?;
    let sink = DetectorSink::new(
        state,
        store,
        Some(EventTopic {
            producer,
            topic: args.anomalies_topic.clone(),
        }),
    );

    let topology = match args.format {
        SampleFormat::Json => topology(&args, JsonCodec, sink.clone())?,
        SampleFormat::Postcard => topology(&args, PostcardCodec, sink.clone())?,
    };
    let running = KafkaRuntime::builder(topology)
        .brokers(args.brokers.clone())
        .group_id(args.group.clone())
        .build()?
        .start()?;

    let (stop_http, http_stopped) = tokio::sync::watch::channel(false);
    let server = listener.map(|l| {
        let mut stopped = http_stopped.clone();
        tokio::spawn(telemetry::serve_http(l, handle, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }))
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
                if let Err(e) = sink.poll().await {
                    break Err(anyhow::anyhow!("{e}"));
                }
                every_second(DetectorView { sink: &sink });
            }
        }
    };
    running.shutdown().await?;
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
    sink: DetectorSink,
) -> anyhow::Result<anomaly_stream::Topology> {
    let builder = TopologyBuilder::new().dead_letter_topic(args.dead_letter_topic.clone());
    builder
        .stream_with::<String, Sample>(args.topic.clone(), Utf8Codec, codec)
        .to_sink("detector", sink);
    Ok(builder.build()?)
}
