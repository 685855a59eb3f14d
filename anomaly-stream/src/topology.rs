//! Topologies: what to do with each record, independent of where records come from.
//!
//! A [`TopologyBuilder`] hands out one typed [`Stream`] per source topic; stateless operators
//! ([`map`](Stream::map), [`filter`](Stream::filter), [`flat_map`](Stream::flat_map),
//! [`key_by`](Stream::key_by), side outputs with [`tee`](Stream::tee) and
//! [`divert`](Stream::divert)), window operators ([`count_windows`](Stream::count_windows),
//! [`row_windows`](Stream::row_windows), [`time_windows`](Stream::time_windows)) and sinks
//! ([`to_topic`](Stream::to_topic), [`to_sink`](Stream::to_sink),
//! [`to_transactional`](Stream::to_transactional)) chain onto it. [`TopologyBuilder::build`]
//! freezes the result into a [`Topology`], which the Kafka runtime
//! ([`KafkaRuntime`](crate::kafka::KafkaRuntime)) and the in-memory
//! [`TestDriver`](crate::TestDriver) both run with the same operator code.
//!
//! Each source topic gets a tree of operators (a chain with side branches), instantiated once
//! per source partition, so window state is per partition as the [window](crate::window)
//! contract requires. There is no join or merge of streams.
//!
//! Records that cannot be processed (undecodable bytes, records over
//! [`TopologyBuilder::max_record_bytes`], records a [`validate`](Stream::validate) step refuses,
//! an operator error such as an out-of-range timestamp, an unencodable output) go to the
//! dead-letter topic set with [`TopologyBuilder::dead_letter_topic`], with the error, its reason
//! and their source position in headers ([`DLQ_ERROR_HEADER`], [`DLQ_REASON_HEADER`] and
//! friends), counted per reason. Without a dead-letter topic they stop the runtime instead:
//! nothing is dropped silently.

use std::any::Any;
use std::cell::RefCell;
use std::hash::Hash;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use metrics::Counter;

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::metrics as m;
use crate::sink::{ErasedSink, ErasedTransactionalSink, Item, Sink, TransactionalSink, Typed};
use crate::window::{
    Aggregator, CountWindow, CountWindowSpec, CountWindows, RowWindows, TimeWindowConfig,
    TimeWindowOutput, TimeWindows, WindowResult, WindowTrigger,
};

/// Dead-letter header: the error message (UTF-8).
pub const DLQ_ERROR_HEADER: &str = "anomaly.dlq.error";
/// Dead-letter header: why, as a short stable label ([`Error::reason`]: `undecodable`,
/// `oversized`, a validation's own reasons, ...).
pub const DLQ_REASON_HEADER: &str = "anomaly.dlq.reason";
/// Dead-letter header: the source topic (UTF-8).
pub const DLQ_TOPIC_HEADER: &str = "anomaly.dlq.source.topic";
/// Dead-letter header: the source partition (decimal UTF-8).
pub const DLQ_PARTITION_HEADER: &str = "anomaly.dlq.source.partition";
/// Dead-letter header: the source offset (decimal UTF-8).
pub const DLQ_OFFSET_HEADER: &str = "anomaly.dlq.source.offset";

/// A typed record inside a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<K, V> {
    /// The key (what windows group by).
    pub key: K,
    /// The value.
    pub value: V,
    /// Event time in ms since the Unix epoch.
    pub timestamp_ms: i64,
}

/// Why a [`validate`](Stream::validate) step refused a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// A short, stable label (`wrong_width`, `timestamp`, ...): the dead-letter counter's
    /// `reason` and the [`DLQ_REASON_HEADER`].
    pub reason: &'static str,
    /// What is wrong with this record, for the [`DLQ_ERROR_HEADER`].
    pub message: String,
}

/// A source record as bytes, before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Key bytes; `None` for a record without a key (decoded as an empty slice).
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Vec<u8>,
    /// Event time in ms (the Kafka message timestamp).
    pub timestamp_ms: i64,
}

