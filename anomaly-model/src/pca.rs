//! The PCA-reconstruction baseline: project a window onto the principal components of the
//! training windows and back; what the components cannot explain is the error.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::detector::{Detector, DetectorKind, TrainingProgress, WindowShape};
use crate::error::{Error, Result};
use crate::linalg::{mean_and_covariance, symmetric_eigen};
use crate::scoring::ErrorProfile;

/// Hyper-parameters of the PCA baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PcaConfig {
    /// Keep the fewest components that explain at least this share of the training variance.
    pub explained_variance: f64,
}

impl Default for PcaConfig {
    fn default() -> Self {
        Self {
            explained_variance: 0.9,
        }
    }
}

/// A fitted PCA baseline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PcaDetector {
    shape: WindowShape,
    mean: Vec<f32>,
    /// `k` unit components of width `shape.width()`, one after another.
    components: Vec<f32>,
    profile: ErrorProfile,
}

const PCA_FILE: &str = "pca.json";

impl PcaDetector {
    /// How many principal components it keeps.
    pub fn components(&self) -> usize {
        self.components.len() / self.shape.width().max(1)
    }
}

impl Detector for PcaDetector {
    type Config = PcaConfig;

    fn kind(&self) -> DetectorKind {
        DetectorKind::Pca
    }

    fn shape(&self) -> WindowShape {
        self.shape
    }

    fn profile(&self) -> &ErrorProfile {
        &self.profile
    }

    fn profile_mut(&mut self) -> &mut ErrorProfile {
        &mut self.profile
    }

    fn fit(
        shape: WindowShape,
        train: &[f32],
        validation: &[f32],
        config: &PcaConfig,
        recency_decay: f32,
        progress: &mut dyn FnMut(&TrainingProgress),
    ) -> Result<Self> {
        let width = shape.width();
        if width == 0
            || !train.len().is_multiple_of(width)
            || train.len() < 2 * width
            || validation.is_empty()
        {
            return Err(Error::InvalidInput(format!(
                "PCA needs at least two training windows of width {width}"
            )));
        }
        if !(config.explained_variance > 0.0 && config.explained_variance <= 1.0) {
            return Err(Error::InvalidInput(
                "explained_variance must be in (0, 1]".into(),
            ));
        }
        let (mean, covariance) = mean_and_covariance(train, width);
        let (values, vectors) = symmetric_eigen(covariance, width);
        let total: f64 = values.iter().map(|v| v.max(0.0)).sum();
        let mut kept = 0;
        let mut explained = 0.0;
        while kept < width && (total <= 0.0 || explained < config.explained_variance * total) {
            explained += values[kept].max(0.0);
            kept += 1;
            if total <= 0.0 {
                break;
            }
        }
        let mut detector = Self {
            shape,
            mean: mean.iter().map(|&m| m as f32).collect(),
            components: vectors[..kept]
                .iter()
                .flatten()
                .map(|&v| v as f32)
                .collect(),
            profile: ErrorProfile::fit(
                shape.window,
                shape.dims,
                recency_decay,
                &vec![0.0; width],
                &vec![0.0; width],
            )?,
        };
        let mut reconstructions = vec![0.0; validation.len()];
        detector.reconstruct(validation, &mut reconstructions)?;
        detector.profile = ErrorProfile::fit(
            shape.window,
            shape.dims,
            recency_decay,
            validation,
            &reconstructions,
        )?;
        let mut train_reconstructions = vec![0.0; train.len()];
        detector.reconstruct(train, &mut train_reconstructions)?;
        let mse = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| f64::from((x - y) * (x - y)))
                .sum::<f64>()
                / a.len().max(1) as f64
        };
        progress(&TrainingProgress {
            epoch: 1,
            max_epochs: 1,
            train_loss: mse(train, &train_reconstructions),
            validation_loss: mse(validation, &reconstructions),
        });
        Ok(detector)
    }

    fn reconstruct(&self, windows: &[f32], out: &mut [f32]) -> Result<()> {
        self.shape.check_batch(windows, out)?;
        let width = self.shape.width();
        let mut centred = vec![0.0f32; width];
        for (x, o) in windows.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
            for ((c, v), m) in centred.iter_mut().zip(x).zip(&self.mean) {
                *c = v - m;
            }
            o.copy_from_slice(&self.mean);
            for component in self.components.chunks_exact(width) {
                let projection: f32 = component.iter().zip(&centred).map(|(a, b)| a * b).sum();
                for (oi, ci) in o.iter_mut().zip(component) {
                    *oi += projection * ci;
                }
            }
        }
        Ok(())
    }

    fn save(&self, dir: &Path) -> Result<()> {
        crate::artifact::write_json(&dir.join(PCA_FILE), self)
    }

    fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(PCA_FILE);
        let detector: Self = crate::artifact::read_json(&path)?;
        let width = detector.shape.width();
        let consistent = width > 0
            && detector.mean.len() == width
            && detector.components.len().is_multiple_of(width)
            && detector.profile.window() == detector.shape.window
            && detector.profile.dims() == detector.shape.dims;
        if !consistent {
            return Err(Error::Artifact {
                path,
                message: "PCA shapes disagree with the window shape".into(),
            });
        }
        Ok(detector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points on the line y = 2x reconstruct exactly with one component; points off it do not.
    #[test]
    fn one_component_reconstructs_points_on_the_training_line() {
        let shape = WindowShape { window: 1, dims: 2 };
        let train: Vec<f32> = (0..50)
            .flat_map(|i| [i as f32 / 50.0, 2.0 * i as f32 / 50.0])
            .collect();
        let validation: Vec<f32> = (0..10)
            .flat_map(|i| [i as f32 / 10.0, 2.0 * i as f32 / 10.0])
            .collect();
        let pca = PcaDetector::fit(
            shape,
            &train,
            &validation,
            &PcaConfig {
                explained_variance: 0.99,
            },
            1.0,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(pca.components(), 1);
        let mut out = [0.0; 4];
        pca.reconstruct(&[0.3, 0.6, 0.5, 0.0], &mut out).unwrap();
        assert!(
            (out[0] - 0.3).abs() < 1e-4 && (out[1] - 0.6).abs() < 1e-4,
            "{out:?}"
        );
        // (0.5, 0) projects onto the line at t where (t, 2t) is nearest: t = 0.1.
        assert!(
            (out[2] - 0.1).abs() < 1e-4 && (out[3] - 0.2).abs() < 1e-4,
            "{out:?}"
        );
    }
}
