//! A bounded, ordered buffer of items awaiting delivery that drops its oldest item when full.
//!
//! The collector pushes every sample here and a delivery task sends from the front. While the broker
//! is down the buffer fills; once full, each new sample evicts the oldest one (recent data is worth
//! more to a live detector than data from the start of an outage) and the eviction is counted.
//!
//! Every item gets a sequence number when pushed. The delivery side reads a batch from the front with
//! [`DeliveryBuffer::front`] without removing it, sends it, and acknowledges each delivered item
//! with [`DeliveryBuffer::acknowledge`]; items that failed stay, in their order, for the next try.
//! An item evicted while it was being sent may still arrive: acknowledging it is then a no-op.

use std::collections::VecDeque;

use crate::{Error, Result};

/// A FIFO of at most `capacity` items that evicts the oldest on overflow; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct DeliveryBuffer<T> {
    items: VecDeque<(u64, T)>,
    capacity: usize,
    next_sequence: u64,
    dropped: u64,
}

impl<T> DeliveryBuffer<T> {
    /// An empty buffer holding at most `capacity` items; a capacity of 0 is an error.
    pub fn new(capacity: usize) -> Result<Self> {
        if capacity == 0 {
            return Err(Error::InvalidInput(
                "a delivery buffer needs a capacity of at least 1".into(),
            ));
        }
        Ok(Self {
            items: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
            next_sequence: 0,
            dropped: 0,
        })
    }

    /// Appends `item` and returns its sequence number. When the buffer was full, the oldest item is
    /// evicted first and counted in [`dropped`](Self::dropped).
    pub fn push(&mut self, item: T) -> u64 {
        if self.items.len() == self.capacity {
            self.items.pop_front();
            self.dropped += 1;
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.items.push_back((sequence, item));
        sequence
    }

    /// Up to `n` items from the front, oldest first, with their sequence numbers; nothing is removed.
    pub fn front(&self, n: usize) -> impl Iterator<Item = (u64, &T)> {
        self.items.iter().take(n).map(|(s, item)| (*s, item))
    }

    /// Removes the item with sequence number `sequence` after its delivery; `None` when it is no
    /// longer held (evicted, or acknowledged before).
    pub fn acknowledge(&mut self, sequence: u64) -> Option<T> {
        // Items are ordered by sequence number, and deliveries are acknowledged oldest first, so the
        // item is almost always at the front.
        let index = self
            .items
            .binary_search_by_key(&sequence, |(s, _)| *s)
            .ok()?;
        self.items.remove(index).map(|(_, item)| item)
    }

    /// Items held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no item is held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The most items held at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Items evicted so far because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(buffer: &DeliveryBuffer<&'static str>) -> Vec<&'static str> {
        buffer.front(usize::MAX).map(|(_, v)| *v).collect()
    }

    #[test]
    fn zero_capacity_is_rejected() {
        assert!(matches!(
            DeliveryBuffer::<u8>::new(0),
            Err(Error::InvalidInput(_))
        ));
    }

    #[test]
    fn full_buffer_evicts_the_oldest_and_counts_it() {
        let mut b = DeliveryBuffer::new(3).unwrap();
        for item in ["a", "b", "c", "d", "e"] {
            b.push(item);
        }
        assert_eq!(held(&b), ["c", "d", "e"]);
        assert_eq!(b.len(), 3);
        assert_eq!(b.dropped(), 2);
    }

    #[test]
    fn front_peeks_in_order_and_acknowledge_removes_only_delivered_items() {
        let mut b = DeliveryBuffer::new(10).unwrap();
        let seqs: Vec<u64> = ["a", "b", "c", "d"]
            .into_iter()
            .map(|i| b.push(i))
            .collect();
        assert_eq!(seqs, [0, 1, 2, 3]);
        let batch: Vec<(u64, &str)> = b.front(3).map(|(s, v)| (s, *v)).collect();
        assert_eq!(batch, [(0, "a"), (1, "b"), (2, "c")]);
        assert_eq!(b.len(), 4, "peeking removes nothing");
        // "a" delivered, "b" failed, "c" delivered: "b" stays ahead of "d".
        assert_eq!(b.acknowledge(0), Some("a"));
        assert_eq!(b.acknowledge(2), Some("c"));
        assert_eq!(held(&b), ["b", "d"]);
        assert_eq!(b.acknowledge(2), None, "acknowledging twice is a no-op");
    }

    #[test]
    fn acknowledging_an_evicted_item_is_a_no_op() {
        let mut b = DeliveryBuffer::new(2).unwrap();
        let first = b.push("a");
        b.push("b");
        b.push("c"); // evicts "a" while it may be in flight
        assert_eq!(b.acknowledge(first), None);
        assert_eq!(held(&b), ["b", "c"]);
        assert_eq!(b.dropped(), 1);
    }
}