impl RawRecord {
    pub(crate) fn as_raw_ref(&self) -> RawRef<'_> {
        RawRef {
            key: self.key.as_deref(),
            value: &self.value,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// A source record's bytes where they lie (a runtime's batch buffer, a driver's log): what the
/// operators decode in place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawRef<'a> {
    /// Key bytes; `None` for a record without a key (decoded as an empty slice).
    pub key: Option<&'a [u8]>,
    /// Value bytes.
    pub value: &'a [u8],
    /// Event time in ms (the Kafka message timestamp).
    pub timestamp_ms: i64,
}

/// A message a pipeline produces to a Kafka topic (a topic sink's output or a dead letter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Destination topic.
    pub topic: String,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Vec<u8>,
    /// Message timestamp in ms.
    pub timestamp_ms: i64,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl OutgoingMessage {
    /// The first header called `name`, as UTF-8 text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// One output of a pipeline, before it reaches its sink.
pub(crate) enum Emitted {
    /// For the producer.
    Topic(OutgoingMessage),
    /// For the async or transactional sink with this index in [`Topology::sinks`].
    Sink { sink: usize, item: Item },
}

/// What an operator sees besides its input: the source position and where outputs go.
pub(crate) struct Cx<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: u64,
    /// The source record being processed; `None` during wall-clock ticks.
    pub raw: Option<RawRef<'a>>,
    pub dead_letter_topic: Option<&'a str>,
    pub out: &'a mut Vec<Emitted>,
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

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One source topic's pipeline.
pub(crate) struct PipelineDef {
    pub topic: Arc<str>,
    pub factory: EntryFactory,
    /// `(Arc<dyn Codec<K>>, Arc<dyn Codec<V>>)` of the source, for the test driver's typed
    /// `send`.
    pub encoders: Arc<dyn Any + Send + Sync>,
}

pub(crate) enum SinkKind {
    Async(Arc<dyn ErasedSink>),
    Transactional(Arc<dyn ErasedTransactionalSink>),
}

pub(crate) struct SinkDef {
    pub name: String,
    pub kind: SinkKind,
}

#[derive(Default)]
struct Inner {
    pipelines: Vec<PipelineDef>,
    sinks: Vec<SinkDef>,
    output_topics: Vec<String>,
    dead_letter_topic: Option<String>,
    max_record_bytes: Option<usize>,
    next_operator: usize,
    errors: Vec<String>,
}

impl Inner {
    fn operator_name(&mut self, kind: &str) -> String {
        self.next_operator += 1;
        format!("{kind}-{}", self.next_operator)
    }
}

/// Builds a [`Topology`]; see the [module docs](self).
///
/// ```
/// use anomaly_stream::{JsonCodec, TopologyBuilder, Utf8Codec};
///
/// let builder = TopologyBuilder::new().dead_letter_topic("metrics-dlq");
/// builder
///     .stream_with::<String, f64>("metrics", Utf8Codec, JsonCodec)
///     .filter(|_host, cpu| cpu.is_finite())
///     .map_values(|cpu| cpu / 100.0)
///     .to_topic_with("cpu-fraction", Utf8Codec, JsonCodec);
/// let topology = builder.build()?;
/// assert_eq!(topology.source_topics(), vec!["metrics"]);
/// # Ok::<(), anomaly_stream::Error>(())
/// ```
#[derive(Default)]
pub struct TopologyBuilder {
    inner: Rc<RefCell<Inner>>,
}

impl TopologyBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends records that fail (decode, operator or encode errors) to `topic`, with headers
    /// naming the error and source position. Without one such records stop the runtime.
    pub fn dead_letter_topic(self, topic: impl Into<String>) -> Self {
        self.inner.borrow_mut().dead_letter_topic = Some(topic.into());
        self
    }

    /// Sends source records whose key and value together exceed `bytes` to the dead-letter
    /// topic (reason `oversized`) before they are decoded: a runaway producer cannot make the
    /// pipeline allocate without bound.
    pub fn max_record_bytes(self, bytes: usize) -> Self {
        self.inner.borrow_mut().max_record_bytes = Some(bytes);
        self
    }

    /// A stream of `topic`'s records, keys and values both decoded with `codec`.
    pub fn stream<K, V>(
        &self,
        topic: impl Into<String>,
        codec: impl Codec<K> + Codec<V> + Clone + 'static,
    ) -> Stream<K, V>
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        self.stream_with(topic, codec.clone(), codec)
    }

