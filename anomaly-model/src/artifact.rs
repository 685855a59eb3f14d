//! The versioned on-disk form of a trained model: a directory holding `manifest.json` (schema,
//! scaler, window, threshold, calibration, training statistics, format version, creation time)
//! beside the detector's own files (Burn weights for the autoencoder).

use std::path::Path;

use anomaly_core::MetricSchema;
use anomaly_core::scaling::Scaler;
use anomaly_core::threshold::Calibration;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::adaptation::{Adaptation, Aggregation};
use crate::detector::DetectorKind;
use crate::error::{Error, Result};

/// Marks a manifest as ours, so a foreign JSON file is refused rather than misread.
pub const FORMAT_NAME: &str = "anomaly-model";
/// Bumped whenever the artifact layout changes; loading refuses versions it does not know.
/// Version 2 added the aggregation and the adaptation; a version 1 manifest loads as the mean
/// without adaptation, which is how its threshold was calibrated.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest layout this release still reads.
const OLDEST_FORMAT_VERSION: u32 = 1;
/// The manifest's file name inside an artifact directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Everything about a trained model except the detector's weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// The layout version, [`FORMAT_VERSION`] when written by this release.
    pub format_version: u32,
    /// Identifies this trained model; every anomaly records the version that found it.
    pub model_version: String,
    /// When training finished, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// The metrics, in the order the model expects them.
    pub schema: MetricSchema,
    /// Rows per window.
    pub window: usize,
    /// Which detector the artifact holds.
    pub detector: DetectorKind,
    /// Scaling fitted on the training rows.
    pub scaler: Scaler,
    /// How the threshold was calibrated.
    pub calibration: Calibration,
    /// The calibrated threshold on smoothed scores.
    pub threshold: f64,
    /// Scores are averaged over this many consecutive windows before the threshold applies.
    pub smoothing: usize,
    /// Weight decay per step back in time inside a window's error.
    pub recency_decay: f32,
    /// How a window's per-metric errors become its score.
    #[serde(default = "legacy_aggregation")]
    pub aggregation: Aggregation,
    /// How each host's typical errors follow its normal behaviour; the threshold was calibrated
    /// with it.
    #[serde(default = "Adaptation::none")]
    pub adaptation: Adaptation,
    /// What training saw and reached.
    pub training: TrainingStats,
}

/// Statistics of one training run, kept for operators and for retraining decisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingStats {
    /// Training rows used (fit and held-out parts together).
    pub rows: usize,
    /// Windows the detector was fitted on.
    pub fit_windows: usize,
    /// Held-out windows used for early stopping, the error profile and calibration.
    pub validation_windows: usize,
    /// Epochs run (1 for PCA).
    pub epochs: usize,
    /// Final mean squared reconstruction error per value on the held-out windows.
    pub validation_loss: f64,
    /// Mean smoothed score on the held-out windows (about 1 by construction).
    pub validation_score_mean: f64,
    /// Wall-clock seconds training took.
    pub train_secs: f64,
}

/// What version 1 manifests, which have no aggregation field, used.
fn legacy_aggregation() -> Aggregation {
    Aggregation::Mean
}

/// Writes `value` as pretty JSON to `path`.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| Error::Artifact {
        path: path.to_path_buf(),
        message: format!("cannot encode: {e}"),
    })?;
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads JSON from `path`; a missing, truncated or foreign file is an [`Error::Artifact`] or
/// [`Error::Io`], never a panic.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Artifact {
        path: path.to_path_buf(),
        message: format!("unreadable: {e}"),
    })
}

impl Manifest {
    /// Reads and checks the manifest of the artifact in `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let value: serde_json::Value = read_json(&path)?;
        let bad = |message: String| Error::Artifact {
            path: path.clone(),
            message,
        };
        match value.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT_NAME) => {}
            other => {
                return Err(bad(format!(
                    "not an {FORMAT_NAME} manifest (format {other:?})"
                )));
            }
        }
        match value.get("format_version").and_then(|v| v.as_u64()) {
            Some(v)
                if (u64::from(OLDEST_FORMAT_VERSION)..=u64::from(FORMAT_VERSION)).contains(&v) => {}
            other => {
                return Err(bad(format!(
                    "format version {other:?} is not supported (this release reads \
                     {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})"
                )));
            }
        }
        let manifest: Self =
            serde_json::from_value(value).map_err(|e| bad(format!("unreadable: {e}")))?;
        if manifest.window == 0
            || manifest.schema.is_empty()
            || manifest.scaler.dims() != manifest.schema.len()
        {
            return Err(bad("window, schema and scaler disagree".into()));
        }
        manifest
            .aggregation
            .validate()
            .and_then(|()| manifest.adaptation.validate())
            .map_err(|e| bad(e.to_string()))?;
        if !manifest.threshold.is_finite() {
            return Err(bad(format!(
                "threshold {} is not finite",
                manifest.threshold
            )));
        }
        Ok(manifest)
    }

    /// Writes the manifest into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        write_json(&dir.join(MANIFEST_FILE), self)
    }
}
