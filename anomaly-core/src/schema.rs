//! Metric schemas: the ordered, named metrics every sample of a stream carries.

use serde::{Deserialize, Serialize};

/// One metric of a schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metric {
    /// Short, stable name (`cpu_busy`, `net_rx`, ...). Used in logs, attributions and Prometheus labels.
    pub name: String,
    /// Unit in base units (`percent`, `bytes_per_second`, `ratio`, ...).
    pub unit: String,
}

impl Metric {
    /// A metric with the given name and unit.
    pub fn new(name: impl Into<String>, unit: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            unit: unit.into(),
        }
    }
}

/// The ordered metrics of a stream. Position `i` of [`crate::Sample::values`] is metric `i`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricSchema {
    metrics: Vec<Metric>,
}

/// Names of the seven host metrics the collector emits, in schema order.
pub const HOST_METRIC_NAMES: [&str; 7] = [
    "cpu_busy",
    "memory_used",
    "load1",
    "disk_read",
    "disk_write",
    "net_rx",
    "net_tx",
];

impl MetricSchema {
    /// A schema of the given metrics, in order.
    pub fn new(metrics: Vec<Metric>) -> Self {
        Self { metrics }
    }

    /// The seven host metrics of the collector: CPU busy %, memory used %, load1, disk read/write
    /// bytes/s and network receive/transmit bytes/s.
    pub fn host() -> Self {
        let units = [
            "percent",
            "percent",
            "load",
            "bytes_per_second",
            "bytes_per_second",
            "bytes_per_second",
            "bytes_per_second",
        ];
        Self::new(
            HOST_METRIC_NAMES
                .iter()
                .zip(units)
                .map(|(n, u)| Metric::new(*n, u))
                .collect(),
        )
    }

    /// A schema of `n` unnamed metrics (`m1`..`mN`, unit `scaled`), for datasets that ship only columns.
    pub fn numbered(n: usize) -> Self {
        Self::new(
            (1..=n)
                .map(|i| Metric::new(format!("m{i}"), "scaled"))
                .collect(),
        )
    }

    /// The metrics in order.
    pub fn metrics(&self) -> &[Metric] {
        &self.metrics
    }

    /// How many metrics a sample of this schema carries.
    pub fn len(&self) -> usize {
        self.metrics.len()
    }

    /// Whether the schema has no metric at all.
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }

    /// The name of metric `i`, if it exists.
    pub fn name(&self, i: usize) -> Option<&str> {
        self.metrics.get(i).map(|m| m.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_schema_has_seven_named_metrics_in_order() {
        let s = MetricSchema::host();
        assert_eq!(s.len(), 7);
        assert_eq!(s.name(0), Some("cpu_busy"));
        assert_eq!(s.name(6), Some("net_tx"));
        assert_eq!(s.name(7), None);
    }

    #[test]
    fn numbered_schema_names_are_one_based() {
        let s = MetricSchema::numbered(3);
        assert_eq!(s.name(0), Some("m1"));
        assert_eq!(s.name(2), Some("m3"));
    }
}
