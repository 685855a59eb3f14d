//! Fixtures shared by the criterion benches: deterministic synthetic host metrics and a model
//! trained on them with the same shape as the live detector's (7 metrics, windows of 10).

use anomaly_core::MetricSchema;
use anomaly_core::dataset::Series;
use anomaly_core::synthetic::SyntheticHost;
use anomaly_model::{DetectorKind, Model, TrainingConfig};

/// `rows` samples of one synthetic host (see [`anomaly_core::synthetic::SyntheticHost`]).
pub fn host_rows(rows: usize) -> Series {
    let host = SyntheticHost::new(0);
    let data: Vec<[f64; 7]> = (0..rows as u64).map(|i| host.sample(i)).collect();
    Series::from_rows(&data).expect("rows of equal width")
}

/// A model of `kind` trained on 3,000 synthetic rows with the default settings (the autoencoder is
/// 70-32-16-8-16-32-70).
pub fn trained_model(kind: DetectorKind) -> Model {
    Model::train(
        &MetricSchema::host(),
        &host_rows(3000),
        kind,
        &TrainingConfig::default(),
        &mut |_| {},
    )
    .expect("training on synthetic rows")
}

/// `count` scaled, flattened windows for `model`, taken from fresh synthetic rows.
pub fn scaled_windows(model: &Model, count: usize) -> Vec<f32> {
    let shape = model.shape();
    let rows = host_rows(count + shape.window);
    let mut scaled = vec![0.0f32; rows.rows() * shape.dims];
    for (raw, out) in rows.iter_rows().zip(scaled.chunks_exact_mut(shape.dims)) {
        model.scale_row(raw, out).expect("row of schema width");
    }
    anomaly_model::model::sliding_windows(&scaled, shape.dims, shape.window)
        [..count * shape.width()]
        .to_vec()
}
