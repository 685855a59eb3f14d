//! One partition's operator instance, driven record by record by the runtime and the test driver.

use std::sync::Arc;

use metrics::Counter;

use super::context::{Cx, Entry};
use super::record::{Emitted, RawRef};
use crate::error::{Error, Result};
use crate::metrics as m;
use crate::sink::RecordList;

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
    /// Records for the transactional sink not yet handed over.
    transactional: Option<Box<dyn RecordList>>,
    /// Records for the transactional sink from suppressed records, kept for its
    /// [`replay`](crate::TransactionalSink::replay).
    replayed: Option<Box<dyn RecordList>>,
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
    ) -> Self {
        let suppressed = metrics::counter!(m::REPLAY_SUPPRESSED, "topic" => topic.to_string());
        Self {
            topic,
            partition,
            entry,
            dead_letter_topic,
            max_record_bytes,
            suppress_below,
            transactional: None,
            replayed: None,
            out: Vec::new(),
            failure: None,
            suppressed,
        }
    }

    /// Runs one source record, `now_ms` being the wall clock; returns its outputs (empty while
    /// replaying) or the error that must stop the runtime.
    pub(crate) fn process(
        &mut self,
        offset: u64,
        raw: RawRef<'_>,
        now_ms: i64,
    ) -> Result<&mut Vec<Emitted>> {
        self.out.clear();
        let suppressed = offset < self.suppress_below;
        let replayed_before = list_len(&self.replayed);
        let mut cx = Cx {
            topic: &self.topic,
            partition: self.partition,
            offset,
            now_ms,
            raw: Some(raw),
            dead_letter_topic: self.dead_letter_topic.as_deref(),
            out: &mut self.out,
            transactional: if suppressed {
                &mut self.replayed
            } else {
                &mut self.transactional
            },
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
        if suppressed {
            let replayed = list_len(&self.replayed) - replayed_before;
            self.suppressed
                .increment((self.out.len() + replayed) as u64);
            self.out.clear();
        }
        Ok(&mut self.out)
    }

    /// Records for the transactional sink from records below the suppression offset, kept for
    /// its [`replay`](crate::TransactionalSink::replay) since the last call (`None`: none).
    pub(crate) fn take_replayed(&mut self) -> Option<Box<dyn RecordList>> {
        take_all(&mut self.replayed)
    }

    /// How many records [`take_replayed`](Self::take_replayed) would hand over.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn replayed_len(&self) -> usize {
        list_len(&self.replayed)
    }

    /// Records for the transactional sink since the last call (`None`: none).
    pub(crate) fn take_transactional(&mut self) -> Option<Box<dyn RecordList>> {
        take_all(&mut self.transactional)
    }

    /// How many records [`take_transactional`](Self::take_transactional) would hand over.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn transactional_len(&self) -> usize {
        list_len(&self.transactional)
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
            now_ms,
            raw: None,
            dead_letter_topic: self.dead_letter_topic.as_deref(),
            out: &mut self.out,
            transactional: &mut self.transactional,
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

fn list_len(list: &Option<Box<dyn RecordList>>) -> usize {
    list.as_ref().map_or(0, |list| list.len())
}

/// The records of `list`, `None` when there are none.
fn take_all(list: &mut Option<Box<dyn RecordList>>) -> Option<Box<dyn RecordList>> {
    list.as_mut()
        .filter(|list| list.len() > 0)
        .map(|list| list.take_all())
}
