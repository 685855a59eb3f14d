//! Sinks other than Kafka topics: the async [`Sink`] (at-least-once) and the
//! [`TransactionalSink`] (exactly-once, storing source offsets with its output).
//!
//! Both are object-safe traits returning boxed futures, so an application implements them with
//! `Box::pin(async move { ... })` around its database client. Kafka topic sinks need no trait:
//! see [`Stream::to_topic`](crate::Stream::to_topic).

use std::any::Any;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

pub use futures::future::BoxFuture;

use crate::error::{Error, Result};

/// An asynchronous destination for a pipeline's records, e.g. a PostgreSQL table.
///
/// The runtime hands over batches in order per source partition and treats a returned `Ok` as
/// the acknowledgement of every record in the batch: only then can the source offsets behind
/// them be committed. An `Err` stops the runtime (uncommitted records are processed again after
/// a restart), so writes must be idempotent for at-least-once delivery to be harmless.
pub trait Sink<T>: Send + Sync + 'static {
    /// Writes `batch` (at least one record) durably.
    fn write(&self, batch: Vec<T>) -> BoxFuture<'_, Result<()>>;
}

/// The position of a source partition as stored by a [`TransactionalSink`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceOffset {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// The next offset to process: every record below it is reflected in the sink.
    pub offset: u64,
    /// The offset replay must start from to rebuild window state (`<= offset`).
    pub replay_from: u64,
}

/// A sink that writes outputs and the source offsets they come from in one transaction, for
/// exactly-once results without Kafka transactions.
///
/// On assignment the runtime asks [`load_offsets`](Self::load_offsets) where each partition
/// stands, starts consuming at `replay_from`, and suppresses outputs of records below `offset`.
/// Kafka's committed offsets are not used for such a topology.
pub trait TransactionalSink<T>: Send + Sync + 'static {
    /// Writes `batch` (possibly empty) and upserts `offsets` atomically. For a partition being
    /// replayed it is called only once the replay is over: everything below the offset has then
    /// been through [`replay`](Self::replay) or an earlier transaction.
    fn write_transaction(
        &self,
        batch: Vec<T>,
        offsets: Vec<SourceOffset>,
    ) -> BoxFuture<'_, Result<()>>;

    /// The stored offsets of `partitions` of `topic`; a partition without a row is omitted
    /// (it starts at the consumer's `auto.offset.reset`).
    fn load_offsets<'a>(
        &'a self,
        topic: &'a str,
        partitions: &'a [i32],
    ) -> BoxFuture<'a, Result<Vec<SourceOffset>>>;

    /// The records of `partition` of `topic` that the runtime reads again after an assignment,
    /// from the stored `replay_from` up to (not including) the stored `offset`, in order and
    /// before any [`write_transaction`](Self::write_transaction) of that partition. Their outputs
    /// were written before, so they must not be again; a sink that keeps state of its own (stored
    /// as of `replay_from`) rebuilds it from them. The default ignores them.
    fn replay<'a>(
        &'a self,
        batch: Vec<T>,
        topic: &'a str,
        partition: i32,
    ) -> BoxFuture<'a, Result<()>> {
        let _ = (batch, topic, partition);
        Box::pin(async { Ok(()) })
    }
}

/// An in-memory [`Sink`] and [`TransactionalSink`] that collects everything written, for tests
/// and demos. Clones share the same storage.
#[derive(Debug)]
pub struct MemorySink<T> {
    records: Arc<Mutex<Vec<T>>>,
    offsets: Arc<Mutex<Vec<SourceOffset>>>,
}

impl<T> Clone for MemorySink<T> {
    fn clone(&self) -> Self {
        Self {
            records: Arc::clone(&self.records),
            offsets: Arc::clone(&self.offsets),
        }
    }
}

impl<T> Default for MemorySink<T> {
    fn default() -> Self {
        Self {
            records: Arc::default(),
            offsets: Arc::default(),
        }
    }
}

impl<T: Clone> MemorySink<T> {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of everything written so far, in write order.
    pub fn records(&self) -> Vec<T> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The offsets stored by transactional writes, one entry per partition.
    pub fn offsets(&self) -> Vec<SourceOffset> {
        self.offsets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl<T: Send + 'static> Sink<T> for MemorySink<T> {
    fn write(&self, batch: Vec<T>) -> BoxFuture<'_, Result<()>> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(batch);
        Box::pin(async { Ok(()) })
    }
}

impl<T: Send + 'static> TransactionalSink<T> for MemorySink<T> {
    fn write_transaction(
        &self,
        batch: Vec<T>,
        offsets: Vec<SourceOffset>,
    ) -> BoxFuture<'_, Result<()>> {
        // Both locks held together: a reader never sees records without their offsets.
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let mut stored = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
        records.extend(batch);
        for o in offsets {
            stored.retain(|s| (s.topic.as_str(), s.partition) != (o.topic.as_str(), o.partition));
            stored.push(o);
        }
        Box::pin(async { Ok(()) })
    }

    fn load_offsets<'a>(
        &'a self,
        topic: &'a str,
        partitions: &'a [i32],
    ) -> BoxFuture<'a, Result<Vec<SourceOffset>>> {
        let found = self
            .offsets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|o| o.topic == topic && partitions.contains(&o.partition))
            .cloned()
            .collect();
        Box::pin(async { Ok(found) })
    }
}

