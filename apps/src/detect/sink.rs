//! The detector as a sink of the sample stream: every batch goes through the detector state, and
//! the anomaly events it yields are written to the store and the anomalies topic before the batch
//! is acknowledged, so the source offsets behind them are committed only then (at-least-once; the
//! store's upsert makes a replay harmless). An unreachable store or broker does not stop the
//! detector: the write is retried with backoff until it succeeds, consumption waits meanwhile, and
//! `/health` reports the problem.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anomaly_core::{Anomaly, Sample};
use anomaly_stream::Record;
use anomaly_stream::sink::{BoxFuture, Sink};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use super::metric_names as m;
use super::pipeline::Detection;
use super::state::{DetectorState, Progress};
use crate::store::{AnomalyRow, StoreWriter};
use crate::telemetry::Health;

/// The `/health` component a delivery problem on the anomalies topic is reported under.
const TOPIC_COMPONENT: &str = "anomalies topic";
/// Backoff between delivery attempts to the anomalies topic: from the first to the longest.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const LONGEST_BACKOFF: Duration = Duration::from_secs(5);

/// Where anomaly events go besides the store.
pub struct EventTopic {
    /// An idempotent producer (acks=all).
    pub producer: FutureProducer,
    /// The topic, keyed by host, values JSON [`Anomaly`].
    pub topic: String,
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
    state: Arc<Mutex<DetectorState>>,
    store: Arc<StoreWriter>,
    events: Option<Arc<EventTopic>>,
    health: Health,
    counters: Arc<Mutex<DetectorCounters>>,
}

impl DetectorSink {
    /// A sink driving `state`, writing events to `store` and, when given, to `events`, and
    /// reporting delivery problems to `health`.
    pub fn new(
        state: DetectorState,
        store: Arc<StoreWriter>,
        events: Option<EventTopic>,
        health: Health,
    ) -> Self {
        Self {
            state: Arc::new(Mutex::new(state)),
            store,
            events: events.map(Arc::new),
            health,
            counters: Arc::new(Mutex::new(DetectorCounters::default())),
        }
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
                .poll_training(&mut out)
                .map_err(|e| sink_error(format!("{e:#}")))?;
            metrics::gauge!(m::BASELINE_PROGRESS_RATIO).set(match state.progress() {
                Progress::Baseline(p) => p,
                Progress::Training | Progress::Live => 1.0,
            });
            if let Some(s) = state.scorer() {
                for (host, score) in s.latest_scores() {
                    metrics::gauge!(m::SCORE, m::HOST => host.to_string()).set(score);
                }
                let manifest = s.model().manifest();
                metrics::gauge!(m::TRACKED_HOSTS).set(s.tracked_hosts() as f64);
                metrics::counter!(m::EVICTED_HOSTS_TOTAL).absolute(s.evicted_hosts);
                metrics::gauge!(m::OPEN_EVENTS).set(s.open_events() as f64);
                metrics::gauge!(m::THRESHOLD).set(manifest.threshold);
                metrics::gauge!(m::MODEL_INFO, m::MODEL_VERSION => manifest.model_version.clone())
                    .set(1.0);
            }
        }
        self.publish(out).await
    }

    fn detect(&self, batch: Vec<Record<String, Sample>>) -> anomaly_stream::Result<Vec<Detection>> {
        let mut out = Vec::new();
        let mut state = self.state.lock().expect("detector state lock");
        let mut refused = 0;
        let samples = batch.len() as u64;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let latency_histogram = metrics::histogram!(m::END_TO_END_LATENCY_SECONDS);
        for record in batch {
            let sample_ms = record.value.timestamp_ms;
            let before = out.len();
            if let Err(e) = state.on_sample(record.value, &mut out) {
                // A sample of another schema cannot be scored; say so and carry on with the rest.
                tracing::warn!(host = %record.key, error = %format!("{e:#}"), "sample refused");
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
        Ok(out)
    }

    async fn publish(&self, detections: Vec<Detection>) -> anomaly_stream::Result<()> {
        let mut events: Vec<Anomaly> = Vec::new();
        let mut scored = 0;
        {
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
                            metrics::counter!(m::ANOMALIES_TOTAL, m::HOST => anomaly.entity.clone()).increment(1);
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
        }
        metrics::counter!(m::WINDOWS_SCORED_TOTAL).increment(scored);
        if events.is_empty() {
            return Ok(());
        }
        let rows: Vec<AnomalyRow> = events.iter().map(AnomalyRow::from).collect();
        self.store.upsert(rows).await;
        if let Some(topic) = &self.events {
            let mut backoff = FIRST_BACKOFF;
            loop {
                match deliver(topic, &events).await {
                    Ok(()) => {
                        self.health.recovered(TOPIC_COMPONENT);
                        break;
                    }
                    Err(e) => {
                        // Redelivery may duplicate an event on the topic; consumers
                        // deduplicate on (host, window start, model version).
                        let problem = e.to_string();
                        tracing::warn!(error = %problem, retry_in_ms = backoff.as_millis() as u64, "cannot publish anomaly events; consumption waits");
                        self.health.problem(TOPIC_COMPONENT, problem);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(LONGEST_BACKOFF);
                    }
                }
            }
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        for opened in events.iter().filter(|a| !a.closed) {
            let latency = (now_ms - opened.window_end_ms).max(0) as f64 / 1000.0;
            metrics::histogram!(m::EVENT_LATENCY_SECONDS).record(latency);
        }
        Ok(())
    }
}

/// Publishes `events` on `topic`, keyed by host: every event is enqueued before any delivery is
/// awaited, so a batch with many events costs one broker round trip, not one per event.
async fn deliver(topic: &EventTopic, events: &[Anomaly]) -> anomaly_stream::Result<()> {
    let mut deliveries = Vec::with_capacity(events.len());
    for anomaly in events {
        let payload = serde_json::to_vec(anomaly).map_err(|e| sink_error(e.to_string()))?;
        let record = FutureRecord::to(&topic.topic)
            .key(&anomaly.entity)
            .payload(&payload);
        match topic.producer.send_result(record) {
            Ok(delivery) => deliveries.push(delivery),
            // The producer's queue is full: wait for what is in flight, then send this one the
            // patient way.
            Err((_, record)) => {
                await_deliveries(std::mem::take(&mut deliveries)).await?;
                topic
                    .producer
                    .send(record, Duration::from_secs(30))
                    .await
                    .map_err(|(e, _)| sink_error(format!("cannot publish an anomaly: {e}")))?;
            }
        }
    }
    await_deliveries(deliveries).await
}

/// Waits for every delivery report; the first failure is the error.
async fn await_deliveries(deliveries: Vec<DeliveryFuture>) -> anomaly_stream::Result<()> {
    for delivery in deliveries {
        delivery
            .await
            .map_err(|_| sink_error("the producer dropped an anomaly's delivery report".into()))?
            .map_err(|(e, _)| sink_error(format!("cannot publish an anomaly: {e}")))?;
    }
    Ok(())
}

fn sink_error(message: String) -> anomaly_stream::Error {
    anomaly_stream::Error::Sink {
        sink: "detector".to_string(),
        message,
    }
}

impl Sink<Record<String, Sample>> for DetectorSink {
    fn write(
        &self,
        batch: Vec<Record<String, Sample>>,
    ) -> BoxFuture<'_, anomaly_stream::Result<()>> {
        Box::pin(async move {
            let detections = self.detect(batch)?;
            self.publish(detections).await
        })
    }
}
