//! The decision state of one host (or dataset entity): from a window's per-metric errors to its
//! adapted score, the smoothed score, the threshold crossing and the anomaly events, learning the
//! host's normal as it goes (see [`crate::adaptation`]).
//!
//! It is pure and deterministic: the caller passes each window's errors (from
//! [`Model::metric_errors`]) and its time, in order. `anomaly eval` and the live detector both run
//! exactly this code, and [`Model::train`] calibrates the threshold on held-out scores it computed.

use anomaly_core::alerting::{EventChange, EventRule, EventTracker};
use anomaly_core::threshold::exceeds;

use crate::error::Result;
use crate::model::Model;
use crate::scoring::ScoreSmoother;

/// A typical error never falls below this share of the held-out mean, so a metric that went
/// perfectly quiet cannot make its next tiny error enormous.
const MIN_TYPICAL_ERROR: f32 = 1e-3;

/// Schemas up to this many metrics are scored without allocating.
const STACK_METRICS: usize = 64;

/// What one window led to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// The smoothed, adapted score.
    pub score: f64,
    /// Whether it exceeds the model's threshold.
    pub over: bool,
    /// Whether an event opened or closed with this window.
    pub change: Option<EventChange>,
}

/// One host's scoring and event state. Its size is a few floats per metric plus the smoothing
/// and event look-back (see [`HostDetector::heap_bytes`]). It serialises (with serde), so the
/// live detector can store it with its source offsets and restore it after a restart.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HostDetector {
    /// Each metric's running typical normalised error (1 = the held-out mean).
    typical: Vec<f32>,
    smoother: ScoreSmoother,
    tracker: EventTracker,
    /// Windows observed since the open event opened (0 outside events).
    event_age: usize,
}

impl HostDetector {
    /// A host that has seen nothing yet, for `model`, opening events by `rule`.
    pub fn new(model: &Model, rule: EventRule) -> Result<Self> {
        Ok(Self {
            typical: vec![1.0; model.shape().dims],
            smoother: model.smoother(),
            tracker: EventTracker::new(rule)?,
            event_age: 0,
        })
    }

    /// Scores one window from its per-metric errors (`dims` values from
    /// [`Model::metric_errors`]) at `time_ms`, updates the event state and learns from the window
    /// if it is normal.
    pub fn observe(&mut self, model: &Model, errors: &[f32], time_ms: i64) -> Observation {
        self.observe_against(model, errors, time_ms, model.manifest().threshold)
    }

    /// Scores one window the host must not learn from and that must not open or close an event
    /// (measured while something else disturbed the host, such as the detector's own training):
    /// the smoothed score moves, nothing else does.
    pub fn observe_disturbed(&mut self, model: &Model, errors: &[f32]) -> f64 {
        let raw = self.adapted_score(model, errors);
        f64::from(self.smoother.push(raw))
    }

    /// [`HostDetector::observe`] against an explicit threshold (calibration uses +inf).
    pub(crate) fn observe_against(
        &mut self,
        model: &Model,
        errors: &[f32],
        time_ms: i64,
        threshold: f64,
    ) -> Observation {
        let raw = self.adapted_score(model, errors);
        let score = f64::from(self.smoother.push(raw));
        let over = exceeds(score, threshold);
        let change = self.tracker.observe(time_ms, score, threshold);
        let in_event = self.tracker.open_event().is_some();
        self.event_age = if in_event { self.event_age + 1 } else { 0 };
        self.learn(model, errors, over, in_event);
        Observation {
            score,
            over,
            change,
        }
    }

    /// Moves the typical errors toward `errors` when the window is normal, or when the host has
    /// been inside one event long enough for it to be its new normal.
    fn learn(&mut self, model: &Model, errors: &[f32], over: bool, in_event: bool) {
        let adaptation = &model.manifest().adaptation;
        let rate = if !in_event && !over {
            adaptation.rate
        } else if adaptation.relearn_after > 0 && self.event_age > adaptation.relearn_after {
            adaptation.relearn_rate
        } else {
            0.0
        };
        if rate == 0.0 {
            return;
        }
        for (typical, &error) in self.typical.iter_mut().zip(errors) {
            *typical = (*typical + rate * (error - *typical)).max(MIN_TYPICAL_ERROR);
        }
    }

    /// Each metric's share of the window's adapted error into `shares` (length `dims`): what the
    /// score blames, metric by metric.
    pub fn contributions(&self, errors: &[f32], shares: &mut [f32]) {
        for ((share, &error), &typical) in shares.iter_mut().zip(errors).zip(&self.typical) {
            *share = error / typical;
        }
        let total: f32 = shares.iter().sum();
        if total > 0.0 {
            shares.iter_mut().for_each(|s| *s /= total);
        }
    }

    /// Whether the host is inside an event.
    pub fn in_event(&self) -> bool {
        self.tracker.open_event().is_some()
    }

    /// The open event as it would close now, if any.
    pub fn open_event(&self) -> Option<anomaly_core::alerting::Event> {
        self.tracker.open_event()
    }

    /// Each metric's current typical error, in multiples of its held-out mean.
    pub fn typical_errors(&self) -> &[f32] {
        &self.typical
    }

    /// Closes the open event, if any, at the end of a stream.
    pub fn flush(&mut self) -> Option<anomaly_core::alerting::Event> {
        self.event_age = 0;
        self.tracker.flush()
    }

    /// The aggregation of `errors` divided by the typical errors.
    fn adapted_score(&self, model: &Model, errors: &[f32]) -> f32 {
        let aggregation = model.manifest().aggregation;
        let adapt = |buffer: &mut [f32]| {
            for ((adapted, &error), &typical) in buffer.iter_mut().zip(errors).zip(&self.typical) {
                *adapted = error / typical;
            }
            aggregation.apply(buffer)
        };
        // Live host schemas are a handful of metrics: no allocation per window for them.
        let mut stack = [0.0f32; STACK_METRICS];
        match stack.get_mut(..errors.len()) {
            Some(buffer) => adapt(buffer),
            None => adapt(&mut vec![0.0; errors.len()]),
        }
    }

    /// Bytes this host holds on the heap beyond the struct itself.
    pub fn heap_bytes(&self) -> usize {
        self.typical.capacity() * std::mem::size_of::<f32>()
            + self.smoother.heap_bytes()
            + self.tracker.heap_bytes()
    }
}
