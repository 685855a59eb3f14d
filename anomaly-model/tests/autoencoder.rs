//! The autoencoder end to end: training is reproducible, scoring on the plain-Rust forward pass
//! equals Burn's forward pass, anomalies score above the threshold, and artifacts round-trip.

mod common;

use anomaly_model::autoencoder::AutoencoderNet;
use anomaly_model::{Adaptation, Aggregation, AnyDetector, DetectorKind, Model, TrainingConfig};
use burn::prelude::{Device, Tensor, TensorData};

fn small_config() -> TrainingConfig {
    let mut config = TrainingConfig::default();
    config.autoencoder.max_epochs = 8;
    config
}

fn trained(rows: usize) -> Model {
    Model::train(
        &common::schema(),
        &common::host_rows(rows),
        DetectorKind::Autoencoder,
        &small_config(),
        &mut |_| {},
    )
    .expect("training")
}

fn autoencoder_of(model: &Model) -> &anomaly_model::autoencoder::AutoencoderDetector {
    match model.detector() {
        AnyDetector::Autoencoder(d) => d,
        other => panic!("expected an autoencoder, got {other:?}"),
    }
}

#[test]
fn plain_rust_forward_pass_matches_burn_to_1e_5() {
    let model = trained(3000);
    let net = autoencoder_of(&model).net();
    let width = net.inputs();
    let inputs: Vec<f32> = (0..32 * width)
        .map(|i| ((i * 37) % 101) as f32 / 101.0)
        .collect();

    let device = Device::flex();
    let burn_net = AutoencoderNet::from_dense(net, &device);
    let burn_out = burn_net
        .forward(Tensor::<2>::from_data(
            TensorData::new(inputs.clone(), [32, width]),
            &device,
        ))
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();

    let mut out = vec![0.0; width];
    let mut scratch = net.scratch();
    for (x, expected) in inputs.chunks_exact(width).zip(burn_out.chunks_exact(width)) {
        net.forward(x, &mut out, &mut scratch);
        for (a, b) in out.iter().zip(expected) {
            assert!((a - b).abs() <= 1e-5, "dense {a} vs burn {b}");
        }
    }
}

#[test]
fn training_with_the_same_seed_gives_the_same_model() {
    let a = trained(3000);
    let b = trained(3000);
    assert_eq!(autoencoder_of(&a).net(), autoencoder_of(&b).net());
    assert_eq!(a.manifest().threshold, b.manifest().threshold);
}

#[test]
fn a_broken_window_scores_above_the_threshold_and_names_its_metric() {
    let model = trained(3000);
    let shape = model.shape();
    let normal = common::host_rows(3100);
    let mut window = Vec::new();
    for i in 3000..3000 + shape.window {
        let mut row = normal.row(i).to_vec();
        if i == 3000 + shape.window - 1 {
            row[1] = 99.0; // memory jumps from ~40 % to 99 % while everything else stays normal
        }
        let mut scaled = vec![0.0f32; shape.dims];
        model.scale_row(&row, &mut scaled).unwrap();
        window.extend_from_slice(&scaled);
    }
    let mut score = [0.0f32];
    model.score_windows(&window, &mut score).unwrap();
    assert!(
        f64::from(score[0]) > model.manifest().threshold,
        "score {} <= threshold {}",
        score[0],
        model.manifest().threshold
    );
    let mut shares = vec![0.0f32; shape.dims];
    model.contributions(&window, &mut shares).unwrap();
    let top = (0..shape.dims)
        .max_by(|&a, &b| shares[a].total_cmp(&shares[b]))
        .unwrap();
    assert_eq!(model.manifest().schema.name(top), Some("memory_used"));
}

#[test]
fn artifacts_round_trip_and_damaged_ones_are_refused() {
    let model = trained(3000);
    let dir = std::env::temp_dir().join(format!("anomaly-model-artifact-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    model.save(&dir).unwrap();

    let loaded = Model::load(&dir).unwrap();
    assert_eq!(loaded.manifest(), model.manifest());
    assert_eq!(autoencoder_of(&loaded).net(), autoencoder_of(&model).net());

    // A truncated weights file is an error, not a panic.
    let weights = dir.join(anomaly_model::autoencoder::WEIGHTS_FILE);
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = Model::load(&dir).unwrap_err().to_string();
    assert!(err.contains("weights"), "{err}");
    std::fs::write(&weights, &bytes).unwrap();

    // A version 1 manifest (before aggregation and adaptation existed) loads as it was
    // calibrated: the mean over metrics, no adaptation.
    let manifest_path = dir.join(anomaly_model::artifact::MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    let mut v1: serde_json::Value = serde_json::from_str(&text).unwrap();
    let fields = v1.as_object_mut().unwrap();
    fields.remove("aggregation");
    fields.remove("adaptation");
    fields.insert("format_version".into(), 1.into());
    std::fs::write(&manifest_path, v1.to_string()).unwrap();
    let legacy = Model::load(&dir).unwrap();
    assert_eq!(legacy.manifest().aggregation, Aggregation::Mean);
    assert_eq!(legacy.manifest().adaptation, Adaptation::none());

    // A manifest of another format version is refused with a clear message.
    let current = format!(
        "\"format_version\": {}",
        anomaly_model::artifact::FORMAT_VERSION
    );
    assert!(text.contains(&current), "{text}");
    std::fs::write(
        &manifest_path,
        text.replace(&current, "\"format_version\": 99"),
    )
    .unwrap();
    let err = Model::load(&dir).unwrap_err().to_string();
    assert!(err.contains("format version"), "{err}");

    // A foreign JSON file is refused, and so is a truncated manifest.
    std::fs::write(&manifest_path, "{\"hello\": 1}").unwrap();
    assert!(
        Model::load(&dir)
            .unwrap_err()
            .to_string()
            .contains("not an anomaly-model manifest")
    );
    std::fs::write(&manifest_path, &text[..text.len() / 3]).unwrap();
    assert!(Model::load(&dir).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
