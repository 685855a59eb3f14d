//! The live detector's life: collect a baseline, train a model on it without stopping
//! consumption, then score. Samples that arrive while the model trains are kept and scored once it is ready,
//! so none is lost; since training's own CPU burst may show in them (and in the next sample of
//! each host), they cannot open an event.
//! While scoring, it keeps a rolling baseline of the latest samples, leaving out those of hosts
//! inside an anomaly event, and retrains on it on schedule; the new model replaces the old one
//! when it is ready (its windows start afresh, so each host skips `window - 1` samples of
//! scoring).
//!
//! Training and saving are the caller's ([`Trainer`]), and so is the clock (every call takes the
//! time now), so the whole life runs in tests without I/O.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, mpsc};

use anomaly_core::alerting::EventRule;
use anomaly_core::dataset::Series;
use anomaly_core::{Entity, MetricSchema, Sample};

use crate::Model;
use crate::error::{Error, Result};
use crate::fleet::{Detection, FleetScorer, PartitionSnapshot};

/// The longest sampling interval the detector assumes when it learns one from the baseline.
const MAX_INTERVAL_MS: i64 = 60_000;

/// Trains a model on a baseline, on a thread of the lifecycle's own (training takes seconds and
/// must not stall consumption). An implementation also saves the artifact where a restart finds
/// it, and may report progress.
///
/// Where several instances share one model (a consumer group), an implementation may instead
/// return a model another instance trained: one that replaces `replacing`, the version in use
/// when training was asked for (`None`: the first model).
pub trait Trainer: Send + Sync + 'static {
    /// A model of `schema` trained on `rows` (the baseline's hosts one after another), or the
    /// group's model that replaces `replacing`.
    fn train(&self, schema: &MetricSchema, rows: &Series, replacing: Option<&str>)
    -> Result<Model>;
}

/// How a detector without a model gets one, and when it retrains.
#[derive(Debug, Clone)]
pub struct BaselinePlan {
    /// Samples (over all hosts) to collect before training.
    pub samples: usize,
    /// Retrain on the rolling baseline (the latest `samples` normal samples) after this many
    /// samples scored; `None` never retrains.
    pub retrain_every: Option<usize>,
    /// Hosts that sent nothing for this long (event time, ms) are forgotten by the live scorer;
    /// 0 never (see [`FleetScorer::with_idle_eviction`]).
    pub idle_host_ms: i64,
}

enum Phase {
    /// Collecting rows per host (ordered by host for a deterministic training set).
    Baseline {
        rows: BTreeMap<String, Vec<f64>>,
        count: usize,
        /// Each host's latest sample timestamp, to learn the sampling interval.
        last_ms: HashMap<Entity, i64>,
        /// The longest gap between two consecutive samples of a host so far (capped): how far
        /// back the measurement of a sample may reach.
        interval_ms: i64,
    },
    /// A model is being trained on another thread; new samples wait in `pending`.
    Training {
        pending: Vec<(i32, Sample)>,
        done: mpsc::Receiver<Result<Model>>,
        /// The sampling interval learnt in the baseline.
        interval_ms: i64,
    },
    /// Scoring.
    Live(Box<FleetScorer>),
}

/// The detector's state: baseline, training or live.
pub struct DetectorLifecycle {
    phase: Phase,
    plan: BaselinePlan,
    trainer: Arc<dyn Trainer>,
    rule: EventRule,
    schema: MetricSchema,
    /// The latest samples scored outside anomaly events, at most `plan.samples`.
    rolling: VecDeque<Sample>,
    /// Samples scored since the model in use (or the retraining in flight) was started.
    since_training: usize,
    /// A retraining in flight.
    retraining: Option<mpsc::Receiver<Result<Model>>>,
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

impl DetectorLifecycle {
    /// A detector that uses `model` from the start and retrains with `trainer`.
    pub fn live(
        model: Model,
        rule: EventRule,
        plan: BaselinePlan,
        trainer: Arc<dyn Trainer>,
    ) -> Result<Self> {
        let schema = model.manifest().schema.clone();
        let scorer = FleetScorer::new(model, rule)?.with_idle_eviction(plan.idle_host_ms);
        let phase = Phase::Live(Box::new(scorer));
        Ok(Self::with_phase(phase, schema, rule, plan, trainer))
    }

