//! # anomaly-model
//!
//! Reconstruction-based anomaly detection over windows of host metrics: a Burn autoencoder and a
//! PCA baseline behind one [`Detector`] trait, an error design that makes scores comparable across
//! metrics, threshold calibration on held-out training windows, per-metric attribution, versioned
//! artifacts and a plain-Rust forward pass for sub-microsecond scoring.
//!
//! ```
//! use anomaly_core::{MetricSchema, dataset::Series};
//! use anomaly_model::{DetectorKind, Model, TrainingConfig};
//!
//! // Two metrics that follow each other; train the PCA baseline on them.
//! let rows: Vec<Vec<f64>> = (0..2000).map(|i| {
//!     let x = (i as f64 / 10.0).sin();
//!     vec![x, 2.0 * x + 0.01 * ((i * 7919) % 13) as f64]
//! }).collect();
//! let train = Series::from_rows(&rows)?;
//! let config = TrainingConfig { window: 4, ..TrainingConfig::default() };
//! let model = Model::train(&MetricSchema::numbered(2), &train, DetectorKind::Pca, &config, &mut |_| {})?;
//!
//! // Score one window of four scaled rows where the two metrics disagree.
//! let mut window = Vec::new();
//! for row in [[0.1, 0.2], [0.2, 0.4], [0.3, 0.6], [0.9, -0.8]] {
//!     let mut scaled = [0.0f32; 2];
//!     model.scale_row(&row, &mut scaled)?;
//!     window.extend_from_slice(&scaled);
//! }
//! let mut score = [0.0f32];
//! model.score_windows(&window, &mut score)?;
//! assert!(f64::from(score[0]) > model.manifest().threshold);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod adaptation;
pub mod any_detector;
pub mod artifact;
pub mod autoencoder;
pub mod dense;
pub mod detector;
pub mod error;
pub mod evaluate;
pub mod fleet;
pub mod host;
pub mod lifecycle;
mod linalg;
pub mod model;
pub mod package;
pub mod pca;
mod rng;
pub mod scoring;
pub mod versions;

pub use adaptation::{Adaptation, Aggregation};
pub use any_detector::AnyDetector;
pub use artifact::{Manifest, TrainingStats};
pub use detector::{Detector, DetectorKind, TrainingProgress, WindowShape};
pub use error::{Error, Result};
pub use evaluate::{EntityReport, evaluate_entity};
pub use fleet::{Detection, FleetScorer, PartitionSnapshot};
pub use host::{HostDetector, Observation};
pub use lifecycle::{BaselinePlan, DetectorLifecycle, Progress, Trainer};
pub use model::{Model, TrainingConfig};
pub use package::ModelPackage;
pub use versions::{LoadedModel, ModelStore};
