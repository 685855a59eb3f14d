//! The detector as the exactly-once sink of the sample stream. Each partition's batch goes through
//! the detector's lifecycle; the anomaly events it yields go to the anomalies topic, then to the
//! store in one transaction with the partition's next offset. Every few seconds the state of the
//! partition's hosts is copied and, in the background on a connection of its own, encoded and
//! stored once that transaction is: tens of megabytes at a large fleet, which the partition's
//! events must not wait for. On assignment the runtime asks the sink where each partition stands:
//! the hosts' state is restored and the records after it are replayed (rebuilding the state,
//! writing nothing again), so a restart, a crash or a rebalance neither loses nor duplicates an
//! event row, and an incident still running carries on as the same event.
//!
//! An unreachable store or broker does not stop the detector: writes are retried with backoff
//! until they succeed, consumption waits meanwhile, and `/health` reports the problem.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anomaly_core::{Anomaly, Sample};
use anomaly_model::{Detection, DetectorLifecycle, FleetScorer, PartitionSnapshot, Progress};
use anomaly_stream::sink::{BoxFuture, TransactionalSink};
use anomaly_stream::{Record, SourceOffset};

use super::event_topic::EventTopic;
use super::group_model::{Followed, GroupModelFollower};
use super::metric_names as m;
use crate::store::{AnomalyRow, Checkpoint, Position, StoreWriter};
use crate::telemetry::Health;

/// How often each partition's host state is stored after its offsets. Between two, a restart
/// replays the records since the last one (at 1 Hz per host, this many samples per host).
const STATE_INTERVAL: Duration = Duration::from_secs(10);

/// Where the sink stands in one source partition.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    /// Where reading must start again to rebuild the partition's state: the offset its stored
    /// state is as of, or where this life's reading began.
    replay_from: u64,
    /// When the partition's state was last copied for storing.
    stored_at: Option<Instant>,
    /// A copy is being encoded and stored: the next waits for it.
    saving: bool,
}

impl Cursor {
    fn starting_at(replay_from: u64) -> Self {
        Self {
            replay_from,
            stored_at: None,
            saving: false,
        }
    }
}

/// A copy of one partition's state, to store once the position it is as of is committed.
struct StateToSave {
    topic: String,
    partition: i32,
    /// Every record below this offset is in the copy.
    at: u64,
    snapshot: PartitionSnapshot,
}

/// Counters the demo prints and the tests read; the same figures go to Prometheus.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct DetectorCounters {
    /// Samples consumed.
    pub samples: u64,
    /// Windows scored.
    pub windows_scored: u64,
    /// Anomaly events opened.
    pub anomalies: u64,
    /// Samples refused (wrong width for the schema).
    pub refused: u64,
    /// The latest smoothed score of any host.
    pub last_score: f64,
}

/// The detector sink. Clones share the same state.
#[derive(Clone)]
pub struct DetectorSink {
    state: Arc<Mutex<DetectorLifecycle>>,
    store: Arc<StoreWriter>,
    /// A connection of its own for the partitions' state, so that storing it never holds up
    /// the events' transactions.
    state_store: Arc<StoreWriter>,
    events: Option<Arc<EventTopic>>,
    health: Health,
    counters: Arc<Mutex<DetectorCounters>>,
    /// The consumer group whose offsets and state the store keeps.
    group: Arc<str>,
    cursors: Arc<Mutex<HashMap<(String, i32), Cursor>>>,
    /// Follows the group's current model version, when the sink is one of a group's instances.
    follower: Option<GroupModelFollower>,
    score_gauges: Arc<Mutex<ScoreGauges>>,
}

/// Each tracked host's score gauge, registered once: setting a held gauge is an atomic store,
/// while `gauge!` with a host label builds the label and looks the series up every time (about
/// as much as scoring a window, for every host every second, under the detector's lock).
#[derive(Default)]
struct ScoreGauges(HashMap<String, metrics::Gauge>);

