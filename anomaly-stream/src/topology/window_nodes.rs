//! The window operators' instances: count, row and event-time windows with their counters.

use std::hash::Hash;
use std::sync::Arc;

use metrics::Counter;

use super::context::{Cx, Node, min_opt};
use super::record::Record;
use super::stream::Rows;
use crate::metrics as m;
use crate::window::{
    Aggregator, CountWindow, CountWindows, RowWindows, TimeWindowOutput, TimeWindows, WindowResult,
    WindowTrigger,
};

pub(super) struct WindowCounters {
    pub(super) records_in: Counter,
    pub(super) late: Counter,
    /// early, watermark, idle, count
    pub(super) emits: [Counter; 4],
}

impl WindowCounters {
    pub(super) fn new(name: &str) -> Self {
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

pub(super) struct CountNode<K, V> {
    pub(super) op: CountWindows<K, V>,
    pub(super) next: Box<dyn Node<K, CountWindow<K, V>>>,
    pub(super) counters: WindowCounters,
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

pub(super) struct RowNode<K, F> {
    pub(super) op: RowWindows<K>,
    pub(super) row: Arc<F>,
    pub(super) buf: Vec<f32>,
    pub(super) next: Box<dyn Node<K, Rows>>,
    pub(super) counters: WindowCounters,
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

pub(super) struct TimeNode<K, V, A: Aggregator<V>> {
    pub(super) op: TimeWindows<K, V, A>,
    pub(super) out: Vec<TimeWindowOutput<K, V, A::Acc>>,
    pub(super) next: Box<dyn Node<K, WindowResult<K, A::Acc>>>,
    pub(super) late: Option<Box<dyn Node<K, V>>>,
    pub(super) counters: WindowCounters,
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
