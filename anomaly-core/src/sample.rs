//! Samples: one entity's metric values at one instant.

use serde::{Deserialize, Serialize};

/// One observation of every metric of a schema, for one entity (host), at one event time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The entity (host name, server id) the sample describes. It is the stream key.
    pub entity: String,
    /// Event time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// One value per schema metric, in schema order. May hold NaN or infinities from a broken source;
    /// [`crate::scaling::Scaler`] deals with them explicitly.
    pub values: Vec<f64>,
}

impl Sample {
    /// A sample of `entity` at `timestamp_ms` with `values` in schema order.
    pub fn new(entity: impl Into<String>, timestamp_ms: i64, values: Vec<f64>) -> Self {
        Self {
            entity: entity.into(),
            timestamp_ms,
            values,
        }
    }
}
