//! The detector's life: collect a baseline, train a model on it without stopping consumption,
//! then score. Samples that arrive while the model trains are kept and scored once it is ready,
//! so none is lost; since training's own CPU burst may show in them (and in the next sample of
//! each host), they cannot open an event.
//! While scoring, it keeps a rolling baseline of the latest samples, leaving out those of hosts
//! inside an anomaly event, and retrains on it on schedule; the new model replaces the old one
//! when it is ready (its windows start afresh, so each host skips `window - 1` samples of
//! scoring).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc;

use anomaly_core::alerting::EventRule;
use anomaly_core::dataset::Series;
use anomaly_core::{MetricSchema, Sample};
use anomaly_model::{DetectorKind, Model, TrainingConfig};
use anyhow::Context;

use super::pipeline::{Detection, LiveScorer};
use crate::progress::ProgressReporter;

/// The longest sampling interval the detector assumes when it learns one from the baseline.
const MAX_INTERVAL_MS: i64 = 60_000;

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
    /// Retrain on the rolling baseline (the latest `samples` normal samples) after this many
    /// samples scored; `None` never retrains.
    pub retrain_every: Option<usize>,
    /// Hosts that sent nothing for this long (event time, ms) are forgotten by the live scorer;
    /// 0 never (see [`LiveScorer::with_idle_eviction`]).
    pub idle_host_ms: i64,
}

enum Phase {
    /// Collecting rows per host (ordered by host for a deterministic training set).
    Baseline {
        rows: BTreeMap<String, Vec<f64>>,
        count: usize,
        /// Each host's latest sample timestamp, to learn the sampling interval.
        last_ms: HashMap<String, i64>,
        /// The longest gap between two consecutive samples of a host so far (capped): how far
        /// back the measurement of a sample may reach.
        interval_ms: i64,
    },
    /// A model is being trained on another thread; new samples wait in `pending`.
    Training {
        pending: Vec<Sample>,
        done: mpsc::Receiver<anyhow::Result<Model>>,
        /// The sampling interval learnt in the baseline.
        interval_ms: i64,
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
    /// The latest samples scored outside anomaly events, at most `plan.samples`.
    rolling: VecDeque<Sample>,
    /// Samples scored since the model in use (or the retraining in flight) was started.
    since_training: usize,
    /// A retraining in flight.
    retraining: Option<mpsc::Receiver<anyhow::Result<Model>>>,
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
        let scorer = LiveScorer::new(model, rule)?.with_idle_eviction(plan.idle_host_ms);
        let phase = Phase::Live(Box::new(scorer));
        Ok(Self::with_phase(phase, schema, rule, plan))
    }

    /// A detector that first collects a baseline of `plan.samples` samples of `schema`.
    pub fn baseline(schema: MetricSchema, rule: EventRule, plan: BaselinePlan) -> Self {
        let phase = Phase::Baseline {
            rows: BTreeMap::new(),
            count: 0,
            last_ms: HashMap::new(),
            interval_ms: 0,
        };
        Self::with_phase(phase, schema, rule, plan)
    }

