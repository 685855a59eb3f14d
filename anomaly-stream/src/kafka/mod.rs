//! The Kafka runtime: runs a [`Topology`] in a consumer group, with an idempotent producer for
//! topic sinks and dead letters. rdkafka appears only in this module.
//!
//! # Threads and tasks
//!
//! * One **poll thread** (a plain OS thread, not a tokio worker) owns the `BaseConsumer`: it
//!   polls, hands records to partition workers in batches through bounded channels, pauses
//!   partitions whose channel is full, commits, and runs the rebalance callbacks (which may block
//!   it safely). Every assigned partition's records are forwarded to one queue of librdkafka's
//!   that the thread takes hundreds of messages from per call (rdkafka's `poll` costs a call and
//!   an allocation per message); the consumer's own queue keeps rebalances, errors and
//!   statistics. Both wake the thread through a socket when they stop being empty, so an idle
//!   thread sleeps. It takes every record librdkafka has already fetched (up to
//!   [`poll_batch`](KafkaRuntimeBuilder::poll_batch) per partition) before handing a partition's
//!   batch over; the batch's buffers come back to the poll thread for reuse, so handing records
//!   over allocates nothing in steady state and wakes a worker once per batch.
//! * One **worker task** per assigned partition owns that partition's operator instance
//!   ([`PartitionTask`](crate::topology)) and its offset bookkeeping
//!   ([`PartitionOffsets`](crate::offsets::PartitionOffsets)); it produces topic outputs and
//!   feeds sink channels.
//! * One **acker task** per partition awaits the producer's delivery reports in order; one
//!   **sink task** per async sink writes batches and acknowledges them.
//!
//! # Delivery
//!
//! *At-least-once* (default): a partition's committed offset is the lowest offset with an
//! unacknowledged output (or the next offset to process), so a commit never passes an output
//! that is not durable. Each commit also stores where replay must start to rebuild window state:
//! in the commit metadata ([`offsets::encode_metadata`](crate::offsets::encode_metadata)) and,
//! because some brokers (nisshi) drop commit metadata, as the committed offset of the same
//! partition in the auxiliary group `<group.id>.replay` (committed right after the main offset,
//! so a crash in between leaves an older, still valid, replay position). On assignment the
//! consumer starts at the replay position and suppresses outputs of records below the committed
//! offset, so no window is emitted twice. Replay positions come from checkpoints of the
//! operators' `min_retained_position` taken at or before the committed offset.
//!
//! *Exactly-once* (a topology ending in [`to_transactional`](crate::Stream::to_transactional)):
//! each worker writes its outputs and its partition's [`SourceOffset`](crate::SourceOffset) in
//! one sink transaction, and on assignment the consumer starts from the offsets the sink
//! returns; Kafka commits are not used.
//!
//! # Rebalances
//!
//! The eager protocol is used (`partition.assignment.strategy=range` unless set). On revoke the
//! callback stops every worker at a record boundary, waits (up to
//! [`revoke_timeout`](KafkaRuntimeBuilder::revoke_timeout)) for their outputs to be
//! acknowledged, and commits synchronously before the partitions move, so the next owner neither
//! loses nor repeats outputs.
//!
//! # Backpressure
//!
//! Every queue is bounded: poll thread to worker ([`queue_capacity`](KafkaRuntimeBuilder::queue_capacity)),
//! worker to sink and worker to acker ([`sink_capacity`](KafkaRuntimeBuilder::sink_capacity)).
//! A slow sink fills its channel, the worker waits, and its input channel fills. The poll thread
//! then waits up to [`backpressure_wait`](KafkaRuntimeBuilder::backpressure_wait) for room, which
//! is all a worker that is merely slower than the broker needs: the partition streams at the
//! worker's pace. When the wait runs out (a stalled sink), the poll thread pauses that partition
//! (remembering the first record it could not enqueue, which it seeks back to when resuming)
//! while it keeps polling, so group membership is kept and memory stays bounded.
//! [`RuntimeStats::buffered`] and the [`BUFFERED_RECORDS`](crate::metrics::BUFFERED_RECORDS) gauge
//! show the queued records. Resuming re-fetches from the broker, so each pause costs about one
//! `fetch.wait.max.ms` (librdkafka default 500 ms).

mod batch;
mod consumer;
mod intake;
mod producer;
mod queue;
mod worker;

pub use producer::{AsyncProducer, Delivery, DeliveryFuture, OwnedDeliveryResult};

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::metrics as m;
use crate::topology::Topology;

/// The Kafka client's (librdkafka's) error: the source of [`Error::KafkaClient`]. Named here so
/// that only this module knows the client library.
pub use rdkafka::error::KafkaError as ClientError;

