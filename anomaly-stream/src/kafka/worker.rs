//! Partition workers, delivery ackers and sink tasks.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use tokio::sync::{mpsc, oneshot};

use super::batch::{BatchPool, RecordBatch};
use super::consumer::wall_clock_ms;
use super::producer::{AsyncProducer, DeliveryFuture};
use super::{KILL, RuntimeStats, Settings};
use crate::error::{Error, Result};
use crate::metrics as m;
use crate::offsets::{CommitPoint, PartitionOffsets};
use crate::sink::{ErasedSink, Item, SourceOffset};
use crate::topology::{Emitted, OutgoingMessage, PartitionTask, SinkKind, Topology};

pub(crate) type Tracker = Arc<Mutex<PartitionOffsets>>;

pub(crate) fn lock(t: &Tracker) -> std::sync::MutexGuard<'_, PartitionOffsets> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the poll thread sends a worker.
pub(crate) enum Input {
    /// Consecutive records, given back to the partition's pool once processed.
    Records(RecordBatch),
    Tick(i64),
}

/// An output for an async sink and who to acknowledge it to.
pub(crate) struct SinkItem {
    item: Item,
    tracker: Tracker,
    offset: u64,
}

/// State shared by the poll thread and every task.
pub(crate) struct Shared {
    pub topology: Arc<Topology>,
    pub producer: AsyncProducer,
    /// Channel to each async sink's task, by sink index (`None` for the transactional sink).
    pub sinks: Vec<Option<mpsc::Sender<SinkItem>>>,
    pub stats: Arc<RuntimeStats>,
    pub control: Arc<std::sync::atomic::AtomicU8>,
    pub settings: Settings,
}

impl Shared {
    fn killed(&self) -> bool {
        self.control.load(Ordering::SeqCst) == KILL
    }
}

/// The poll thread's handle on one partition's worker.
pub(crate) struct WorkerHandle {
    pub tx: mpsc::Sender<Input>,
    pub stop: Option<oneshot::Sender<()>>,
    pub done: std::sync::mpsc::Receiver<()>,
    pub tracker: Tracker,
    /// Emptied batches to fill again.
    pub pool: BatchPool,
}

/// Starts the worker (and its delivery acker) for one partition.
pub(crate) fn spawn_worker(
    shared: &Arc<Shared>,
    rt: &tokio::runtime::Handle,
    task: PartitionTask,
    base: CommitPoint,
) -> WorkerHandle {
    let (tx, rx) = mpsc::channel(shared.settings.queued_batches());
    // Every batch that can exist at once: the queued ones, one being filled, one being processed.
    let pool = BatchPool::new(shared.settings.queued_batches() + 2);
    let (stop_tx, stop_rx) = oneshot::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let tracker: Tracker = Arc::new(Mutex::new(PartitionOffsets::new(base)));
    let (acks_tx, acks_rx) = mpsc::channel(shared.settings.sink_capacity);
    rt.spawn(acker(
        acks_rx,
        Arc::clone(&tracker),
        Arc::clone(&shared.stats),
    ));
    let worker = Worker {
        shared: Arc::clone(shared),
        task,
        tracker: Arc::clone(&tracker),
        acks: acks_tx,
        pool: pool.clone(),
        emitted: Vec::new(),
        dirty: false,
        last_flush: Instant::now(),
    };
    rt.spawn(worker.run(rx, stop_rx, done_tx));
    WorkerHandle {
        tx,
        stop: Some(stop_tx),
        done: done_rx,
        tracker,
        pool,
    }
}

struct Worker {
    shared: Arc<Shared>,
    task: PartitionTask,
    tracker: Tracker,
    acks: mpsc::Sender<(DeliveryFuture, u64)>,
    pool: BatchPool,
    /// The last record's outputs, emptied: traded with the task's list for the next record's.
    emitted: Vec<Emitted>,
    /// Exactly-once: records were processed since the last transaction.
    dirty: bool,
    /// Exactly-once: when the last transaction was written.
    last_flush: Instant,
}

