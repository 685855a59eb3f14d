//! # anomaly-core
//!
//! The domain of host-metric anomaly detection, free of any I/O framework: metric schemas and
//! samples, feature windows, anomalies, scaling fitted on training data, threshold calibration,
//! evaluation metrics and readers for labelled datasets.
//!
//! ```
//! use anomaly_core::{MetricSchema, Sample};
//!
//! let schema = MetricSchema::host();
//! let sample = Sample::new("web-1", 1_700_000_000_000, vec![12.5, 40.0, 0.7, 0.0, 1e5, 2e4, 3e4]);
//! assert_eq!(sample.values.len(), schema.len());
//! ```
#![deny(missing_docs)]

pub mod alerting;
pub mod anomaly;
pub mod dataset;
pub mod entity;
pub mod error;
pub mod eval;
pub mod host;
pub mod sample;
pub mod scaling;
pub mod schema;
pub mod synthetic;
pub mod threshold;

pub use anomaly::{Anomaly, Contribution, FeatureWindow, Severity};
pub use entity::Entity;
pub use error::{Error, Result};
pub use sample::{INLINE_VALUES, Sample, SampleLimits, SampleProblem, Values};
pub use schema::{Metric, MetricSchema};