/// Configures a [`KafkaRuntime`].
#[derive(Debug)]
pub struct KafkaRuntimeBuilder {
    topology: Topology,
    config: Vec<(String, String)>,
    settings: Settings,
}

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub queue_capacity: usize,
    pub poll_batch: usize,
    pub backpressure_wait: Duration,
    pub sink_capacity: usize,
    pub sink_batch: usize,
    pub commit_interval: Duration,
    pub idle_flush: Duration,
    pub tick_interval: Duration,
    pub checkpoint_interval: Duration,
    pub revoke_timeout: Duration,
}

impl Settings {
    /// Records per batch handed to a worker: at most `poll_batch`, and at most half the queue so
    /// a small queue still holds two batches.
    pub(crate) fn batch_records(&self) -> usize {
        self.poll_batch.min(self.queue_capacity / 2).max(1)
    }

    /// Batches a worker's queue holds: `queue_capacity` records in all.
    pub(crate) fn queued_batches(&self) -> usize {
        (self.queue_capacity / self.batch_records()).max(1)
    }
}

impl KafkaRuntimeBuilder {
    /// Sets a librdkafka property for both the consumer and the producer (e.g.
    /// `"bootstrap.servers"`, `"auto.offset.reset"`, `"session.timeout.ms"`).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.config.retain(|(k, _)| *k != key);
        self.config.push((key, value.into()));
        self
    }

    /// `bootstrap.servers`.
    pub fn brokers(self, brokers: impl Into<String>) -> Self {
        self.set("bootstrap.servers", brokers)
    }

    /// `group.id`: instances with the same group split the partitions.
    pub fn group_id(self, group: impl Into<String>) -> Self {
        self.set("group.id", group)
    }

    /// Records queued per partition between the poll thread and its worker (default 1024).
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.settings.queue_capacity = n.max(1);
        self
    }

    /// Most records handed to a partition's worker at once (default 256; never more than half
    /// of [`queue_capacity`](Self::queue_capacity)). Larger batches cost fewer wake-ups; a batch
    /// is handed over as soon as librdkafka has nothing more fetched for it, so a quiet
    /// partition's records are not held back.
    pub fn poll_batch(mut self, n: usize) -> Self {
        self.settings.poll_batch = n.max(1);
        self
    }

    /// How long the poll thread waits for room in a partition's full queue before it pauses the
    /// partition (default 100 ms). A worker that is merely slower than the broker drains its
    /// queue within this wait, so the partition streams at the worker's pace; only a stalled
    /// worker (a sink that is down) gets its partition paused, which costs a re-fetch on resume.
    pub fn backpressure_wait(mut self, d: Duration) -> Self {
        self.settings.backpressure_wait = d;
        self
    }

    /// Outputs queued per sink and per partition's delivery reports (default 1024).
    pub fn sink_capacity(mut self, n: usize) -> Self {
        self.settings.sink_capacity = n.max(1);
        self
    }

    /// Largest batch handed to an async sink (default 256).
    pub fn sink_batch(mut self, n: usize) -> Self {
        self.settings.sink_batch = n.max(1);
        self
    }

    /// How often offsets are committed (default 200 ms); for exactly-once also the longest a
    /// worker under steady load waits before writing a transaction.
    pub fn commit_interval(mut self, d: Duration) -> Self {
        self.settings.commit_interval = d;
        self
    }

    /// Exactly-once: how soon after its input has drained a worker writes what it holds
    /// (default 10 ms), rather than waiting out the [`commit_interval`](Self::commit_interval).
    /// A partition that keeps up with its traffic so commits each burst within about this
    /// delay; one under load still writes a transaction per [`sink_batch`](Self::sink_batch)
    /// records. Shorter means fresher results and more (smaller) transactions.
    pub fn idle_flush(mut self, d: Duration) -> Self {
        self.settings.idle_flush = d;
        self
    }

    /// How often operators get the wall-clock time for idle closing (default 1 s).
    pub fn tick_interval(mut self, d: Duration) -> Self {
        self.settings.tick_interval = d;
        self
    }

    /// How long a revoke or shutdown waits for outstanding outputs (default 10 s).
    pub fn revoke_timeout(mut self, d: Duration) -> Self {
        self.settings.revoke_timeout = d;
        self
    }

    /// Validates the configuration.
    pub fn build(self) -> Result<KafkaRuntime> {
        for key in ["bootstrap.servers", "group.id"] {
            if !self.config.iter().any(|(k, _)| k == key) {
                return Err(Error::Kafka(format!("{key} is not set")));
            }
        }
        Ok(KafkaRuntime {
            topology: self.topology,
            config: self.config,
            settings: self.settings,
        })
    }
}

