//! Scoring throughput of the autoencoder and the PCA baseline at micro-batches of 1 to 256, beside
//! the bare forward pass (the physical-limit reference). Run: `cargo bench -p anomaly-benches --bench scoring`.

use anomaly_benches::{scaled_windows, trained_model};
use anomaly_model::{AnyDetector, DetectorKind};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn scoring(c: &mut Criterion) {
    for kind in [DetectorKind::Autoencoder, DetectorKind::Pca] {
        let model = trained_model(kind);
        let width = model.shape().width();
        let mut group = c.benchmark_group(format!("score/{kind}"));
        for batch in [1usize, 16, 64, 256] {
            let windows = scaled_windows(&model, batch);
            let mut scores = vec![0.0f32; batch];
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(format!("batch_{batch}"), |b| {
                b.iter(|| {
                    model
                        .score_windows(black_box(&windows), &mut scores)
                        .unwrap()
                })
            });
        }
        if let AnyDetector::Autoencoder(ae) = model.detector() {
            let net = ae.net();
            let window = scaled_windows(&model, 1);
            let mut out = vec![0.0f32; width];
            let mut scratch = net.scratch();
            group.throughput(Throughput::Elements(1));
            group.bench_function("forward_pass_only", |b| {
                b.iter(|| net.forward(black_box(&window), &mut out, &mut scratch))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, scoring);
criterion_main!(benches);