/// Type-erased items travelling from operators to an async sink, one box each.
pub(crate) type Item = Box<dyn Any + Send>;

/// Records for the transactional sink, gathered in one list of the sink's record type behind
/// type erasure: a `Vec<T>`, so that a record costs no allocation of its own on its way to the
/// sink (an async sink's [`Item`] is boxed).
pub(crate) trait RecordList: Send {
    /// Records held.
    fn len(&self) -> usize;
    /// The list itself, to push to once its type is known.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// Every record, as a list of their own; this one is left empty, with room for as many.
    fn take_all(&mut self) -> Box<dyn RecordList>;
    /// The list as a `Box<Vec<T>>`, for the typed sink to unwrap.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

impl<T: Send + 'static> RecordList for Vec<T> {
    fn len(&self) -> usize {
        Vec::len(self)
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn take_all(&mut self) -> Box<dyn RecordList> {
        let room = Vec::len(self);
        Box::new(std::mem::replace(self, Vec::with_capacity(room)))
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

/// The records of `list` (none for `None`) as the sink's `Vec<T>`.
fn unwrap_list<T: 'static>(name: &str, list: Option<Box<dyn RecordList>>) -> Result<Vec<T>> {
    match list {
        None => Ok(Vec::new()),
        Some(list) => list
            .into_any()
            .downcast::<Vec<T>>()
            .map(|list| *list)
            .map_err(|_| unexpected_type(name)),
    }
}

/// The error of a record reaching sink `name` as another type than the sink's (a runtime bug).
pub(crate) fn unexpected_type(name: &str) -> Error {
    Error::Sink {
        sink: name.to_owned(),
        message: "record of an unexpected type (internal error)".into(),
    }
}

fn downcast<T: 'static>(name: &str, batch: Vec<Item>) -> Result<Vec<T>> {
    batch
        .into_iter()
        .map(|item| {
            item.downcast::<T>()
                .map(|b| *b)
                .map_err(|_| unexpected_type(name))
        })
        .collect()
}

/// A [`Sink`] behind type erasure, as the runtime holds it.
pub(crate) trait ErasedSink: Send + Sync {
    fn write(&self, name: &str, batch: Vec<Item>) -> BoxFuture<'_, Result<()>>;
}

/// A [`TransactionalSink`] behind type erasure.
// `load_offsets` is asked by the Kafka runtime only (the test driver starts from nothing stored).
#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
pub(crate) trait ErasedTransactionalSink: Send + Sync {
    fn write_transaction(
        &self,
        name: &str,
        batch: Option<Box<dyn RecordList>>,
        offsets: Vec<SourceOffset>,
    ) -> BoxFuture<'_, Result<()>>;

    fn load_offsets<'a>(
        &'a self,
        topic: &'a str,
        partitions: &'a [i32],
    ) -> BoxFuture<'a, Result<Vec<SourceOffset>>>;

    fn replay<'a>(
        &'a self,
        name: &str,
        batch: Box<dyn RecordList>,
        topic: &'a str,
        partition: i32,
    ) -> BoxFuture<'a, Result<()>>;
}

/// Wraps a typed sink as an erased one.
pub(crate) struct Typed<S, T>(pub S, pub PhantomData<fn(T)>);

impl<S: Sink<T>, T: Send + 'static> ErasedSink for Typed<S, T> {
    fn write(&self, name: &str, batch: Vec<Item>) -> BoxFuture<'_, Result<()>> {
        match downcast::<T>(name, batch) {
            Ok(batch) => self.0.write(batch),
            Err(e) => Box::pin(async { Err(e) }),
        }
    }
}

impl<S: TransactionalSink<T>, T: Send + 'static> ErasedTransactionalSink for Typed<S, T> {
    fn write_transaction(
        &self,
        name: &str,
        batch: Option<Box<dyn RecordList>>,
        offsets: Vec<SourceOffset>,
    ) -> BoxFuture<'_, Result<()>> {
        match unwrap_list::<T>(name, batch) {
            Ok(batch) => self.0.write_transaction(batch, offsets),
            Err(e) => Box::pin(async { Err(e) }),
        }
    }

    fn load_offsets<'a>(
        &'a self,
        topic: &'a str,
        partitions: &'a [i32],
    ) -> BoxFuture<'a, Result<Vec<SourceOffset>>> {
        self.0.load_offsets(topic, partitions)
    }

    fn replay<'a>(
        &'a self,
        name: &str,
        batch: Box<dyn RecordList>,
        topic: &'a str,
        partition: i32,
    ) -> BoxFuture<'a, Result<()>> {
        match unwrap_list::<T>(name, Some(batch)) {
            Ok(batch) => self.0.replay(batch, topic, partition),
            Err(e) => Box::pin(async { Err(e) }),
        }
    }
}