/// A configured runtime; [`start`](Self::start) it inside a tokio runtime.
///
/// ```no_run
/// use anomaly_stream::kafka::KafkaRuntime;
/// use anomaly_stream::{JsonCodec, TopologyBuilder, Utf8Codec};
///
/// # async fn run() -> anomaly_stream::Result<()> {
/// let builder = TopologyBuilder::new().dead_letter_topic("metrics-dlq");
/// builder
///     .stream_with::<String, f64>("metrics", Utf8Codec, JsonCodec)
///     .filter(|_, cpu| *cpu > 90.0)
///     .to_topic_with("hot", Utf8Codec, JsonCodec);
/// let running = KafkaRuntime::builder(builder.build()?)
///     .brokers("127.0.0.1:9092")
///     .group_id("detector")
///     .build()?
///     .start()?;
/// tokio::signal::ctrl_c().await.ok();
/// running.shutdown().await
/// # }
/// ```
#[derive(Debug)]
pub struct KafkaRuntime {
    topology: Topology,
    config: Vec<(String, String)>,
    settings: Settings,
}

impl KafkaRuntime {
    /// A builder for `topology` with default settings.
    pub fn builder(topology: Topology) -> KafkaRuntimeBuilder {
        KafkaRuntimeBuilder {
            topology,
            config: Vec::new(),
            settings: Settings {
                queue_capacity: 1024,
                poll_batch: 256,
                backpressure_wait: Duration::from_millis(100),
                sink_capacity: 1024,
                sink_batch: 256,
                commit_interval: Duration::from_millis(200),
                idle_flush: Duration::from_millis(10),
                tick_interval: Duration::from_secs(1),
                checkpoint_interval: Duration::from_millis(50),
                revoke_timeout: Duration::from_secs(10),
            },
        }
    }

    /// Creates the consumer and producer, subscribes, and starts the poll thread and sink
    /// tasks on the current tokio runtime. Fails outside a tokio runtime or if the clients
    /// cannot be created.
    pub fn start(self) -> Result<RunningRuntime> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Kafka("KafkaRuntime::start needs a tokio runtime".into()))?;
        let stats = Arc::new(RuntimeStats::default());
        let control = Arc::new(AtomicU8::new(RUN));
        let thread = consumer::spawn(
            self.topology,
            self.config,
            self.settings,
            handle,
            Arc::clone(&stats),
            Arc::clone(&control),
        )?;
        Ok(RunningRuntime {
            stats,
            control,
            thread: Some(thread),
        })
    }
}

pub(crate) const RUN: u8 = 0;
pub(crate) const GRACEFUL: u8 = 1;
pub(crate) const KILL: u8 = 2;

/// Counters a running runtime exposes to its owner (the same figures also go to `metrics`).
#[derive(Debug, Default)]
pub struct RuntimeStats {
    buffered: AtomicI64,
    max_buffered: AtomicI64,
    processed: AtomicU64,
    dead_letters: AtomicU64,
    pauses: AtomicU64,
    commits: AtomicU64,
    assigned: Mutex<BTreeSet<(String, i32)>>,
    fatal: Mutex<Option<String>>,
    /// The current streak of errors librdkafka reported about the brokers.
    broker_errors: Mutex<Option<BrokerErrors>>,
}

/// Errors about the brokers, each no later than [`BROKER_ERROR_STALE_AFTER`] after the one
/// before.
#[derive(Debug)]
struct BrokerErrors {
    latest: String,
    first_at: Instant,
    latest_at: Instant,
}

/// A broker error this recent means the brokers still cannot be reached: while they cannot,
/// librdkafka reports a failure on every reconnection attempt (its backoff tops out at 10 s).
const BROKER_ERROR_STALE_AFTER: Duration = Duration::from_secs(15);
/// Errors must go on this long to count: a single dropped connection that is made again at
/// once (a broker closing idle connections) is no outage.
const BROKER_ERROR_PERSISTS: Duration = Duration::from_secs(2);

impl RuntimeStats {
    pub(crate) fn add_buffered(&self, n: i64) {
        let now = self.buffered.fetch_add(n, Ordering::Relaxed) + n;
        self.max_buffered.fetch_max(now, Ordering::Relaxed);
    }

    /// Sets the [`BUFFERED_RECORDS`](m::BUFFERED_RECORDS) gauge. The poll thread calls it on
    /// every commit tick rather than on every change: a gauge update costs a registry lookup,
    /// and the count changes three times per record.
    pub(crate) fn publish_buffered(&self) {
        metrics::gauge!(m::BUFFERED_RECORDS).set(self.buffered() as f64);
    }

