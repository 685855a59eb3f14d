//! `anomaly eval`: fit, calibrate and stream-score every entity of a labelled dataset, then print
//! a table and optionally write JSON.

use std::path::PathBuf;

use anomaly_core::alerting::EventRule;
use anomaly_core::dataset::{self, DatasetKind};
use anomaly_model::{DetectorKind, EntityReport, evaluate_entity};
use anyhow::Context;
use serde::Serialize;

/// Arguments of `anomaly eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Dataset to evaluate: smd, asd or nab.
    #[arg(long)]
    pub dataset: DatasetKind,
    /// Folder that contains SMD/, ASD/ or NAB/ laid out as in ../shared/data.
    #[arg(long, env = "ANOMALY_DATA_DIR", default_value = "../shared/data")]
    pub data_dir: PathBuf,
    /// Comma-separated entities to evaluate; every entity found when omitted.
    #[arg(long, value_delimiter = ',')]
    pub entities: Vec<String>,
    /// Detector to evaluate.
    #[arg(long, default_value_t = DetectorKind::default())]
    pub detector: DetectorKind,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Training settings as JSON (any subset of `TrainingConfig`'s fields; the rest keep their
    /// defaults). The same settings apply to every entity.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// An event opens when this many of the last `--event-windows` windows exceed the threshold
    /// (the detector's default rule).
    #[arg(long, default_value_t = EventRule::default().k)]
    pub event_over: usize,
    /// The windows looked at for opening an event.
    #[arg(long, default_value_t = EventRule::default().n)]
    pub event_windows: usize,
    /// An event closes after this many consecutive quiet windows.
    #[arg(long, default_value_t = EventRule::default().m)]
    pub event_quiet: usize,
    /// One of the windows that open an event must be at least this many times the threshold
    /// (1: merely over it).
    #[arg(long, default_value_t = EventRule::default().confirm)]
    pub event_confirm: f64,
    /// This many windows over the threshold in a row open an event whatever their height
    /// (0: never).
    #[arg(long, default_value_t = EventRule::default().sustain)]
    pub event_sustain: usize,
}

/// The JSON document `--json` writes.
#[derive(Debug, Serialize)]
struct EvalDocument {
    dataset: String,
    detector: String,
    entities: Vec<EntityReport>,
    mean: EntityReport,
}

/// Runs the evaluation.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let entities = if args.entities.is_empty() {
        dataset::list_entities(&args.data_dir, args.dataset)?
    } else {
        args.entities.clone()
    };
    anyhow::ensure!(
        !entities.is_empty(),
        "no {} entity found under {}",
        args.dataset,
        args.data_dir.display()
    );
    let config = super::training_config(args.config.as_deref())?;
    let rule = EventRule::new(args.event_over, args.event_windows, args.event_quiet)?
        .confirmed(args.event_confirm, args.event_sustain)?;
    let mut reports = Vec::new();
    println!("{}", header());
    for name in &entities {
        let entity = dataset::load_entity(&args.data_dir, args.dataset, name)
            .with_context(|| format!("cannot load {} entity {name}", args.dataset))?;
        let report = evaluate_entity(&entity, args.detector, &config, rule, &mut |p| {
            tracing::debug!(entity = %name, epoch = p.epoch, train_loss = p.train_loss, validation_loss = p.validation_loss, "epoch");
        })
        .with_context(|| format!("evaluation of {name} failed"))?;
        println!("{}", row(&report));
        reports.push(report);
    }
    let mean = mean_report(&reports);
    println!("{}", row(&mean));
    if let Some(path) = &args.json {
        let doc = EvalDocument {
            dataset: args.dataset.to_string(),
            detector: args.detector.to_string(),
            entities: reports,
            mean,
        };
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn header() -> String {
    format!(
        "{:<28} {:>6} {:>6} {:>6} {:>7} {:>6} {:>6} {:>6} {:>7} {:>6} {:>7} {:>6} {:>6} {:>8} {:>10}",
        "entity",
        "f1",
        "prec",
        "recall",
        "best_f1",
        "auroc",
        "auprc",
        "pa_f1",
        "hit@150",
        "events",
        "false/d",
        "ev_rec",
        "delay",
        "train_s",
        "windows/s"
    )
}

fn row(r: &EntityReport) -> String {
    format!(
        "{:<28} {:>6.3} {:>6.3} {:>6.3} {:>7.3} {:>6.3} {:>6.3} {:>6.3} {:>7.3} {:>6.0} {:>7.2} {:>6.3} {:>6.1} {:>8.1} {:>10.0}",
        r.name,
        r.f1,
        r.precision,
        r.recall,
        r.best_f1,
        r.auroc,
        r.auprc,
        r.pa_f1,
        r.hitrate150,
        r.events,
        r.false_events_per_day,
        r.event_recall,
        r.detection_delay_rows,
        r.train_secs,
        r.windows_per_sec
    )
}

/// The mean of every figure over entities; NaN figures (no interpretation labels) are left out.
fn mean_report(reports: &[EntityReport]) -> EntityReport {
    let mean = |f: fn(&EntityReport) -> f64| {
        let values: Vec<f64> = reports.iter().map(f).filter(|v| v.is_finite()).collect();
        if values.is_empty() {
            f64::NAN
        } else {
            values.iter().sum::<f64>() / values.len() as f64
        }
    };
    EntityReport {
        name: "mean".to_string(),
        f1: mean(|r| r.f1),
        precision: mean(|r| r.precision),
        recall: mean(|r| r.recall),
        best_f1: mean(|r| r.best_f1),
        auroc: mean(|r| r.auroc),
        auprc: mean(|r| r.auprc),
        pa_f1: mean(|r| r.pa_f1),
        events: mean(|r| r.events),
        false_events_per_day: mean(|r| r.false_events_per_day),
        event_recall: mean(|r| r.event_recall),
        detection_delay_rows: mean(|r| r.detection_delay_rows),
        hitrate150: mean(|r| r.hitrate150),
        hitrate100: mean(|r| r.hitrate100),
        hitrate150_all_rows: mean(|r| r.hitrate150_all_rows),
        train_secs: mean(|r| r.train_secs),
        windows_per_sec: mean(|r| r.windows_per_sec),
        threshold: mean(|r| r.threshold),
    }
}
