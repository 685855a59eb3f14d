//! The poll thread: consumer, rebalance callbacks and commits (its record flow is in `intake`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::producer::AsyncProducer;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Offset, Statistics, TopicPartitionList};

use super::batch::RecordBatch;
use super::queue::{Messages, Queue, Wakeup};
use super::worker::{Shared, WorkerHandle, lock, spawn_sinks, spawn_worker};
use super::{KILL, RUN, RuntimeStats, Settings};
use crate::error::{Error, Result};
use crate::metrics as m;
use crate::offsets::{CommitPoint, decode_metadata, encode_metadata};
use crate::topology::Topology;

/// One assigned partition as the poll thread sees it.
pub(super) struct Slot {
    pub(super) worker: WorkerHandle,
    /// Paused for backpressure: the first offset not handed to the worker, sought back to on
    /// resume.
    pub(super) paused_at: Option<u64>,
    /// Offsets below this were taken into `pending` or handed to the worker (later copies are
    /// dropped).
    pub(super) next_expected: u64,
    pub(super) last_committed: CommitPoint,
    /// Records taken from librdkafka and not yet handed to the worker.
    pub(super) pending: RecordBatch,
}

/// Most records taken from librdkafka in one round before the poll thread hands batches over
/// and does its periodic work (commits, ticks, resumes).
const POLL_ROUND: usize = 4096;

/// Longest sleep of an idle poll thread: its periodic work (commits, ticks, resumes) waits at
/// most this long.
const IDLE_WAIT: Duration = Duration::from_millis(20);

/// The slots, by topic and partition.
type Slots = HashMap<(String, i32), Slot>;

pub(crate) struct PollState {
    pub(super) shared: Arc<Shared>,
    /// Never subscribed: commits each partition's replay position as its offset in the group
    /// `<group.id>.replay`, for brokers that drop commit metadata (nisshi does).
    replay: BaseConsumer,
    rt: tokio::runtime::Handle,
    slots: Mutex<Slots>,
    /// Where every assigned partition's records are forwarded, so that the poll thread takes
    /// them a batch at a time (rdkafka's poll is a call and an allocation per message); the
    /// consumer's own queue keeps the rebalances, errors and statistics. Set once the consumer
    /// exists. Weak: the poll thread owns the queue and drops it before the consumer (a queue
    /// must not outlive its client, and the consumer's context holds this state).
    fetch: Mutex<Weak<Queue>>,
}

pub(crate) struct Context {
    state: Arc<PollState>,
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka client error; retrying");
        self.state
            .shared
            .stats
            .add_broker_error(format!("{error}: {reason}"));
    }

    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    metrics::gauge!(m::CONSUMER_LAG, "topic" => topic.clone(), "partition" => partition.to_string())
                        .set(p.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for Context {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.state.forward_fetches(consumer, tpl);
                if let Err(e) = self.state.assign(consumer, tpl) {
                    self.state.shared.stats.set_fatal(&e);
                }
                if let Err(e) = consumer.assign(tpl) {
                    self.state.shared.stats.set_fatal(&Error::from(e));
                }
                // librdkafka keeps a partition's pause flag across a revoke and a new assignment,
                // but the slot that paused it (and would resume it) is gone: a partition paused
                // for backpressure just before a rebalance would never be fetched again.
                if let Err(e) = consumer.resume(tpl) {
                    self.state.shared.stats.set_fatal(&Error::from(e));
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let commit = self.state.shared.control.load(Ordering::SeqCst) != KILL;
                self.state.revoke_all(consumer, commit);
                if let Err(e) = consumer.unassign() {
                    tracing::warn!(error = %e, "unassign failed");
                }
            }
            other => {
                tracing::error!(?other, "rebalance error");
                let _ = consumer.unassign();
            }
        }
    }
}

pub(super) type Consumer_ = BaseConsumer<Context>;

