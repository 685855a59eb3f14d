//! [`TestDriver`]: runs a [`Topology`] in memory, without a broker, through the same operator
//! instances and offset bookkeeping as the Kafka runtime, with an explicit wall clock.
//!
//! ```
//! use anomaly_stream::window::{Count, TimeWindowConfig, TimeWindowSpec};
//! use anomaly_stream::{JsonCodec, MemorySink, TestDriver, TopologyBuilder, Utf8Codec};
//!
//! let sink = MemorySink::new();
//! let builder = TopologyBuilder::new();
//! builder
//!     .stream_with::<String, f64>("metrics", Utf8Codec, JsonCodec)
//!     .time_windows(
//!         TimeWindowConfig::new(TimeWindowSpec::Tumbling { size_ms: 1_000 }),
//!         Count,
//!     )?
//!     .to_sink("counts", sink.clone());
//! let mut driver = TestDriver::new(builder.build()?);
//! for t in [0, 500, 999, 1_000] {
//!     driver.send("metrics", 0, &"web-1".to_string(), &1.0, t)?;
//! }
//! let windows = sink.records();
//! assert_eq!(windows.len(), 1);
//! assert_eq!((windows[0].value.start_ms, windows[0].value.aggregate), (0, 3));
//! # Ok::<(), anomaly_stream::Error>(())
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::FutureExt;

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::offsets::{CommitPoint, PartitionOffsets};
use crate::sink::{BoxFuture, Item, RecordList, SourceOffset};
use crate::topology::{
    Emitted, OutgoingMessage, PartitionTask, RawRecord, Record, SinkKind, Topology,
};

struct DriverPartition {
    task: PartitionTask,
    /// Every record sent, indexed by offset: what replay reads.
    log: Vec<RawRecord>,
    offsets: PartitionOffsets,
}

/// Feeds records through a [`Topology`] in memory; see the [module docs](self).
///
/// Outputs to topic sinks and dead letters are collected as [`OutgoingMessage`]s. Async and
/// transactional sinks are really called (their futures are run to completion on the spot, so
/// they must not wait on an outside runtime); [`MemorySink`](crate::MemorySink) suits them.
/// Every output counts as acknowledged at once, so the commit point of a partition is always
/// "everything processed"; [`restart_partition`](Self::restart_partition) rebuilds a partition's
/// operators from that point by replay, as a reassignment does in Kafka.
pub struct TestDriver {
    topology: Topology,
    partitions: BTreeMap<(String, i32), DriverPartition>,
    outputs: Vec<OutgoingMessage>,
    now_ms: i64,
}

impl TestDriver {
    /// A driver with the wall clock at 0.
    pub fn new(topology: Topology) -> Self {
        Self {
            topology,
            partitions: BTreeMap::new(),
            outputs: Vec::new(),
            now_ms: 0,
        }
    }

    fn partition(&mut self, topic: &str, partition: i32) -> Result<&mut DriverPartition> {
        let key = (topic.to_owned(), partition);
        if !self.partitions.contains_key(&key) {
            let task = self
                .topology
                .instantiate(topic, partition, 0)
                .ok_or_else(|| Error::Driver(format!("no pipeline reads topic {topic:?}")))?;
            self.partitions.insert(
                key.clone(),
                DriverPartition {
                    task,
                    log: Vec::new(),
                    offsets: PartitionOffsets::new(CommitPoint {
                        offset: 0,
                        replay_from: 0,
                    }),
                },
            );
        }
        Ok(self.partitions.get_mut(&key).expect("inserted above"))
    }

    /// Sends a record given as bytes to `partition` of `topic`; returns its offset. Fails only
    /// for an unknown topic or a record that fails without a dead-letter topic.
    pub fn send_raw(
        &mut self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp_ms: i64,
    ) -> Result<u64> {
        let raw = RawRecord {
            key: key.map(<[u8]>::to_vec),
            value: value.to_vec(),
            timestamp_ms,
        };
        let now_ms = self.now_ms;
        let p = self.partition(topic, partition)?;
        let offset = p.log.len() as u64;
        p.log.push(raw);
        let emitted = std::mem::take(p.task.process(
            offset,
            p.log[offset as usize].as_raw_ref(),
            now_ms,
        )?);
        p.offsets.processed(offset, 0);
        let min = p.task.min_retained();
        p.offsets.checkpoint(min);
        self.dispatch(topic, partition, emitted)?;
        Ok(offset)
    }

