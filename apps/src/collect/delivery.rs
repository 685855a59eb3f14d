//! Streaming samples to Kafka through a bounded buffer that survives broker outages.
//!
//! The sampling loop [`Outbox::push`]es every sample; [`Delivery::run`] sends from the front of the
//! buffer, keyed by host, with an idempotent producer (`enable.idempotence=true`, `acks=all`), and
//! removes a sample only once the broker acknowledged it. While the broker is down, sends fail after
//! [`MESSAGE_TIMEOUT`], the samples stay buffered and the batch is retried with exponential backoff;
//! when the buffer is full the oldest sample is evicted and counted. When the broker is back, the
//! buffer drains in order: all samples of a host share one key, hence one partition, and the
//! idempotent producer keeps the order of what it was given.
//!
//! Delivery is at least once: a send that timed out may still have been written by the broker, and
//! is sent again.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anomaly_core::Sample;
use anomaly_core::host::DeliveryBuffer;
use anomaly_stream::codec::{Codec, JsonCodec, PostcardCodec};
use anomaly_stream::kafka::AsyncProducer;
use anyhow::Context;
use metrics::{Counter, Gauge, counter, gauge};
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::metric_names as names;
use crate::kafka_options::{KafkaOptions, idempotent_producer};

/// How long librdkafka tries to deliver one send before reporting it failed.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Samples handed to the producer at once.
const BATCH: usize = 500;
/// First and longest pause after a failed batch.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How samples are encoded on the topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SampleFormat {
    /// `anomaly_core::Sample` as JSON: readable by any consumer.
    #[default]
    Json,
    /// `anomaly_core::Sample` as postcard: compact, for consumers that share the Rust type.
    Postcard,
}

impl SampleFormat {
    /// The codec of this format.
    pub fn codec(self) -> Box<dyn Codec<Sample>> {
        match self {
            Self::Json => Box::new(JsonCodec),
            Self::Postcard => Box::new(PostcardCodec),
        }
    }
}

/// One encoded sample awaiting delivery.
#[derive(Debug, Clone)]
struct Record {
    timestamp_ms: i64,
    payload: Vec<u8>,
}

struct Shared {
    buffer: Mutex<DeliveryBuffer<Record>>,
    pushed: Notify,
    depth: Gauge,
    dropped: Counter,
    /// Set at the first eviction of an outage, cleared by the next delivery: one log line per
    /// outage, not one per dropped sample.
    dropping: AtomicBool,
}

impl Shared {
    fn buffer(&self) -> MutexGuard<'_, DeliveryBuffer<Record>> {
        // A panic while holding the lock cannot leave the buffer half-updated in a way that matters
        // more than losing the collector, so a poisoned lock is used as is.
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sampling loop's end of the buffer.
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
    codec: Arc<dyn Codec<Sample>>,
}

impl Outbox {
    /// Encodes `sample` and buffers it for delivery, evicting the oldest sample when the buffer is
    /// full.
    pub fn push(&self, sample: &Sample) -> anyhow::Result<()> {
        let mut payload = Vec::with_capacity(128);
        self.codec
            .encode(sample, &mut payload)
            .context("cannot encode a sample")?;
        let record = Record {
            timestamp_ms: sample.timestamp_ms,
            payload,
        };
        let (depth, evicted) = {
            let mut buffer = self.shared.buffer();
            let before = buffer.dropped();
            buffer.push(record);
            (buffer.len(), buffer.dropped() - before)
        };
        if evicted > 0 {
            self.shared.dropped.increment(evicted);
            if !self.shared.dropping.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    capacity = self.shared.buffer().capacity(),
                    "delivery buffer full: dropping the oldest samples until the broker is back"
                );
            }
        }
        self.shared.depth.set(depth as f64);
        self.shared.pushed.notify_one();
        Ok(())
    }

    /// Samples buffered and not yet acknowledged.
    pub fn depth(&self) -> usize {
        self.shared.buffer().len()
    }
}

