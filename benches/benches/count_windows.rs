//! The detector's hot path: `RowWindows` (W = 10 rows of D = 7 metrics per key, a window on every
//! row) over 10,000 keys in shuffled order, with integer keys, with `String` keys, and with the
//! detector's real keys: each host name looked up in the scorer's name -> id map (foldhash), then
//! the id's window in `IndexedRowWindows`, as in `anomaly_model::FleetScorer`. Throughput is in
//! samples (rows) per second.
//! Run: `cargo bench -p anomaly-benches --bench count_windows`.

use anomaly_stream::window::{CountWindowSpec, IndexedRowWindows, RowWindows};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use foldhash::fast::RandomState as FastState;
use std::collections::HashMap;
use std::hint::black_box;

const KEYS: usize = 10_000;
const WIDTH: usize = 7;
const SAMPLES: usize = 200_000;

/// A deterministic shuffled sequence of key ids.
fn key_order() -> Vec<u32> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..SAMPLES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % KEYS as u64) as u32
        })
        .collect()
}

fn count_windows(c: &mut Criterion) {
    let order = key_order();
    let row = [0.5f32, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let spec = CountWindowSpec::sliding(10, 1).unwrap();
    let mut group = c.benchmark_group("row_windows_10k_keys");
    group.throughput(Throughput::Elements(SAMPLES as u64));

    let mut ops = RowWindows::<u32>::new(spec, WIDTH).unwrap();
    let mut position = 0u64;
    group.bench_function("u32_keys", |b| {
        b.iter(|| {
            let mut sum = 0.0f32;
            for &k in &order {
                position += 1;
                if let Some(w) = ops.push(&k, position as i64, position, &row).unwrap() {
                    sum += w.values[0];
                }
            }
            black_box(sum)
        })
    });

    let names: Vec<String> = (0..KEYS)
        .map(|k| format!("host-{k:05}.example.net"))
        .collect();
    // The names in arrival order, one after another, as they lie in a batch of decoded records:
    // reading the next one is a sequential read, not a jump to wherever its `String` was put.
    let mut arrivals = String::new();
    let spans: Vec<(usize, usize)> = order
        .iter()
        .map(|&k| {
            let start = arrivals.len();
            arrivals.push_str(&names[k as usize]);
            (start, arrivals.len())
        })
        .collect();
    let mut ops = RowWindows::<String>::new(spec, WIDTH).unwrap();
    group.bench_function("string_keys", |b| {
        b.iter(|| {
            let mut sum = 0.0f32;
            for &(start, end) in &spans {
                position += 1;
                let key: &str = &arrivals[start..end];
                if let Some(w) = ops.push(key, position as i64, position, &row).unwrap() {
                    sum += w.values[0];
                }
            }
            black_box(sum)
        })
    });

    let ids: HashMap<String, u32, FastState> = names
        .iter()
        .enumerate()
        .map(|(id, name)| (name.clone(), id as u32))
        .collect();
    let mut ops = IndexedRowWindows::new(spec, WIDTH).unwrap();
    group.bench_function("detector_keys", |b| {
        b.iter(|| {
            let mut sum = 0.0f32;
            for &(start, end) in &spans {
                position += 1;
                let id = ids[&arrivals[start..end]];
                if let Some(w) = ops.push(id, position as i64, position, &row).unwrap() {
                    sum += w.values[0];
                }
            }
            black_box(sum)
        })
    });
    group.finish();
}

criterion_group!(benches, count_windows);
criterion_main!(benches);
