//! The operator DSL: [`Stream`] and its stateless, side-output, window and sink operators.

use std::cell::RefCell;
use std::hash::Hash;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use super::builder::{Inner, SinkDef, SinkKind};
use super::context::{Factory, Node};
use super::nodes::{Divert, Stateless, Tee, ToSink, ToTransactional, TopicSink, Validate};
use super::record::{Record, Rejection};
use super::window_nodes::{CountNode, RowNode, TimeNode, WindowCounters};
use crate::codec::Codec;
use crate::error::Result;
use crate::metrics as m;
use crate::sink::{Sink, TransactionalSink, Typed};
use crate::window::{
    Aggregator, CountWindow, CountWindowSpec, CountWindows, RowWindows, TimeWindowConfig,
    TimeWindows, WindowResult,
};

/// A typed stream of records of one source topic, being built; consumed by each operator.
///
/// Finish every stream with a sink ([`to_topic`](Self::to_topic), [`to_sink`](Self::to_sink),
/// [`to_transactional`](Self::to_transactional)); a stream dropped without one adds nothing to
/// the topology.
pub struct Stream<K, V> {
    pub(super) inner: Rc<RefCell<Inner>>,
    pub(super) attach: Box<dyn FnOnce(Factory<K, V>)>,
}

impl<K: Send + 'static, V: Send + 'static> Stream<K, V> {
    fn then<K2, V2, N>(
        self,
        make: impl Fn(Box<dyn Node<K2, V2>>) -> N + Send + Sync + 'static,
    ) -> Stream<K2, V2>
    where
        K2: Send + 'static,
        V2: Send + 'static,
        N: Node<K, V> + 'static,
    {
        let old = self.attach;
        let attach = move |down: Factory<K2, V2>| {
            old(Arc::new(move || {
                Box::new(make(down())) as Box<dyn Node<K, V>>
            }));
        };
        Stream {
            inner: self.inner,
            attach: Box::new(attach),
        }
    }

    fn stateless<K2, V2, F>(self, kind: &str, f: F) -> Stream<K2, V2>
    where
        K2: Send + 'static,
        V2: Send + 'static,
        F: Fn(Record<K, V>, &mut Vec<Record<K2, V2>>) + Send + Sync + 'static,
    {
        let name = self.inner.borrow_mut().operator_name(kind);
        let f = Arc::new(f);
        self.then(move |next| Stateless {
            f: Arc::clone(&f),
            buf: Vec::new(),
            next,
            records_in: metrics::counter!(m::RECORDS_IN, "operator" => name.clone()),
            records_out: metrics::counter!(m::RECORDS_OUT, "operator" => name.clone()),
            _types: PhantomData,
        })
    }