    fn with_phase(phase: Phase, schema: MetricSchema, rule: EventRule, plan: BaselinePlan) -> Self {
        Self {
            phase,
            plan,
            rule,
            schema,
            rolling: VecDeque::new(),
            since_training: 0,
            retraining: None,
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

    /// While collecting the baseline: the lowest and highest value of each metric so far (what
    /// the model is about to learn as normal), in schema order.
    pub fn baseline_ranges(&self) -> Option<Vec<(f64, f64)>> {
        let Phase::Baseline { rows, .. } = &self.phase else {
            return None;
        };
        let dims = self.schema.len().max(1);
        let mut ranges = vec![(f64::INFINITY, f64::NEG_INFINITY); dims];
        for row in rows.values().flat_map(|values| values.chunks_exact(dims)) {
            for ((low, high), &value) in ranges.iter_mut().zip(row) {
                if value.is_finite() {
                    *low = low.min(value);
                    *high = high.max(value);
                }
            }
        }
        Some(ranges)
    }

    /// The metrics of the samples.
    pub fn schema(&self) -> &MetricSchema {
        &self.schema
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
            Phase::Live(scorer) => {
                scorer.on_sample(&sample, out)?;
                // Samples inside an anomaly event would teach the next model that it is normal.
                if !scorer.in_event(&sample.entity) {
                    if self.rolling.len() == self.plan.samples {
                        self.rolling.pop_front();
                    }
                    self.rolling.push_back(sample);
                }
                self.since_training += 1;
                let due = self
                    .plan
                    .retrain_every
                    .is_some_and(|every| self.since_training >= every);
                if due && self.retraining.is_none() && self.rolling.len() >= self.plan.samples {
                    let mut rows: BTreeMap<String, Vec<f64>> = BTreeMap::new();
                    for s in &self.rolling {
                        rows.entry(s.entity.clone()).or_default().extend(&s.values);
                    }
                    tracing::info!(
                        samples = self.rolling.len(),
                        "retraining on the rolling baseline"
                    );
                    self.retraining = Some(self.spawn_training(rows));
                    self.since_training = 0;
                }
            }
            Phase::Training { pending, .. } => pending.push(sample),
            Phase::Baseline {
                rows,
                count,
                last_ms,
                interval_ms,
            } => {
                let last = last_ms.insert(sample.entity.clone(), sample.timestamp_ms);
                if let Some(gap) = last.map(|l| sample.timestamp_ms - l) {
                    *interval_ms = (*interval_ms).max(gap.min(MAX_INTERVAL_MS));
                }
                rows.entry(sample.entity)
                    .or_default()
                    .extend(&sample.values);
                *count += 1;
                if *count >= self.plan.samples {
                    let (rows, interval_ms) = (std::mem::take(rows), *interval_ms);
                    self.phase = Phase::Training {
                        pending: Vec::new(),
                        done: self.spawn_training(rows),
                        interval_ms,
                    };
                }
            }
        }
        Ok(())
    }

    /// Installs a model whose training finished, scoring the samples that waited for it.
    pub fn poll_training(&mut self, out: &mut Vec<Detection>) -> anyhow::Result<()> {
        self.poll_retraining()?;
        let Phase::Training {
            done,
            pending,
            interval_ms,
        } = &mut self.phase
        else {
            return Ok(());
        };
        let model = match done.try_recv() {
            Ok(result) => result.context("training the baseline model failed")?,
            Err(mpsc::TryRecvError::Empty) => return Ok(()),
            Err(mpsc::TryRecvError::Disconnected) => anyhow::bail!("the training thread died"),
        };
        let pending = std::mem::take(pending);
        let interval_ms = *interval_ms;
        tracing::info!(
            model_version = %model.manifest().model_version,
            threshold = model.manifest().threshold,
            waiting = pending.len(),
            "model trained; detecting"
        );
        let mut scorer =
            LiveScorer::new(model, self.rule)?.with_idle_eviction(self.plan.idle_host_ms);
        // What was measured while the model trained (the samples that waited, and the next one
        // of each host, whose measurement interval began during training) may show training's
        // own CPU burst.
        let trained_at_ms = chrono::Utc::now().timestamp_millis();
        scorer.disturbed_until(trained_at_ms + interval_ms);
        for sample in &pending {
            scorer.on_sample(sample, out)?;
        }
        self.phase = Phase::Live(Box::new(scorer));
        Ok(())
    }

    /// Swaps in a retrained model once it is ready. A failed retraining keeps the model in use.
    fn poll_retraining(&mut self) -> anyhow::Result<()> {
        let Some(done) = &self.retraining else {
            return Ok(());
        };
        let result = match done.try_recv() {
            Ok(result) => result,
            Err(mpsc::TryRecvError::Empty) => return Ok(()),
            Err(mpsc::TryRecvError::Disconnected) => {
                Err(anyhow::anyhow!("the training thread died"))
            }
        };
        self.retraining = None;
        match result {
            Ok(model) => {
                tracing::info!(
                    model_version = %model.manifest().model_version,
                    threshold = model.manifest().threshold,
                    "retrained model in use"
                );
                let scorer =
                    LiveScorer::new(model, self.rule)?.with_idle_eviction(self.plan.idle_host_ms);
                self.phase = Phase::Live(Box::new(scorer));
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "retraining failed; keeping the model in use")
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn plan(dir: &std::path::Path, retrain_every: Option<usize>) -> BaselinePlan {
        BaselinePlan {
            samples: 1200,
            detector: DetectorKind::Pca,
            config: TrainingConfig::default(),
            model_dir: dir.to_path_buf(),
            retrain_every,
            idle_host_ms: 0,
        }
    }

    fn row(step: u64) -> Vec<f64> {
        anomaly_core::synthetic::cyclic_host_row(step).to_vec()
    }

    fn feed(state: &mut DetectorState, steps: std::ops::Range<u64>, out: &mut Vec<Detection>) {
        for step in steps {
            state
                .on_sample(Sample::new("h", step as i64 * 1000, row(step)), out)
                .unwrap();
        }
    }

    fn wait_until(
        state: &mut DetectorState,
        out: &mut Vec<Detection>,
        done: impl Fn(&DetectorState) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(state) {
            assert!(
                Instant::now() < deadline,
                "training did not finish within 60 s: {:?}, {} rolling, {} since training",
                state.progress(),
                state.rolling.len(),
                state.since_training
            );
            std::thread::sleep(Duration::from_millis(20));
            state.poll_training(out).unwrap();
        }
    }

    fn version(state: &DetectorState) -> Option<String> {
        state
            .scorer()
            .map(|s| s.model().manifest().model_version.clone())
    }

    #[test]
    fn baseline_trains_saves_scores_what_waited_and_retrains_on_schedule() {
        let dir = std::env::temp_dir().join(format!("anomaly-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rule = EventRule::new(2, 3, 5).unwrap();
        let mut state = DetectorState::baseline(MetricSchema::host(), rule, plan(&dir, Some(1500)));
        let mut out = Vec::new();

        feed(&mut state, 0..1200, &mut out);
        assert_eq!(state.progress(), Progress::Training);
        // Samples arriving during training wait and are scored once the model is ready.
        feed(&mut state, 1200..1250, &mut out);
        wait_until(&mut state, &mut out, |s| s.progress() == Progress::Live);
        let scored = out
            .iter()
            .filter(|d| matches!(d, Detection::Scored { .. }))
            .count();
        assert_eq!(
            scored,
            50 - 9,
            "every waiting sample goes through the new windows"
        );
        assert!(
            dir.join(anomaly_model::artifact::MANIFEST_FILE).is_file(),
            "the artifact is saved"
        );
        let first = version(&state).unwrap();

        // 1500 samples later it retrains on the latest 1200 and swaps the model in.
        feed(&mut state, 1250..2750, &mut out);
        wait_until(&mut state, &mut out, |s| {
            version(s).is_some_and(|v| v != first)
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_sample_of_another_schema_is_refused_in_every_phase() {
        let dir = std::env::temp_dir().join(format!("anomaly-state-refuse-{}", std::process::id()));
        let mut state = DetectorState::baseline(
            MetricSchema::host(),
            EventRule::new(1, 1, 1).unwrap(),
            plan(&dir, None),
        );
        assert!(
            state
                .on_sample(Sample::new("h", 0, vec![1.0; 3]), &mut Vec::new())
                .is_err()
        );
        assert_eq!(state.progress(), Progress::Baseline(0.0));
    }
}
