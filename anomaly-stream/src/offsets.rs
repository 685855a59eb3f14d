//! Offset bookkeeping for at-least-once commits and window replay: pure, shared by the Kafka
//! runtime and the [`TestDriver`](crate::TestDriver).
//!
//! A partition's commit point has two numbers: `offset`, the next record to process (every output
//! derived from records below it is acknowledged), and `replay_from`, where consumption must
//! restart so that window state as of `offset` can be rebuilt. Both are stored together: in
//! Kafka as the committed offset plus the commit metadata string [`encode_metadata`] (and the
//! offset committed in the auxiliary `<group.id>.replay` group, see [`kafka`](crate::kafka)), or
//! in a [`TransactionalSink`](crate::TransactionalSink) row.

use std::collections::{BTreeMap, VecDeque};

/// Where a partition can be committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommitPoint {
    /// Next offset to process; outputs of every record below it are acknowledged.
    pub offset: u64,
    /// First offset to replay (without emitting) to rebuild window state; `<= offset`.
    pub replay_from: u64,
}

const METADATA_PREFIX: &str = "anomaly-stream/v1 replay_from=";

/// The Kafka commit metadata string that carries `replay_from`: `anomaly-stream/v1
/// replay_from=<offset>`.
pub fn encode_metadata(point: CommitPoint) -> String {
    format!("{METADATA_PREFIX}{}", point.replay_from)
}

/// Reads back a commit point from a committed `offset` and its metadata; metadata this crate did
/// not write (or none) means "nothing to replay" (`replay_from = offset`).
pub fn decode_metadata(offset: u64, metadata: &str) -> CommitPoint {
    let replay_from = metadata
        .strip_prefix(METADATA_PREFIX)
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(offset, |r| r.min(offset));
    CommitPoint {
        offset,
        replay_from,
    }
}

/// The acknowledgement and replay state of one assigned partition.
///
/// The runtime calls [`processed`](Self::processed) after running each record (with the number
/// of outputs it handed to sinks), [`ack`](Self::ack) as sinks acknowledge them, and
/// [`checkpoint`](Self::checkpoint) now and then with the operators' `min_retained_position`;
/// [`committable`](Self::committable) then says how far a commit may go.
#[derive(Debug, Clone)]
pub struct PartitionOffsets {
    base: CommitPoint,
    /// Next offset to process: one past the last processed record.
    next: u64,
    /// Unacknowledged output counts by the source offset they derive from.
    pending: BTreeMap<u64, u32>,
    /// `(next at the time, replay_from at the time)`, oldest first.
    checkpoints: VecDeque<CommitPoint>,
}

impl PartitionOffsets {
    /// A partition whose processing starts again from `base` (its last commit point): records
    /// from `base.replay_from` are replayed, outputs below `base.offset` suppressed.
    pub fn new(base: CommitPoint) -> Self {
        Self {
            base,
            next: base.replay_from,
            pending: BTreeMap::new(),
            checkpoints: VecDeque::new(),
        }
    }

    /// The commit point processing started from.
    pub fn base(&self) -> CommitPoint {
        self.base
    }

    /// One past the last processed offset.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Records that the record at `offset` was processed and produced `outputs` outputs still to
    /// be acknowledged.
    pub fn processed(&mut self, offset: u64, outputs: u32) {
        self.next = self.next.max(offset + 1);
        self.add_pending(offset, outputs);
    }

    /// Adds `outputs` unacknowledged outputs derived from `offset` (e.g. windows flushed by a
    /// wall-clock tick, attributed to the last processed record).
    pub fn add_pending(&mut self, offset: u64, outputs: u32) {
        if outputs > 0 {
            *self.pending.entry(offset).or_insert(0) += outputs;
        }
    }

    /// Acknowledges one output derived from `offset`.
    pub fn ack(&mut self, offset: u64) {
        if let Some(n) = self.pending.get_mut(&offset) {
            *n -= 1;
            if *n == 0 {
                self.pending.remove(&offset);
            }
        }
    }

    /// Outputs not yet acknowledged.
    pub fn pending(&self) -> u64 {
        self.pending.values().map(|&n| u64::from(n)).sum()
    }

