//! The `Detector` trait every model implements, so each result can be shown beside a baseline.

use std::cell::RefCell;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::scoring::ErrorProfile;

/// Which detector a model uses.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectorKind {
    /// The Burn autoencoder: the default. With per-host adaptation and the default event rule it
    /// is ahead of the PCA baseline on every labelled dataset (docs/DETECTION.md), and being
    /// non-linear it sees a metric that is merely larger than ever (a CPU burn), which a
    /// reconstruction by principal components explains away.
    #[default]
    Autoencoder,
    /// The PCA-reconstruction baseline.
    Pca,
}

impl std::str::FromStr for DetectorKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "autoencoder" => Ok(Self::Autoencoder),
            "pca" => Ok(Self::Pca),
            other => Err(Error::InvalidInput(format!(
                "unknown detector {other:?} (expected autoencoder or pca)"
            ))),
        }
    }
}

impl std::fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Autoencoder => "autoencoder",
            Self::Pca => "pca",
        })
    }
}

/// The shape of a feature window: `window` rows (oldest first) of `dims` scaled metrics, flattened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowShape {
    /// Rows (time steps) per window.
    pub window: usize,
    /// Metrics per row.
    pub dims: usize,
}

impl WindowShape {
    /// Values in one flattened window.
    pub fn width(&self) -> usize {
        self.window * self.dims
    }

    /// Checks that `windows` holds whole windows and `out` has room for as many.
    pub(crate) fn check_batch(&self, windows: &[f32], out: &[f32]) -> Result<()> {
        let width = self.width();
        if width == 0 || !windows.len().is_multiple_of(width) || out.len() != windows.len() {
            return Err(Error::InvalidInput(format!(
                "expected whole windows of {width} values and an output of equal length, got {} and {}",
                windows.len(),
                out.len()
            )));
        }
        Ok(())
    }
}

/// One report of the training loop, after each epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingProgress {
    /// The epoch just finished, from 1.
    pub epoch: usize,
    /// The most epochs training may run (early stopping may end it sooner).
    pub max_epochs: usize,
    /// Mean squared reconstruction error per value on the training windows during the epoch.
    pub train_loss: f64,
    /// Mean squared reconstruction error per value on the held-out windows after the epoch.
    pub validation_loss: f64,
}

thread_local! {
    /// Reconstructions of the windows a thread is scoring, kept between calls so that live
    /// scoring (one window at a time) allocates nothing.
    static RECONSTRUCTION: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Most values [`Detector::metric_errors`] reconstructs into the kept buffer; a bigger batch (an
/// evaluation's) gets its own, so no thread keeps a large buffer.
const REUSED_RECONSTRUCTION: usize = 1 << 16;

/// A reconstruction-based detector over flattened windows of scaled metrics.
///
/// Implementors provide fitting, reconstruction and persistence; scoring and attribution follow
/// from the reconstruction and the [`ErrorProfile`] fitted on held-out windows.
pub trait Detector: Sized {
    /// Hyper-parameters of this detector.
    type Config;

    /// Which detector this is.
    fn kind(&self) -> DetectorKind;

    /// The window shape it was trained on.
    fn shape(&self) -> WindowShape;

    /// How its reconstruction errors become scores.
    fn profile(&self) -> &ErrorProfile;

    /// The same, to adjust after fitting (see [`ErrorProfile::raise_metric_floors`]).
    fn profile_mut(&mut self) -> &mut ErrorProfile;

    /// Fits on `train` windows, using `validation` windows (held out, later in time) for early
    /// stopping and for the error profile. Reports progress after each epoch.
    fn fit(
        shape: WindowShape,
        train: &[f32],
        validation: &[f32],
        config: &Self::Config,
        recency_decay: f32,
        progress: &mut dyn FnMut(&TrainingProgress),
    ) -> Result<Self>;

    /// Reconstructs each window of `windows` into the same place of `out`.
    fn reconstruct(&self, windows: &[f32], out: &mut [f32]) -> Result<()>;

    /// Writes the detector's files into `dir`.
    fn save(&self, dir: &Path) -> Result<()>;

    /// Reads a detector written by [`Detector::save`]; damaged or foreign files give an error.
    fn load(dir: &Path) -> Result<Self>;

    /// Each window's normalised error per metric (see [`ErrorProfile`]) into `errors`, `dims`
    /// values per window of `windows`.
    fn metric_errors(&self, windows: &[f32], errors: &mut [f32]) -> Result<()> {
        let shape = self.shape();
        let width = shape.width();
        if width == 0
            || !windows.len().is_multiple_of(width)
            || errors.len() * shape.window != windows.len()
        {
            return Err(Error::InvalidInput(format!(
                "{} values are not the windows of {} metric errors of width {width}",
                windows.len(),
                errors.len()
            )));
        }
        let mut errors_of = |reconstruction: &mut [f32]| -> Result<()> {
            self.reconstruct(windows, reconstruction)?;
            for ((x, r), e) in windows
                .chunks_exact(width)
                .zip(reconstruction.chunks_exact(width))
                .zip(errors.chunks_exact_mut(shape.dims))
            {
                self.profile().normalised_errors(x, r, e);
            }
            Ok(())
        };
        if windows.len() > REUSED_RECONSTRUCTION {
            return errors_of(&mut vec![0.0; windows.len()]);
        }
        RECONSTRUCTION.with_borrow_mut(|reconstruction| {
            reconstruction.clear();
            reconstruction.resize(windows.len(), 0.0);
            errors_of(reconstruction)
        })
    }

    /// Each metric's share of the error of one window into `shares` (length `dims`).
    fn contributions(&self, window: &[f32], shares: &mut [f32]) -> Result<()> {
        let shape = self.shape();
        if window.len() != shape.width() || shares.len() != shape.dims {
            return Err(Error::InvalidInput(format!(
                "expected one window of {} values and {} shares",
                shape.width(),
                shape.dims
            )));
        }
        let mut reconstruction = vec![0.0; window.len()];
        self.reconstruct(window, &mut reconstruction)?;
        self.profile()
            .contributions(window, &reconstruction, shares);
        Ok(())
    }
}