impl ScoreGauges {
    /// Sets every scored host's gauge; forgets the handles of hosts `scorer` no longer tracks.
    fn refresh(&mut self, scorer: &FleetScorer) {
        for (host, score) in scorer.latest_scores() {
            match self.0.get(host) {
                Some(gauge) => gauge.set(score),
                None => {
                    let gauge = metrics::gauge!(m::SCORE, m::HOST => host.to_string());
                    gauge.set(score);
                    self.0.insert(host.to_string(), gauge);
                    // The host's event counter exists at 0 before its first event: a counter
                    // that first appears at 1 has no increase() in Prometheus, and the
                    // AnomalyDetected alert would miss every host's first event.
                    metrics::counter!(m::ANOMALIES_TOTAL, m::HOST => host.to_string()).increment(0);
                }
            }
        }
        if self.0.len() > scorer.tracked_hosts() {
            self.0.retain(|host, _| scorer.tracks(host));
        }
    }
}

impl DetectorSink {
    /// A sink driving `state` for consumer `group`, writing events, offsets and state to `store`
    /// and events, when given, to `events`, and reporting delivery problems to `health`.
    pub fn new(
        state: DetectorLifecycle,
        group: &str,
        store: Arc<StoreWriter>,
        events: Option<EventTopic>,
        health: Health,
    ) -> Self {
        Self {
            state: Arc::new(Mutex::new(state)),
            state_store: Arc::new(store.another()),
            store,
            events: events.map(Arc::new),
            health,
            counters: Arc::new(Mutex::new(DetectorCounters::default())),
            group: Arc::from(group),
            cursors: Arc::default(),
            follower: None,
            score_gauges: Arc::default(),
        }
    }

    /// Makes the sink follow its group's model (see `group_model`): offer its own as the first
    /// version, adopt the current one whenever it changes.
    pub fn following(mut self, follower: GroupModelFollower) -> Self {
        self.follower = Some(follower);
        self
    }

    /// The counters so far.
    pub fn counters(&self) -> DetectorCounters {
        *self.counters.lock().expect("counters lock")
    }

    /// The threshold and model version in use, once a model is.
    pub fn model(&self) -> Option<(f64, String)> {
        let state = self.state.lock().expect("detector state lock");
        state.scorer().map(|s| {
            (
                s.model().manifest().threshold,
                s.model().manifest().model_version.clone(),
            )
        })
    }

    /// While collecting the baseline: each metric's name, unit and range so far.
    pub fn baseline_ranges(&self) -> Option<Vec<(anomaly_core::Metric, f64, f64)>> {
        let state = self.state.lock().expect("detector state lock");
        let ranges = state.baseline_ranges()?;
        Some(
            state
                .schema()
                .metrics()
                .iter()
                .zip(ranges)
                .map(|(metric, (low, high))| (metric.clone(), low, high))
                .collect(),
        )
    }

    /// Where the detector stands.
    pub fn progress(&self) -> Progress {
        self.state.lock().expect("detector state lock").progress()
    }

    /// Installs a model whose training has finished even if no sample arrives, and refreshes the
    /// detector's gauges (once a second rather than per batch or window: a gauge update costs
    /// about as much as scoring a window, and counting open events walks every host).
    pub async fn poll(&self) -> anomaly_stream::Result<()> {
        let mut out = Vec::new();
        {
            let mut state = self.state.lock().expect("detector state lock");
            state
                .poll_training(chrono::Utc::now().timestamp_millis(), &mut out)
                .map_err(|e| sink_error("training the baseline model failed", e))?;
            metrics::gauge!(m::BASELINE_PROGRESS_RATIO).set(match state.progress() {
                Progress::Baseline(p) => p,
                Progress::Training | Progress::Live => 1.0,
            });
            if let Some(s) = state.scorer() {
                self.score_gauges
                    .lock()
                    .expect("score gauges lock")
                    .refresh(s);
                let manifest = s.model().manifest();
                metrics::gauge!(m::TRACKED_HOSTS).set(s.tracked_hosts() as f64);
                metrics::counter!(m::EVICTED_HOSTS_TOTAL).absolute(s.evicted_hosts);
                metrics::gauge!(m::OPEN_EVENTS).set(s.open_events() as f64);
                metrics::gauge!(m::THRESHOLD).set(manifest.threshold);
                metrics::gauge!(m::MODEL_INFO, m::MODEL_VERSION => manifest.model_version.clone())
                    .set(1.0);
            }
        }
        self.follow_group_model(&mut out).await?;
        self.publish(out).await
    }