impl PollState {
    pub(super) fn lock_slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fetch_queue(&self) -> std::sync::MutexGuard<'_, Weak<Queue>> {
        self.fetch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends the records of every partition in `tpl` to the fetch queue.
    fn forward_fetches(&self, consumer: &Consumer_, tpl: &TopicPartitionList) {
        let Some(fetch) = self.fetch_queue().upgrade() else {
            return;
        };
        for e in tpl.elements() {
            // SAFETY: the consumer's client is live, and the fetch queue is its own.
            let forwarded = unsafe {
                Queue::forward_partition(
                    consumer.client().native_ptr(),
                    e.topic(),
                    e.partition(),
                    &fetch,
                )
            };
            if !forwarded {
                // Its records then come through the consumer's own queue, one poll each.
                tracing::warn!(
                    topic = e.topic(),
                    partition = e.partition(),
                    "could not forward a partition's records"
                );
            }
        }
    }

    /// Reads where each assigned partition stands, points the assignment at the replay start
    /// and starts a worker per partition.
    fn assign(&self, consumer: &Consumer_, tpl: &mut TopicPartitionList) -> Result<()> {
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let topology = &self.shared.topology;
        let mut points: HashMap<(String, i32), CommitPoint> = HashMap::new();
        if let Some((_, sink)) = topology.transactional_sink() {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (t, p) in &parts {
                by_topic.entry(t).or_default().push(*p);
            }
            for (topic, partitions) in by_topic {
                let stored = self.rt.block_on(sink.load_offsets(topic, &partitions))?;
                for o in stored {
                    points.insert(
                        (o.topic, o.partition),
                        CommitPoint {
                            offset: o.offset,
                            replay_from: o.replay_from.min(o.offset),
                        },
                    );
                }
            }
        } else {
            let committed = consumer.committed_offsets(tpl.clone(), Duration::from_secs(10))?;
            let replay = self
                .replay
                .committed_offsets(tpl.clone(), Duration::from_secs(10))?;
            for e in committed.elements() {
                if let Offset::Offset(o) = e.offset()
                    && o >= 0
                {
                    let mut point = decode_metadata(o as u64, e.metadata());
                    if point.replay_from == point.offset
                        && let Some(Offset::Offset(r)) = replay
                            .find_partition(e.topic(), e.partition())
                            .map(|r| r.offset())
                        && r >= 0
                    {
                        point.replay_from = (r as u64).min(point.offset);
                    }
                    points.insert((e.topic().to_owned(), e.partition()), point);
                }
            }
        }
        let mut slots = self.lock_slots();
        for (topic, partition) in parts {
            let point = points.get(&(topic.clone(), partition)).copied();
            if let Some(p) = point {
                tpl.set_partition_offset(&topic, partition, Offset::Offset(p.replay_from as i64))?;
            }
            let base = point.unwrap_or(CommitPoint {
                offset: 0,
                replay_from: 0,
            });
            let Some(task) = topology.instantiate(&topic, partition, base.offset) else {
                continue;
            };
            tracing::info!(%topic, partition, ?point, "partition assigned");
            metrics::counter!(m::PARTITIONS_ASSIGNED, "topic" => topic.clone()).increment(1);
            let worker = spawn_worker(&self.shared, &self.rt, task, base);
            self.shared
                .stats
                .lock_assigned()
                .insert((topic.clone(), partition));
            slots.insert(
                (topic, partition),
                Slot {
                    worker,
                    paused_at: None,
                    next_expected: base.replay_from,
                    last_committed: base,
                    pending: RecordBatch::default(),
                },
            );
        }
        Ok(())
    }

    /// Stops every worker at a record boundary; with `commit`, waits for their outputs to be
    /// acknowledged and commits where they stand.
    fn revoke_all(&self, consumer: &Consumer_, commit: bool) {
        let mut slots: Vec<((String, i32), Slot)> = self.lock_slots().drain().collect();
        if slots.is_empty() {
            return;
        }
        for (_, slot) in &mut slots {
            if let Some(stop) = slot.worker.stop.take() {
                let _ = stop.send(());
            }
        }
        if commit {
            let timeout = self.shared.settings.revoke_timeout + Duration::from_secs(1);
            for (_, slot) in &slots {
                let _ = slot.worker.done.recv_timeout(timeout);
            }
            self.commit_slots(consumer, slots.iter_mut().map(|(k, s)| (&*k, s)));
        }
        let mut assigned = self.shared.stats.lock_assigned();
        for ((topic, partition), _) in &slots {
            tracing::info!(%topic, partition, commit, "partition revoked");
            metrics::counter!(m::PARTITIONS_REVOKED, "topic" => topic.clone()).increment(1);
            assigned.remove(&(topic.clone(), *partition));
        }
    }

