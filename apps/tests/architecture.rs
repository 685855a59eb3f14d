//! The architecture invariants of docs/ARCHITECTURE.md that the code's shape must keep, checked
//! on the manifests and the sources: which crate may depend on what, where the Kafka client and
//! the clock may appear, and that every source file opens with its `//!` overview.

use std::path::{Path, PathBuf};

/// The workspace root (this crate lives in `apps/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("apps/ has a parent")
        .to_path_buf()
}

/// The library crates, whose users `cargo add` them.
const LIBRARIES: [&str; 3] = ["anomaly-core", "anomaly-stream", "anomaly-model"];

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The names of every dependency (normal, dev and build) a crate's manifest declares.
fn dependencies(krate: &str) -> Vec<String> {
    let path = root().join(krate).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let manifest: toml::Table = text.parse().expect("a valid Cargo.toml");
    ["dependencies", "dev-dependencies", "build-dependencies"]
        .iter()
        .filter_map(|table| manifest.get(*table).and_then(|t| t.as_table()))
        .flat_map(|table| table.keys().cloned())
        .collect()
}

/// Source files under `dir` whose code (comments aside) mentions any of `needles`.
fn files_mentioning(dir: &Path, needles: &[&str]) -> Vec<String> {
    rust_files(dir)
        .into_iter()
        .filter(|file| {
            std::fs::read_to_string(file).unwrap().lines().any(|line| {
                let code = line.split("//").next().unwrap_or("");
                needles.iter().any(|needle| code.contains(needle))
            })
        })
        .map(|file| file.strip_prefix(root()).unwrap().display().to_string())
        .collect()
}

#[test]
fn anomaly_core_depends_on_no_io_framework() {
    let io = [
        "rdkafka",
        "tokio",
        "diesel",
        "hyper",
        "axum",
        "reqwest",
        "metrics-exporter-prometheus",
    ];
    let deps = dependencies("anomaly-core");
    assert!(
        deps.iter().any(|d| d == "serde"),
        "the manifest was read: {deps:?}"
    );
    let found: Vec<_> = deps.iter().filter(|d| io.contains(&d.as_str())).collect();
    assert!(found.is_empty(), "anomaly-core depends on {found:?}");
    let uses = files_mentioning(
        &root().join("anomaly-core"),
        &["rdkafka", "tokio::", "diesel"],
    );
    assert!(uses.is_empty(), "I/O frameworks used in {uses:?}");
}

#[test]
fn only_the_kafka_runtime_knows_rdkafka_or_tokio_and_window_logic_reads_no_clock() {
    let stream = root().join("anomaly-stream").join("src");
    let outside_runtime: Vec<_> = files_mentioning(&stream, &["rdkafka", "tokio"])
        .into_iter()
        .filter(|file| !file.starts_with("anomaly-stream/src/kafka/"))
        .collect();
    assert!(
        outside_runtime.is_empty(),
        "rdkafka or tokio outside anomaly-stream/src/kafka/: {outside_runtime:?}"
    );
    let clocks = files_mentioning(
        &stream.join("window"),
        &["SystemTime::now", "Instant::now", "Utc::now"],
    );
    assert!(
        clocks.is_empty(),
        "window logic reads a clock instead of being passed the time: {clocks:?}"
    );
}

#[test]
fn no_library_or_bench_depends_on_the_apps() {
    for krate in LIBRARIES.iter().copied().chain(["benches"]) {
        let deps = dependencies(krate);
        assert!(!deps.is_empty(), "{krate}'s manifest was read");
        assert!(
            !deps.iter().any(|d| d == "anomaly-apps"),
            "{krate} depends on anomaly-apps"
        );
    }
}

#[test]
fn the_detector_logic_lives_in_the_model_crate_reads_no_clock_and_pulls_in_no_kafka_runtime() {
    // The apps compose: per-host windows and decision state are the library's.
    let apps_with_state = files_mentioning(
        &root().join("apps").join("src"),
        &["HostDetector", "RowWindows", "EventTracker"],
    );
    assert!(
        apps_with_state.is_empty(),
        "per-host detection state kept in the apps: {apps_with_state:?}"
    );
    let model_src = root().join("anomaly-model").join("src");
    let decision_files = ["fleet.rs", "lifecycle.rs", "host.rs", "adaptation.rs"];
    for file in decision_files {
        assert!(
            model_src.join(file).is_file(),
            "anomaly-model/src/{file} exists"
        );
    }
    // The tests below `#[cfg(test)]` may time themselves; the logic above may not.
    let clocks: Vec<_> = decision_files
        .iter()
        .filter(|file| {
            let text = std::fs::read_to_string(model_src.join(file)).unwrap();
            let logic = text.split("#[cfg(test)]").next().unwrap_or("");
            logic.lines().any(|line| {
                let code = line.split("//").next().unwrap_or("");
                ["SystemTime::now", "Instant::now", "Utc::now"]
                    .iter()
                    .any(|clock| code.contains(clock))
            })
        })
        .collect();
    assert!(
        clocks.is_empty(),
        "decision logic reads a clock instead of being passed the time: {clocks:?}"
    );
    // The model crate uses the window operators only: the workspace takes anomaly-stream
    // without its Kafka runtime, and anomaly-model does not ask for it.
    let manifest =
        |path: &Path| -> toml::Table { std::fs::read_to_string(path).unwrap().parse().unwrap() };
    let workspace = manifest(&root().join("Cargo.toml"));
    let shared = workspace["workspace"]["dependencies"]["anomaly-stream"]
        .as_table()
        .expect("anomaly-stream as a table");
    assert_eq!(
        shared.get("default-features").and_then(|v| v.as_bool()),
        Some(false),
        "the workspace must take anomaly-stream without its Kafka runtime by default"
    );
    let model = manifest(&root().join("anomaly-model").join("Cargo.toml"));
    let deps = model["dependencies"].as_table().unwrap();
    let stream = &deps["anomaly-stream"];
    assert!(
        stream.get("features").is_none() && stream.get("default-features").is_none(),
        "anomaly-model must take anomaly-stream without its Kafka runtime: {stream:?}"
    );
    assert!(!deps.contains_key("rdkafka") && !deps.contains_key("tokio"));
}

#[test]
fn every_source_file_opens_with_its_overview() {
    let mut missing = Vec::new();
    let mut checked = 0;
    for krate in LIBRARIES.iter().copied().chain(["apps", "benches"]) {
        for file in rust_files(&root().join(krate)) {
            if file.components().any(|c| c.as_os_str() == "target") {
                continue;
            }
            checked += 1;
            let text = std::fs::read_to_string(&file).unwrap();
            if !text.starts_with("//!") {
                missing.push(file.strip_prefix(root()).unwrap().display().to_string());
            }
        }
    }
    assert!(checked > 50, "only {checked} files found");
    assert!(
        missing.is_empty(),
        "files without a `//!` overview: {missing:?}"
    );
}