    /// Sends a typed record, encoded with the source's codecs; `K` and `V` must be the types
    /// the topic's stream was declared with.
    pub fn send<K: 'static, V: 'static>(
        &mut self,
        topic: &str,
        partition: i32,
        key: &K,
        value: &V,
        timestamp_ms: i64,
    ) -> Result<u64> {
        let pipeline = self
            .topology
            .pipeline(topic)
            .ok_or_else(|| Error::Driver(format!("no pipeline reads topic {topic:?}")))?;
        let (key_codec, value_codec) = pipeline
            .encoders
            .downcast_ref::<(Arc<dyn Codec<K>>, Arc<dyn Codec<V>>)>()
            .ok_or_else(|| {
                Error::Driver(format!(
                    "topic {topic:?} was declared with other key or value types"
                ))
            })?;
        let (mut k, mut v) = (Vec::new(), Vec::new());
        key_codec.encode(key, &mut k)?;
        value_codec.encode(value, &mut v)?;
        self.send_raw(topic, partition, Some(&k), &v, timestamp_ms)
    }

    /// Moves the wall clock forward by `ms` and lets every partition's operators react (idle
    /// closing of time windows).
    pub fn advance_time(&mut self, ms: u64) -> Result<()> {
        self.set_time(self.now_ms.saturating_add(ms as i64))
    }

    /// Sets the wall clock to `now_ms` and lets every partition's operators react.
    pub fn set_time(&mut self, now_ms: i64) -> Result<()> {
        self.now_ms = now_ms;
        let keys: Vec<_> = self.partitions.keys().cloned().collect();
        for (topic, partition) in keys {
            let p = self
                .partitions
                .get_mut(&(topic.clone(), partition))
                .expect("listed");
            let Some(last) = p.offsets.next().checked_sub(1) else {
                continue;
            };
            let emitted = std::mem::take(p.task.tick(now_ms, last)?);
            let min = p.task.min_retained();
            p.offsets.checkpoint(min);
            self.dispatch(&topic, partition, emitted)?;
        }
        Ok(())
    }

    /// The wall clock.
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    fn dispatch(&mut self, topic: &str, partition: i32, emitted: Vec<Emitted>) -> Result<()> {
        let mut per_sink: BTreeMap<usize, Vec<Item>> = BTreeMap::new();
        for e in emitted {
            match e {
                Emitted::Topic(m) => self.outputs.push(m),
                Emitted::Sink { sink, item } => per_sink.entry(sink).or_default().push(item),
            }
        }
        let (eos_offset, transactional) = self
            .partitions
            .get_mut(&(topic.to_owned(), partition))
            .map(|p| {
                let point = p.offsets.committable();
                let offset = SourceOffset {
                    topic: topic.to_owned(),
                    partition,
                    offset: point.offset,
                    replay_from: point.replay_from,
                };
                (Some(offset), p.task.take_transactional())
            })
            .unwrap_or_default();
        for (id, batch) in per_sink {
            let def = &self.topology.sinks[id];
            if let SinkKind::Async(s) = &def.kind {
                Self::completed(&def.name, s.write(&def.name, batch))?;
            }
        }
        if let Some((id, sink)) = self.topology.transactional_sink() {
            // Exactly-once: one transaction per source record (or tick), offsets included.
            let name = &self.topology.sinks[id].name;
            let offsets = eos_offset.into_iter().collect();
            Self::completed(name, sink.write_transaction(name, transactional, offsets))?;
        }
        Ok(())
    }

    /// The outcome of a sink's write, which must not wait for anything in the test driver.
    fn completed(name: &str, write: BoxFuture<'_, Result<()>>) -> Result<()> {
        write.now_or_never().unwrap_or_else(|| {
            Err(Error::Sink {
                sink: name.to_owned(),
                message: "the test driver needs sinks that complete without waiting".into(),
            })
        })
    }