    /// Commits every given partition whose commit point moved (at-least-once mode only).
    fn commit_slots<'a>(
        &self,
        consumer: &Consumer_,
        slots: impl Iterator<Item = (&'a (String, i32), &'a mut Slot)>,
    ) {
        if self.shared.topology.is_exactly_once() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        let mut replay_tpl = TopicPartitionList::new();
        let mut moved = Vec::new();
        for ((topic, partition), slot) in slots {
            let point = lock(&slot.worker.tracker).committable();
            if point == slot.last_committed {
                continue;
            }
            if tpl
                .add_partition_offset(topic, *partition, Offset::Offset(point.offset as i64))
                .is_err()
            {
                continue;
            }
            if let Some(mut e) = tpl.find_partition(topic, *partition) {
                e.set_metadata(encode_metadata(point));
            }
            let _ = replay_tpl.add_partition_offset(
                topic,
                *partition,
                Offset::Offset(point.replay_from as i64),
            );
            moved.push((slot, point, topic));
        }
        if moved.is_empty() {
            return;
        }
        // The offset first, then the replay position: a crash in between leaves an older (smaller)
        // replay position, which is still a valid one.
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                if let Err(e) = self.replay.commit(&replay_tpl, CommitMode::Sync) {
                    tracing::warn!(error = %e, "committing replay positions failed");
                }
                self.shared.stats.add_commits(moved.len() as u64);
                for (slot, point, topic) in moved {
                    metrics::counter!(m::COMMITS, "topic" => topic.clone()).increment(1);
                    slot.last_committed = point;
                }
            }
            Err(e) => tracing::warn!(error = %e, "commit failed; retrying later"),
        }
    }

    fn commit(&self, consumer: &Consumer_) {
        let mut slots = self.lock_slots();
        self.commit_slots(consumer, slots.iter_mut());
    }
}

pub(super) fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Creates the clients and sink tasks and starts the poll thread.
pub(crate) fn spawn(
    topology: Topology,
    config: Vec<(String, String)>,
    settings: Settings,
    rt: tokio::runtime::Handle,
    stats: Arc<RuntimeStats>,
    control: Arc<AtomicU8>,
) -> Result<JoinHandle<Result<()>>> {
    let has = |key: &str| config.iter().any(|(k, _)| k == key);
    let mut consumer_config = ClientConfig::new();
    let mut producer_config = ClientConfig::new();
    for (k, v) in &config {
        consumer_config.set(k, v);
        if !matches!(
            k.as_str(),
            "group.id"
                | "auto.offset.reset"
                | "session.timeout.ms"
                | "heartbeat.interval.ms"
                | "partition.assignment.strategy"
                | "statistics.interval.ms"
                | "max.poll.interval.ms"
        ) {
            producer_config.set(k, v);
        }
    }
    consumer_config
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    for (key, default) in [
        ("partition.assignment.strategy", "range"),
        ("auto.offset.reset", "earliest"),
        ("statistics.interval.ms", "1000"),
    ] {
        if !has(key) {
            consumer_config.set(key, default);
        }
    }
    producer_config
        .set("enable.idempotence", "true")
        .set("acks", "all");
    if !has("linger.ms") {
        producer_config.set("linger.ms", "5");
    }
    let producer: AsyncProducer = producer_config.create()?;
    let topology = Arc::new(topology);
    let sinks = spawn_sinks(&rt, &topology, &settings, &stats);
    let shared = Arc::new(Shared {
        topology: Arc::clone(&topology),
        producer,
        sinks,
        stats: Arc::clone(&stats),
        control: Arc::clone(&control),
        settings: settings.clone(),
    });
    let group = config
        .iter()
        .find(|(k, _)| k == "group.id")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let replay: BaseConsumer = consumer_config
        .clone()
        .set("group.id", format!("{group}.replay"))
        .set("statistics.interval.ms", "0")
        .create()?;
    let state = Arc::new(PollState {
        shared,
        replay,
        rt,
        slots: Mutex::new(HashMap::new()),
        fetch: Mutex::new(Weak::new()),
    });
    let consumer: Consumer_ = consumer_config.create_with_context(Context {
        state: Arc::clone(&state),
    })?;
    let client = consumer.client().native_ptr();
    let wakeup = Wakeup::new(IDLE_WAIT)
        .map_err(|e| Error::Kafka(format!("creating the poll thread's wake-up: {e}")))?;
    // SAFETY: the consumer's client is live; `Poller` drops both handles before the consumer.
    let (fetch, events) = unsafe { (Queue::new(client), Queue::consumer(client)) };
    let (Some(fetch), Some(events)) = (fetch, events) else {
        return Err(Error::Kafka("librdkafka gave no consumer queues".into()));
    };
    fetch.signal_to(wakeup.signal());
    events.signal_to(wakeup.signal());
    let fetch = Arc::new(fetch);
    *state.fetch_queue() = Arc::downgrade(&fetch);
    let poller = Poller {
        queues: Queues {
            fetch,
            events,
            wakeup,
        },
        consumer,
        state,
    };
    poller.consumer.subscribe(&topology.source_topics())?;
    std::thread::Builder::new()
        .name("anomaly-stream-poll".into())
        .spawn(move || poll_loop(poller, settings))
        .map_err(|e| Error::Kafka(format!("spawning the poll thread: {e}")))
}

