//! Train on recorded metrics (a CSV with a header of metric names), score a stream of samples
//! with the live detector's own per-host code, and read which metrics an event blames.
//!
//! ```text
//! cargo run --release -p anomaly-model --example train_and_score
//! ```
//!
//! The CSV is written first (a host's seven metrics over a few hours at one sample a minute), so
//! the example runs anywhere; point `read_csv` at your own export instead.

use std::path::Path;

use anomaly_core::alerting::EventRule;
use anomaly_core::dataset::Series;
use anomaly_core::schema::HOST_METRIC_NAMES;
use anomaly_core::synthetic::cyclic_host_row;
use anomaly_core::{Metric, MetricSchema, Sample};
use anomaly_model::{Detection, DetectorKind, FleetScorer, Model, TrainingConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let csv = std::env::temp_dir().join(format!("anomaly-example-{}.csv", std::process::id()));
    write_recorded_metrics(&csv, 3_000)?;
    let (schema, train) = read_csv(&csv)?;
    std::fs::remove_file(&csv)?;

    // PCA trains in well under a second; DetectorKind::Autoencoder is the production default.
    let model = Model::train(
        &schema,
        &train,
        DetectorKind::Pca,
        &TrainingConfig::default(),
        &mut |_| {},
    )?;
    println!(
        "trained {} on {} rows: threshold {:.3}",
        model.manifest().model_version,
        train.rows(),
        model.manifest().threshold
    );

    // An event opens when 2 of 3 windows exceed the threshold, and closes after 5 quiet ones.
    let mut scorer = FleetScorer::new(model, EventRule::new(2, 3, 5)?)?;
    let mut out = Vec::new();
    let mut opened = None;
    for step in 3_000..3_400u64 {
        let mut row = cyclic_host_row(step).to_vec();
        if (3_200..3_230).contains(&step) {
            row[0] = 99.0; // cpu saturated for half an hour
        }
        scorer.on_sample(&Sample::new("web-1", step as i64 * 60_000, row), &mut out)?;
        for detection in out.drain(..) {
            if let Detection::Event(event) = detection {
                let blame: Vec<String> = event
                    .top_metrics
                    .iter()
                    .map(|c| format!("{} {:.0}%", c.metric, c.share * 100.0))
                    .collect();
                println!(
                    "{} {} at step {step}: score {:.2} vs {:.2} ({}); blamed: {}",
                    event.entity,
                    if event.closed { "ended" } else { "opened" },
                    event.score,
                    event.threshold,
                    event.severity.as_str(),
                    blame.join(", ")
                );
                if !event.closed {
                    opened.get_or_insert((step, event.top_metrics[0].metric.clone()));
                }
            }
        }
    }
    // What the example promises, checked, so that the test suite's run of it means something.
    let (step, top) = opened.ok_or("the saturated cpu opened no event")?;
    assert!((3_200..3_230).contains(&step), "opened at step {step}");
    assert_eq!(top, HOST_METRIC_NAMES[0]);
    Ok(())
}

/// A CSV of `rows` one-minute samples of a normal host: a header, then one line per sample.
fn write_recorded_metrics(path: &Path, rows: u64) -> std::io::Result<()> {
    let mut text = HOST_METRIC_NAMES.join(",") + "\n";
    for step in 0..rows {
        let line: Vec<String> = cyclic_host_row(step).iter().map(f64::to_string).collect();
        text += &(line.join(",") + "\n");
    }
    std::fs::write(path, text)
}

/// The schema (from the header) and rows of a CSV of numbers.
fn read_csv(path: &Path) -> Result<(MetricSchema, Series), Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path)?;
    let mut lines = text.lines();
    let header = lines.next().ok_or("empty CSV")?;
    let schema = MetricSchema::new(
        header
            .split(',')
            .map(|n| Metric::new(n, "unknown"))
            .collect(),
    );
    let rows = lines
        .map(|line| {
            line.split(',')
                .map(str::parse::<f64>)
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((schema, Series::from_rows(&rows)?))
}
