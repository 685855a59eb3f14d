//! Samples: one entity's metric values at one instant.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::entity::Entity;

/// Values a [`Values`] list holds without a heap allocation: enough for the host schema (7).
pub const INLINE_VALUES: usize = 8;

/// A sample's metric values: inline up to [`INLINE_VALUES`], on the heap beyond (datasets of
/// dozens of metrics). Built from a `Vec<f64>` or a slice with `.into()`.
pub type Values = SmallVec<[f64; INLINE_VALUES]>;

/// One observation of every metric of a schema, for one entity (host), at one event time.
///
/// Decoding one from a fleet's stream allocates nothing in steady state: the name is shared with
/// the same host's earlier samples ([`Entity::interned`]) and a host's values lie inline.
/// Serialized as `{entity: string, timestamp_ms, values: [f64]}` (JSON, postcard).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The entity (host name, server id) the sample describes. It is the stream key.
    pub entity: Entity,
    /// Event time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// One value per schema metric, in schema order. May hold NaN or infinities from a broken source;
    /// [`crate::scaling::Scaler`] deals with them explicitly.
    pub values: Values,
}

impl Sample {
    /// A sample of `entity` at `timestamp_ms` with `values` in schema order.
    pub fn new(entity: impl Into<Entity>, timestamp_ms: i64, values: impl Into<Values>) -> Self {
        Self {
            entity: entity.into(),
            timestamp_ms,
            values: values.into(),
        }
    }
}

/// What a live stream accepts as a sample of a schema. Anything else would poison the detector
/// (a wrong width, a non-finite value), grow its per-host state without bound (a host name of a
/// megabyte), or corrupt event time (a clock years off), so it is refused with a reason.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SampleLimits {
    /// Values a sample must hold: the schema's width.
    pub width: usize,
    /// Longest entity name, in bytes (host names stop at 253).
    pub max_entity_bytes: usize,
    /// How far ahead of the receiver's clock a timestamp may be (clock skew), ms.
    pub max_lead_ms: i64,
    /// How far behind it (late or replayed data), ms.
    pub max_age_ms: i64,
}

impl SampleLimits {
    /// Limits for samples of `width` values: host-name length, five minutes of clock lead and a
    /// week of age.
    pub fn new(width: usize) -> Self {
        Self {
            width,
            max_entity_bytes: 253,
            max_lead_ms: 5 * 60_000,
            max_age_ms: 7 * 86_400_000,
        }
    }

    /// Whether `sample` is acceptable when the receiver's clock reads `now_ms`.
    pub fn check(&self, sample: &Sample, now_ms: i64) -> Result<(), SampleProblem> {
        if sample.values.len() != self.width {
            return Err(SampleProblem::WrongWidth {
                expected: self.width,
                actual: sample.values.len(),
            });
        }
        if let Some(metric) = sample.values.iter().position(|v| !v.is_finite()) {
            return Err(SampleProblem::NonFinite { metric });
        }
        if sample.entity.is_empty() || sample.entity.len() > self.max_entity_bytes {
            return Err(SampleProblem::EntityName {
                bytes: sample.entity.len(),
                limit: self.max_entity_bytes,
            });
        }
        // A NUL byte is refused by PostgreSQL on every write, and control characters corrupt
        // log lines and metric labels: such a name could never be stored or shown.
        if sample.entity.chars().any(char::is_control) {
            return Err(SampleProblem::EntityControl);
        }
        let ahead = sample.timestamp_ms.saturating_sub(now_ms);
        let behind = now_ms.saturating_sub(sample.timestamp_ms);
        if ahead > self.max_lead_ms || behind > self.max_age_ms {
            return Err(SampleProblem::Timestamp {
                timestamp_ms: sample.timestamp_ms,
                now_ms,
            });
        }
        Ok(())
    }
}

/// Why [`SampleLimits::check`] refused a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleProblem {
    /// Not one value per schema metric.
    WrongWidth {
        /// The schema's width.
        expected: usize,
        /// The sample's.
        actual: usize,
    },
    /// A NaN or infinite value.
    NonFinite {
        /// Index of the first such metric.
        metric: usize,
    },
    /// An empty entity name or one over the limit.
    EntityName {
        /// Its length.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// An entity name holding a control character (NUL, newline, escape...).
    EntityControl,
    /// An event time too far ahead of or behind the receiver's clock.
    Timestamp {
        /// The sample's.
        timestamp_ms: i64,
        /// The receiver's clock.
        now_ms: i64,
    },
}

impl SampleProblem {
    /// A short, stable label: `wrong_width`, `non_finite`, `entity_name` or `timestamp`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::WrongWidth { .. } => "wrong_width",
            Self::NonFinite { .. } => "non_finite",
            Self::EntityName { .. } | Self::EntityControl => "entity_name",
            Self::Timestamp { .. } => "timestamp",
        }
    }
}

impl std::fmt::Display for SampleProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::WrongWidth { expected, actual } => {
                write!(f, "{actual} values, the schema has {expected}")
            }
            Self::NonFinite { metric } => write!(f, "value {metric} is not finite"),
            Self::EntityName { bytes, limit } => {
                write!(f, "entity name of {bytes} bytes (1 to {limit} accepted)")
            }
            Self::EntityControl => write!(f, "entity name with a control character"),
            Self::Timestamp {
                timestamp_ms,
                now_ms,
            } => write!(
                f,
                "timestamp {timestamp_ms} ms is {} s from the receiver's clock",
                timestamp_ms.saturating_sub(now_ms) / 1000
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn every_kind_of_poison_is_refused_with_its_reason() {
        let limits = SampleLimits::new(2);
        let ok = Sample::new("web-1", NOW, vec![1.0, 2.0]);
        assert_eq!(limits.check(&ok, NOW), Ok(()));
        let reason = |sample: Sample| limits.check(&sample, NOW).unwrap_err().reason();
        assert_eq!(reason(Sample::new("web-1", NOW, vec![1.0])), "wrong_width");
        assert_eq!(
            reason(Sample::new("web-1", NOW, vec![1.0, f64::NAN])),
            "non_finite"
        );
        assert_eq!(
            reason(Sample::new("web-1", NOW, vec![f64::INFINITY, 1.0])),
            "non_finite"
        );
        assert_eq!(reason(Sample::new("", NOW, vec![1.0, 2.0])), "entity_name");
        for name in ["web\u{0}1", "web-1\n", "\u{1b}[31mweb"] {
            assert_eq!(
                reason(Sample::new(name, NOW, vec![1.0, 2.0])),
                "entity_name"
            );
        }
        assert_eq!(
            reason(Sample::new("h".repeat(254), NOW, vec![1.0, 2.0])),
            "entity_name"
        );
        assert_eq!(
            reason(Sample::new("web-1", NOW + 301_000, vec![1.0, 2.0])),
            "timestamp"
        );
        assert_eq!(
            reason(Sample::new("web-1", NOW - 8 * 86_400_000, vec![1.0, 2.0])),
            "timestamp"
        );
        let far_past = limits
            .check(&Sample::new("web-1", i64::MIN, vec![1.0, 2.0]), NOW)
            .unwrap_err();
        assert_eq!(far_past.reason(), "timestamp");
        // Saying why must not overflow either.
        assert!(far_past.to_string().contains("from the receiver's clock"));
        // At the limits: accepted.
        assert!(
            limits
                .check(
                    &Sample::new("h".repeat(253), NOW + 300_000, vec![0.0, 0.0]),
                    NOW
                )
                .is_ok()
        );
    }
}