    /// Records currently queued between the poll thread, workers and sinks.
    pub fn buffered(&self) -> i64 {
        self.buffered.load(Ordering::Relaxed)
    }

    /// The largest [`buffered`](Self::buffered) value seen.
    pub fn max_buffered(&self) -> i64 {
        self.max_buffered.load(Ordering::Relaxed)
    }

    /// Source records processed (replayed ones included).
    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }

    pub(crate) fn add_processed(&self, n: u64) {
        self.processed.fetch_add(n, Ordering::Relaxed);
    }

    /// Records sent to the dead-letter topic.
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters.load(Ordering::Relaxed)
    }

    pub(crate) fn inc_dead_letters(&self) {
        self.dead_letters.fetch_add(1, Ordering::Relaxed);
    }

    /// Times a partition was paused for backpressure.
    pub fn pauses(&self) -> u64 {
        self.pauses.load(Ordering::Relaxed)
    }

    pub(crate) fn inc_pauses(&self) {
        self.pauses.fetch_add(1, Ordering::Relaxed);
    }

    /// Partition offsets committed.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    pub(crate) fn add_commits(&self, n: u64) {
        self.commits.fetch_add(n, Ordering::Relaxed);
    }

    /// The partitions this instance owns now.
    pub fn assigned(&self) -> Vec<(String, i32)> {
        self.lock_assigned().iter().cloned().collect()
    }

    pub(crate) fn lock_assigned(&self) -> std::sync::MutexGuard<'_, BTreeSet<(String, i32)>> {
        self.assigned.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What is wrong with the brokers, while librdkafka keeps failing to reach them: errors
    /// for at least 2 s, the latest within 15 s (it retries meanwhile, and consumption resumes
    /// by itself once they answer).
    pub fn broker_problem(&self) -> Option<String> {
        let errors = self.broker_errors.lock().unwrap_or_else(|e| e.into_inner());
        errors
            .as_ref()
            .filter(|e| {
                e.latest_at.elapsed() < BROKER_ERROR_STALE_AFTER
                    && e.latest_at - e.first_at >= BROKER_ERROR_PERSISTS
            })
            .map(|e| e.latest.clone())
    }

    pub(crate) fn add_broker_error(&self, error: String) {
        let now = Instant::now();
        let mut errors = self.broker_errors.lock().unwrap_or_else(|e| e.into_inner());
        let first_at = match errors.as_ref() {
            Some(e) if now - e.latest_at < BROKER_ERROR_STALE_AFTER => e.first_at,
            _ => now,
        };
        *errors = Some(BrokerErrors {
            latest: error,
            first_at,
            latest_at: now,
        });
    }

    /// The error that stopped the runtime, if one did.
    pub fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_fatal(&self, e: &Error) {
        let mut fatal = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        if fatal.is_none() {
            // The whole chain: the client's own error is the source of ours.
            let mut message = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                message = format!("{message}: {cause}");
                source = cause.source();
            }
            tracing::error!(error = %message, "stream runtime failing");
            *fatal = Some(message);
        }
    }
}

/// A started runtime. Dropping it without [`shutdown`](Self::shutdown) or
/// [`kill`](Self::kill) kills it (no final commit).
#[derive(Debug)]
pub struct RunningRuntime {
    stats: Arc<RuntimeStats>,
    control: Arc<AtomicU8>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl RunningRuntime {
    /// Live counters.
    pub fn stats(&self) -> &Arc<RuntimeStats> {
        &self.stats
    }

    /// Whether the runtime stopped by itself (after a fatal error).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    async fn stop(mut self, how: u8) -> Result<()> {
        self.control.store(how, Ordering::SeqCst);
        let thread = self.thread.take();
        match thread {
            Some(t) => tokio::task::spawn_blocking(move || t.join())
                .await
                .map_err(|e| Error::Kafka(format!("joining the poll thread: {e}")))?
                .map_err(|_| Error::Kafka("the poll thread panicked".into()))?,
            None => Ok(()),
        }
    }

    /// Graceful stop: finishes in-flight records, waits for their outputs, commits, leaves the
    /// group. Returns the fatal error if the runtime had failed.
    pub async fn shutdown(self) -> Result<()> {
        self.stop(GRACEFUL).await
    }

    /// Simulated crash: stops at once without committing (outputs already handed to sinks may
    /// still complete) and leaves the group. After a restart, uncommitted records are processed
    /// again.
    pub async fn kill(self) -> Result<()> {
        self.stop(KILL).await
    }
}

impl Drop for RunningRuntime {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.control.store(KILL, Ordering::SeqCst);
        }
    }
}