    /// When due, looks at the group's model version: offers the model in use as the group's
    /// first, or adopts the group's when it is another one. A store that does not answer is
    /// not waited for (the next look tries again; `/health` is the writes' business).
    async fn follow_group_model(&self, out: &mut Vec<Detection>) -> anomaly_stream::Result<()> {
        let Some(follower) = self.follower.clone().filter(|f| f.due()) else {
            return Ok(());
        };
        let in_use = (self.state.lock().expect("detector state lock"))
            .model_version()
            .map(str::to_string);
        let (look, group) = (follower.clone(), Arc::clone(&self.group));
        let looked = self
            .store
            .attempt(move |store| look.look(store, &group, in_use.as_deref()))
            .await;
        match looked {
            Ok(Followed::Adopt(model)) => {
                let mut state = self.state.lock().expect("detector state lock");
                state
                    .adopt(*model, chrono::Utc::now().timestamp_millis(), out)
                    .map_err(|e| sink_error("cannot use the group's model", e))?;
            }
            Ok(Followed::Nothing) => self.offer_model(follower).await,
            Ok(Followed::Same) => {}
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "cannot look at the group's model version")
            }
        }
        Ok(())
    }

    /// Offers the model in use, if any, as the group's first version (the group has none); the
    /// model is copied only then, not on every look.
    async fn offer_model(&self, follower: GroupModelFollower) {
        let model = {
            let state = self.state.lock().expect("detector state lock");
            state.scorer().map(|s| s.model().clone())
        };
        let Some(model) = model else {
            return;
        };
        let group = Arc::clone(&self.group);
        match self
            .store
            .attempt(move |store| {
                let offered = follower.offer(store, &group, &model)?;
                Ok(offered.then(|| model.manifest().model_version.clone()))
            })
            .await
        {
            Ok(Some(version)) => tracing::info!(
                model_version = %version,
                "the model in use is the group's first version"
            ),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "cannot offer the model to the group")
            }
        }
    }

    /// Runs `batch`, read from source `partition`, through the detector.
    fn detect(&self, partition: i32, batch: Vec<Record<(), Sample>>) -> Vec<Detection> {
        // About one detection per sample (its window's score): sized once, not grown.
        let mut out = Vec::with_capacity(batch.len());
        let mut state = self.state.lock().expect("detector state lock");
        let mut refused = 0;
        let samples = batch.len() as u64;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let latency_histogram = metrics::histogram!(m::END_TO_END_LATENCY_SECONDS);
        for record in batch {
            let sample_ms = record.value.timestamp_ms;
            let before = out.len();
            if let Err(e) = state.on_sample(partition, record.value, now_ms, &mut out) {
                // A sample of another schema cannot be scored; say so (the error names its host)
                // and carry on with the rest.
                tracing::warn!(error = %format!("{e:#}"), "sample refused");
                refused += 1;
            }
            if out.len() > before {
                let latency = (now_ms - sample_ms).max(0) as f64 / 1000.0;
                latency_histogram.record(latency);
            }
        }
        drop(state);
        metrics::counter!(m::SAMPLES_TOTAL).increment(samples);
        let mut counters = self.counters.lock().expect("counters lock");
        counters.samples += samples;
        counters.refused += refused;
        out
    }

    /// Counts and logs `detections`; returns the events among them.
    fn account(&self, detections: Vec<Detection>) -> Vec<Anomaly> {
        let mut events: Vec<Anomaly> = Vec::new();
        let mut scored = 0;
        let mut counters = self.counters.lock().expect("counters lock");
        for d in detections {
            match d {
                Detection::Scored { score, .. } => {
                    counters.windows_scored += 1;
                    counters.last_score = score;
                    scored += 1;
                }
                Detection::Event(anomaly) => {
                    if !anomaly.closed {
                        counters.anomalies += 1;
                        metrics::counter!(m::ANOMALIES_TOTAL, m::HOST => anomaly.entity.clone())
                            .increment(1);
                        tracing::warn!(
                            host = %anomaly.entity,
                            score = anomaly.score,
                            threshold = anomaly.threshold,
                            severity = anomaly.severity.as_str(),
                            top = ?anomaly.top_metrics.iter().map(|c| c.metric.as_str()).collect::<Vec<_>>(),
                            "anomaly"
                        );
                    }
                    events.push(anomaly);
                }
            }
        }
        metrics::counter!(m::WINDOWS_SCORED_TOTAL).increment(scored);
        events
    }

    /// Events that belong to no source position (those of samples that waited for training):
    /// to the topic, then upserted in the store.
    async fn publish(&self, detections: Vec<Detection>) -> anomaly_stream::Result<()> {
        let events = self.account(detections);
        if events.is_empty() {
            return Ok(());
        }
        if let Some(topic) = &self.events {
            topic.publish(&events, &self.health).await;
        }
        let rows: Vec<AnomalyRow> = events.iter().map(AnomalyRow::from).collect();
        self.store.upsert(rows).await;
        record_event_latency(&events);
        Ok(())
    }

    /// What to store with the events of a transaction for `source`: its next offset and where
    /// to replay from; and, when due, a copy of the partition's state as of that offset, to
    /// store once the transaction is ([`save_state`](Self::save_state)).
    fn position(&self, source: SourceOffset) -> (Position, Option<StateToSave>) {
        let mut cursors = self.cursors.lock().expect("cursors lock");
        // A partition the runtime did not ask about had nothing stored: its reading began at
        // the start of the topic (auto.offset.reset=earliest).
        let cursor = cursors
            .entry((source.topic.clone(), source.partition))
            .or_insert(Cursor::starting_at(0));
        let due = !cursor.saving
            && cursor
                .stored_at
                .is_none_or(|at| at.elapsed() >= STATE_INTERVAL);
        let mut to_save = None;
        if due {
            let state = self.state.lock().expect("detector state lock");
            if let Some(snapshot) = state.snapshot(source.partition) {
                cursor.stored_at = Some(Instant::now());
                cursor.saving = true;
                to_save = Some(StateToSave {
                    topic: source.topic.clone(),
                    partition: source.partition,
                    at: source.offset,
                    snapshot,
                });
            }
        }
        let position = Position {
            topic: source.topic,
            partition: source.partition,
            next_offset: source.offset,
            replay_from: cursor.replay_from.min(source.offset),
        };
        (position, to_save)
    }

    /// Encodes and stores a partition's state copy in the background: the position it is as
    /// of is committed, so the state never runs ahead of the store. Once it is stored, a
    /// restart replays from there on.
    fn save_state(&self, to_save: StateToSave) {
        let (state_store, cursors, group) = (
            Arc::clone(&self.state_store),
            Arc::clone(&self.cursors),
            Arc::clone(&self.group),
        );
        tokio::spawn(async move {
            let StateToSave {
                topic,
                partition,
                at,
                snapshot,
            } = to_save;
            let started = Instant::now();
            let encoded = tokio::task::spawn_blocking(move || snapshot.encode()).await;
            let saved = match encoded {
                Ok(Ok(bytes)) => {
                    state_store
                        .save_state(&group, &topic, partition, at, bytes)
                        .await;
                    metrics::histogram!(m::STATE_SAVE_SECONDS)
                        .record(started.elapsed().as_secs_f64());
                    true
                }
                Ok(Err(e)) => {
                    tracing::error!(topic, partition, error = %e, "cannot encode the detector state; a restart replays from the previous one");
                    false
                }
                Err(e) => {
                    tracing::error!(topic, partition, error = %e, "the state encoding task failed; a restart replays from the previous one");
                    false
                }
            };
            let mut cursors = cursors.lock().expect("cursors lock");
            if let Some(cursor) = cursors.get_mut(&(topic, partition)) {
                cursor.saving = false;
                if saved {
                    cursor.replay_from = cursor.replay_from.max(at);
                }
            }
        });
    }

    /// Restores the stored state of `partition` of `topic` and says where reading starts.
    fn restore(
        &self,
        topic: &str,
        partition: i32,
        stored: Option<&Checkpoint>,
    ) -> Option<SourceOffset> {
        let replay_from = {
            let mut state = self.state.lock().expect("detector state lock");
            // Whatever this instance held for the partition (an earlier ownership) is stale.
            state.forget_partition(partition);
            match stored {
                // Nothing stored: from the start of the topic.
                None => 0,
                Some(cp) => match &cp.state {
                    None => cp.position.replay_from,
                    Some((at, bytes)) => match state.restore(partition, bytes) {
                        Ok(Some(hosts)) => {
                            tracing::info!(
                                topic,
                                partition,
                                hosts,
                                state_offset = at,
                                next_offset = cp.position.next_offset,
                                "detector state restored; replaying the records after it"
                            );
                            *at
                        }
                        // Collecting a baseline: read it again.
                        Ok(None) if state.progress() != Progress::Live => cp.position.replay_from,
                        Ok(None) => {
                            tracing::info!(
                                topic,
                                partition,
                                "stored detector state is of another model; the partition's hosts start afresh"
                            );
                            cp.position.next_offset
                        }
                        Err(e) => {
                            tracing::warn!(topic, partition, error = %e, "stored detector state unreadable; the partition's hosts start afresh");
                            cp.position.next_offset
                        }
                    },
                },
            }
        };
        self.cursors.lock().expect("cursors lock").insert(
            (topic.to_string(), partition),
            Cursor::starting_at(replay_from),
        );
        stored.map(|cp| SourceOffset {
            topic: topic.to_string(),
            partition,
            offset: cp.position.next_offset,
            replay_from: replay_from.min(cp.position.next_offset),
        })
    }
}

