//! `anomaly demo`: the whole topology in one process with embedded stand-ins, for a first look on
//! any machine: this host's collector -> rdkafka's in-process mock Kafka cluster -> the detector
//! (baseline, training, scoring) -> an SQLite file. No external service is needed.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anomaly_core::alerting::EventRule;
use anomaly_model::DetectorKind;
use anyhow::Context;
use rdkafka::mocking::MockCluster;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::collect::{CollectArgs, parse_duration};
use super::detect::{DEFAULT_MAX_RECORD_BYTES, DetectArgs, DetectorView};
use crate::collect::SampleFormat;
use anomaly_model::Progress;

/// Arguments of `anomaly demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Seconds of baseline to collect before training (keep the machine as it usually is
    /// meanwhile). Five minutes, so that the baseline holds several rounds of the periodic jobs
    /// every machine runs (cron, log rotation, agents); shorter baselines page on the first one
    /// they missed.
    #[arg(long, env = "ANOMALY_DEMO_TRAIN_SECS", default_value = "300")]
    pub train_secs: u64,
    /// Seconds to detect after training before exiting; without it the demo runs until Ctrl-C.
    #[arg(long, env = "ANOMALY_DEMO_RUN_SECS")]
    pub run_secs: Option<u64>,
    /// Write `{"samples", "windows_scored", "anomalies", "threshold", "model_version"}` here on exit.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// Time between samples of this host: the collector's default, so the demo behaves as a
    /// deployment does.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Detector to train.
    #[arg(long, default_value_t = DetectorKind::default())]
    pub detector: DetectorKind,
    /// Where the demo keeps its model and its SQLite store (a fresh temporary folder by default).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Address of the collector's /metrics and /health.
    #[arg(long, default_value = "127.0.0.1:9101")]
    pub collector_listen: SocketAddr,
    /// Address of the detector's /metrics and /health.
    #[arg(long, default_value = "127.0.0.1:9102")]
    pub detector_listen: SocketAddr,
}

/// The summary `--summary-json` writes.
#[derive(Debug, Serialize)]
struct Summary {
    samples: u64,
    windows_scored: u64,
    anomalies: u64,
    threshold: Option<f64>,
    model_version: Option<String>,
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("anomaly-demo")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(demo(args))
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let state_dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("anomaly-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    let cluster = MockCluster::new(1).context("cannot start the embedded Kafka cluster")?;
    // The mock cluster answers no CreateTopics request; its own API creates topics.
    for topic in ["metrics", "anomalies", "metrics.dead-letter"] {
        cluster
            .create_topic(topic, 1, 1)
            .with_context(|| format!("cannot create topic {topic}"))?;
    }
    let brokers = cluster.bootstrap_servers();
    let baseline_samples = ((args.train_secs as f64) / args.interval.as_secs_f64()).ceil() as usize;
    let needed = anomaly_model::TrainingConfig::default().min_training_rows();
    anyhow::ensure!(
        baseline_samples >= needed,
        "--train-secs {} at --interval {:?} gives {baseline_samples} samples; training needs at least {needed}",
        args.train_secs,
        args.interval
    );
    println!(
        "anomaly demo: learning what is normal on this host for {} s ({baseline_samples} samples, one every {:?}),",
        args.train_secs, args.interval
    );
    println!(
        "  then detecting: an event opens when the score (1 = this host's usual) stays above the threshold."
    );
    println!(
        "  Leave the machine as it usually is meanwhile: its periodic jobs are part of its normal."
    );
    println!(
        "  metrics: http://{} (collector), http://{} (detector); events: {}",
        args.collector_listen,
        args.detector_listen,
        state_dir.join("anomalies.db").display()
    );
    println!(
        "  once it detects, try `stress-ng --cpu 1 --timeout 30s` in another terminal, then\n  `anomaly events --since 1h --database-url {}`.",
        state_dir.join("anomalies.db").display()
    );

    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let collect_args = CollectArgs {
        interval: args.interval,
        host: None,
        brokers: Some(brokers.clone()),
        kafka: Default::default(),
        topic: "metrics".to_string(),
        format: SampleFormat::Json,
        listen: args.collector_listen,
        buffer: 10_000,
        flush_timeout: Duration::from_secs(2),
        proc_root: "/proc".into(),
        sys_root: "/sys".into(),
    };
    let collector_listener = TcpListener::bind(args.collector_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.collector_listen))?;
    let collector = tokio::spawn(super::collect::run_until(
        collect_args,
        collector_listener,
        until_stopped(stopped.clone()),
    ));