    /// Transforms each record's key and value.
    pub fn map<K2, V2>(self, f: impl Fn(K, V) -> (K2, V2) + Send + Sync + 'static) -> Stream<K2, V2>
    where
        K2: Send + 'static,
        V2: Send + 'static,
    {
        self.stateless("map", move |r, out| {
            let (key, value) = f(r.key, r.value);
            out.push(Record {
                key,
                value,
                timestamp_ms: r.timestamp_ms,
            });
        })
    }

    /// Transforms each record's value, keeping its key.
    pub fn map_values<V2>(self, f: impl Fn(V) -> V2 + Send + Sync + 'static) -> Stream<K, V2>
    where
        V2: Send + 'static,
    {
        self.stateless("map_values", move |r, out| {
            out.push(Record {
                key: r.key,
                value: f(r.value),
                timestamp_ms: r.timestamp_ms,
            });
        })
    }

    /// Keeps the records for which `f` is true.
    pub fn filter(self, f: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Stream<K, V> {
        self.stateless("filter", move |r, out| {
            if f(&r.key, &r.value) {
                out.push(r);
            }
        })
    }

    /// Replaces each record by zero or more records (same timestamp).
    pub fn flat_map<K2, V2, I>(
        self,
        f: impl Fn(K, V) -> I + Send + Sync + 'static,
    ) -> Stream<K2, V2>
    where
        K2: Send + 'static,
        V2: Send + 'static,
        I: IntoIterator<Item = (K2, V2)>,
    {
        self.stateless("flat_map", move |r, out| {
            let t = r.timestamp_ms;
            out.extend(f(r.key, r.value).into_iter().map(|(key, value)| Record {
                key,
                value,
                timestamp_ms: t,
            }));
        })
    }

    /// Re-keys each record. Windows downstream group by the new key, per source partition: only
    /// re-key to something the source partitioning already separates (e.g. from a raw key to
    /// the host name it encodes), since there is no repartitioning.
    pub fn key_by<K2>(self, f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static) -> Stream<K2, V>
    where
        K2: Send + 'static,
    {
        self.stateless("key_by", move |r, out| {
            out.push(Record {
                key: f(&r.key, &r.value),
                value: r.value,
                timestamp_ms: r.timestamp_ms,
            });
        })
    }

    /// Builds a side branch with `branch`, which must end in a sink; returns its factory.
    fn side(&self, branch: impl FnOnce(Stream<K, V>)) -> Option<Factory<K, V>> {
        let slot: Rc<RefCell<Option<Factory<K, V>>>> = Rc::default();
        let fill = Rc::clone(&slot);
        branch(Stream {
            inner: Rc::clone(&self.inner),
            attach: Box::new(move |f| *fill.borrow_mut() = Some(f)),
        });
        let taken = slot.borrow_mut().take();
        if taken.is_none() {
            self.inner
                .borrow_mut()
                .errors
                .push("a side branch does not end in a sink".into());
        }
        taken
    }

    /// Checks each record with `f`: records it refuses go to the dead-letter topic with the
    /// [`Rejection`]'s reason in a header and in the dead-letter counter's `reason` label; the
    /// others continue. Bad input is kept (in the dead-letter topic) and counted, never dropped
    /// silently, and never stops the pipeline when a dead-letter topic is set.
    pub fn validate(
        self,
        f: impl Fn(&K, &V) -> std::result::Result<(), Rejection> + Send + Sync + 'static,
    ) -> Stream<K, V> {
        self.validate_at(move |key, value, _now_ms| f(key, value))
    }

    /// [`validate`](Self::validate) with the wall clock (ms since the Unix epoch) as a third
    /// argument, for checks against the receiver's time (clock skew, stale data). The runtime
    /// reads the clock once per batch of records, not per record; under the
    /// [`TestDriver`](crate::TestDriver) it is the driver's clock.
    pub fn validate_at(
        self,
        f: impl Fn(&K, &V, i64) -> std::result::Result<(), Rejection> + Send + Sync + 'static,
    ) -> Stream<K, V> {
        let f = Arc::new(f);
        self.then(move |next| Validate {
            f: Arc::clone(&f),
            next,
        })
    }

    /// Side output of every record: `branch` receives a copy of each record (and must end in a
    /// sink); the returned stream continues with the originals.
    pub fn tee(self, branch: impl FnOnce(Stream<K, V>)) -> Stream<K, V>
    where
        K: Clone,
        V: Clone,
    {
        let Some(side) = self.side(branch) else {
            return self;
        };
        self.then(move |next| Tee { side: side(), next })
    }

    /// Side output of selected records: those for which `f` is true go to `branch` (which must
    /// end in a sink) instead of continuing.
    pub fn divert(
        self,
        f: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
        branch: impl FnOnce(Stream<K, V>),
    ) -> Stream<K, V> {
        let Some(side) = self.side(branch) else {
            return self;
        };
        let f = Arc::new(f);
        self.then(move |next| Divert {
            f: Arc::clone(&f),
            side: side(),
            next,
        })
    }

    /// Writes each record to Kafka `topic`, key and value encoded with `codec`.
    pub fn to_topic(
        self,
        topic: impl Into<String>,
        codec: impl Codec<K> + Codec<V> + Clone + 'static,
    ) {
        self.to_topic_with(topic, codec.clone(), codec);
    }

    /// Writes each record to Kafka `topic` with separate key and value codecs. The runtime
    /// produces with an idempotent producer (`acks=all`), keyed, and counts a record as
    /// delivered only once the broker acknowledged it.
    pub fn to_topic_with(
        self,
        topic: impl Into<String>,
        key_codec: impl Codec<K> + 'static,
        value_codec: impl Codec<V> + 'static,
    ) {
        let topic = topic.into();
        let name = {
            let mut inner = self.inner.borrow_mut();
            if !inner.output_topics.contains(&topic) {
                inner.output_topics.push(topic.clone());
            }
            inner.operator_name("to_topic")
        };
        let key_codec: Arc<dyn Codec<K>> = Arc::new(key_codec);
        let value_codec: Arc<dyn Codec<V>> = Arc::new(value_codec);
        let attach = self.attach;
        attach(Arc::new(move || {
            Box::new(TopicSink {
                topic: topic.clone(),
                key_codec: Arc::clone(&key_codec),
                value_codec: Arc::clone(&value_codec),
                records_out: metrics::counter!(m::RECORDS_OUT, "operator" => name.clone()),
            })
        }));
    }

    /// Hands each record to `sink` (at-least-once: the source offset is committed once the sink
    /// acknowledged the batch holding it). `name` labels metrics and errors and names the sink
    /// in the [`TestDriver`](crate::TestDriver).
    pub fn to_sink(self, name: impl Into<String>, sink: impl Sink<Record<K, V>>) {
        let kind = SinkKind::Async(Arc::new(Typed(sink, PhantomData)));
        self.finish_with_sink(name.into(), kind);
    }

    /// Hands each record to a [`TransactionalSink`] that stores outputs and source offsets in
    /// one transaction (exactly-once). It must be the topology's only sink.
    pub fn to_transactional(
        self,
        name: impl Into<String>,
        sink: impl TransactionalSink<Record<K, V>>,
    ) {
        let kind = SinkKind::Transactional(Arc::new(Typed(sink, PhantomData)));
        self.finish_with_sink(name.into(), kind);
    }

    fn finish_with_sink(self, name: String, kind: SinkKind) {
        let transactional = matches!(kind, SinkKind::Transactional(_));
        let (id, op) = {
            let mut inner = self.inner.borrow_mut();
            if inner.sinks.iter().any(|s| s.name == name) {
                inner.errors.push(format!("two sinks are named {name:?}"));
            }
            inner.sinks.push(SinkDef {
                name: name.clone(),
                kind,
            });
            (inner.sinks.len() - 1, inner.operator_name("to_sink"))
        };
        let attach = self.attach;
        attach(Arc::new(move || {
            let records_out = metrics::counter!(m::RECORDS_OUT, "operator" => op.clone());
            if transactional {
                Box::new(ToTransactional {
                    name: name.clone(),
                    records_out,
                    _types: PhantomData,
                }) as Box<dyn Node<K, V>>
            } else {
                Box::new(ToSink {
                    sink: id,
                    records_out,
                    _types: PhantomData,
                })
            }
        }));
    }
}

impl<K, V> Stream<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Send + 'static,
{
    /// Count windows: the last `spec.size` values of each key, every `spec.step` values
    /// ([`CountWindows`]). Each window record carries the timestamp of the record closing it.
    /// Replay after a restart is exact only with `step == 1` (see [`window`](crate::window)).
    pub fn count_windows(self, spec: CountWindowSpec) -> Result<Stream<K, CountWindow<K, V>>>
    where
        V: Clone,
    {
        spec.validate()?;
        let name = self.inner.borrow_mut().operator_name("count_windows");
        Ok(self.then(move |next| CountNode {
            op: CountWindows::new(spec).expect("validated above"),
            next,
            counters: WindowCounters::new(&name),
        }))
    }

    /// Row windows: the last `spec.size` rows of `width` floats per key, filled from each value by
    /// `row` (which appends exactly `width` values), the fast path of [`RowWindows`]. A row of
    /// the wrong width goes to the dead-letter topic.
    pub fn row_windows(
        self,
        spec: CountWindowSpec,
        width: usize,
        row: impl Fn(&V, &mut Vec<f32>) + Send + Sync + 'static,
    ) -> Result<Stream<K, Rows>> {
        RowWindows::<K>::new(spec, width)?;
        let name = self.inner.borrow_mut().operator_name("row_windows");
        let row = Arc::new(row);
        Ok(self.then(move |next| RowNode {
            op: RowWindows::new(spec, width).expect("validated above"),
            row: Arc::clone(&row),
            buf: Vec::with_capacity(width),
            next,
            counters: WindowCounters::new(&name),
        }))
    }

    /// Event-time windows folded by `aggregator` ([`TimeWindows`]); late records are counted
    /// ([`LATE_RECORDS`](crate::metrics::LATE_RECORDS)) and dropped. Window results carry
    /// `end_ms - 1` as their timestamp.
    pub fn time_windows<A>(
        self,
        config: TimeWindowConfig,
        aggregator: A,
    ) -> Result<Stream<K, WindowResult<K, A::Acc>>>
    where
        A: Aggregator<V> + Clone + Send + Sync + 'static,
        A::Acc: Send + 'static,
    {
        self.time_windows_inner(config, aggregator, None)
    }

    /// Like [`time_windows`](Self::time_windows), with late records sent to `late` (a side
    /// branch that must end in a sink).
    pub fn time_windows_with_late<A>(
        self,
        config: TimeWindowConfig,
        aggregator: A,
        late: impl FnOnce(Stream<K, V>),
    ) -> Result<Stream<K, WindowResult<K, A::Acc>>>
    where
        A: Aggregator<V> + Clone + Send + Sync + 'static,
        A::Acc: Send + 'static,
    {
        let side = self.side(late);
        self.time_windows_inner(config, aggregator, side)
    }

    fn time_windows_inner<A>(
        self,
        config: TimeWindowConfig,
        aggregator: A,
        late: Option<Factory<K, V>>,
    ) -> Result<Stream<K, WindowResult<K, A::Acc>>>
    where
        A: Aggregator<V> + Clone + Send + Sync + 'static,
        A::Acc: Send + 'static,
    {
        TimeWindows::<K, V, A>::new(config, aggregator.clone())?;
        let name = self.inner.borrow_mut().operator_name("time_windows");
        Ok(self.then(move |next| TimeNode {
            op: TimeWindows::new(config, aggregator.clone()).expect("validated above"),
            out: Vec::new(),
            next,
            late: late.as_ref().map(|f| f()),
            counters: WindowCounters::new(&name),
        }))
    }
}

/// An emitted row window, owned (copied out of [`RowWindows`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    /// `size * width` values, oldest row first.
    pub values: Vec<f32>,
    /// Values per row.
    pub width: usize,
    /// Event time of the oldest row.
    pub start_timestamp_ms: i64,
    /// Event time of the newest row.
    pub end_timestamp_ms: i64,
    /// Source offset of the oldest row.
    pub first_position: u64,
    /// Source offset of the newest row.
    pub last_position: u64,
}
