//! `anomaly train`: fit a model on recorded metrics and save it as a versioned artifact that
//! `anomaly detect` loads instead of collecting a baseline.

use std::path::{Path, PathBuf};

use anomaly_core::dataset::{self, DatasetKind, Series};
use anomaly_core::{Metric, MetricSchema};
use anomaly_model::{DetectorKind, Model};
use anyhow::{Context, bail};

use crate::progress::ProgressReporter;

/// Arguments of `anomaly train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Directory to write the artifact into (created if missing).
    #[arg(long, env = "ANOMALY_MODEL_DIR")]
    pub out: PathBuf,
    /// CSV of training rows: a header of metric names, then one row of numbers per time step.
    /// With the collector's seven metric names it trains a model for `anomaly detect`.
    #[arg(long, conflicts_with_all = ["dataset", "entity"])]
    pub csv: Option<PathBuf>,
    /// Train on the training part of one entity of a labelled dataset instead (smd, asd, nab).
    #[arg(long, requires = "entity")]
    pub dataset: Option<DatasetKind>,
    /// The entity of `--dataset` to train on.
    #[arg(long, requires = "dataset")]
    pub entity: Option<String>,
    /// Folder that contains SMD/, ASD/ or NAB/, for `--dataset`.
    #[arg(long, env = "ANOMALY_DATA_DIR", default_value = "../shared/data")]
    pub data_dir: PathBuf,
    /// Train on this many synthetic hosts instead (`host-0` ..., as `anomaly replay --synthetic`
    /// publishes them), `--synthetic-steps` samples each: a model for load tests.
    #[arg(long, conflicts_with_all = ["csv", "dataset", "entity"])]
    pub synthetic_hosts: Option<u64>,
    /// Samples per synthetic host.
    #[arg(long, default_value = "3000")]
    pub synthetic_steps: u64,
    /// Detector to train.
    #[arg(long, default_value_t = DetectorKind::default())]
    pub detector: DetectorKind,
    /// Training settings as JSON (any subset of `TrainingConfig`'s fields).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Trains and saves the model; prints where it went and its threshold.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let config = super::training_config(args.config.as_deref())?;
    let (label, schema, rows) = match (&args.csv, &args.dataset, &args.entity, args.synthetic_hosts)
    {
        (Some(path), ..) => {
            let (schema, rows) = read_csv(path)?;
            (path.display().to_string(), schema, rows)
        }
        (_, _, _, Some(hosts)) => {
            let rows = synthetic_rows(hosts, args.synthetic_steps)?;
            (
                format!("{hosts} synthetic hosts"),
                MetricSchema::host(),
                rows,
            )
        }
        (None, Some(kind), Some(entity), None) => {
            let e = dataset::load_entity(&args.data_dir, *kind, entity)?;
            (entity.clone(), e.schema, e.train)
        }
        _ => bail!("give --csv FILE, --dataset KIND --entity NAME or --synthetic-hosts N"),
    };
    let reporter = ProgressReporter::new(&label);
    let model = Model::train(&schema, &rows, args.detector, &config, &mut |p| {
        reporter.report(p)
    })?;
    reporter.finish();
    model
        .save(&args.out)
        .with_context(|| format!("cannot save the model to {}", args.out.display()))?;
    let m = model.manifest();
    println!(
        "saved {} to {}: threshold {:.4} ({:?}), {} rows, {:.1} s",
        m.model_version,
        args.out.display(),
        m.threshold,
        m.calibration,
        m.training.rows,
        m.training.train_secs
    );
    Ok(())
}

/// `steps` samples of each of `hosts` synthetic hosts, one host after another.
fn synthetic_rows(hosts: u64, steps: u64) -> anyhow::Result<Series> {
    let mut data = Vec::with_capacity((hosts * steps) as usize * MetricSchema::host().len());
    for index in 0..hosts {
        let host = anomaly_core::synthetic::SyntheticHost::new(index);
        for step in 0..steps {
            data.extend(host.sample(step));
        }
    }
    Ok(Series::new(MetricSchema::host().len(), data)?)
}

/// Reads a CSV with a header of metric names; the collector's names give the host schema.
fn read_csv(path: &Path) -> anyhow::Result<(MetricSchema, Series)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines
        .next()
        .with_context(|| format!("{} is empty", path.display()))?;
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let schema = if names == anomaly_core::schema::HOST_METRIC_NAMES {
        MetricSchema::host()
    } else {
        MetricSchema::new(names.iter().map(|n| Metric::new(*n, "unknown")).collect())
    };
    let mut data = Vec::new();
    for (i, line) in lines {
        let values: Vec<f64> = line
            .split(',')
            .map(|v| v.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("{}:{}: not a row of numbers", path.display(), i + 1))?;
        if values.len() != names.len() {
            bail!(
                "{}:{}: {} values for {} metrics",
                path.display(),
                i + 1,
                values.len(),
                names.len()
            );
        }
        data.extend(values);
    }
    Ok((schema, Series::new(names.len(), data)?))
}