/// What delivery achieved by the time it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Samples the broker acknowledged.
    pub delivered: u64,
    /// Failed delivery attempts (each retried while time allowed).
    pub errors: u64,
    /// Samples evicted because the buffer was full.
    pub dropped: u64,
    /// Samples still buffered when the flush deadline passed.
    pub undelivered: usize,
}

/// The Kafka end of the buffer.
pub struct Delivery {
    producer: AsyncProducer<QuietContext>,
    topic: String,
    key: String,
    shared: Arc<Shared>,
    delivered: Counter,
    errors: Counter,
}

/// Settings of [`Delivery::new`].
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Topic the samples go to.
    pub topic: String,
    /// Host name: the record key and the `host` label.
    pub host: String,
    /// Encoding of the samples.
    pub format: SampleFormat,
    /// Most samples buffered while the broker is unreachable.
    pub capacity: usize,
    /// librdkafka properties set after the producer's own.
    pub options: KafkaOptions,
}

impl Delivery {
    /// Creates the producer (no connection is made yet) and the buffer; returns the delivery task's
    /// state and the sampling loop's [`Outbox`].
    pub fn new(config: &DeliveryConfig) -> anyhow::Result<(Self, Outbox)> {
        let producer = config
            .options
            .apply(
                idempotent_producer(&config.brokers)
                    .set("client.id", format!("anomaly-collect-{}", config.host))
                    .set(
                        "message.timeout.ms",
                        MESSAGE_TIMEOUT.as_millis().to_string(),
                    )
                    .set("linger.ms", "5")
                    // Come back quickly after an outage: the buffer is waiting.
                    .set("reconnect.backoff.ms", "100")
                    .set("reconnect.backoff.max.ms", "1000"),
            )
            .create_with_context(QuietContext)
            .with_context(|| format!("cannot create a Kafka producer for {}", config.brokers))?;
        let labels = [(names::HOST, config.host.clone())];
        let shared = Arc::new(Shared {
            buffer: Mutex::new(DeliveryBuffer::new(config.capacity)?),
            pushed: Notify::new(),
            depth: gauge!(names::BUFFER_DEPTH, &labels),
            dropped: counter!(names::DROPPED_SAMPLES_TOTAL, &labels),
            dropping: AtomicBool::new(false),
        });
        shared.depth.set(0.0);
        shared.dropped.increment(0);
        let outbox = Outbox {
            shared: shared.clone(),
            codec: Arc::from(config.format.codec()),
        };
        let delivery = Self {
            producer,
            topic: config.topic.clone(),
            key: config.host.clone(),
            shared,
            delivered: counter!(names::DELIVERED_SAMPLES_TOTAL, &labels),
            errors: counter!(names::DELIVERY_ERRORS_TOTAL, &labels),
        };
        delivery.delivered.increment(0);
        delivery.errors.increment(0);
        Ok((delivery, outbox))
    }

