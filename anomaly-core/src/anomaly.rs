//! Anomalies: what the detector reports about an entity, and feature windows, what it looks at.

use serde::{Deserialize, Serialize};

/// The last `window` samples of one entity, flattened oldest first (`window x dims` values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureWindow {
    /// The entity the samples belong to.
    pub entity: String,
    /// Timestamp of the oldest sample, ms since the Unix epoch.
    pub start_ms: i64,
    /// Timestamp of the newest sample, ms since the Unix epoch.
    pub end_ms: i64,
    /// Metrics per sample.
    pub dims: usize,
    /// `window x dims` values, oldest sample first.
    pub values: Vec<f32>,
}

impl FeatureWindow {
    /// Samples in the window.
    pub fn rows(&self) -> usize {
        self.values.len() / self.dims.max(1)
    }
}

/// How bad an anomaly is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The score exceeds the threshold.
    Warning,
    /// The score is at least [`Severity::CRITICAL_RATIO`] times the threshold.
    Critical,
}

impl Severity {
    /// Score-to-threshold ratio from which an anomaly is critical.
    pub const CRITICAL_RATIO: f64 = 2.0;

    /// The severity of `score` against `threshold`. Call it for scores above the threshold.
    pub fn of(score: f64, threshold: f64) -> Self {
        if threshold > 0.0 && score >= Self::CRITICAL_RATIO * threshold {
            Self::Critical
        } else {
            Self::Warning
        }
    }

    /// `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// One metric's part in an anomaly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    /// Metric name from the schema.
    pub metric: String,
    /// Share of the window's error, 0..=1.
    pub share: f64,
}

/// An anomaly event of one entity: from the first window over the threshold to the last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// The entity (host).
    pub entity: String,
    /// Start of the first window of the event, ms since the Unix epoch.
    pub window_start_ms: i64,
    /// End of the latest window of the event, ms since the Unix epoch.
    pub window_end_ms: i64,
    /// Peak smoothed score so far.
    pub score: f64,
    /// The threshold in force.
    pub threshold: f64,
    /// Severity of the peak.
    pub severity: Severity,
    /// The metrics that contributed most at the peak, largest share first.
    pub top_metrics: Vec<Contribution>,
    /// Version of the model that found it.
    pub model_version: String,
    /// Whether the event has closed (quiet windows followed it).
    pub closed: bool,
}

/// The `n` largest `shares` as named contributions, largest first.
pub fn top_contributions(
    names: &crate::MetricSchema,
    shares: &[f32],
    n: usize,
) -> Vec<Contribution> {
    let mut top = Vec::with_capacity(n.min(shares.len()));
    top_contributions_into(names, shares, n, &mut top);
    top
}

/// [`top_contributions`] written over `top`, reusing its entries' memory: an open event whose
/// peak rises on every window keeps its list without allocating once its names fit.
pub fn top_contributions_into(
    names: &crate::MetricSchema,
    shares: &[f32],
    n: usize,
    top: &mut Vec<Contribution>,
) {
    let n = n.min(shares.len());
    top.truncate(n);
    // Ranked by share, highest first, and among equal shares by index, as a stable sort would.
    // `n` is a handful: each rank is the best metric ranked after the previous one.
    let after = |i: usize, previous: usize| match shares[i].total_cmp(&shares[previous]) {
        std::cmp::Ordering::Less => true,
        std::cmp::Ordering::Equal => i > previous,
        std::cmp::Ordering::Greater => false,
    };
    let mut previous: Option<usize> = None;
    for rank in 0..n {
        let mut best: Option<usize> = None;
        for i in 0..shares.len() {
            if previous.is_some_and(|p| !after(i, p)) {
                continue;
            }
            if best.is_none_or(|b| shares[i].total_cmp(&shares[b]).is_gt()) {
                best = Some(i);
            }
        }
        let Some(i) = best else { break };
        let metric = names.name(i).unwrap_or("?");
        let share = f64::from(shares[i]);
        match top.get_mut(rank) {
            Some(entry) => {
                metric.clone_into(&mut entry.metric);
                entry.share = share;
            }
            None => top.push(Contribution {
                metric: metric.to_string(),
                share,
            }),
        }
        previous = Some(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_turns_critical_at_twice_the_threshold() {
        assert_eq!(Severity::of(3.0, 2.0), Severity::Warning);
        assert_eq!(Severity::of(4.0, 2.0), Severity::Critical);
        assert_eq!(Severity::Critical.as_str(), "critical");
    }

    #[test]
    fn top_contributions_written_in_place_rank_as_a_stable_sort_does() {
        let schema = crate::MetricSchema::host();
        let mut seed = 11u32;
        let mut top = Vec::new();
        for round in 0..500 {
            // Few distinct values, so ties are common.
            let shares: Vec<f32> = (0..7)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 28) as f32 / 16.0
                })
                .collect();
            let n = round % 9;
            let mut order: Vec<usize> = (0..shares.len()).collect();
            order.sort_by(|&a, &b| shares[b].total_cmp(&shares[a]));
            let expected: Vec<Contribution> = order
                .into_iter()
                .take(n)
                .map(|i| Contribution {
                    metric: schema.name(i).unwrap().to_string(),
                    share: f64::from(shares[i]),
                })
                .collect();
            top_contributions_into(&schema, &shares, n, &mut top);
            assert_eq!(top, expected, "{shares:?}, n = {n}");
            assert_eq!(top_contributions(&schema, &shares, n), expected);
        }
    }

    #[test]
    fn top_contributions_are_named_and_ordered() {
        let schema = crate::MetricSchema::host();
        let top = top_contributions(&schema, &[0.1, 0.6, 0.0, 0.0, 0.0, 0.3, 0.0], 2);
        assert_eq!(top[0].metric, "memory_used");
        assert!((top[0].share - 0.6).abs() < 1e-6);
        assert_eq!(top[1].metric, "net_rx");
        assert_eq!(top.len(), 2);
    }

    #[test]
    fn feature_window_counts_its_rows() {
        let w = FeatureWindow {
            entity: "h".into(),
            start_ms: 0,
            end_ms: 9,
            dims: 7,
            values: vec![0.0; 70],
        };
        assert_eq!(w.rows(), 10);
    }
}
