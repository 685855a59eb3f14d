//! `anomaly collect`: samples the host's kernel statistics every interval, serves them on
//! `/metrics` (with `/health`) and, given `--brokers`, streams each sample to Kafka keyed by host.
//!
//! The sampling itself is [`anomaly_core::host`]; this module only composes the pieces of
//! [`crate::collect`] and handles the process' life: startup errors end it with a message, runtime
//! errors (unreadable statistics, broker outages) are logged and counted, and SIGINT or SIGTERM
//! stops sampling, delivers what is buffered (bounded by `--flush-timeout`) and exits 0.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::collect::{
    Collector, Delivery, DeliveryConfig, DeliveryReport, ProcSource, SampleFormat, Step,
    metric_names,
};
use crate::kafka_options::KafkaOptions;
use crate::telemetry;

/// Arguments of `anomaly collect`.
#[derive(Debug, Clone, clap::Args)]
pub struct CollectArgs {
    /// Time between samples: `500ms`, `1s`, `2m`, ... (a bare number is seconds).
    #[arg(long, env = "ANOMALY_COLLECT_INTERVAL", default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Host name the samples carry: their Kafka key and the `host` label of every series.
    /// Defaults to the machine's host name (`<proc-root>/sys/kernel/hostname`).
    #[arg(long, env = "ANOMALY_HOST")]
    pub host: Option<String>,
    /// Kafka bootstrap servers (`host:port,...`). Without them the collector only serves /metrics.
    #[arg(long, env = "ANOMALY_BROKERS")]
    pub brokers: Option<String>,
    /// librdkafka properties for the producer.
    #[command(flatten)]
    pub kafka: KafkaOptions,
    /// Topic the samples are produced to.
    #[arg(long, env = "ANOMALY_METRICS_TOPIC", default_value = "metrics")]
    pub topic: String,
    /// Encoding of the samples on the topic: json or postcard.
    #[arg(long, env = "ANOMALY_SAMPLE_FORMAT", value_enum, default_value_t = SampleFormat::Json)]
    pub format: SampleFormat,
    /// Address serving /metrics (Prometheus text format) and /health.
    #[arg(long, env = "ANOMALY_COLLECT_LISTEN", default_value = "127.0.0.1:9101")]
    pub listen: SocketAddr,
    /// Most samples held while the broker is unreachable; beyond it the oldest are dropped (and
    /// counted in anomaly_collector_dropped_samples_total).
    #[arg(long, env = "ANOMALY_COLLECT_BUFFER", default_value = "10000", value_parser = parse_buffer)]
    pub buffer: usize,
    /// On shutdown, the longest time spent delivering buffered samples before exiting without them.
    #[arg(long, env = "ANOMALY_COLLECT_FLUSH_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub flush_timeout: Duration,
    /// Root of the proc file system to read (`stat`, `meminfo`, `loadavg`, `diskstats`, `net/dev`).
    #[arg(long, env = "ANOMALY_PROC_ROOT", default_value = "/proc")]
    pub proc_root: PathBuf,
    /// Root of the sys file system; the entries of `<sys-root>/block` are the whole disks.
    #[arg(long, env = "ANOMALY_SYS_ROOT", default_value = "/sys")]
    pub sys_root: PathBuf,
}

/// What a collector run did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CollectReport {
    /// Samples produced.
    pub samples: u64,
    /// Steps that produced no sample (unreadable statistics, counter resets, ...).
    pub skipped: u64,
    /// Delivery to Kafka, when `--brokers` was given.
    pub delivery: Option<DeliveryReport>,
}

/// Runs the collector until SIGINT or SIGTERM.
pub fn run(args: CollectArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("anomaly-collect")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let report = run_until(args, listener, shutdown_signal()).await?;
        tracing::info!(?report, "collector stopped");
        Ok(())
    })
}