    let limits = anomaly_core::SampleLimits::new(0);
    let detect_args = DetectArgs {
        brokers,
        topic: "metrics".to_string(),
        format: SampleFormat::Json,
        anomalies_topic: "anomalies".to_string(),
        dead_letter_topic: "metrics.dead-letter".to_string(),
        group: "anomaly-demo".to_string(),
        database_url: state_dir
            .join("anomalies.db")
            .to_string_lossy()
            .into_owned(),
        model_dir: state_dir.join("model"),
        baseline_samples,
        retrain_every: 0,
        detector: args.detector,
        config: None,
        event_over: EventRule::default().k,
        event_windows: EventRule::default().n,
        event_quiet: EventRule::default().m,
        event_confirm: EventRule::default().confirm,
        event_sustain: EventRule::default().sustain,
        listen: args.detector_listen,
        max_host_bytes: limits.max_entity_bytes,
        max_sample_lead: Duration::from_millis(limits.max_lead_ms.unsigned_abs()),
        max_sample_age: Duration::from_millis(limits.max_age_ms.unsigned_abs()),
        max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        idle_host_timeout: Duration::from_secs(3600),
        kafka: Default::default(),
    };
    let detector_listener = TcpListener::bind(args.detector_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.detector_listen))?;
    let started = Instant::now();
    let mut live_since: Option<Instant> = None;
    let run_secs = args.run_secs;
    let stop_on_time = stop.clone();
    let shutdown = async move {
        tokio::select! {
            _ = super::collect::shutdown_signal() => {}
            _ = until_stopped(stopped) => {}
        }
    };
    let mut last = (None, None);
    let outcome =
        super::detect::run_until(detect_args, Some(detector_listener), shutdown, |view| {
            last = (view.sink.model(), Some(view.sink.counters()));
            print_status(&view, started);
            if matches!(view.sink.progress(), Progress::Live) {
                let since = *live_since.get_or_insert_with(Instant::now);
                if run_secs.is_some_and(|secs| since.elapsed() >= Duration::from_secs(secs)) {
                    let _ = stop_on_time.send(true);
                }
            }
        })
        .await;
    let _ = stop.send(true);
    let collected = collector.await.context("collector task")??;
    let counters = outcome?;
    tracing::info!(samples = collected.samples, "collector stopped");

    if let Some(path) = &args.summary_json {
        let (model, _) = last;
        let summary = Summary {
            samples: counters.samples,
            windows_scored: counters.windows_scored,
            anomalies: counters.anomalies,
            threshold: model.as_ref().map(|m| m.0),
            model_version: model.map(|m| m.1),
        };
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    drop(cluster);
    Ok(())
}

/// One status line a second; while learning, what is being learnt every ten seconds.
fn print_status(view: &DetectorView<'_>, started: Instant) {
    let c = view.sink.counters();
    let elapsed = started.elapsed().as_secs();
    let line = match (view.sink.progress(), view.sink.model()) {
        (Progress::Baseline(share), _) => {
            let mut line = format!(
                "[{elapsed:>4}s] learning {:>3.0}%  samples {}",
                share * 100.0,
                c.samples
            );
            if elapsed.is_multiple_of(10)
                && let Some(ranges) = view.sink.baseline_ranges()
            {
                line.push_str("  seen so far: ");
                line.push_str(&describe_ranges(&ranges));
            }
            line
        }
        (Progress::Training, _) => format!("[{elapsed:>4}s] training...  samples {}", c.samples),
        (Progress::Live, Some((threshold, _))) => format!(
            "[{elapsed:>4}s] samples {}  windows scored {}  score {:.2} vs threshold {:.2}{}  anomalies {}",
            c.samples,
            c.windows_scored,
            c.last_score,
            threshold,
            if c.last_score > threshold {
                "  ANOMALOUS"
            } else {
                ""
            },
            c.anomalies
        ),
        (Progress::Live, None) => format!("[{elapsed:>4}s] samples {}", c.samples),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

/// `cpu_busy 1.0-17.2 %, load1 0.10-1.20, disk_read 0 B/s-2.1 MB/s, ...`
fn describe_ranges(ranges: &[(anomaly_core::Metric, f64, f64)]) -> String {
    let value = |unit: &str, v: f64| match unit {
        "percent" => format!("{v:.1} %"),
        "bytes_per_second" if v >= 1e6 => format!("{:.1} MB/s", v / 1e6),
        "bytes_per_second" if v >= 1e3 => format!("{:.0} kB/s", v / 1e3),
        "bytes_per_second" => format!("{v:.0} B/s"),
        _ => format!("{v:.2}"),
    };
    ranges
        .iter()
        .filter(|(_, low, high)| low <= high)
        .map(|(metric, low, high)| {
            format!(
                "{} {}-{}",
                metric.name,
                value(&metric.unit, *low),
                value(&metric.unit, *high)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
