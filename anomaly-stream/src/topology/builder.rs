//! [`TopologyBuilder`] and the [`Topology`] it freezes.

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::context::{EntryFactory, Factory};
use super::nodes::Decode;
use super::stream::Stream;
use super::task::PartitionTask;
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::metrics as m;
use crate::sink::{ErasedSink, ErasedTransactionalSink};

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
pub(super) struct Inner {
    pub(super) pipelines: Vec<PipelineDef>,
    pub(super) sinks: Vec<SinkDef>,
    pub(super) output_topics: Vec<String>,
    pub(super) dead_letter_topic: Option<String>,
    pub(super) max_record_bytes: Option<usize>,
    pub(super) next_operator: usize,
    pub(super) errors: Vec<String>,
}

impl Inner {
    pub(super) fn operator_name(&mut self, kind: &str) -> String {
        self.next_operator += 1;
        format!("{kind}-{}", self.next_operator)
    }
}

/// Builds a [`Topology`]; see the [module docs](crate::topology).
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

    /// Whether the topology ends in a [`TransactionalSink`](crate::TransactionalSink) (exactly-once mode).
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
        Some(PartitionTask::new(
            Arc::clone(&p.topic),
            partition,
            (p.factory)(),
            self.dead_letter_topic.clone(),
            self.max_record_bytes,
            suppress_below,
        ))
    }
}