    /// A detector that first collects a baseline of `plan.samples` samples of `schema`, then
    /// trains with `trainer`.
    pub fn baseline(
        schema: MetricSchema,
        rule: EventRule,
        plan: BaselinePlan,
        trainer: Arc<dyn Trainer>,
    ) -> Self {
        let phase = Phase::Baseline {
            rows: BTreeMap::new(),
            count: 0,
            last_ms: HashMap::new(),
            interval_ms: 0,
        };
        Self::with_phase(phase, schema, rule, plan, trainer)
    }

    fn with_phase(
        phase: Phase,
        schema: MetricSchema,
        rule: EventRule,
        plan: BaselinePlan,
        trainer: Arc<dyn Trainer>,
    ) -> Self {
        Self {
            phase,
            plan,
            trainer,
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
    pub fn scorer(&self) -> Option<&FleetScorer> {
        match &self.phase {
            Phase::Live(s) => Some(s),
            _ => None,
        }
    }

    /// Handles one sample read from source `partition`, `now_ms` being the wall-clock time. A
    /// sample of the wrong width is an error and changes nothing.
    pub fn on_sample(
        &mut self,
        partition: i32,
        sample: Sample,
        now_ms: i64,
        out: &mut Vec<Detection>,
    ) -> Result<()> {
        if sample.values.len() != self.schema.len() {
            return Err(Error::InvalidInput(format!(
                "sample of {} has {} values, the schema {}",
                sample.entity,
                sample.values.len(),
                self.schema.len()
            )));
        }
        self.poll_training(now_ms, out)?;
        match &mut self.phase {
            Phase::Live(scorer) => {
                scorer.on_sample_from(partition, &sample, out)?;
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
                        add_row(&mut rows, s);
                    }
                    tracing::info!(
                        samples = self.rolling.len(),
                        "retraining on the rolling baseline"
                    );
                    self.retraining = Some(self.spawn_training(rows));
                    self.since_training = 0;
                }
            }
            Phase::Training { pending, .. } => pending.push((partition, sample)),
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
                add_row(rows, &sample);
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

    /// A copy of the state of source `partition`'s hosts, for storing with the partition's
    /// offsets ([`FleetScorer::snapshot`]); `None` before a model is in use.
    pub fn snapshot(&self, partition: i32) -> Option<PartitionSnapshot> {
        match &self.phase {
            Phase::Live(scorer) => Some(scorer.snapshot(partition)),
            _ => None,
        }
    }

    /// Restores source `partition`'s hosts from a [`snapshot`](Self::snapshot); `Some(hosts)`
    /// when it was restored, `None` when there is no model yet or the snapshot belongs to
    /// another model version (the hosts then start afresh).
    pub fn restore(&mut self, partition: i32, snapshot: &[u8]) -> Result<Option<usize>> {
        match &mut self.phase {
            Phase::Live(scorer) => scorer.restore(partition, snapshot),
            _ => Ok(None),
        }
    }

    /// Forgets source `partition`'s hosts: the partition went to another instance, or its state
    /// is about to be rebuilt by replay.
    pub fn forget_partition(&mut self, partition: i32) {
        if let Phase::Live(scorer) = &mut self.phase {
            scorer.forget_partition(partition);
        }
    }

    /// Installs a model whose training finished, scoring the samples that waited for it; `now_ms`
    /// is the wall-clock time (samples measured before it, while the model trained, open no
    /// event). An error is a failed first training: the detector has no model to go on with.
    pub fn poll_training(&mut self, now_ms: i64, out: &mut Vec<Detection>) -> Result<()> {
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
            Ok(result) => result?,
            Err(mpsc::TryRecvError::Empty) => return Ok(()),
            Err(mpsc::TryRecvError::Disconnected) => return Err(thread_died()),
        };
        let pending = std::mem::take(pending);
        let interval_ms = *interval_ms;
        tracing::info!(
            model_version = %model.manifest().model_version,
            threshold = model.manifest().threshold,
            waiting = pending.len(),
            "model trained; detecting"
        );
        self.go_live(model, pending, now_ms + interval_ms, out)
    }

    /// Scores with `model` from now on, first the samples that waited for it; those measured
    /// before `disturbed_until` (ms) open no event.
    fn go_live(
        &mut self,
        model: Model,
        pending: Vec<(i32, Sample)>,
        disturbed_until: i64,
        out: &mut Vec<Detection>,
    ) -> Result<()> {
        let mut scorer =
            FleetScorer::new(model, self.rule)?.with_idle_eviction(self.plan.idle_host_ms);
        // What was measured while the model trained (the samples that waited, and the next one
        // of each host, whose measurement interval began during training) may show training's
        // own CPU burst.
        scorer.disturbed_until(disturbed_until);
        for (partition, sample) in &pending {
            scorer.on_sample_from(*partition, sample, out)?;
        }
        self.phase = Phase::Live(Box::new(scorer));
        self.since_training = 0;
        Ok(())
    }

    /// The version of the model in use, once one is.
    pub fn model_version(&self) -> Option<&str> {
        self.scorer()
            .map(|s| s.model().manifest().model_version.as_str())
    }

    /// Uses `model`, one this instance did not train (another instance of its group did), from
    /// now on, whatever the phase: a baseline being collected is dropped, samples waiting for a
    /// training are scored with it, and in use its hosts start afresh. `false` when it is the
    /// model already in use (nothing changes).
    pub fn adopt(&mut self, model: Model, now_ms: i64, out: &mut Vec<Detection>) -> Result<bool> {
        if self.model_version() == Some(model.manifest().model_version.as_str()) {
            return Ok(false);
        }
        tracing::info!(
            model_version = %model.manifest().model_version,
            threshold = model.manifest().threshold,
            "the group's model in use"
        );
        let (pending, disturbed_until) = match &mut self.phase {
            Phase::Training {
                pending,
                interval_ms,
                ..
            } => (std::mem::take(pending), now_ms + *interval_ms),
            _ => (Vec::new(), i64::MIN),
        };
        self.go_live(model, pending, disturbed_until, out)?;
        Ok(true)
    }

    /// Swaps in a retrained model once it is ready. A failed retraining keeps the model in use.
    fn poll_retraining(&mut self) -> Result<()> {
        let Some(done) = &self.retraining else {
            return Ok(());
        };
        let result = match done.try_recv() {
            Ok(result) => result,
            Err(mpsc::TryRecvError::Empty) => return Ok(()),
            Err(mpsc::TryRecvError::Disconnected) => Err(thread_died()),
        };
        self.retraining = None;
        match result {
            // The group's model, already adopted while this retraining waited for it.
            Ok(model) if self.model_version() == Some(model.manifest().model_version.as_str()) => {}
            Ok(model) => {
                tracing::info!(
                    model_version = %model.manifest().model_version,
                    threshold = model.manifest().threshold,
                    "retrained model in use"
                );
                let scorer =
                    FleetScorer::new(model, self.rule)?.with_idle_eviction(self.plan.idle_host_ms);
                self.phase = Phase::Live(Box::new(scorer));
            }
            Err(e) => {
                tracing::warn!(error = %e, "retraining failed; keeping the model in use")
            }
        }
        Ok(())
    }

    /// Trains on the baseline on its own thread (training takes seconds and must not stall the
    /// consumer) and hands the model back.
    fn spawn_training(&self, rows: BTreeMap<String, Vec<f64>>) -> mpsc::Receiver<Result<Model>> {
        let (tx, rx) = mpsc::channel();
        let (trainer, schema) = (Arc::clone(&self.trainer), self.schema.clone());
        let replacing = self.model_version().map(str::to_string);
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
            let result = Series::new(schema.len(), data)
                .map_err(Error::from)
                .and_then(|series| trainer.train(&schema, &series, replacing.as_deref()));
            let _ = tx.send(result);
        });
        rx
    }
}