    /// Hands records replayed below the commit point to the transactional sink's `replay`.
    fn replay(
        &mut self,
        topic: &str,
        partition: i32,
        replayed: Option<Box<dyn RecordList>>,
    ) -> Result<()> {
        let (Some((id, sink)), Some(replayed)) = (self.topology.transactional_sink(), replayed)
        else {
            return Ok(());
        };
        let name = &self.topology.sinks[id].name;
        sink.replay(name, replayed, topic, partition)
            .now_or_never()
            .unwrap_or_else(|| {
                Err(Error::Driver(
                    "the test driver needs sinks that complete without waiting".into(),
                ))
            })
    }

    /// Every message written to `topic` so far (a topic sink's or the dead-letter topic).
    pub fn topic_output(&self, topic: &str) -> Vec<OutgoingMessage> {
        self.outputs
            .iter()
            .filter(|m| m.topic == topic)
            .cloned()
            .collect()
    }

    /// The records written to `topic`, decoded.
    pub fn read_topic<K, V>(
        &self,
        topic: &str,
        key_codec: &dyn Codec<K>,
        value_codec: &dyn Codec<V>,
    ) -> Result<Vec<Record<K, V>>> {
        self.outputs
            .iter()
            .filter(|m| m.topic == topic)
            .map(|m| {
                Ok(Record {
                    key: key_codec.decode(m.key.as_deref().unwrap_or(&[]))?,
                    value: value_codec.decode(&m.value)?,
                    timestamp_ms: m.timestamp_ms,
                })
            })
            .collect()
    }

    /// The messages sent to the dead-letter topic.
    pub fn dead_letters(&self) -> Vec<OutgoingMessage> {
        match self.topology.dead_letter_topic() {
            Some(dlq) => self.topic_output(dlq),
            None => Vec::new(),
        }
    }

    /// Where `partition` of `topic` would be committed now.
    pub fn commit_point(&mut self, topic: &str, partition: i32) -> Option<CommitPoint> {
        self.partitions
            .get_mut(&(topic.to_owned(), partition))
            .map(|p| p.offsets.committable())
    }

    /// Simulates a reassignment of the partition after a clean commit: drops its operators,
    /// builds fresh ones and replays from the commit point's `replay_from`, suppressing outputs
    /// of already committed records. Returns the commit point used.
    pub fn restart_partition(&mut self, topic: &str, partition: i32) -> Result<CommitPoint> {
        let point = self
            .commit_point(topic, partition)
            .ok_or_else(|| Error::Driver(format!("{topic}/{partition} has no records")))?;
        self.restart_partition_at(topic, partition, point)?;
        Ok(point)
    }

    /// Simulates a crash and restart from an older commit `point` (as if later commits were
    /// lost): replays from `point.replay_from`, suppresses outputs below `point.offset` and
    /// emits again the outputs of every later record (at-least-once duplicates).
    pub fn restart_partition_at(
        &mut self,
        topic: &str,
        partition: i32,
        point: CommitPoint,
    ) -> Result<()> {
        let task = self
            .topology
            .instantiate(topic, partition, point.offset)
            .ok_or_else(|| Error::Driver(format!("no pipeline reads topic {topic:?}")))?;
        let p = self.partition(topic, partition)?;
        p.task = task;
        p.offsets = PartitionOffsets::new(point);
        let log = std::mem::take(&mut p.log);
        let now_ms = self.now_ms;
        let result = (|| {
            for offset in point.replay_from..log.len() as u64 {
                let p = self
                    .partitions
                    .get_mut(&(topic.to_owned(), partition))
                    .expect("exists");
                let emitted = std::mem::take(p.task.process(
                    offset,
                    log[offset as usize].as_raw_ref(),
                    now_ms,
                )?);
                p.offsets.processed(offset, 0);
                let min = p.task.min_retained();
                p.offsets.checkpoint(min);
                let replayed = p.task.take_replayed();
                self.replay(topic, partition, replayed)?;
                // Replayed records write nothing (a transactional sink's next transaction comes
                // after the replay, as in the runtime).
                if offset >= point.offset {
                    self.dispatch(topic, partition, emitted)?;
                }
            }
            Ok(())
        })();
        self.partitions
            .get_mut(&(topic.to_owned(), partition))
            .expect("exists")
            .log = log;
        result
    }
}