/// The time from each opened event's last window to now.
fn record_event_latency(events: &[Anomaly]) {
    let now_ms = chrono::Utc::now().timestamp_millis();
    for opened in events.iter().filter(|a| !a.closed) {
        let latency = (now_ms - opened.window_end_ms).max(0) as f64 / 1000.0;
        metrics::histogram!(m::EVENT_LATENCY_SECONDS).record(latency);
    }
}

/// The detector sink's `context` failed with `source`.
fn sink_error(
    context: &str,
    source: impl std::error::Error + Send + Sync + 'static,
) -> anomaly_stream::Error {
    anomaly_stream::Error::SinkFailed {
        sink: "detector".to_string(),
        context: context.to_string(),
        source: Box::new(source),
    }
}

impl TransactionalSink<Record<(), Sample>> for DetectorSink {
    fn write_transaction(
        &self,
        batch: Vec<Record<(), Sample>>,
        offsets: Vec<SourceOffset>,
    ) -> BoxFuture<'_, anomaly_stream::Result<()>> {
        Box::pin(async move {
            let source = offsets.into_iter().next();
            let partition = source.as_ref().map_or(0, |o| o.partition);
            let detections = self.detect(partition, batch);
            let events = self.account(detections);
            // The topic first: a crash before the store's transaction makes the records (and
            // their events) come again; the other way round they would never reach the topic.
            if let Some(topic) = &self.events
                && !events.is_empty()
            {
                topic.publish(&events, &self.health).await;
            }
            let rows: Vec<AnomalyRow> = events.iter().map(AnomalyRow::from).collect();
            match source {
                Some(source) => {
                    let (position, to_save) = self.position(source);
                    self.store.commit(&self.group, rows, position).await;
                    if let Some(to_save) = to_save {
                        self.save_state(to_save);
                    }
                }
                None if !rows.is_empty() => self.store.upsert(rows).await,
                None => {}
            }
            record_event_latency(&events);
            Ok(())
        })
    }

    fn load_offsets<'a>(
        &'a self,
        topic: &'a str,
        partitions: &'a [i32],
    ) -> BoxFuture<'a, anomaly_stream::Result<Vec<SourceOffset>>> {
        Box::pin(async move {
            let stored = self.store.checkpoints(&self.group, topic, partitions).await;
            Ok(partitions
                .iter()
                .filter_map(|&p| {
                    self.restore(topic, p, stored.iter().find(|c| c.position.partition == p))
                })
                .collect())
        })
    }

    fn replay<'a>(
        &'a self,
        batch: Vec<Record<(), Sample>>,
        _topic: &'a str,
        partition: i32,
    ) -> BoxFuture<'a, anomaly_stream::Result<()>> {
        // Rebuilds the hosts' state; the events were stored before.
        let mut out = Vec::new();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut state = self.state.lock().expect("detector state lock");
        for record in batch {
            let _ = state.on_sample(partition, record.value, now_ms, &mut out);
            out.clear();
        }
        Box::pin(async { Ok(()) })
    }
}
