//! The PCA baseline through the same model pipeline as the autoencoder.

mod common;

use anomaly_model::{DetectorKind, Model, TrainingConfig};

#[test]
fn pca_model_flags_a_broken_window_and_round_trips() {
    let model = Model::train(
        &common::schema(),
        &common::host_rows(3000),
        DetectorKind::Pca,
        &TrainingConfig::default(),
        &mut |_| {},
    )
    .expect("training");
    let shape = model.shape();
    let rows = common::host_rows(3100);
    let mut normal = Vec::new();
    let mut broken = Vec::new();
    for i in 3050..3050 + shape.window {
        let mut scaled = vec![0.0f32; shape.dims];
        model.scale_row(rows.row(i), &mut scaled).unwrap();
        normal.extend_from_slice(&scaled);
        let mut row = rows.row(i).to_vec();
        row[5] *= 4.0; // network receive far above what CPU explains
        model.scale_row(&row, &mut scaled).unwrap();
        broken.extend_from_slice(&scaled);
    }
    let mut scores = [0.0f32; 2];
    model
        .score_windows(&[normal, broken.clone()].concat(), &mut scores)
        .unwrap();
    let threshold = model.manifest().threshold;
    assert!(
        f64::from(scores[0]) < threshold,
        "normal window {} >= threshold {threshold}",
        scores[0]
    );
    assert!(
        f64::from(scores[1]) > threshold,
        "broken window {} <= threshold {threshold}",
        scores[1]
    );

    let dir = std::env::temp_dir().join(format!("anomaly-model-pca-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    model.save(&dir).unwrap();
    let loaded = Model::load(&dir).unwrap();
    let mut again = [0.0f32];
    loaded.score_windows(&broken, &mut again).unwrap();
    assert_eq!(again[0], scores[1]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_short_baseline_falls_back_to_the_empirical_quantile_and_says_so() {
    // 600 rows leave 150 held-out rows: too few scores above the 0.95 quantile for a POT fit.
    let model = Model::train(
        &common::schema(),
        &common::host_rows(600),
        DetectorKind::Pca,
        &TrainingConfig::default(),
        &mut |_| {},
    )
    .expect("training");
    assert_eq!(
        model.manifest().calibration,
        anomaly_core::threshold::Calibration::Quantile {
            false_alarm_rate: 1e-2
        }
    );
    assert!(model.manifest().threshold.is_finite());
}

#[test]
fn the_threshold_never_falls_below_the_configured_floor() {
    let train = |min_threshold: f64| {
        Model::train(
            &common::schema(),
            &common::host_rows(2000),
            DetectorKind::Pca,
            &TrainingConfig {
                min_threshold,
                ..TrainingConfig::default()
            },
            &mut |_| {},
        )
        .expect("training")
        .manifest()
        .threshold
    };
    let calibrated = train(0.0);
    // A floor above the calibrated threshold replaces it; one below leaves it alone.
    assert_eq!(train(calibrated + 5.0), calibrated + 5.0);
    assert_eq!(train(calibrated / 2.0), calibrated);
    let refused = Model::train(
        &common::schema(),
        &common::host_rows(2000),
        DetectorKind::Pca,
        &TrainingConfig {
            min_threshold: f64::NAN,
            ..TrainingConfig::default()
        },
        &mut |_| {},
    );
    assert!(refused.is_err(), "a NaN floor is refused");
}

#[test]
fn training_accepts_exactly_the_fewest_rows_it_says_it_needs() {
    let config = TrainingConfig::default();
    let fewest = config.min_training_rows();
    let train = |rows: usize| {
        Model::train(
            &common::schema(),
            &common::host_rows(rows),
            DetectorKind::Pca,
            &config,
            &mut |_| {},
        )
    };
    assert!(train(fewest).is_ok());
    let err = train(fewest - 2).unwrap_err().to_string();
    assert!(err.contains(&format!("at least {fewest}")), "{err}");
}