/// What the poll thread owns. Fields drop in declaration order, which is the order that must
/// hold: the queues before the consumer (a queue handle must not outlive its client).
struct Poller {
    queues: Queues,
    consumer: Consumer_,
    state: Arc<PollState>,
}

/// The poll thread's queues and what wakes it.
struct Queues {
    /// Every assigned partition's records.
    fetch: Arc<Queue>,
    /// The consumer's own queue, held to signal the wake-up.
    events: Queue,
    wakeup: Wakeup,
}

impl Drop for Queues {
    fn drop(&mut self) {
        // librdkafka must stop writing to the socket before it closes (the consumer's queue
        // outlives this handle).
        self.fetch.stop_signalling();
        self.events.stop_signalling();
    }
}

fn poll_loop(poller: Poller, settings: Settings) -> Result<()> {
    let (consumer, state, queues) = (&poller.consumer, &poller.state, &poller.queues);
    let shared = Arc::clone(&state.shared);
    let mut last_commit = Instant::now();
    let mut last_tick = Instant::now();
    let mut messages = Messages::default();
    while shared.control.load(Ordering::SeqCst) == RUN && shared.stats.fatal().is_none() {
        // Everything librdkafka has fetched, up to a round's worth, then the batches go out.
        let mut taken = state.take_fetched(consumer, &queues.fetch, &mut messages, POLL_ROUND);
        // Rebalances, errors and statistics (and the records of a partition that could not be
        // forwarded).
        for _ in 0..POLL_ROUND {
            match consumer.poll(Duration::ZERO) {
                Some(Ok(msg)) => state.on_message(consumer, &msg),
                Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
                None => break,
            }
            taken += 1;
        }
        state.hand_over_all(consumer);
        state.resume_ready(consumer);
        if last_commit.elapsed() >= settings.commit_interval {
            state.commit(consumer);
            shared.stats.publish_buffered();
            last_commit = Instant::now();
        }
        if last_tick.elapsed() >= settings.tick_interval {
            state.tick_all(wall_clock_ms());
            last_tick = Instant::now();
        }
        if taken == 0 {
            // Both queues signal when they stop being empty, so nothing waits here unseen.
            queues.wakeup.wait();
        }
    }
    let kill = shared.control.load(Ordering::SeqCst) == KILL;
    // Graceful stop or failure: commit what is acknowledged (safe either way). Kill: nothing.
    state.revoke_all(consumer, !kill);
    consumer.unsubscribe();
    // Serve the resulting revoke callback (no partitions left, so nothing to do) and leave the
    // group before the consumer is closed.
    for _ in 0..3 {
        let _ = consumer.poll(Duration::from_millis(10));
    }
    // The messages and the queues go back to librdkafka before the consumer closes.
    drop(messages);
    drop(poller);
    match shared.stats.fatal() {
        Some(message) => Err(Error::Kafka(message)),
        None => Ok(()),
    }
}
