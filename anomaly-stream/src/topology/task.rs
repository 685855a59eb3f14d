//! One partition's operator instance, driven record by record by the runtime and the test driver.

use std::sync::Arc;

use metrics::Counter;

use super::context::{Cx, Entry};
use super::record::{Emitted, RawRef};
use crate::error::{Error, Result};
use crate::metrics as m;
use crate::sink::Item;

/// One partition's operator instance plus replay suppression: the pure middle that the runtime
/// and the test driver both drive.
pub(crate) struct PartitionTask {
    topic: Arc<str>,
    partition: i32,
    entry: Box<dyn Entry>,
    dead_letter_topic: Option<Arc<str>>,
    max_record_bytes: Option<usize>,
    /// Outputs of records below this offset were delivered before the last commit.
    suppress_below: u64,
    /// The transactional sink, whose suppressed inputs are kept for its
    /// [`replay`](crate::TransactionalSink::replay).
    replay_sink: Option<usize>,
    /// Suppressed items for `replay_sink`, not yet handed over.
    replayed: Vec<Item>,
    out: Vec<Emitted>,
    failure: Option<Error>,
    suppressed: Counter,
}

impl PartitionTask {
    /// A task for `partition` of `topic` with a fresh operator instance, `entry`.
    pub(super) fn new(
        topic: Arc<str>,
        partition: i32,
        entry: Box<dyn Entry>,
        dead_letter_topic: Option<Arc<str>>,
        max_record_bytes: Option<usize>,
        suppress_below: u64,
        replay_sink: Option<usize>,
    ) -> Self {
        let suppressed = metrics::counter!(m::REPLAY_SUPPRESSED, "topic" => topic.to_string());
        Self {
            topic,
            partition,
            entry,
            dead_letter_topic,
            max_record_bytes,
            suppress_below,
            replay_sink,
            replayed: Vec::new(),
            out: Vec::new(),
            failure: None,
            suppressed,
        }
    }

    /// Runs one source record; returns its outputs (empty while replaying) or the error that
    /// must stop the runtime.
    pub(crate) fn process(&mut self, offset: u64, raw: RawRef<'_>) -> Result<&mut Vec<Emitted>> {
        self.out.clear();
        let mut cx = Cx {
            topic: &self.topic,
            partition: self.partition,
            offset,
            raw: Some(raw),
            dead_letter_topic: self.dead_letter_topic.as_deref(),
            out: &mut self.out,
            failure: &mut self.failure,
        };
        let bytes = raw.key.map_or(0, <[u8]>::len) + raw.value.len();
        match self.max_record_bytes {
            Some(limit) if bytes > limit => cx.dead_letter(&Error::Oversized { bytes, limit }),
            _ => self.entry.push(&mut cx),
        }
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        if offset < self.suppress_below {
            self.suppressed.increment(self.out.len() as u64);
            for emitted in self.out.drain(..) {
                if let Emitted::Sink { sink, item } = emitted
                    && Some(sink) == self.replay_sink
                {
                    self.replayed.push(item);
                }
            }
        }
        Ok(&mut self.out)
    }

    /// Items for the transactional sink from records below the suppression offset, kept for its
    /// [`replay`](crate::TransactionalSink::replay) since the last call.
    pub(crate) fn take_replayed(&mut self) -> Vec<Item> {
        std::mem::take(&mut self.replayed)
    }

    /// How many replayed items [`take_replayed`](Self::take_replayed) would hand over.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn replayed_len(&self) -> usize {
        self.replayed.len()
    }

    /// Offsets below this are replayed, their outputs suppressed.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn suppress_below(&self) -> u64 {
        self.suppress_below
    }

    /// Tells the operators the wall-clock time (idle closing); `last_offset` is the last
    /// processed offset, which the outputs are attributed to.
    pub(crate) fn tick(&mut self, now_ms: i64, last_offset: u64) -> Result<&mut Vec<Emitted>> {
        self.out.clear();
        let mut cx = Cx {
            topic: &self.topic,
            partition: self.partition,
            offset: last_offset,
            raw: None,
            dead_letter_topic: self.dead_letter_topic.as_deref(),
            out: &mut self.out,
            failure: &mut self.failure,
        };
        self.entry.tick(&mut cx, now_ms);
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        Ok(&mut self.out)
    }

    /// Smallest offset the operators' state still needs.
    pub(crate) fn min_retained(&self) -> Option<u64> {
        self.entry.min_retained()
    }

    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn topic(&self) -> &Arc<str> {
        &self.topic
    }

    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn partition(&self) -> i32 {
        self.partition
    }
}
