//! Heap allocations per sample on the detector's per-sample path in steady state, counted by a
//! global allocator: postcard decode of the sample as it arrives from Kafka, then the fleet
//! scorer (scaling, the host's window, the autoencoder score, smoothing, the event rule) over
//! 10,000 hosts. The hosts are warmed up first (their windows, ids and state exist), so what is
//! counted is what every further sample costs.
//! Run: `cargo bench -p anomaly-benches --bench allocations`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use anomaly_benches::trained_model;
use anomaly_core::Sample;
use anomaly_core::alerting::EventRule;
use anomaly_core::synthetic::SyntheticHost;
use anomaly_model::{DetectorKind, FleetScorer};
use anomaly_stream::{Codec, PostcardCodec};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const HOSTS: u64 = 10_000;
const WARM_STEPS: u64 = 40;
const MEASURED_STEPS: u64 = 10;

fn main() {
    let model = trained_model(DetectorKind::Autoencoder);
    let fleet: Vec<(String, SyntheticHost)> = (0..HOSTS)
        .map(|i| (format!("host-{i}"), SyntheticHost::new(i)))
        .collect();
    let encoded = |step: u64| -> Vec<Vec<u8>> {
        fleet
            .iter()
            .map(|(name, host)| {
                let sample = Sample::new(
                    name.as_str(),
                    step as i64 * 1000,
                    host.sample(step).to_vec(),
                );
                let mut buf = Vec::new();
                PostcardCodec.encode(&sample, &mut buf).unwrap();
                buf
            })
            .collect()
    };
    let mut scorer = FleetScorer::new(model, EventRule::new(2, 3, 5).unwrap()).unwrap();
    let mut out = Vec::new();
    // Allocations while decoding, then while scoring.
    let mut counted = [0u64; 2];
    let mut run = |payloads: &[Vec<u8>], counted: &mut [u64; 2]| {
        for payload in payloads {
            let start = ALLOCATIONS.load(Ordering::Relaxed);
            let sample: Sample = PostcardCodec.decode(payload).unwrap();
            let decoded = ALLOCATIONS.load(Ordering::Relaxed);
            scorer.on_sample(&sample, &mut out).unwrap();
            out.clear();
            counted[0] += decoded - start;
            counted[1] += ALLOCATIONS.load(Ordering::Relaxed) - decoded;
        }
    };
    for step in 0..WARM_STEPS {
        run(&encoded(step), &mut [0; 2]);
    }
    let steps: Vec<Vec<Vec<u8>>> = (WARM_STEPS..WARM_STEPS + MEASURED_STEPS)
        .map(encoded)
        .collect();
    for payloads in &steps {
        run(payloads, &mut counted);
    }
    let samples = (HOSTS * MEASURED_STEPS) as f64;
    println!(
        "detector path, {HOSTS} hosts, steady state, allocations per sample: decoding {:.2}, scoring {:.2}",
        counted[0] as f64 / samples,
        counted[1] as f64 / samples
    );
}
