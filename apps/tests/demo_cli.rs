//! `anomaly demo` as a newcomer runs it in a script: embedded broker and store, no service, a
//! short baseline, then it exits by itself with a summary.

use std::process::Command;

#[test]
fn a_short_demo_trains_detects_and_writes_its_summary() {
    let dir = std::env::temp_dir().join(format!("anomaly-demo-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let summary = dir.join("summary.json");
    let out = Command::new(env!("CARGO_BIN_EXE_anomaly"))
        .args([
            "demo",
            "--interval",
            "200ms",
            "--train-secs",
            "20",
            "--run-secs",
            "20",
            "--summary-json",
        ])
        .arg(&summary)
        .arg("--state-dir")
        .arg(&dir)
        .args([
            "--collector-listen",
            "127.0.0.1:0",
            "--detector-listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run anomaly demo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("learning"), "{stdout}");
    assert!(
        stdout.contains("seen so far: cpu_busy"),
        "says what it learns: {stdout}"
    );
    assert!(stdout.contains("vs threshold"), "no live line: {stdout}");

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert!(summary["samples"].as_u64().unwrap() >= 100, "{summary}");
    assert!(summary["windows_scored"].as_u64().unwrap() > 0, "{summary}");
    assert!(
        summary["threshold"].as_f64().unwrap().is_finite(),
        "{summary}"
    );
    assert!(
        summary["model_version"]
            .as_str()
            .unwrap()
            .starts_with("autoencoder-"),
        "{summary}"
    );
    // The demo keeps what it trained and found where it said.
    let kept = anomaly_model::ModelStore::new(dir.join("model"))
        .load_current()
        .unwrap()
        .expect("the trained model is kept");
    assert_eq!(
        kept.model.manifest().model_version,
        summary["model_version"].as_str().unwrap()
    );
    assert!(dir.join("anomalies.db").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_baseline_too_short_to_train_on_is_refused_before_anything_starts() {
    let out = Command::new(env!("CARGO_BIN_EXE_anomaly"))
        .args(["demo", "--train-secs", "5", "--run-secs", "1"])
        .output()
        .expect("run anomaly demo");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("training needs at least"), "{stderr}");
}
