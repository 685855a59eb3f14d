//! The record operators' instances: decoding, stateless steps, side outputs, validation, sinks.

use std::marker::PhantomData;
use std::sync::Arc;

use metrics::Counter;

use super::context::{Cx, Entry, Node, min_opt};
use super::record::{Emitted, OutgoingMessage, Record, Rejection};
use crate::codec::Codec;
use crate::error::Error;
use crate::sink::unexpected_type;

pub(super) struct Decode<K, V> {
    pub(super) key_codec: Arc<dyn Codec<K>>,
    pub(super) value_codec: Arc<dyn Codec<V>>,
    pub(super) next: Box<dyn Node<K, V>>,
    pub(super) errors: Counter,
}

impl<K: Send, V: Send> Entry for Decode<K, V> {
    fn push(&mut self, cx: &mut Cx<'_>) {
        let Some(raw) = cx.raw else { return };
        let decoded = self
            .key_codec
            .decode(raw.key.unwrap_or(&[]))
            .and_then(|key| Ok((key, self.value_codec.decode(raw.value)?)));
        match decoded {
            Ok((key, value)) => {
                let timestamp_ms = raw.timestamp_ms;
                self.next.push(
                    cx,
                    Record {
                        key,
                        value,
                        timestamp_ms,
                    },
                );
            }
            Err(e) => {
                self.errors.increment(1);
                cx.dead_letter(&e);
            }
        }
    }

    fn tick(&mut self, cx: &mut Cx<'_>, now_ms: i64) {
        self.next.tick(cx, now_ms);
    }

    fn min_retained(&self) -> Option<u64> {
        self.next.min_retained()
    }
}

pub(super) struct Stateless<K, V, K2, V2, F> {
    pub(super) f: Arc<F>,
    pub(super) buf: Vec<Record<K2, V2>>,
    pub(super) next: Box<dyn Node<K2, V2>>,
    pub(super) records_in: Counter,
    pub(super) records_out: Counter,
    pub(super) _types: PhantomData<fn(K, V)>,
}

impl<K, V, K2: Send, V2: Send, F> Node<K, V> for Stateless<K, V, K2, V2, F>
where
    F: Fn(Record<K, V>, &mut Vec<Record<K2, V2>>) + Send + Sync,
{
    fn push(&mut self, cx: &mut Cx<'_>, record: Record<K, V>) {
        self.records_in.increment(1);
        (self.f)(record, &mut self.buf);
        self.records_out.increment(self.buf.len() as u64);
        for r in self.buf.drain(..) {
            self.next.push(cx, r);
        }
    }

    fn tick(&mut self, cx: &mut Cx<'_>, now_ms: i64) {
        self.next.tick(cx, now_ms);
    }

    fn min_retained(&self) -> Option<u64> {
        self.next.min_retained()
    }
}

pub(super) struct Tee<K, V> {
    pub(super) side: Box<dyn Node<K, V>>,
    pub(super) next: Box<dyn Node<K, V>>,
}

impl<K: Clone, V: Clone> Node<K, V> for Tee<K, V> {
    fn push(&mut self, cx: &mut Cx<'_>, record: Record<K, V>) {
        self.side.push(cx, record.clone());
        self.next.push(cx, record);
    }

    fn tick(&mut self, cx: &mut Cx<'_>, now_ms: i64) {
        self.side.tick(cx, now_ms);
        self.next.tick(cx, now_ms);
    }

    fn min_retained(&self) -> Option<u64> {
        min_opt(self.side.min_retained(), self.next.min_retained())
    }
}

pub(super) struct Divert<K, V, F> {
    pub(super) f: Arc<F>,
    pub(super) side: Box<dyn Node<K, V>>,
    pub(super) next: Box<dyn Node<K, V>>,
}

impl<K, V, F: Fn(&K, &V) -> bool + Send + Sync> Node<K, V> for Divert<K, V, F> {
    fn push(&mut self, cx: &mut Cx<'_>, record: Record<K, V>) {
        if (self.f)(&record.key, &record.value) {
            self.side.push(cx, record);
        } else {
            self.next.push(cx, record);
        }
    }

