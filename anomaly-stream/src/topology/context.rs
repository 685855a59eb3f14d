//! The plumbing between operators: what each one sees besides its input ([`Cx`], which also
//! routes dead letters), and the traits every operator instance implements.

use std::sync::Arc;

use super::record::{
    DLQ_ERROR_HEADER, DLQ_OFFSET_HEADER, DLQ_PARTITION_HEADER, DLQ_REASON_HEADER, DLQ_TOPIC_HEADER,
    Emitted, OutgoingMessage, RawRef, Record,
};
use crate::error::Error;
use crate::metrics as m;
use crate::sink::RecordList;

/// What an operator sees besides its input: the source position and where outputs go.
pub(crate) struct Cx<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: u64,
    /// The wall clock, ms since the Unix epoch, as the runtime read it for the current batch of
    /// records or tick (the test driver's clock under test).
    pub now_ms: i64,
    /// The source record being processed; `None` during wall-clock ticks.
    pub raw: Option<RawRef<'a>>,
    pub dead_letter_topic: Option<&'a str>,
    pub out: &'a mut Vec<Emitted>,
    /// Where records for the transactional sink go (created by its operator on first use):
    /// the transaction being gathered, or the replayed records while outputs are suppressed.
    pub transactional: &'a mut Option<Box<dyn RecordList>>,
    /// Set when a record fails and there is no dead-letter topic: the runtime stops.
    pub failure: &'a mut Option<Error>,
}

impl Cx<'_> {
    /// Routes the current source record to the dead-letter topic because of `error`.
    pub(crate) fn dead_letter(&mut self, error: &Error) {
        let Some(dlq) = self.dead_letter_topic else {
            if self.failure.is_none() {
                *self.failure = Some(Error::Undeliverable {
                    topic: self.topic.to_owned(),
                    partition: self.partition,
                    offset: self.offset,
                    message: error.to_string(),
                });
            }
            return;
        };
        metrics::counter!(
            m::DEAD_LETTERS,
            "topic" => self.topic.to_owned(),
            "reason" => error.reason()
        )
        .increment(1);
        let (key, value, timestamp_ms) = match self.raw {
            Some(raw) => (
                raw.key.map(<[u8]>::to_vec),
                raw.value.to_vec(),
                raw.timestamp_ms,
            ),
            None => (None, Vec::new(), 0),
        };
        self.out.push(Emitted::Topic(OutgoingMessage {
            topic: dlq.to_owned(),
            key,
            value,
            timestamp_ms,
            headers: vec![
                (DLQ_ERROR_HEADER.into(), error.to_string().into_bytes()),
                (DLQ_REASON_HEADER.into(), error.reason().as_bytes().to_vec()),
                (DLQ_TOPIC_HEADER.into(), self.topic.as_bytes().to_vec()),
                (
                    DLQ_PARTITION_HEADER.into(),
                    self.partition.to_string().into_bytes(),
                ),
                (
                    DLQ_OFFSET_HEADER.into(),
                    self.offset.to_string().into_bytes(),
                ),
            ],
        }));
    }
}

/// One operator instance (per partition) taking records of `K`, `V`.
pub(crate) trait Node<K, V>: Send {
    fn push(&mut self, cx: &mut Cx<'_>, record: Record<K, V>);
    /// Wall-clock time for idle closing.
    fn tick(&mut self, cx: &mut Cx<'_>, now_ms: i64);
    /// Smallest source offset any state in this node or downstream still needs.
    fn min_retained(&self) -> Option<u64>;
}

/// Creates one operator chain instance per partition.
pub(crate) type Factory<K, V> = Arc<dyn Fn() -> Box<dyn Node<K, V>> + Send + Sync>;

/// The decoding head of a pipeline: what a partition's records enter.
pub(crate) trait Entry: Send {
    fn push(&mut self, cx: &mut Cx<'_>);
    fn tick(&mut self, cx: &mut Cx<'_>, now_ms: i64);
    fn min_retained(&self) -> Option<u64>;
}

pub(crate) type EntryFactory = Arc<dyn Fn() -> Box<dyn Entry> + Send + Sync>;

pub(super) fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
