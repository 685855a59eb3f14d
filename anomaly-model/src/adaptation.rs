//! How a window's per-metric errors become one score, and how that score follows each host's own
//! normal behaviour as samples arrive.
//!
//! A model is trained once, on a baseline; the hosts it watches then drift: a disk fills, a
//! service is deployed, a metric settles at a new level. Without adaptation the threshold
//! calibrated on the baseline is too low for the host whose normal has moved up (it pages all
//! day) and too high for the one whose normal has moved down. So each host keeps, per metric, a
//! running *typical error* (an exponentially weighted mean, seeded at the held-out mean, 1) and
//! its score divides each metric's error by it before [`Aggregation`]:
//! - it learns only from windows that are neither over the threshold nor inside an event, so an
//!   incident cannot teach itself normal;
//! - an event that lasts longer than [`Adaptation::relearn_after`] windows is a new normal rather
//!   than an incident (a metric that shifted and stayed): from then on the host learns again, at
//!   [`Adaptation::relearn_rate`], until the event closes.
//!
//! The state is a handful of floats per metric and host (see
//! [`HostDetector`](crate::host::HostDetector)); the same code runs in `anomaly eval` and in the
//! live detector, and the threshold is calibrated on held-out scores computed by it.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the (adapted) normalised errors of a window's metrics become its score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Aggregation {
    /// The mean over metrics: about 1 on normal data, robust to one noisy metric, but an anomaly
    /// on one metric of many is diluted.
    Mean,
    /// The largest: no dilution, but the noisiest metric sets the normal level.
    Max,
    /// The mean of the `k` largest: between the two.
    TopMean {
        /// How many of the largest errors are averaged; at least 1.
        k: usize,
    },
}

impl Aggregation {
    /// Checks `k >= 1` for [`Aggregation::TopMean`].
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::TopMean { k: 0 } => Err(Error::InvalidInput(
                "top_mean aggregation needs k >= 1".into(),
            )),
            _ => Ok(()),
        }
    }

    /// The score of `values`, which it may reorder (0 for no value).
    pub fn apply(&self, values: &mut [f32]) -> f32 {
        if values.is_empty() {
            return 0.0;
        }
        match *self {
            Self::Mean => values.iter().sum::<f32>() / values.len() as f32,
            Self::Max => values.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            Self::TopMean { k } => {
                let k = k.clamp(1, values.len());
                let first = values.len() - k;
                values.select_nth_unstable_by(first, f32::total_cmp);
                values[first..].iter().sum::<f32>() / k as f32
            }
        }
    }
}

/// How each host's typical errors follow its normal behaviour; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Adaptation {
    /// Weight of each new normal window in a metric's typical error, in `[0, 1)`: the typical
    /// error follows about the last `1 / rate` normal windows. 0 freezes it at the held-out mean
    /// (no adaptation).
    pub rate: f32,
    /// Windows inside one event after which the host learns again (a level that lasted this long
    /// is a new normal); 0 never.
    pub relearn_after: usize,
    /// The weight while relearning, in `[0, 1)`.
    pub relearn_rate: f32,
}

impl Default for Adaptation {
    /// Typical errors that follow the last ~3,300 normal windows (2.3 days at one window a
    /// minute); an event that lasts 720 windows (12 hours at a minute) is learnt as the new
    /// normal over the next ~100.
    fn default() -> Self {
        Self {
            rate: 3e-4,
            relearn_after: 720,
            relearn_rate: 1e-2,
        }
    }
}

impl Adaptation {
    /// No adaptation: every host is scored against the held-out errors of the baseline, as
    /// models trained before adaptation existed were.
    pub fn none() -> Self {
        Self {
            rate: 0.0,
            relearn_after: 0,
            relearn_rate: 0.0,
        }
    }

    /// Checks that both rates lie in `[0, 1)`.
    pub fn validate(&self) -> Result<()> {
        for (name, rate) in [("rate", self.rate), ("relearn_rate", self.relearn_rate)] {
            if !(0.0..1.0).contains(&rate) {
                return Err(Error::InvalidInput(format!(
                    "adaptation {name} must lie in [0, 1), got {rate}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregations_of_one_window() {
        let errors = [1.0, 4.0, 0.0, 3.0];
        let apply = |aggregation: Aggregation| aggregation.apply(&mut errors.clone());
        assert_eq!(apply(Aggregation::Mean), 2.0);
        assert_eq!(apply(Aggregation::Max), 4.0);
        assert_eq!(apply(Aggregation::TopMean { k: 2 }), 3.5);
        assert_eq!(apply(Aggregation::TopMean { k: 4 }), 2.0);
        // k beyond the metrics is all of them.
        assert_eq!(apply(Aggregation::TopMean { k: 9 }), 2.0);
        assert_eq!(Aggregation::Max.apply(&mut []), 0.0);
        assert!(Aggregation::TopMean { k: 0 }.validate().is_err());
    }

    #[test]
    fn rates_outside_zero_one_are_refused() {
        assert!(Adaptation::default().validate().is_ok());
        assert!(Adaptation::none().validate().is_ok());
        for rate in [-0.1, 1.0, f32::NAN] {
            assert!(
                Adaptation {
                    rate,
                    ..Adaptation::default()
                }
                .validate()
                .is_err()
            );
            assert!(
                Adaptation {
                    relearn_rate: rate,
                    ..Adaptation::default()
                }
                .validate()
                .is_err()
            );
        }
    }

    #[test]
    fn configurations_read_from_json() {
        let a: Aggregation = serde_json::from_str(r#"{"kind": "top_mean", "k": 3}"#).unwrap();
        assert_eq!(a, Aggregation::TopMean { k: 3 });
        let b: Adaptation = serde_json::from_str(r#"{"rate": 0.001}"#).unwrap();
        assert_eq!(b.rate, 0.001);
        assert_eq!(b.relearn_after, Adaptation::default().relearn_after);
    }
}
