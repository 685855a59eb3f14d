//! Alerts that reach a person: a detector, a real Prometheus (Debian's `prometheus`) evaluating
//! the shipped rules (`deploy/prometheus/rules/anomaly.yml`) and a real Alertmanager (Debian's
//! `prometheus-alertmanager`) routing with the shipped configuration
//! (`deploy/alertmanager/alertmanager.yml`, its webhook pointed here). A host's injected anomaly
//! must arrive at the webhook as a firing `AnomalyDetected` alert naming that host.
//!
//! The samples are replayed synthetic hosts, so the test needs no baseline minutes; the
//! collector under `stress-ng` is `live_stress`'s.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Receives Alertmanager's webhook calls on `listener`: every request body, answered `200`.
fn webhook(listener: TcpListener) -> Arc<Mutex<Vec<serde_json::Value>>> {
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok()
                && let Ok(json) = serde_json::from_slice(&body)
            {
                sink.lock().unwrap().push(json);
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        }
    });
    received
}

/// The `data.result` array of a Prometheus instant query, via plain HTTP/1.0.
fn query(port: u16, expr: &str) -> Option<Vec<serde_json::Value>> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let encoded: String = expr
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    write!(
        stream,
        "GET /api/v1/query?query={encoded} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let body = response.split_once("\r\n\r\n")?.1;
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    json["data"]["result"].as_array().cloned()
}

fn repository_file(relative: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
        .canonicalize()
        .unwrap_or_else(|e| panic!("{relative}: {e}"))
        .display()
        .to_string()
}

#[test]
fn an_injected_anomaly_reaches_the_webhook_as_a_firing_alert_for_its_host() {
    let dir = std::env::temp_dir().join(support::unique_name("alerting"));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = env!("CARGO_BIN_EXE_anomaly");
    let brokers = support::kafka_brokers();
    let topic = support::unique_name("alert_metrics");
    let model_dir = dir.join("model");
    let trained = Command::new(bin)
        .args([
            "train",
            "--synthetic-hosts",
            "1",
            "--detector",
            "pca",
            "--out",
        ])
        .arg(&model_dir)
        .output()
        .unwrap();
    assert!(trained.status.success(), "{trained:?}");

    let hook = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_port = hook.local_addr().unwrap().port();
    let received = webhook(hook);
    let (detector_port, prometheus_port, alertmanager_port) = (
        support::free_port(),
        support::free_port(),
        support::free_port(),
    );
    let detector_log = dir.join("detector.log");
    let _detector = support::spawn(
        bin,
        &[
            "detect",
            "--brokers",
            &brokers,
            "--topic",
            &topic,
            "--group",
            &support::unique_name("alert_detector"),
            "--model-dir",
            model_dir.to_str().unwrap(),
            "--database-url",
            dir.join("anomalies.db").to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{detector_port}"),
        ],
        support::log_file(&detector_log),
    );

    // The shipped routing, its webhook pointed at this test.
    let routing = std::fs::read_to_string(repository_file("deploy/alertmanager/alertmanager.yml"))
        .unwrap()
        .replace(
            "http://alert-webhook:8080/alerts",
            &format!("http://127.0.0.1:{hook_port}/alerts"),
        );
    assert!(
        routing.contains(&format!(":{hook_port}/")),
        "the webhook URL moved"
    );
    let routing_file = dir.join("alertmanager.yml");
    std::fs::write(&routing_file, routing).unwrap();
    let alertmanager_log = dir.join("alertmanager.log");
    let _alertmanager = support::spawn(
        "prometheus-alertmanager",
        &[
            &format!("--config.file={}", routing_file.display()),
            &format!("--storage.path={}", dir.join("am").display()),
            &format!("--web.listen-address=127.0.0.1:{alertmanager_port}"),
            "--cluster.listen-address=",
        ],
        support::log_file(&alertmanager_log),
    );
    // The shipped rules, evaluated every second on a detector scraped every second.
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{alertmanager_port}']\nscrape_configs:\n  - job_name: detector\n    static_configs:\n      - targets: ['127.0.0.1:{detector_port}']\n",
            rules = repository_file("deploy/prometheus/rules/anomaly.yml"),
        ),
    )
    .unwrap();
    let prometheus_log = dir.join("prometheus.log");
    let _prometheus = support::spawn(
        "prometheus",
        &[
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
            &format!("--web.listen-address=127.0.0.1:{prometheus_port}"),
        ],
        support::log_file(&prometheus_log),
    );

    // One host, four samples a second: 15 s of its normal, then (step 60) 30 steps of an
    // injected anomaly, then normal again.
    let replay = Command::new(bin)
        .args([
            "replay",
            "--synthetic",
            "--hosts",
            "1",
            "--count",
            "120",
            "--rate",
            "4",
            "--wall-clock",
            "--anomaly-every",
            "60",
            "--brokers",
            &brokers,
            "--topic",
            &topic,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Before its first event the host's event counter is already there at 0: a counter whose
    // first sample is 1 has no increase(), and AnomalyDetected would miss the first event.
    let counter = "anomaly_detector_anomalies_total{host=\"host-0\"}";
    let normal_until = Instant::now() + Duration::from_secs(14);
    let mut seen_at_zero = false;
    while !seen_at_zero && Instant::now() < normal_until {
        seen_at_zero = query(prometheus_port, counter)
            .is_some_and(|r| r.first().is_some_and(|s| s["value"][1] == "0"));
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        seen_at_zero,
        "Prometheus never saw {counter} at 0 before the injected anomaly"
    );
    let replayed = replay.wait_with_output().unwrap();
    assert!(
        replayed.status.success(),
        "replay failed (is the broker at {brokers}?): {}",
        String::from_utf8_lossy(&replayed.stderr)
    );

    let firing_for = |host: &str| {
        received.lock().unwrap().iter().any(|call| {
            call["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|alert| {
                    alert["labels"]["alertname"] == "AnomalyDetected"
                        && alert["labels"]["host"] == host
                        && alert["status"] == "firing"
                })
        })
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while !firing_for("host-0") {
        if Instant::now() > deadline {
            let log = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
            panic!(
                "no firing AnomalyDetected for host-0 at the webhook within 90 s of the replay; received {:#?}\n--- detector ---\n{}\n--- prometheus ---\n{}\n--- alertmanager ---\n{}",
                received.lock().unwrap(),
                log(&detector_log),
                log(&prometheus_log),
                log(&alertmanager_log)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let calls = received.lock().unwrap();
    let alert = calls
        .iter()
        .flat_map(|call| call["alerts"].as_array().cloned().unwrap_or_default())
        .find(|alert| alert["labels"]["host"] == "host-0")
        .unwrap();
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("host-0")),
        "{alert:#}"
    );
    drop(calls);
    std::fs::remove_dir_all(&dir).unwrap();
}
