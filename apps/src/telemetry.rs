//! Process-wide telemetry shared by the subcommands: log output, the Prometheus recorder, and a
//! minimal HTTP endpoint serving `/metrics` and `/health`.

use std::future::Future;
use std::io;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use tokio::net::{TcpListener, TcpStream};

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per event, for log shippers.
    Json,
}

/// Installs the global tracing subscriber: stderr, `RUST_LOG` filter (default `info`).
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: escape codes make piped and collected logs unreadable.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Bucket bounds of every histogram (all measure seconds): from a record's processing (tens of
/// microseconds) to an event's delivery during an outage (a minute).
pub const SECONDS_BUCKETS: [f64; 19] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The process-wide Prometheus recorder, installed as the `metrics` crate's global recorder on the
/// first call; later calls return the same handle.
///
/// Fails only when another recorder was installed by someone else.
pub fn prometheus_recorder() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut slot = HANDLE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(handle) = slot.as_ref() {
        return Ok(handle.clone());
    }
    // A gauge nobody updates for this long is dropped from /metrics: the score of a host the
    // detector forgot (every live gauge is refreshed at least once a second).
    let recorder = PrometheusBuilder::new()
        .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE_TIMEOUT))
        // Histograms rather than summaries: buckets add up across instances and time ranges
        // (`histogram_quantile(0.99, sum by (le) (rate(..._bucket[5m])))`), quantiles do not.
        .set_buckets(&SECONDS_BUCKETS)
        .context("histogram buckets")?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .context("another metrics recorder is already installed")?;
    *slot = Some(handle.clone());
    Ok(handle)
}

/// What `/health` reports: healthy unless some component has a problem (the database is
/// unreachable, the broker refuses deliveries, ...), then `503` with every current problem.
/// Clones share the same state.
#[derive(Debug, Clone, Default)]
pub struct Health {
    problems: std::sync::Arc<Mutex<std::collections::BTreeMap<&'static str, String>>>,
}

impl Health {
    /// Records that `component` has `problem` (replacing an earlier one).
    pub fn problem(&self, component: &'static str, problem: String) {
        self.problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(component, problem);
    }

    /// Records that `component` works again.
    pub fn recovered(&self, component: &'static str) {
        self.problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(component);
    }

    /// `None` when healthy, else one line per problem: `component: problem`.
    pub fn report(&self) -> Option<String> {
        let problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        (!problems.is_empty()).then(|| {
            problems
                .iter()
                .map(|(component, problem)| format!("{component}: {problem}\n"))
                .collect()
        })
    }
}

/// How long a gauge may go without an update before it leaves /metrics.
const GAUGE_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Longest request head accepted, and the most time a client gets to send it and read the answer.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` (Prometheus text format from `handle`) and `GET /health` (`200 ok`, or
/// `503` with the problems `health` reports) on `listener` until `shutdown` completes; anything
/// else is 404 (or 405 for other methods).
///
/// A deliberately tiny HTTP/1.1 responder, one request per connection, so a scrape endpoint needs
/// no web framework. metrics-exporter-prometheus' own listener cannot serve on a listener bound by
/// the caller (port 0 in tests).
pub async fn serve_http(
    listener: TcpListener,
    handle: PrometheusHandle,
    health: Health,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept an HTTP connection");
                    // Out of file descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (handle, health) = (handle.clone(), health.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECTION_TIMEOUT, respond(&stream, &handle, &health)).await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "HTTP connection failed"),
                Err(_) => tracing::debug!("HTTP connection timed out"),
            }
        });
    }
}

async fn respond(stream: &TcpStream, handle: &PrometheusHandle, health: &Health) -> io::Result<()> {
    let head = read_head(stream).await?;
    let request_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let request_line = String::from_utf8_lossy(request_line);
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            // Upkeep publishes descriptions registered since the last render.
            handle.run_upkeep();
            (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                handle.render(),
            )
        }
        ("GET" | "HEAD", "/health") => match health.report() {
            None => ("200 OK", "text/plain; charset=utf-8", "ok\n".into()),
            Some(problems) => (
                "503 Service Unavailable",
                "text/plain; charset=utf-8",
                format!("unavailable\n{problems}"),
            ),
        },
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: try /metrics or /health\n".into(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET and HEAD\n".into(),
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        response.extend_from_slice(body.as_bytes());
    }
    write_all(stream, &response).await
}

/// Reads until the blank line that ends the request head, the peer closes, or the size limit.
async fn read_head(stream: &TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
        stream.readable().await?;
        match stream.try_read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(head)
}

async fn write_all(stream: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        stream.writable().await?;
        match stream.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