    /// Notes the operators' `min_retained_position` as of now (`None`: no state), so that a later
    /// commit at or past [`next`](Self::next) can replay from there.
    pub fn checkpoint(&mut self, min_retained: Option<u64>) {
        let point = CommitPoint {
            offset: self.next,
            replay_from: min_retained.unwrap_or(self.next).min(self.next),
        };
        if self
            .checkpoints
            .back()
            .is_some_and(|c| c.offset == point.offset)
        {
            self.checkpoints.pop_back();
        }
        self.checkpoints.push_back(point);
        // Bound the history: keep the newest 64 checkpoints.
        while self.checkpoints.len() > 64 {
            self.checkpoints.pop_front();
        }
    }

    /// How far a commit may go now: the lowest offset with unacknowledged outputs (or the next
    /// offset), never below the base, with the replay position of the newest checkpoint taken at
    /// or before it. Drops checkpoints that no later commit can use.
    pub fn committable(&mut self) -> CommitPoint {
        let offset = self
            .pending
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next)
            .min(self.next);
        if offset <= self.base.offset {
            return self.base;
        }
        // Newest checkpoint whose state is at or before `offset`: replaying from its
        // `replay_from` rebuilds the state at its own offset, and so (by processing on) at ours.
        let usable = self.checkpoints.iter().rposition(|c| c.offset <= offset);
        let replay_from = match usable {
            Some(i) => {
                self.checkpoints.drain(..i);
                self.checkpoints[0].replay_from
            }
            None => self.base.replay_from,
        };
        let point = CommitPoint {
            offset,
            replay_from,
        };
        self.base = point;
        point
    }

    /// Whether the record at `offset` is being replayed to rebuild state (its outputs were
    /// already delivered before the last commit).
    pub fn is_replay(&self, offset: u64) -> bool {
        offset < self.base.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(offset: u64, replay_from: u64) -> CommitPoint {
        CommitPoint {
            offset,
            replay_from,
        }
    }

    #[test]
    fn metadata_round_trip_and_foreign_metadata() {
        let p = point(100, 42);
        assert_eq!(decode_metadata(100, &encode_metadata(p)), p);
        assert_eq!(decode_metadata(7, ""), point(7, 7));
        assert_eq!(decode_metadata(7, "someone else's"), point(7, 7));
        // A replay position past the offset is clamped.
        assert_eq!(
            decode_metadata(7, &encode_metadata(point(9, 9))),
            point(7, 7)
        );
    }

    #[test]
    fn commit_waits_for_the_oldest_unacknowledged_output() {
        let mut o = PartitionOffsets::new(point(0, 0));
        o.processed(0, 1);
        o.processed(1, 0);
        o.processed(2, 2);
        assert_eq!(o.committable().offset, 0);
        o.ack(2);
        o.ack(2);
        assert_eq!(o.committable().offset, 0, "offset 0 still pending");
        o.ack(0);
        assert_eq!(o.committable().offset, 3);
        assert_eq!(o.pending(), 0);
    }

    #[test]
    fn replay_position_comes_from_a_checkpoint_not_after_the_commit() {
        let mut o = PartitionOffsets::new(point(0, 0));
        o.processed(0, 0);
        o.processed(1, 0);
        o.checkpoint(Some(1)); // at next = 2, state needs offset 1
        o.processed(2, 1);
        o.processed(3, 0);
        o.checkpoint(Some(3)); // at next = 4, state needs offset 3
        // Offset 2 unacknowledged: commit at 2 must replay from the checkpoint taken at 2.
        assert_eq!(o.committable(), point(2, 1));
        o.ack(2);
        assert_eq!(o.committable(), point(4, 3));
        // No state at all: replay nothing.
        o.processed(4, 0);
        o.checkpoint(None);
        assert_eq!(o.committable(), point(5, 5));
    }

    #[test]
    fn never_goes_below_the_base_while_replaying() {
        let mut o = PartitionOffsets::new(point(10, 4));
        assert_eq!(o.next(), 4);
        assert!(o.is_replay(4) && !o.is_replay(10));
        o.processed(4, 0);
        o.checkpoint(Some(4));
        assert_eq!(o.committable(), point(10, 4));
        for off in 5..12 {
            o.processed(off, 0);
        }
        o.checkpoint(Some(8));
        assert_eq!(o.committable(), point(12, 8));
    }
}
