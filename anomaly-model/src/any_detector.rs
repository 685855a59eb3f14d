//! The detector a model holds, chosen at run time: the autoencoder or the PCA baseline. The model
//! pipeline ([`crate::model`]) goes through this one type.

use std::path::Path;

use crate::autoencoder::AutoencoderDetector;
use crate::detector::{Detector, DetectorKind, TrainingProgress, WindowShape};
use crate::error::Result;
use crate::model::TrainingConfig;
use crate::pca::PcaDetector;

/// Any of the detectors, chosen at run time.
#[derive(Debug, Clone)]
pub enum AnyDetector {
    /// The Burn autoencoder.
    Autoencoder(AutoencoderDetector),
    /// The PCA baseline.
    Pca(PcaDetector),
}

impl AnyDetector {
    /// Fits a `kind` detector on `train` windows with `validation` windows held out.
    pub(crate) fn fit(
        kind: DetectorKind,
        shape: WindowShape,
        train: &[f32],
        validation: &[f32],
        config: &TrainingConfig,
        progress: &mut dyn FnMut(&TrainingProgress),
    ) -> Result<Self> {
        let decay = config.recency_decay;
        Ok(match kind {
            DetectorKind::Autoencoder => Self::Autoencoder(AutoencoderDetector::fit(
                shape,
                train,
                validation,
                &config.autoencoder,
                decay,
                progress,
            )?),
            DetectorKind::Pca => Self::Pca(PcaDetector::fit(
                shape,
                train,
                validation,
                &config.pca,
                decay,
                progress,
            )?),
        })
    }

    /// Reads the `kind` detector saved in `dir`.
    pub(crate) fn load(kind: DetectorKind, dir: &Path) -> Result<Self> {
        Ok(match kind {
            DetectorKind::Autoencoder => Self::Autoencoder(AutoencoderDetector::load(dir)?),
            DetectorKind::Pca => Self::Pca(PcaDetector::load(dir)?),
        })
    }

    /// Writes the detector's files into `dir`.
    pub(crate) fn save(&self, dir: &Path) -> Result<()> {
        match self {
            Self::Autoencoder(d) => d.save(dir),
            Self::Pca(d) => d.save(dir),
        }
    }

    /// The window shape it was trained on.
    pub fn shape(&self) -> WindowShape {
        match self {
            Self::Autoencoder(d) => d.shape(),
            Self::Pca(d) => d.shape(),
        }
    }

    /// Raises every metric's typical error to at least its floor.
    pub(crate) fn raise_metric_floors(&mut self, floors: &[f32]) {
        match self {
            Self::Autoencoder(d) => d.profile_mut().raise_metric_floors(floors),
            Self::Pca(d) => d.profile_mut().raise_metric_floors(floors),
        }
    }

    /// Each window's normalised error per metric.
    pub(crate) fn metric_errors(&self, windows: &[f32], errors: &mut [f32]) -> Result<()> {
        match self {
            Self::Autoencoder(d) => d.metric_errors(windows, errors),
            Self::Pca(d) => d.metric_errors(windows, errors),
        }
    }

    /// Each metric's share of one window's error.
    pub(crate) fn contributions(&self, window: &[f32], shares: &mut [f32]) -> Result<()> {
        match self {
            Self::Autoencoder(d) => d.contributions(window, shares),
            Self::Pca(d) => d.contributions(window, shares),
        }
    }
}
