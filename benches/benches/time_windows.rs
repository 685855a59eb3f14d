//! Hopping event-time windows (10 s windows every 5 s, so two windows per record, summed) over
//! 1,000 integer keys with in-order event time, as a host fleet sends them. Throughput in samples
//! per second. Run: `cargo bench -p anomaly-benches --bench time_windows`.

use anomaly_stream::window::{Sum, TimeWindowConfig, TimeWindowSpec, TimeWindows};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const KEYS: u32 = 1_000;
const SAMPLES: u32 = 100_000;

fn time_windows(c: &mut Criterion) {
    let config = TimeWindowConfig {
        grace_ms: 1_000,
        ..TimeWindowConfig::new(TimeWindowSpec::Hopping {
            size_ms: 10_000,
            advance_ms: 5_000,
        })
    };
    let mut group = c.benchmark_group("hopping_time_windows");
    group.throughput(Throughput::Elements(SAMPLES as u64));
    let mut ops = TimeWindows::new(config, Sum::new(|v: &f64| *v)).unwrap();
    let mut out = Vec::new();
    let mut position = 0u64;
    group.bench_function("1k_keys_1s_samples", |b| {
        b.iter(|| {
            for i in 0..SAMPLES {
                position += 1;
                let key = i % KEYS;
                // Every key reports once per second of event time.
                let t = (position / KEYS as u64) as i64 * 1_000;
                ops.push(&key, t, position, 1.0, &mut out).unwrap();
                out.clear();
            }
            black_box(ops.len())
        })
    });
    group.finish();
}

criterion_group!(benches, time_windows);
criterion_main!(benches);
