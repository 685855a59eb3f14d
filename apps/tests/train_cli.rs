//! `anomaly train` end to end through the binary: a CSV of host metrics becomes an artifact that
//! loads, and a malformed CSV is refused with the file and line.

use std::process::Command;

use anomaly_model::Model;

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("anomaly-train-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn host_csv(rows: usize) -> String {
    let mut csv = anomaly_core::schema::HOST_METRIC_NAMES.join(",") + "\n";
    for i in 0..rows as u64 {
        let row = anomaly_core::synthetic::cyclic_host_row(i).map(|v| v.to_string());
        csv += &(row.join(",") + "\n");
    }
    csv
}

#[test]
fn a_host_metrics_csv_trains_an_artifact_that_loads() {
    let dir = scratch("ok");
    let csv = dir.join("baseline.csv");
    std::fs::write(&csv, host_csv(2000)).unwrap();
    let out = dir.join("model");
    let status = Command::new(env!("CARGO_BIN_EXE_anomaly"))
        .args(["train", "--detector", "pca", "--csv"])
        .arg(&csv)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run anomaly train");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let model = Model::load(&out).expect("the artifact loads");
    assert_eq!(model.manifest().schema, anomaly_core::MetricSchema::host());
    assert_eq!(model.manifest().training.rows, 2000);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_malformed_csv_is_refused_with_file_and_line() {
    let dir = scratch("bad");
    let csv = dir.join("bad.csv");
    std::fs::write(&csv, "a,b\n1,2\n3,oops\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_anomaly"))
        .args(["train", "--csv"])
        .arg(&csv)
        .arg("--out")
        .arg(dir.join("model"))
        .output()
        .expect("run anomaly train");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.csv:3"), "{stderr}");
    assert!(
        !dir.join("model").exists(),
        "nothing may be written for a refused input"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn settings_can_come_from_a_toml_file() {
    let dir = scratch("toml");
    let csv = dir.join("baseline.csv");
    std::fs::write(&csv, host_csv(2000)).unwrap();
    let out = dir.join("model-from-file");
    let config = dir.join("anomaly.toml");
    std::fs::write(
        &config,
        format!(
            "[train]\ncsv = {:?}\nout = {:?}\ndetector = \"autoencoder\"\n",
            csv.display().to_string(),
            out.display().to_string()
        ),
    )
    .unwrap();
    // The command line's --detector wins over the file's.
    let status = Command::new(env!("CARGO_BIN_EXE_anomaly"))
        .arg("--config-file")
        .arg(&config)
        .args(["train", "--detector", "pca"])
        .output()
        .expect("run anomaly train");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let model = Model::load(&out).expect("the artifact named in the file loads");
    assert_eq!(model.manifest().detector, anomaly_model::DetectorKind::Pca);
    std::fs::remove_dir_all(&dir).unwrap();
}
