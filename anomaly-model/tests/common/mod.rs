//! Synthetic host-like training data shared by the model tests.
#![allow(dead_code)] // Each test binary uses part of it.

use anomaly_core::MetricSchema;
use anomaly_core::dataset::Series;

/// `rows` samples of the seven host metrics: CPU and load follow a daily-like wave, memory drifts,
/// disk and network follow CPU, all with deterministic noise.
pub(crate) fn host_rows(rows: usize) -> Series {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 10_000) as f64 / 10_000.0 - 0.5
    };
    let data: Vec<Vec<f64>> = (0..rows)
        .map(|i| {
            let wave = (i as f64 / 60.0).sin() * 0.5 + 0.5;
            let cpu = 20.0 + 50.0 * wave + 2.0 * noise();
            vec![
                cpu,
                40.0 + 5.0 * (i as f64 / 500.0).sin() + noise(),
                cpu / 25.0 + 0.1 * noise(),
                1e5 * wave + 1e3 * noise(),
                2e5 * wave + 1e3 * noise(),
                5e5 * wave + 1e4 * noise(),
                3e5 * wave + 1e4 * noise(),
            ]
        })
        .collect();
    Series::from_rows(&data).expect("rows of equal width")
}

/// The collector's schema.
pub(crate) fn schema() -> MetricSchema {
    MetricSchema::host()
}