    /// A stream of `topic`'s records with separate key and value codecs (e.g.
    /// [`Utf8Codec`](crate::Utf8Codec) keys and JSON values).
    pub fn stream_with<K, V>(
        &self,
        topic: impl Into<String>,
        key_codec: impl Codec<K> + 'static,
        value_codec: impl Codec<V> + 'static,
    ) -> Stream<K, V>
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        let topic: Arc<str> = Arc::from(topic.into());
        let key_codec: Arc<dyn Codec<K>> = Arc::new(key_codec);
        let value_codec: Arc<dyn Codec<V>> = Arc::new(value_codec);
        let inner = Rc::clone(&self.inner);
        let attach = move |down: Factory<K, V>| {
            let encoders: Arc<dyn Any + Send + Sync> =
                Arc::new((Arc::clone(&key_codec), Arc::clone(&value_codec)));
            let decode_topic = topic.to_string();
            let factory: EntryFactory = Arc::new(move || {
                Box::new(Decode {
                    key_codec: Arc::clone(&key_codec),
                    value_codec: Arc::clone(&value_codec),
                    next: down(),
                    errors: metrics::counter!(m::DECODE_ERRORS, "topic" => decode_topic.clone()),
                })
            });
            inner.borrow_mut().pipelines.push(PipelineDef {
                topic,
                factory,
                encoders,
            });
        };
        Stream {
            inner: Rc::clone(&self.inner),
            attach: Box::new(attach),
        }
    }

    /// Freezes the topology; fails if two pipelines read one topic, a side branch does not end
    /// in a sink, or a transactional sink shares its topology with other sinks.
    pub fn build(self) -> Result<Topology> {
        let inner = std::mem::take(&mut *self.inner.borrow_mut());
        if let Some(e) = inner.errors.first() {
            return Err(Error::Topology(e.clone()));
        }
        if inner.pipelines.is_empty() {
            return Err(Error::Topology("no stream ends in a sink".into()));
        }
        for (i, p) in inner.pipelines.iter().enumerate() {
            if inner.pipelines[..i].iter().any(|q| q.topic == p.topic) {
                return Err(Error::Topology(format!(
                    "two pipelines read topic {:?}; use tee to branch one stream",
                    p.topic
                )));
            }
        }
        let transactional = inner
            .sinks
            .iter()
            .filter(|s| matches!(s.kind, SinkKind::Transactional(_)))
            .count();
        if transactional > 0 && (inner.sinks.len() > 1 || !inner.output_topics.is_empty()) {
            return Err(Error::Topology(
                "a transactional sink must be the topology's only sink (its offsets are the \
                 source of truth)"
                    .into(),
            ));
        }
        Ok(Topology {
            pipelines: inner.pipelines,
            sinks: inner.sinks,
            output_topics: inner.output_topics,
            dead_letter_topic: inner.dead_letter_topic.map(Arc::from),
            max_record_bytes: inner.max_record_bytes,
        })
    }
}

/// A built, immutable topology, ready for [`KafkaRuntime`](crate::kafka::KafkaRuntime) or
/// [`TestDriver`](crate::TestDriver).
pub struct Topology {
    pub(crate) pipelines: Vec<PipelineDef>,
    pub(crate) sinks: Vec<SinkDef>,
    pub(crate) output_topics: Vec<String>,
    pub(crate) dead_letter_topic: Option<Arc<str>>,
    pub(crate) max_record_bytes: Option<usize>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("source_topics", &self.source_topics())
            .field("output_topics", &self.output_topics)
            .field(
                "sinks",
                &self
                    .sinks
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("dead_letter_topic", &self.dead_letter_topic)
            .finish()
    }
}

impl Topology {
    /// The topics read, one pipeline each.
    pub fn source_topics(&self) -> Vec<&str> {
        self.pipelines.iter().map(|p| &*p.topic).collect()
    }

    /// The topics written by topic sinks (not counting the dead-letter topic).
    pub fn output_topics(&self) -> Vec<&str> {
        self.output_topics.iter().map(String::as_str).collect()
    }

    /// The dead-letter topic, if any.
    pub fn dead_letter_topic(&self) -> Option<&str> {
        self.dead_letter_topic.as_deref()
    }

    /// Whether the topology ends in a [`TransactionalSink`] (exactly-once mode).
    pub fn is_exactly_once(&self) -> bool {
        self.transactional_sink().is_some()
    }

    pub(crate) fn transactional_sink(&self) -> Option<(usize, &Arc<dyn ErasedTransactionalSink>)> {
        self.sinks
            .iter()
            .enumerate()
            .find_map(|(i, s)| match &s.kind {
                SinkKind::Transactional(t) => Some((i, t)),
                SinkKind::Async(_) => None,
            })
    }

    pub(crate) fn pipeline(&self, topic: &str) -> Option<&PipelineDef> {
        self.pipelines.iter().find(|p| &*p.topic == topic)
    }

