//! How much memory the live detector holds while its fleet churns: `HOSTS` hosts send a sample
//! every second (event time), and every second one new host joins while the oldest one falls
//! silent. Hosts silent for the idle timeout are forgotten, so the heap must stop growing once
//! the first silent hosts are (after about `HOSTS` + one idle timeout of hosts were seen).
//!
//! ```text
//! cargo run --release -p anomaly-model --example churn_memory -- [HOSTS] [HOURS] [IDLE_MINUTES]
//! ```
//!
//! Defaults: 10,000 hosts, 3 simulated hours, 60 minutes idle timeout (`anomaly detect`'s
//! default). Prints, every simulated 15 minutes, the hosts tracked, those forgotten so far and
//! the bytes allocated on the heap (a counting allocator), then the growth over the last hour.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use anomaly_core::alerting::EventRule;
use anomaly_core::dataset::Series;
use anomaly_core::{MetricSchema, Sample};
use anomaly_model::{
    BaselinePlan, DetectorKind, DetectorLifecycle, Model, Trainer, TrainingConfig,
};

/// Counts the bytes live on the heap.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Never retrains here: the run measures the scorer's per-host state.
struct NoTraining;

impl Trainer for NoTraining {
    fn train(&self, _: &MetricSchema, _: &Series, _: Option<&str>) -> anomaly_model::Result<Model> {
        Err(anomaly_model::Error::Training("not in this run".into()))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = |i: usize, default: usize| -> Result<usize, Box<dyn std::error::Error>> {
        Ok(std::env::args()
            .nth(i)
            .map(|a| a.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let (hosts, hours, idle_minutes) = (arg(1, 10_000)?, arg(2, 3)?, arg(3, 60)?);

    let rows: Vec<[f64; 7]> = (0..3000)
        .map(anomaly_core::synthetic::cyclic_host_row)
        .collect();
    let model = Model::train(
        &MetricSchema::host(),
        &Series::from_rows(&rows)?,
        DetectorKind::Pca,
        &TrainingConfig::default(),
        &mut |_| {},
    )?;
    let plan = BaselinePlan {
        samples: 3600,
        retrain_every: None,
        idle_host_ms: idle_minutes as i64 * 60_000,
    };
    let mut detector =
        DetectorLifecycle::live(model, EventRule::default(), plan, Arc::new(NoTraining))?;
    println!(
        "{hosts} hosts at 1 Hz, one new host a second, idle timeout {idle_minutes} min, {hours} h"
    );
    println!("minute  tracked  forgotten  heap_mib");

    let mut out = Vec::new();
    let mut heap_by_minute = Vec::new();
    // Host `first + i` for i in 0..hosts sends at second `s`; `first` moves on by one a second.
    for second in 0..hours * 3600 {
        let now_ms = second as i64 * 1000;
        for i in 0..hosts {
            let host = second + i;
            let values = anomaly_core::synthetic::cyclic_host_row((second + host * 7) as u64);
            let sample = Sample::new(format!("host-{host}"), now_ms, values.to_vec());
            detector.on_sample(0, sample, now_ms, &mut out)?;
        }
        out.clear();
        if second % 60 == 59 {
            let minute = second / 60 + 1;
            let heap = LIVE.load(Ordering::Relaxed) as f64 / (1 << 20) as f64;
            heap_by_minute.push(heap);
            if minute % 15 == 0 {
                let scorer = detector.scorer().expect("live");
                println!(
                    "{minute:>6}  {:>7}  {:>9}  {heap:>8.1}",
                    scorer.tracked_hosts(),
                    scorer.evicted_hosts
                );
            }
        }
    }
    if let Some(&last) = heap_by_minute.last() {
        let hour_ago = heap_by_minute[heap_by_minute.len().saturating_sub(61)];
        println!(
            "heap over the last hour: {hour_ago:.1} -> {last:.1} MiB ({:+.2} %)",
            (last / hour_ago - 1.0) * 100.0
        );
    }
    Ok(())
}