impl Worker {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Input>,
        mut stop: oneshot::Receiver<()>,
        done: std::sync::mpsc::Sender<()>,
    ) {
        let result = self.process(&mut rx, &mut stop).await;
        if let Err(e) = &result {
            self.shared.stats.set_fatal(e);
        }
        // Records still queued are dropped: they are not committed, the next owner reads them.
        rx.close();
        while let Ok(input) = rx.try_recv() {
            if let Input::Records(batch) = input {
                self.shared.stats.add_buffered(-(batch.len() as i64));
            }
        }
        drop(rx);
        let Worker {
            shared,
            tracker,
            acks,
            ..
        } = self;
        drop(acks);
        if result.is_ok() && !shared.killed() {
            // Wait for outstanding acknowledgements so the revoke commit covers everything.
            let deadline = Instant::now() + shared.settings.revoke_timeout;
            while lock(&tracker).pending() > 0
                && Instant::now() < deadline
                && shared.stats.fatal().is_none()
                && !shared.killed()
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let _ = done.send(());
    }

    async fn process(
        &mut self,
        rx: &mut mpsc::Receiver<Input>,
        stop: &mut oneshot::Receiver<()>,
    ) -> Result<()> {
        let settings = self.shared.settings.clone();
        let eos = self.shared.topology.transactional_sink().is_some();
        let mut timer =
            tokio::time::interval(settings.checkpoint_interval.min(settings.commit_interval));
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // Exactly-once: when to write what is held because the input has drained.
        let mut idle_flush_at: Option<tokio::time::Instant> = None;
        let histogram =
            metrics::histogram!(m::PROCESSING_SECONDS, "topic" => self.task.topic().to_string());
        loop {
            tokio::select! {
                biased;
                _ = &mut *stop => break,
                _ = tokio::time::sleep_until(idle_flush_at.unwrap_or_else(tokio::time::Instant::now)),
                    if idle_flush_at.is_some() => {
                    idle_flush_at = None;
                    if self.dirty {
                        self.flush_transaction().await?;
                    }
                }
                _ = timer.tick() => {
                    self.checkpoint();
                    if eos && self.dirty && self.last_flush.elapsed() >= settings.commit_interval {
                        self.flush_transaction().await?;
                    }
                }
                input = rx.recv() => match input {
                    None => break,
                    Some(Input::Records(batch)) => {
                        self.shared.stats.add_buffered(-(batch.len() as i64));
                        // One clock reading per batch: each record is recorded with the batch's
                        // mean time, transaction writes left out.
                        let started = Instant::now();
                        // One wall-clock reading per batch too, for the operators.
                        let now_ms = wall_clock_ms();
                        let mut writing = Duration::ZERO;
                        for (offset, raw) in batch.records() {
                            // The task's output list and this one trade places: both keep their
                            // capacity, so no record allocates one.
                            let mut emitted = std::mem::take(&mut self.emitted);
                            std::mem::swap(self.task.process(offset, raw, now_ms)?, &mut emitted);
                            self.dispatch(&mut emitted, offset, false).await?;
                            self.emitted = emitted;
                            // The last replayed record, or a batch's worth: the sink rebuilds
                            // its state before any new write.
                            if eos
                                && offset < self.task.suppress_below()
                                && (offset + 1 == self.task.suppress_below()
                                    || self.task.replayed_len() >= settings.sink_batch)
                            {
                                self.flush_replay().await?;
                            }
                            // A replayed record writes nothing: the sink's transactions start
                            // after the replay, so the state they store reflects every record
                            // below their offset.
                            self.dirty |= offset >= self.task.suppress_below();
                            if eos && self.task.transactional_len() >= settings.sink_batch {
                                let write_started = Instant::now();
                                self.flush_transaction().await?;
                                writing += self.last_flush - write_started;
                            }
                        }
                        let records = batch.len() as u32;
                        // One observation per batch: the exporter stores (and timestamps) every
                        // observation, which per record cost a few percent of the throughput.
                        histogram.record(
                            (started.elapsed().saturating_sub(writing) / records.max(1))
                                .as_secs_f64(),
                        );
                        self.shared.stats.add_processed(u64::from(records));
                        self.pool.give(batch);
                        if eos && self.dirty && rx.is_empty() && idle_flush_at.is_none() {
                            idle_flush_at =
                                Some(tokio::time::Instant::now() + settings.idle_flush);
                        }
                    }
                    Some(Input::Tick(now_ms)) => {
                        let (next, base) = {
                            let t = lock(&self.tracker);
                            (t.next(), t.base())
                        };
                        // Not while replaying: idle flushes are not part of the replayed state.
                        if next > base.offset && next > 0 {
                            let mut emitted = std::mem::take(self.task.tick(now_ms, next - 1)?);
                            self.dispatch(&mut emitted, next - 1, true).await?;
                        }
                    }
                },
            }
        }
        self.checkpoint();
        if eos && self.dirty && !self.shared.killed() {
            self.flush_transaction().await?;
        }
        Ok(())
    }

    fn checkpoint(&mut self) {
        let min = self.task.min_retained();
        lock(&self.tracker).checkpoint(min);
    }

    /// Hands outputs derived from `offset` to their sinks, registering them as pending first.
    async fn dispatch(
        &mut self,
        emitted: &mut Vec<Emitted>,
        offset: u64,
        tick: bool,
    ) -> Result<()> {
        // Each output is acknowledged: by the broker or by its async sink (the transactional
        // sink's records are not among them, they are written with the offsets).
        let acknowledged = emitted.len() as u32;
        {
            let mut t = lock(&self.tracker);
            if tick {
                t.add_pending(offset, acknowledged);
            } else {
                t.processed(offset, acknowledged);
            }
        }
        for e in emitted.drain(..) {
            match e {
                Emitted::Topic(msg) => self.produce(msg, offset).await?,
                Emitted::Sink { sink, item } => match &self.shared.sinks[sink] {
                    Some(tx) => {
                        self.shared.stats.add_buffered(1);
                        let item = SinkItem {
                            item,
                            tracker: Arc::clone(&self.tracker),
                            offset,
                        };
                        if tx.send(item).await.is_err() {
                            self.shared.stats.add_buffered(-1);
                            return Err(Error::Sink {
                                sink: self.shared.topology.sinks[sink].name.clone(),
                                message: "sink task stopped".into(),
                            });
                        }
                    }
                    None => {
                        return Err(Error::Sink {
                            sink: self.shared.topology.sinks[sink].name.clone(),
                            message: "a boxed record for the transactional sink (internal error)"
                                .into(),
                        });
                    }
                },
            }
        }
        Ok(())
    }

    async fn produce(&mut self, msg: OutgoingMessage, offset: u64) -> Result<()> {
        if self.shared.topology.dead_letter_topic() == Some(msg.topic.as_str()) {
            self.shared.stats.inc_dead_letters();
        }
        let mut headers = OwnedHeaders::new_with_capacity(msg.headers.len());
        for (key, value) in &msg.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record = FutureRecord::to(&msg.topic)
            .payload(&msg.value)
            .timestamp(msg.timestamp_ms)
            .headers(headers);
        if let Some(key) = &msg.key {
            record = record.key(key);
        }
        // A full producer queue is waited out: backpressure.
        match self.shared.producer.enqueue(record, None).await {
            Ok(delivery) => {
                self.shared.stats.add_buffered(1);
                if self.acks.send((delivery, offset)).await.is_err() {
                    self.shared.stats.add_buffered(-1);
                    return Err(Error::Kafka("delivery acker stopped".into()));
                }
                Ok(())
            }
            Err(e) => {
                metrics::counter!(m::SINK_ERRORS, "sink" => msg.topic.clone()).increment(1);
                Err(Error::Sink {
                    sink: msg.topic.clone(),
                    message: e.to_string(),
                })
            }
        }
    }

    /// Exactly-once: hands the replayed records kept so far to the sink's `replay`.
    async fn flush_replay(&mut self) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        let Some((id, sink)) = shared.topology.transactional_sink() else {
            return Ok(());
        };
        let Some(items) = self.task.take_replayed() else {
            return Ok(());
        };
        let name = &shared.topology.sinks[id].name;
        sink.replay(name, items, self.task.topic(), self.task.partition())
            .await
            .inspect_err(|_| {
                metrics::counter!(m::SINK_ERRORS, "sink" => name.clone()).increment(1);
            })
    }

    /// Exactly-once: waits until dead letters are delivered, then writes the batch and this
    /// partition's commit point in one sink transaction.
    async fn flush_transaction(&mut self) -> Result<()> {
        self.flush_replay().await?;
        let shared = Arc::clone(&self.shared);
        let Some((id, sink)) = shared.topology.transactional_sink() else {
            return Ok(());
        };
        let deadline = Instant::now() + self.shared.settings.revoke_timeout;
        while lock(&self.tracker).pending() > 0 {
            if Instant::now() >= deadline || self.shared.stats.fatal().is_some() {
                return Err(Error::Sink {
                    sink: "dead-letter topic".into(),
                    message: "deliveries not acknowledged in time".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.checkpoint();
        let point = lock(&self.tracker).committable();
        let offset = SourceOffset {
            topic: self.task.topic().to_string(),
            partition: self.task.partition(),
            offset: point.offset,
            replay_from: point.replay_from,
        };
        let name = &shared.topology.sinks[id].name;
        let batch = self.task.take_transactional();
        sink.write_transaction(name, batch, vec![offset])
            .await
            .inspect_err(|_| {
                metrics::counter!(m::SINK_ERRORS, "sink" => name.clone()).increment(1);
            })?;
        metrics::counter!(m::COMMITS, "topic" => self.task.topic().to_string()).increment(1);
        self.shared.stats.add_commits(1);
        self.dirty = false;
        self.last_flush = Instant::now();
        Ok(())
    }
}

/// Awaits delivery reports in order and acknowledges them.
async fn acker(
    mut rx: mpsc::Receiver<(DeliveryFuture, u64)>,
    tracker: Tracker,
    stats: Arc<RuntimeStats>,
) {
    while let Some((delivery, offset)) = rx.recv().await {
        stats.add_buffered(-1);
        let failure = match delivery.await {
            Ok(Ok(_)) => {
                lock(&tracker).ack(offset);
                continue;
            }
            Ok(Err((e, msg))) => {
                use rdkafka::Message;
                format!("delivery to {} failed: {e}", msg.topic())
            }
            Err(_) => "producer dropped a delivery report".to_owned(),
        };
        metrics::counter!(m::SINK_ERRORS, "sink" => "kafka").increment(1);
        stats.set_fatal(&Error::Sink {
            sink: "kafka".into(),
            message: failure,
        });
    }
}

/// Starts the task that writes one async sink's batches.
pub(crate) fn spawn_sink(
    rt: &tokio::runtime::Handle,
    name: String,
    sink: Arc<dyn ErasedSink>,
    settings: &Settings,
    stats: Arc<RuntimeStats>,
) -> mpsc::Sender<SinkItem> {
    let (tx, mut rx) = mpsc::channel::<SinkItem>(settings.sink_capacity);
    let max_batch = settings.sink_batch;
    rt.spawn(async move {
        let mut items = Vec::with_capacity(max_batch);
        while rx.recv_many(&mut items, max_batch).await > 0 {
            stats.add_buffered(-(items.len() as i64));
            let mut batch = Vec::with_capacity(items.len());
            let mut acks = Vec::with_capacity(items.len());
            for SinkItem {
                item,
                tracker,
                offset,
            } in items.drain(..)
            {
                batch.push(item);
                acks.push((tracker, offset));
            }
            match sink.write(&name, batch).await {
                Ok(()) => {
                    for (tracker, offset) in acks {
                        lock(&tracker).ack(offset);
                    }
                }
                Err(e) => {
                    metrics::counter!(m::SINK_ERRORS, "sink" => name.clone()).increment(1);
                    stats.set_fatal(&e);
                }
            }
        }
    });
    tx
}

/// The sinks' channels, by sink index.
pub(crate) fn spawn_sinks(
    rt: &tokio::runtime::Handle,
    topology: &Topology,
    settings: &Settings,
    stats: &Arc<RuntimeStats>,
) -> Vec<Option<mpsc::Sender<SinkItem>>> {
    topology
        .sinks
        .iter()
        .map(|def| match &def.kind {
            SinkKind::Async(sink) => Some(spawn_sink(
                rt,
                def.name.clone(),
                Arc::clone(sink),
                settings,
                Arc::clone(stats),
            )),
            SinkKind::Transactional(_) => None,
        })
        .collect()
}
