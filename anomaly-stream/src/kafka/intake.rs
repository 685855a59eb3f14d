//! The poll thread's record flow: fetched records into each partition's pending batch, batches
//! to the partition workers, and the pausing and resuming that bound what is queued.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::mpsc::error::TrySendError;

use super::consumer::{Consumer_, PollState, Slot};
use super::queue::{Messages, Queue};
use super::worker::Input;
use crate::error::Error;
use crate::metrics as m;

/// Records taken from the fetch queue in one call (and one lock of the slots).
const TAKE: usize = 512;

/// One fetched record's parts, borrowed from librdkafka's message.
struct Fetched<'a> {
    offset: i64,
    key: Option<&'a [u8]>,
    payload: &'a [u8],
    timestamp_ms: i64,
}

impl PollState {
    /// Takes what the fetch queue holds, up to `max` records, into the partitions' pending
    /// batches; returns how many it took.
    pub(super) fn take_fetched(
        &self,
        consumer: &Consumer_,
        fetch: &Queue,
        messages: &mut Messages,
        max: usize,
    ) -> usize {
        let mut taken = 0;
        while taken < max {
            let n = fetch.take_messages(messages, TAKE.min(max - taken));
            if n == 0 {
                break;
            }
            taken += n;
            let mut slots = self.lock_slots();
            // Consecutive records mostly share a partition: its slot is looked up once per run.
            let mut place: Option<(&[u8], i32)> = None;
            let mut target: Option<(&(String, i32), &mut Slot)> = None;
            for msg in messages.iter() {
                if let Some(error) = msg.error() {
                    tracing::warn!(%error, partition = msg.partition(), "fetch error");
                    continue;
                }
                let here = (msg.topic(), msg.partition());
                if place != Some(here) {
                    place = Some(here);
                    target = slots
                        .iter_mut()
                        .find(|((t, p), _)| *p == here.1 && t.as_bytes() == here.0);
                }
                if let Some((key, slot)) = &mut target {
                    let record = Fetched {
                        offset: msg.offset(),
                        key: msg.key(),
                        payload: msg.payload(),
                        timestamp_ms: msg.timestamp_ms(),
                    };
                    self.take_record(consumer, key, slot, record);
                }
            }
            drop(slots);
            messages.clear();
            if n < TAKE {
                break;
            }
        }
        taken
    }

    /// Takes a record polled from the consumer's own queue (one whose partition could not be
    /// forwarded to the fetch queue) into its partition's pending batch.
    pub(super) fn on_message(&self, consumer: &Consumer_, msg: &BorrowedMessage<'_>) {
        let mut slots = self.lock_slots();
        let Some((key, slot)) = slots
            .iter_mut()
            .find(|((t, p), _)| *p == msg.partition() && t == msg.topic())
        else {
            return;
        };
        let record = Fetched {
            offset: msg.offset(),
            key: msg.key(),
            payload: msg.payload().unwrap_or_default(),
            timestamp_ms: msg.timestamp().to_millis().unwrap_or(0),
        };
        self.take_record(consumer, key, slot, record);
    }

    /// Takes a fetched record into its partition's pending batch; hands the batch over once it
    /// is full.
    fn take_record(
        &self,
        consumer: &Consumer_,
        key: &(String, i32),
        slot: &mut Slot,
        record: Fetched<'_>,
    ) {
        let offset = record.offset as u64;
        if offset < slot.next_expected || slot.paused_at.is_some() {
            return;
        }
        slot.pending
            .push(offset, record.key, record.payload, record.timestamp_ms);
        slot.next_expected = offset + 1;
        if slot.pending.len() >= self.shared.settings.batch_records() {
            self.hand_over(consumer, key, slot);
        }
    }

    /// Hands every partition's pending records to its worker.
    pub(super) fn hand_over_all(&self, consumer: &Consumer_) {
        let mut slots = self.lock_slots();
        for (key, slot) in slots.iter_mut() {
            self.hand_over(consumer, key, slot);
        }
    }

    /// Hands `slot`'s pending batch to its worker, waiting up to `backpressure_wait` for room;
    /// when the queue stays full, pauses the partition at the batch's first record instead.
    fn hand_over(&self, consumer: &Consumer_, key: &(String, i32), slot: &mut Slot) {
        let Some(first) = slot.pending.first_offset() else {
            return;
        };
        let batch = std::mem::replace(&mut slot.pending, slot.worker.pool.take());
        // Counted while it waits for room, so a full queue plus one batch per partition bounds
        // the count.
        let records = batch.len() as i64;
        self.shared.stats.add_buffered(records);
        // A full queue usually drains within moments; pausing (and re-fetching on resume) is for
        // a worker that stays stuck. Nothing else takes the slots' lock while this thread waits:
        // every user of it runs on this thread.
        let mut deadline = None;
        let mut input = Input::Records(batch);
        let sent = loop {
            match slot.worker.tx.try_send(input) {
                Err(TrySendError::Full(back)) => {
                    let now = Instant::now();
                    let until =
                        *deadline.get_or_insert(now + self.shared.settings.backpressure_wait);
                    if now >= until {
                        break Err(TrySendError::Full(back));
                    }
                    input = back;
                    std::thread::sleep(Duration::from_micros(200));
                }
                other => break other,
            }
        };
        let unsent = match sent {
            Ok(()) => return,
            Err(TrySendError::Full(unsent) | TrySendError::Closed(unsent)) => unsent,
        };
        self.shared.stats.add_buffered(-records);
        if let Input::Records(batch) = unsent {
            slot.worker.pool.give(batch);
        }
        if slot.worker.tx.is_closed() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&key.0, key.1);
        match consumer.pause(&tpl) {
            Ok(()) => {
                slot.paused_at = Some(first);
                slot.next_expected = first;
                self.shared.stats.inc_pauses();
                metrics::counter!(m::PARTITION_PAUSES, "topic" => key.0.clone()).increment(1);
            }
            Err(e) => {
                self.shared.stats.set_fatal(&Error::from(e));
            }
        }
    }

    /// Resumes paused partitions whose queue drained to half, seeking back to the first record
    /// that did not fit.
    pub(super) fn resume_ready(&self, consumer: &Consumer_) {
        let mut slots = self.lock_slots();
        let half = self.shared.settings.queued_batches().div_ceil(2);
        for ((topic, partition), slot) in slots.iter_mut() {
            let Some(offset) = slot.paused_at else {
                continue;
            };
            if slot.worker.tx.capacity() < half {
                continue;
            }
            let seek = consumer.seek(
                topic,
                *partition,
                Offset::Offset(offset as i64),
                Duration::from_secs(5),
            );
            if let Err(e) = seek {
                tracing::warn!(%topic, partition, error = %e, "seek before resume failed; retrying");
                continue;
            }
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(topic, *partition);
            match consumer.resume(&tpl) {
                Ok(()) => slot.paused_at = None,
                Err(e) => tracing::warn!(%topic, partition, error = %e, "resume failed; retrying"),
            }
        }
    }

    pub(super) fn tick_all(&self, now_ms: i64) {
        for slot in self.lock_slots().values() {
            // A full queue means the worker is busy; it gets the next tick.
            let _ = slot.worker.tx.try_send(Input::Tick(now_ms));
        }
    }
}
