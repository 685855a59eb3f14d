//! The detector's life: collect a baseline, train a model on it without stopping consumption,
//! then score. Samples that arrive while the model trains are kept and scored once it is ready,
//! so none is lost.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc;

use anomaly_core::alerting::EventRule;
use anomaly_core::dataset::Series;
use anomaly_core::{MetricSchema, Sample};
use anomaly_model::{DetectorKind, Model, TrainingConfig};
use anyhow::Context;

use super::pipeline::{Detection, LiveScorer};
use crate::progress::ProgressReporter;

/// How a detector without a model gets one.
#[derive(Debug, Clone)]
pub struct BaselinePlan {
    /// Samples (over all hosts) to collect before training.
    pub samples: usize,
    /// The detector to train.
    pub detector: DetectorKind,
    /// Training settings.
    pub config: TrainingConfig,
    /// Where the trained artifact is saved, so a restart loads it instead of retraining.
    pub model_dir: PathBuf,
}

enum Phase {
    /// Collecting rows per host (ordered by host for a deterministic training set).
    Baseline {
        rows: BTreeMap<String, Vec<f64>>,
        count: usize,
    },
    /// A model is being trained on another thread; new samples wait in `pending`.
    Training {
        pending: Vec<Sample>,
        done: mpsc::Receiver<anyhow::Result<Model>>,
    },
    /// Scoring.
    Live(Box<LiveScorer>),
}

/// The detector's state: baseline, training or live.
pub struct DetectorState {
    phase: Phase,
    plan: BaselinePlan,
    rule: EventRule,
    schema: MetricSchema,
}

/// What the state reports besides detections.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Share of the baseline collected, 0..=1.
    Baseline(f64),
    /// A model is training.
    Training,
    /// A model is in use.
    Live,
}

impl DetectorState {
    /// A detector that uses `model` from the start.
    pub fn live(model: Model, rule: EventRule, plan: BaselinePlan) -> anyhow::Result<Self> {
        let schema = model.manifest().schema.clone();
        Ok(Self {
            phase: Phase::Live(Box::new(LiveScorer::new(model, rule)?)),
            plan,
            rule,
            schema,
        })
    }

    /// A detector that first collects a baseline of `plan.samples` samples of `schema`.
    pub fn baseline(schema: MetricSchema, rule: EventRule, plan: BaselinePlan) -> Self {
        Self {
            phase: Phase::Baseline {
                rows: BTreeMap::new(),
                count: 0,
            },
            plan,
            rule,
            schema,
        }
    }

    /// Where it stands.
    pub fn progress(&self) -> Progress {
        match &self.phase {
            Phase::Baseline { count, .. } => {
                Progress::Baseline(*count as f64 / self.plan.samples.max(1) as f64)
            }
            Phase::Training { .. } => Progress::Training,
            Phase::Live(_) => Progress::Live,
        }
    }

    /// The scorer, once live.
    pub fn scorer(&self) -> Option<&LiveScorer> {
        match &self.phase {
            Phase::Live(s) => Some(s),
            _ => None,
        }
    }

    /// Handles one sample. A sample of the wrong width is an error and changes nothing.
    pub fn on_sample(&mut self, sample: Sample, out: &mut Vec<Detection>) -> anyhow::Result<()> {
        anyhow::ensure!(
            sample.values.len() == self.schema.len(),
            "sample of {} has {} values, the schema {}",
            sample.entity,
            sample.values.len(),
            self.schema.len()
        );
        self.poll_training(out)?;
        match &mut self.phase {
            Phase::Live(scorer) => scorer.on_sample(&sample, out)?,
            Phase::Training { pending, .. } => pending.push(sample),
            Phase::Baseline { rows, count } => {
                rows.entry(sample.entity)
                    .or_default()
                    .extend(&sample.values);
                *count += 1;
                if *count >= self.plan.samples {
                    let rows = std::mem::take(rows);
                    self.phase = Phase::Training {
                        pending: Vec::new(),
                        done: self.spawn_training(rows),
                    };
                }
            }
        }
        Ok(())
    }

    /// Installs a model whose training finished, scoring the samples that waited for it.
    pub fn poll_training(&mut self, out: &mut Vec<Detection>) -> anyhow::Result<()> {
        let Phase::Training { done, pending } = &mut self.phase else {
            return Ok(());
        };
        let model = match done.try_recv() {
            Ok(result) => result.context("training the baseline model failed")?,
            Err(mpsc::TryRecvError::Empty) => return Ok(()),
            Err(mpsc::TryRecvError::Disconnected) => anyhow::bail!("the training thread died"),
        };
        let pending = std::mem::take(pending);
        tracing::info!(
            model_version = %model.manifest().model_version,
            threshold = model.manifest().threshold,
            waiting = pending.len(),
            "model trained; detecting"
        );
        let mut scorer = LiveScorer::new(model, self.rule)?;
        for sample in &pending {
            scorer.on_sample(sample, out)?;
        }
        self.phase = Phase::Live(Box::new(scorer));
        Ok(())
    }

    /// Trains on the baseline on its own thread (training takes seconds and must not stall the
    /// consumer), saves the artifact and hands the model back.
    fn spawn_training(
        &self,
        rows: BTreeMap<String, Vec<f64>>,
    ) -> mpsc::Receiver<anyhow::Result<Model>> {
        let (tx, rx) = mpsc::channel();
        let (plan, schema) = (self.plan.clone(), self.schema.clone());
        let hosts = rows.len();
        // Hosts are concatenated one after another; the few windows that straddle two hosts are
        // noise the model learns to tolerate, a fair price for one model per fleet.
        let data: Vec<f64> = rows.into_values().flatten().collect();
        tracing::info!(
            samples = data.len() / schema.len().max(1),
            hosts,
            "baseline collected; training"
        );
        std::thread::spawn(move || {
            let result = (|| {
                let series = Series::new(schema.len(), data)?;
                let reporter = ProgressReporter::new("baseline");
                let model =
                    Model::train(&schema, &series, plan.detector, &plan.config, &mut |p| {
                        reporter.report(p)
                    })?;
                reporter.finish();
                model.save(&plan.model_dir).with_context(|| {
                    format!("cannot save the model to {}", plan.model_dir.display())
                })?;
                Ok(model)
            })();
            let _ = tx.send(result);
        });
        rx
    }
}