    /// Delivers buffered samples until `shutdown` turns true (or its sender is dropped), then keeps
    /// delivering until the buffer is empty or `flush_timeout` has passed, whichever comes first.
    pub async fn run(
        self,
        shutdown: watch::Receiver<bool>,
        flush_timeout: Duration,
    ) -> DeliveryReport {
        let mut stop = Stop {
            shutdown,
            flush_timeout,
            deadline: None,
        };
        let mut report = DeliveryReport::default();
        let mut backoff = MIN_BACKOFF;
        let finished = 'deliver: loop {
            stop.check();
            let batch: Vec<(u64, Record)> = self
                .shared
                .buffer()
                .front(BATCH)
                .map(|(seq, record)| (seq, record.clone()))
                .collect();
            if batch.is_empty() {
                if stop.deadline.is_some() {
                    break 'deliver true;
                }
                stop.idle(self.shared.pushed.notified()).await;
                continue;
            }

            let mut failure: Option<String> = None;
            let mut in_flight = Vec::with_capacity(batch.len());
            for (seq, record) in &batch {
                let send = self.producer.send_result(
                    FutureRecord::to(&self.topic)
                        .key(&self.key)
                        .payload(&record.payload)
                        .timestamp(record.timestamp_ms),
                );
                match send {
                    Ok(delivery) => in_flight.push((*seq, delivery)),
                    Err((e, _)) => {
                        // The local queue is full: retry the rest after a pause.
                        self.errors.increment(1);
                        report.errors += 1;
                        failure = Some(e.to_string());
                        break;
                    }
                }
            }
            for (seq, delivery) in in_flight {
                let Some(outcome) = stop.guard(delivery).await else {
                    break 'deliver false;
                };
                match outcome {
                    Ok(Ok(_)) => {
                        self.shared.buffer().acknowledge(seq);
                        self.shared.dropping.store(false, Ordering::Relaxed);
                        self.delivered.increment(1);
                        report.delivered += 1;
                    }
                    Ok(Err((e, _))) => {
                        self.errors.increment(1);
                        report.errors += 1;
                        failure = Some(e.to_string());
                    }
                    Err(_canceled) => {
                        self.errors.increment(1);
                        report.errors += 1;
                        failure = Some("the producer dropped the delivery report".into());
                    }
                }
            }
            let depth = self.shared.buffer().len();
            self.shared.depth.set(depth as f64);

            match failure {
                None => backoff = MIN_BACKOFF,
                Some(error) => {
                    tracing::warn!(
                        topic = %self.topic,
                        %error,
                        buffered = depth,
                        retry_in_ms = backoff.as_millis() as u64,
                        "cannot deliver samples to Kafka; keeping them buffered"
                    );
                    if stop.guard(tokio::time::sleep(backoff)).await.is_none() {
                        break 'deliver false;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };

        if finished {
            // Everything buffered was acknowledged; nothing should be left, but bound the wait anyway.
            let producer = self.producer.clone();
            let left = stop.remaining();
            let _ = tokio::task::spawn_blocking(move || producer.flush(left)).await;
        }
        let buffer = self.shared.buffer();
        report.dropped = buffer.dropped();
        report.undelivered = buffer.len();
        report
    }
}

/// The producer's client context: librdkafka reports every failed reconnection attempt as a global
/// error, several a second while the broker is down. Those go to debug (the delivery loop warns once
/// per failed batch, and the buffer metrics tell the rest); other errors stay warnings.
struct QuietContext;

impl ClientContext for QuietContext {
    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(
                RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::Resolve,
            ) => tracing::debug!(%error, reason, "Kafka broker unreachable"),
            _ => tracing::warn!(%error, reason, "Kafka client error"),
        }
    }
}

/// The shutdown state of the delivery task.
struct Stop {
    shutdown: watch::Receiver<bool>,
    flush_timeout: Duration,
    /// Set once shutdown was requested: delivery stops by then.
    deadline: Option<Instant>,
}

impl Stop {
    fn begin_flush(&mut self) {
        if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.flush_timeout);
        }
    }

    /// Notes a shutdown request that arrived while nobody was waiting.
    fn check(&mut self) {
        if *self.shutdown.borrow() || self.shutdown.has_changed().is_err() {
            self.begin_flush();
        }
    }

    fn remaining(&self) -> Duration {
        self.deadline.map_or(self.flush_timeout, |d| {
            d.saturating_duration_since(Instant::now())
        })
    }

    /// Awaits `fut` (a new sample) or a shutdown request, whichever comes first.
    async fn idle<F: Future>(&mut self, fut: F) {
        tokio::select! {
            _ = fut => {}
            changed = self.shutdown.changed() => {
                if changed.is_err() || *self.shutdown.borrow() {
                    self.begin_flush();
                }
            }
        }
    }

    /// Awaits `fut`, noting a shutdown request on the way; `None` once the flush deadline passed.
    async fn guard<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        loop {
            self.check();
            if let Some(deadline) = self.deadline {
                return tokio::time::timeout_at(deadline, &mut fut).await.ok();
            }
            tokio::select! {
                out = &mut fut => return Some(out),
                changed = self.shutdown.changed() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        self.begin_flush();
                    }
                }
            }
        }
    }
}