/// Runs the collector, serving HTTP on `listener` (`args.listen` is not used), until `shutdown`
/// completes; then delivers what is buffered (bounded by `args.flush_timeout`) and returns.
///
/// Errors are startup errors only: no recorder, no host name, no producer.
pub async fn run_until(
    args: CollectArgs,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<CollectReport> {
    let handle = telemetry::prometheus_recorder()?;
    metric_names::describe();
    let source = ProcSource::new(&args.proc_root, &args.sys_root);
    let host = match &args.host {
        Some(host) => host.trim().to_string(),
        None => source
            .hostname()
            .context("cannot determine the host name")?,
    };
    anyhow::ensure!(!host.is_empty(), "--host is empty");

    let delivery = match &args.brokers {
        Some(brokers) => {
            let (delivery, outbox) = Delivery::new(&DeliveryConfig {
                brokers: brokers.clone(),
                topic: args.topic.clone(),
                host: host.clone(),
                format: args.format,
                capacity: args.buffer,
                options: args.kafka.clone(),
            })?;
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(delivery.run(stopped, args.flush_timeout));
            Some((task, outbox, stop))
        }
        None => None,
    };

    let (stop_http, http_stopped) = watch::channel(false);
    let address = listener
        .local_addr()
        .context("listener without an address")?;
    let server = tokio::spawn(telemetry::serve_http(
        listener,
        handle,
        telemetry::Health::default(),
        wait_until_true(http_stopped),
    ));
    tracing::info!(
        %host,
        %address,
        brokers = args.brokers.as_deref().unwrap_or("none"),
        topic = %args.topic,
        interval_ms = args.interval.as_millis() as u64,
        "collector started"
    );

    let mut collector = Collector::new(host);
    let mut report = CollectReport::default();
    let mut ticker = tokio::time::interval(args.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let origin = std::time::Instant::now();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        let reader = source.clone();
        // File reads block; procfs answers in microseconds, but a fixture on a slow disk may not.
        let (at, timestamp_ms, snapshot) = tokio::task::spawn_blocking(move || {
            let at = origin.elapsed();
            (at, unix_millis(), reader.read())
        })
        .await
        .context("the sampling task panicked")?;
        match collector.step(at, timestamp_ms, snapshot) {
            Step::Baseline => {}
            Step::Sample(sample) => {
                report.samples += 1;
                if let Some((_, outbox, _)) = &delivery
                    && let Err(e) = outbox.push(&sample)
                {
                    tracing::error!(error = %format!("{e:#}"), "cannot buffer a sample");
                }
            }
            Step::Skipped { .. } => report.skipped += 1,
        }
    }

    tracing::info!("shutting down: sampling stopped");
    if let Some((task, outbox, stop)) = delivery {
        tracing::info!(
            buffered = outbox.depth(),
            flush_timeout_ms = args.flush_timeout.as_millis() as u64,
            "delivering buffered samples"
        );
        let _ = stop.send(true);
        let delivered = task.await.context("the delivery task panicked")?;
        if delivered.undelivered > 0 {
            tracing::warn!(
                undelivered = delivered.undelivered,
                "flush timeout reached: exiting without some samples"
            );
        }
        report.delivery = Some(delivered);
    }
    let _ = stop_http.send(true);
    let _ = server.await;
    Ok(report)
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
}

async fn wait_until_true(mut flag: watch::Receiver<bool>) {
    // An error means the sender is gone: stop as well.
    let _ = flag.wait_for(|stop| *stop).await;
}

fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

/// Parses a duration as [`humantime`] reads them (`500ms`, `1.5s`, `2m`, `1h 30m`, `7d`), or a bare
/// number of seconds (`2`, `0.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let parsed = match trimmed.parse::<f64>() {
        Ok(seconds) if trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
            Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())
        }
        _ => humantime::parse_duration(trimmed).map_err(|e| e.to_string()),
    };
    parsed.map_err(|e| format!("`{text}` is not a duration such as 500ms, 2m, 1h 30m or 7d: {e}"))
}

/// A positive [`parse_duration`].
fn parse_interval(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_millis(1) {
        return Err(format!(
            "`{text}` is too short: the interval must be at least 1ms"
        ));
    }
    Ok(d)
}

fn parse_buffer(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{text}` is not a positive number of samples")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit_and_reject_garbage() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1w"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "",
            "s",
            "-1s",
            "1.2.3s",
            "1 fortnight",
            "nan",
            "inf",
            "1e400",
            "99999999999999999999999y",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(parse_interval("0s").is_err());
        assert_eq!(parse_interval("10ms"), Ok(Duration::from_millis(10)));
    }

    #[test]
    fn buffer_must_hold_at_least_one_sample() {
        assert_eq!(parse_buffer("10000"), Ok(10_000));
        assert!(parse_buffer("0").is_err());
        assert!(parse_buffer("-5").is_err());
    }

    #[test]
    fn flags_have_the_documented_defaults() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: CollectArgs,
        }
        let args = Cli::try_parse_from(["collect"]).unwrap().args;
        assert_eq!(args.interval, Duration::from_secs(1));
        assert_eq!(args.host, None);
        assert_eq!(args.brokers, None);
        assert_eq!(args.topic, "metrics");
        assert_eq!(args.format, SampleFormat::Json);
        assert_eq!(args.listen, "127.0.0.1:9101".parse().unwrap());
        assert_eq!(args.buffer, 10_000);
        assert_eq!(args.proc_root, PathBuf::from("/proc"));
        assert_eq!(args.sys_root, PathBuf::from("/sys"));
        let args = Cli::try_parse_from(["collect", "--format", "postcard", "--interval", "250ms"])
            .unwrap()
            .args;
        assert_eq!(args.format, SampleFormat::Postcard);
        assert_eq!(args.interval, Duration::from_millis(250));
    }
}