fn thread_died() -> Error {
    Error::Training("the training thread died".into())
}

/// Appends `sample`'s values to its host's training rows (a name is copied once per host).
fn add_row(rows: &mut BTreeMap<String, Vec<f64>>, sample: &Sample) {
    match rows.get_mut(sample.entity.as_str()) {
        Some(host_rows) => host_rows.extend(&sample.values),
        None => {
            rows.insert(sample.entity.to_string(), sample.values.to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DetectorKind, TrainingConfig};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// Trains PCA and counts the trainings.
    #[derive(Default)]
    struct CountingTrainer(AtomicUsize);

    impl Trainer for CountingTrainer {
        fn train(
            &self,
            schema: &MetricSchema,
            rows: &Series,
            _replacing: Option<&str>,
        ) -> Result<Model> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Model::train(
                schema,
                rows,
                DetectorKind::Pca,
                &TrainingConfig::default(),
                &mut |_| {},
            )
        }
    }

    fn plan(retrain_every: Option<usize>) -> BaselinePlan {
        BaselinePlan {
            samples: 1200,
            retrain_every,
            idle_host_ms: 0,
        }
    }

    fn row(step: u64) -> Vec<f64> {
        anomaly_core::synthetic::cyclic_host_row(step).to_vec()
    }

    fn feed(state: &mut DetectorLifecycle, steps: std::ops::Range<u64>, out: &mut Vec<Detection>) {
        for step in steps {
            let at = step as i64 * 1000;
            state
                .on_sample(0, Sample::new("h", at, row(step)), at, out)
                .unwrap();
        }
    }

    fn wait_until(
        state: &mut DetectorLifecycle,
        out: &mut Vec<Detection>,
        done: impl Fn(&DetectorLifecycle) -> bool,
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
            state.poll_training(0, out).unwrap();
        }
    }

    fn version(state: &DetectorLifecycle) -> Option<String> {
        state
            .scorer()
            .map(|s| s.model().manifest().model_version.clone())
    }

    #[test]
    fn baseline_trains_scores_what_waited_and_retrains_on_schedule() {
        let rule = EventRule::new(2, 3, 5).unwrap();
        let trainer = Arc::new(CountingTrainer::default());
        let mut state = DetectorLifecycle::baseline(
            MetricSchema::host(),
            rule,
            plan(Some(1500)),
            Arc::clone(&trainer) as Arc<dyn Trainer>,
        );
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
        assert_eq!(trainer.0.load(Ordering::SeqCst), 1);
        let first = version(&state).unwrap();

        // 1500 samples later it retrains on the latest 1200 and swaps the model in.
        feed(&mut state, 1250..2750, &mut out);
        wait_until(&mut state, &mut out, |s| {
            version(s).is_some_and(|v| v != first)
        });
        assert_eq!(trainer.0.load(Ordering::SeqCst), 2);
    }

    /// Trains nothing until its gate closes (the sender dropped), then fails: stands for another
    /// instance of the group training meanwhile.
    struct GatedTrainer(std::sync::Mutex<mpsc::Receiver<()>>);

    impl Trainer for GatedTrainer {
        fn train(&self, _: &MetricSchema, _: &Series, _: Option<&str>) -> Result<Model> {
            let _ = self.0.lock().unwrap().recv();
            Err(Error::Training("gate closed".into()))
        }
    }

    #[test]
    fn a_model_trained_elsewhere_is_adopted_in_every_phase() {
        let rule = EventRule::new(2, 3, 5).unwrap();
        let rows: Vec<Vec<f64>> = (0..3000).map(row).collect();
        let model = CountingTrainer::default()
            .train(
                &MetricSchema::host(),
                &Series::from_rows(&rows).unwrap(),
                None,
            )
            .unwrap();
        let version = model.manifest().model_version.clone();
        let mut out = Vec::new();

        // Collecting a baseline: dropped, the model is used at once.
        let mut state = DetectorLifecycle::baseline(
            MetricSchema::host(),
            rule,
            plan(None),
            Arc::new(CountingTrainer::default()),
        );
        feed(&mut state, 0..100, &mut out);
        assert!(state.adopt(model.clone(), 0, &mut out).unwrap());
        assert_eq!(state.progress(), Progress::Live);
        assert_eq!(state.model_version(), Some(version.as_str()));
        // The same model again changes nothing.
        assert!(!state.adopt(model.clone(), 0, &mut out).unwrap());

        // Training: the samples that waited are scored with the adopted model.
        let (gate, gated) = mpsc::channel();
        let mut state = DetectorLifecycle::baseline(
            MetricSchema::host(),
            rule,
            plan(None),
            Arc::new(GatedTrainer(std::sync::Mutex::new(gated))),
        );
        feed(&mut state, 0..1250, &mut out);
        assert_eq!(state.progress(), Progress::Training);
        out.clear();
        assert!(state.adopt(model, 1_250_000, &mut out).unwrap());
        let scored = out
            .iter()
            .filter(|d| matches!(d, Detection::Scored { .. }))
            .count();
        assert_eq!(scored, 50 - 9, "every waiting sample is scored");
        // The abandoned training's failure does not reach the adopted detector.
        drop(gate);
        std::thread::sleep(Duration::from_millis(50));
        state.poll_training(1_260_000, &mut out).unwrap();
        assert_eq!(state.model_version(), Some(version.as_str()));
    }

    #[test]
    fn a_sample_of_another_schema_is_refused_in_every_phase() {
        let mut state = DetectorLifecycle::baseline(
            MetricSchema::host(),
            EventRule::new(1, 1, 1).unwrap(),
            plan(None),
            Arc::new(CountingTrainer::default()),
        );
        assert!(
            state
                .on_sample(0, Sample::new("h", 0, vec![1.0; 3]), 0, &mut Vec::new())
                .is_err()
        );
        assert_eq!(state.progress(), Progress::Baseline(0.0));
    }
}
