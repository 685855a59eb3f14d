//! A real Prometheus server (Debian's `prometheus` package) scrapes a running collector and a
//! running detector, and queries for our metrics return values.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `data.result` array of an instant query, via plain HTTP/1.0.
fn query(port: u16, expr: &str) -> Option<Vec<serde_json::Value>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET /api/v1/query?query={expr} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let body = response.split_once("\r\n\r\n")?.1;
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    json["data"]["result"].as_array().cloned()
}

#[test]
fn prometheus_scrapes_the_collector_and_the_detector() {
    let dir = std::env::temp_dir().join(support::unique_name("prometheus_scrape"));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = env!("CARGO_BIN_EXE_anomaly");
    let brokers = support::kafka_brokers();

    // A detector with a ready model, fed by a few synthetic samples, so its gauges have values.
    let model_dir = dir.join("model");
    support::save_reference_model(&model_dir);
    let topic = support::unique_name("scrape_metrics");
    let replay = Command::new(bin)
        .args([
            "replay",
            "--synthetic",
            "--hosts",
            "2",
            "--count",
            "30",
            "--rate",
            "0",
            "--brokers",
            &brokers,
            "--topic",
            &topic,
        ])
        .output()
        .unwrap();
    assert!(
        replay.status.success(),
        "replay failed (is the broker at {brokers}?): {}",
        String::from_utf8_lossy(&replay.stderr)
    );

    let (collector_port, detector_port, prometheus_port) = (
        support::free_port(),
        support::free_port(),
        support::free_port(),
    );
    let _collector = support::spawn(
        bin,
        &[
            "collect",
            "--interval",
            "200ms",
            "--listen",
            &format!("127.0.0.1:{collector_port}"),
        ],
        Stdio::null,
    );
    let database = dir.join("anomalies.db");
    let _detector = support::spawn(
        bin,
        &[
            "detect",
            "--brokers",
            &brokers,
            "--topic",
            &topic,
            "--group",
            &support::unique_name("scrape_detector"),
            "--model-dir",
            model_dir.to_str().unwrap(),
            "--database-url",
            database.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{detector_port}"),
        ],
        Stdio::null,
    );
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: collector\n    static_configs:\n      - targets: ['127.0.0.1:{collector_port}']\n  - job_name: detector\n    static_configs:\n      - targets: ['127.0.0.1:{detector_port}']\n"
        ),
    )
    .unwrap();
    let _prometheus = support::spawn(
        "prometheus",
        &[
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
            &format!("--web.listen-address=127.0.0.1:{prometheus_port}"),
        ],
        Stdio::null,
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pending = vec![
        "anomaly_host_cpu_busy_ratio",
        "anomaly_detector_threshold",
        "anomaly_detector_windows_scored_total",
    ];
    while !pending.is_empty() && Instant::now() < deadline {
        pending.retain(|expr| query(prometheus_port, expr).is_none_or(|r| r.is_empty()));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        pending.is_empty(),
        "Prometheus returned no value for {pending:?} within 60 s"
    );
    let windows = query(prometheus_port, "anomaly_detector_windows_scored_total").unwrap();
    let scored: f64 = windows[0]["value"][1].as_str().unwrap().parse().unwrap();
    // Two hosts of 30 samples each close 21 windows apiece.
    assert_eq!(scored, 42.0, "{windows:?}");
    drop((_collector, _detector, _prometheus));
    std::fs::remove_dir_all(&dir).unwrap();
}