    /// A fresh operator instance for one partition of `topic`.
    pub(crate) fn instantiate(
        &self,
        topic: &str,
        partition: i32,
        suppress_below: u64,
    ) -> Option<PartitionTask> {
        let p = self.pipeline(topic)?;
        Some(PartitionTask {
            topic: Arc::clone(&p.topic),
            partition,
            entry: (p.factory)(),
            dead_letter_topic: self.dead_letter_topic.clone(),
            max_record_bytes: self.max_record_bytes,
            suppress_below,
            replay_sink: self.transactional_sink().map(|(id, _)| id),
            replayed: Vec::new(),
            out: Vec::new(),
            failure: None,
            suppressed: metrics::counter!(m::REPLAY_SUPPRESSED, "topic" => p.topic.to_string()),
        })
    }
}

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

/// A typed stream of records of one source topic, being built; consumed by each operator.
///
/// Finish every stream with a sink ([`to_topic`](Self::to_topic), [`to_sink`](Self::to_sink),
/// [`to_transactional`](Self::to_transactional)); a stream dropped without one adds nothing to
/// the topology.
pub struct Stream<K, V> {
    inner: Rc<RefCell<Inner>>,
    attach: Box<dyn FnOnce(Factory<K, V>)>,
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
            Box::new(ToSink {
                sink: id,
                records_out: metrics::counter!(m::RECORDS_OUT, "operator" => op.clone()),
                _types: PhantomData,
            })
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

// ---- nodes ----

struct Decode<K, V> {
    key_codec: Arc<dyn Codec<K>>,
    value_codec: Arc<dyn Codec<V>>,
    next: Box<dyn Node<K, V>>,
    errors: Counter,
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

struct Stateless<K, V, K2, V2, F> {
    f: Arc<F>,
    buf: Vec<Record<K2, V2>>,
    next: Box<dyn Node<K2, V2>>,
    records_in: Counter,
    records_out: Counter,
    _types: PhantomData<fn(K, V)>,
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

struct Tee<K, V> {
    side: Box<dyn Node<K, V>>,
    next: Box<dyn Node<K, V>>,
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

struct Divert<K, V, F> {
    f: Arc<F>,
    side: Box<dyn Node<K, V>>,
    next: Box<dyn Node<K, V>>,
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

struct Validate<K, V, F> {
    f: Arc<F>,
    next: Box<dyn Node<K, V>>,
}

impl<K, V, F> Node<K, V> for Validate<K, V, F>
where
    F: Fn(&K, &V) -> std::result::Result<(), Rejection> + Send + Sync,
{
    fn push(&mut self, cx: &mut Cx<'_>, record: Record<K, V>) {
        match (self.f)(&record.key, &record.value) {
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

struct TopicSink<K, V> {
    topic: String,
    key_codec: Arc<dyn Codec<K>>,
    value_codec: Arc<dyn Codec<V>>,
    records_out: Counter,
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

struct ToSink<K, V> {
    sink: usize,
    records_out: Counter,
    _types: PhantomData<fn(K, V)>,
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

struct WindowCounters {
    records_in: Counter,
    late: Counter,
    /// early, watermark, idle, count
    emits: [Counter; 4],
}

impl WindowCounters {
    fn new(name: &str) -> Self {
        let emit = |trigger: &'static str| metrics::counter!(m::WINDOW_EMITS, "operator" => name.to_owned(), "trigger" => trigger);
        Self {
            records_in: metrics::counter!(m::RECORDS_IN, "operator" => name.to_owned()),
            late: metrics::counter!(m::LATE_RECORDS, "operator" => name.to_owned()),
            emits: [
                emit("early"),
                emit("watermark"),
                emit("idle"),
                emit("count"),
            ],
        }
    }

    fn emitted(&self, trigger: Option<WindowTrigger>) {
        let i = match trigger {
            Some(WindowTrigger::Early) => 0,
            Some(WindowTrigger::Watermark) => 1,
            Some(WindowTrigger::Idle) => 2,
            None => 3,
        };
        self.emits[i].increment(1);
    }
}

struct CountNode<K, V> {
    op: CountWindows<K, V>,
    next: Box<dyn Node<K, CountWindow<K, V>>>,
    counters: WindowCounters,
}

impl<K, V> Node<K, V> for CountNode<K, V>
where
    K: Hash + Eq + Clone + Send,
    V: Clone + Send,
{
    fn push(&mut self, cx: &mut Cx<'_>, record: Record<K, V>) {
        self.counters.records_in.increment(1);
        if let Some(w) = self.op.push(&record.key, cx.offset, record.value) {
            self.counters.emitted(None);
            self.next.push(
                cx,
                Record {
                    key: record.key,
                    value: w,
                    timestamp_ms: record.timestamp_ms,
                },
            );
        }
    }

    fn tick(&mut self, cx: &mut Cx<'_>, now_ms: i64) {
        self.next.tick(cx, now_ms);
    }

    fn min_retained(&self) -> Option<u64> {
        min_opt(self.op.min_retained_position(), self.next.min_retained())
    }
}

struct RowNode<K, F> {
    op: RowWindows<K>,
    row: Arc<F>,
    buf: Vec<f32>,
    next: Box<dyn Node<K, Rows>>,
    counters: WindowCounters,
}

impl<K, V, F> Node<K, V> for RowNode<K, F>
where
    K: Hash + Eq + Clone + Send,
    F: Fn(&V, &mut Vec<f32>) + Send + Sync,
{
    fn push(&mut self, cx: &mut Cx<'_>, record: Record<K, V>) {
        self.counters.records_in.increment(1);
        self.buf.clear();
        (self.row)(&record.value, &mut self.buf);
        let rows = match self
            .op
            .push(&record.key, record.timestamp_ms, cx.offset, &self.buf)
        {
            Ok(Some(w)) => Rows {
                values: w.values.to_vec(),
                width: w.width,
                start_timestamp_ms: w.start_timestamp_ms,
                end_timestamp_ms: w.end_timestamp_ms,
                first_position: w.first_position,
                last_position: w.last_position,
            },
            Ok(None) => return,
            Err(e) => return cx.dead_letter(&e),
        };
        self.counters.emitted(None);
        self.next.push(
            cx,
            Record {
                key: record.key,
                value: rows,
                timestamp_ms: record.timestamp_ms,
            },
        );
    }

    fn tick(&mut self, cx: &mut Cx<'_>, now_ms: i64) {
        self.next.tick(cx, now_ms);
    }

    fn min_retained(&self) -> Option<u64> {
        min_opt(self.op.min_retained_position(), self.next.min_retained())
    }
}

struct TimeNode<K, V, A: Aggregator<V>> {
    op: TimeWindows<K, V, A>,
    out: Vec<TimeWindowOutput<K, V, A::Acc>>,
    next: Box<dyn Node<K, WindowResult<K, A::Acc>>>,
    late: Option<Box<dyn Node<K, V>>>,
    counters: WindowCounters,
}

impl<K, V, A> TimeNode<K, V, A>
where
    K: Hash + Eq + Clone + Send,
    V: Send,
    A: Aggregator<V> + Send,
    A::Acc: Send,
{
    fn drain(&mut self, cx: &mut Cx<'_>) {
        for output in self.out.drain(..) {
            match output {
                TimeWindowOutput::Window(w) => {
                    self.counters.emitted(Some(w.trigger));
                    let timestamp_ms = w.end_ms - 1;
                    self.next.push(
                        cx,
                        Record {
                            key: w.key.clone(),
                            value: w,
                            timestamp_ms,
                        },
                    );
                }
                TimeWindowOutput::Late(l) => {
                    self.counters.late.increment(1);
                    if let Some(late) = &mut self.late {
                        late.push(
                            cx,
                            Record {
                                key: l.key,
                                value: l.value,
                                timestamp_ms: l.timestamp_ms,
                            },
                        );
                    }
                }
            }
        }
    }
}

impl<K, V, A> Node<K, V> for TimeNode<K, V, A>
where
    K: Hash + Eq + Clone + Send,
    V: Send,
    A: Aggregator<V> + Send,
    A::Acc: Send,
{
    fn push(&mut self, cx: &mut Cx<'_>, record: Record<K, V>) {
        self.counters.records_in.increment(1);
        if let Err(e) = self.op.push(
            &record.key,
            record.timestamp_ms,
            cx.offset,
            record.value,
            &mut self.out,
        ) {
            return cx.dead_letter(&e);
        }
        self.drain(cx);
    }

    fn tick(&mut self, cx: &mut Cx<'_>, now_ms: i64) {
        self.op.on_wall_clock(now_ms, &mut self.out);
        self.drain(cx);
        if let Some(late) = &mut self.late {
            late.tick(cx, now_ms);
        }
        self.next.tick(cx, now_ms);
    }

    fn min_retained(&self) -> Option<u64> {
        let own = min_opt(self.op.min_retained_position(), self.next.min_retained());
        min_opt(own, self.late.as_ref().and_then(|l| l.min_retained()))
    }
}