    fn tick(&mut self, cx: &mut Cx<'_>, now_ms: i64) {
        self.side.tick(cx, now_ms);
        self.next.tick(cx, now_ms);
    }

    fn min_retained(&self) -> Option<u64> {
        min_opt(self.side.min_retained(), self.next.min_retained())
    }
}

pub(super) struct Validate<K, V, F> {
    pub(super) f: Arc<F>,
    pub(super) next: Box<dyn Node<K, V>>,
}

impl<K, V, F> Node<K, V> for Validate<K, V, F>
where
    F: Fn(&K, &V, i64) -> std::result::Result<(), Rejection> + Send + Sync,
{
    fn push(&mut self, cx: &mut Cx<'_>, record: Record<K, V>) {
        match (self.f)(&record.key, &record.value, cx.now_ms) {
            Ok(()) => self.next.push(cx, record),
            Err(Rejection { reason, message }) => {
                cx.dead_letter(&Error::Rejected { reason, message })
            }
        }
    }

    fn tick(&mut self, cx: &mut Cx<'_>, now_ms: i64) {
        self.next.tick(cx, now_ms);
    }

    fn min_retained(&self) -> Option<u64> {
        self.next.min_retained()
    }
}

pub(super) struct TopicSink<K, V> {
    pub(super) topic: String,
    pub(super) key_codec: Arc<dyn Codec<K>>,
    pub(super) value_codec: Arc<dyn Codec<V>>,
    pub(super) records_out: Counter,
}

impl<K, V> Node<K, V> for TopicSink<K, V> {
    fn push(&mut self, cx: &mut Cx<'_>, record: Record<K, V>) {
        let mut key = Vec::new();
        let mut value = Vec::new();
        let encoded = self
            .key_codec
            .encode(&record.key, &mut key)
            .and_then(|()| self.value_codec.encode(&record.value, &mut value));
        match encoded {
            Ok(()) => {
                self.records_out.increment(1);
                cx.out.push(Emitted::Topic(OutgoingMessage {
                    topic: self.topic.clone(),
                    key: Some(key),
                    value,
                    timestamp_ms: record.timestamp_ms,
                    headers: Vec::new(),
                }));
            }
            Err(e) => cx.dead_letter(&e),
        }
    }

    fn tick(&mut self, _cx: &mut Cx<'_>, _now_ms: i64) {}

    fn min_retained(&self) -> Option<u64> {
        None
    }
}

pub(super) struct ToSink<K, V> {
    pub(super) sink: usize,
    pub(super) records_out: Counter,
    pub(super) _types: PhantomData<fn(K, V)>,
}

/// Hands each record to the transactional sink's list, unboxed.
pub(super) struct ToTransactional<K, V> {
    pub(super) name: String,
    pub(super) records_out: Counter,
    pub(super) _types: PhantomData<fn(K, V)>,
}

impl<K: Send + 'static, V: Send + 'static> Node<K, V> for ToTransactional<K, V> {
    fn push(&mut self, cx: &mut Cx<'_>, record: Record<K, V>) {
        self.records_out.increment(1);
        let list = cx
            .transactional
            .get_or_insert_with(|| Box::new(Vec::<Record<K, V>>::new()));
        match list.as_any_mut().downcast_mut::<Vec<Record<K, V>>>() {
            Some(list) => list.push(record),
            // A topology has one transactional sink, fed by this operator alone: unreachable
            // unless the runtime mixed up lists, which must stop it rather than lose records.
            None if cx.failure.is_none() => *cx.failure = Some(unexpected_type(&self.name)),
            None => {}
        }
    }

    fn tick(&mut self, _cx: &mut Cx<'_>, _now_ms: i64) {}

    fn min_retained(&self) -> Option<u64> {
        None
    }
}

impl<K: Send + 'static, V: Send + 'static> Node<K, V> for ToSink<K, V> {
    fn push(&mut self, cx: &mut Cx<'_>, record: Record<K, V>) {
        self.records_out.increment(1);
        cx.out.push(Emitted::Sink {
            sink: self.sink,
            item: Box::new(record),
        });
    }

    fn tick(&mut self, _cx: &mut Cx<'_>, _now_ms: i64) {}

    fn min_retained(&self) -> Option<u64> {
        None
    }
}
