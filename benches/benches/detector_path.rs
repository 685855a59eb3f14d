//! The detector's whole per-sample path without I/O: decode a postcard sample as it arrives from
//! Kafka, scale it, append it to its host's window, score the window with the autoencoder, smooth
//! the score and run the event rule; round-robin over a fleet of 1,000 and 10,000 hosts, with a
//! few hosts anomalous. Run: `cargo bench -p anomaly-benches --bench detector_path`.

use anomaly_benches::trained_model;
use anomaly_core::Sample;
use anomaly_core::alerting::EventRule;
use anomaly_core::synthetic::{Injection, SyntheticHost};
use anomaly_model::{DetectorKind, FleetScorer};
use anomaly_stream::{Codec, PostcardCodec};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

/// Steps of every host encoded up front; the bench cycles through them.
const STEPS: u64 = 30;

fn detector_path(c: &mut Criterion) {
    let model = trained_model(DetectorKind::Autoencoder);
    let mut group = c.benchmark_group("detector_path");
    group.throughput(Throughput::Elements(1));
    for hosts in [1_000u64, 10_000] {
        let fleet: Vec<(String, SyntheticHost)> = (0..hosts)
            .map(|i| (format!("host-{i}"), SyntheticHost::new(i)))
            .collect();
        // Every step of every host, in arrival order: one step of the whole fleet at a time.
        let mut payloads = Vec::with_capacity((hosts * STEPS) as usize);
        for step in 0..STEPS {
            for (i, (name, host)) in fleet.iter().enumerate() {
                let values = if i % 100 == 0 {
                    host.anomalous_sample(step, Injection::CpuSaturation)
                } else {
                    host.sample(step)
                };
                let mut buf = Vec::new();
                PostcardCodec
                    .encode(
                        &Sample::new(name.as_str(), step as i64 * 1000, values.to_vec()),
                        &mut buf,
                    )
                    .unwrap();
                payloads.push(buf);
            }
        }
        let mut scorer = FleetScorer::new(model.clone(), EventRule::new(2, 3, 5).unwrap()).unwrap();
        let mut out = Vec::new();
        let mut next = payloads.iter().cycle();
        group.bench_function(format!("{hosts}_hosts"), |b| {
            b.iter(|| {
                let sample: Sample = PostcardCodec.decode(next.next().unwrap()).unwrap();
                scorer.on_sample(black_box(&sample), &mut out).unwrap();
                out.clear();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, detector_path);
criterion_main!(benches);
