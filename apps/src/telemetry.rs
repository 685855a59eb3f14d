//! Process-wide telemetry shared by the subcommands: log output, the Prometheus recorder, and an
//! HTTP endpoint serving `/metrics` and `/health`.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use tokio::net::TcpListener;

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

/// The most time a client gets to send its request and read the answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` (Prometheus text format from `handle`) and `GET /health` (`200 ok`, or
/// `503` with the problems `health` reports) on `listener` until `shutdown` completes; any other
/// path is 404, any other method 405.
///
/// One request per connection, each connection closed after 5 s: a client
/// that sends nothing cannot hold a connection open. metrics-exporter-prometheus' own listener
/// cannot serve on a listener bound by the caller (port 0 in tests).
pub async fn serve_http(
    listener: TcpListener,
    handle: PrometheusHandle,
    health: Health,
    shutdown: impl Future<Output = ()>,
) {
    let service = TowerToHyperService::new(router(handle, health));
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
        let service = service.clone();
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "HTTP connection failed"),
                Err(_) => tracing::debug!("HTTP connection timed out"),
            }
        });
    }
}

/// The endpoint's routes (`GET` routes answer `HEAD` too).
fn router(handle: PrometheusHandle, health: Health) -> Router {
    let not_found = || async {
        (
            StatusCode::NOT_FOUND,
            "not found: try /metrics or /health\n",
        )
    };
    Router::new()
        .route(
            "/metrics",
            get(move || async move {
                // Upkeep publishes descriptions registered since the last render.
                handle.run_upkeep();
                #[cfg(feature = "count-allocations")]
                crate::heap_count::publish();
                (
                    [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                    handle.render(),
                )
            }),
        )
        .route(
            "/health",
            get(move || async move {
                match health.report() {
                    None => (StatusCode::OK, "ok\n".to_string()),
                    Some(problems) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("unavailable\n{problems}"),
                    ),
                }
            }),
        )
        .fallback(
            get(not_found)
                .fallback(|| async { (StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n") }),
        )
        .method_not_allowed_fallback(|| async {
            (StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `request` to the endpoint and returns the whole answer (the server closes).
    async fn ask(port: u16, request: &str) -> String {
        let request = request.to_string();
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            answer
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_endpoint_answers_health_metrics_and_refuses_the_rest() {
        let handle = PrometheusBuilder::new().build_recorder().handle();
        let health = Health::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_http(listener, handle, health.clone(), async {
            let _ = stopped.await;
        }));
        let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");

        let ok = ask(port, &get("/health")).await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nok\n"), "{ok}");
        health.problem("database", "connection refused".into());
        let down = ask(port, &get("/health")).await;
        assert!(down.starts_with("HTTP/1.1 503"), "{down}");
        assert!(
            down.ends_with("unavailable\ndatabase: connection refused\n"),
            "{down}"
        );

        let metrics = ask(port, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(metrics.contains("text/plain; version=0.0.4"), "{metrics}");
        assert!(metrics.ends_with("\r\n\r\n"), "HEAD has no body: {metrics}");

        let missing = ask(port, &get("/nothing")).await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        for path in ["/health", "/nothing"] {
            let post = ask(
                port,
                &format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
            )
            .await;
            assert!(post.starts_with("HTTP/1.1 405"), "{path}: {post}");
        }
        stop.send(()).unwrap();
        server.await.unwrap();
    }
}
