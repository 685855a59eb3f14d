//! A trained model end to end: scaling, a detector, its error profile, score smoothing and the
//! calibrated threshold, trained from raw training rows and saved as a versioned artifact.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anomaly_core::MetricSchema;
use anomaly_core::dataset::Series;
use anomaly_core::scaling::{Scaler, ScalerConfig, ValueFlags};
use anomaly_core::threshold::Calibration;
use serde::{Deserialize, Serialize};

use crate::adaptation::{Adaptation, Aggregation};
use crate::any_detector::AnyDetector;
use crate::artifact::{FORMAT_NAME, FORMAT_VERSION, Manifest, TrainingStats};
use crate::autoencoder::AutoencoderConfig;
use crate::detector::{DetectorKind, TrainingProgress, WindowShape};
use crate::error::{Error, Result};
use crate::host::HostDetector;
use crate::pca::PcaConfig;
use crate::scoring::ScoreSmoother;

/// Every setting of a training run. The defaults are the settings all reported results use; they
/// are the same for every entity and dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainingConfig {
    /// Rows per window (the last `window` samples of an entity).
    pub window: usize,
    /// The latest share of the training rows held out for early stopping, the error profile and
    /// threshold calibration. Held-out scores are honest where scores on fitted rows are not.
    pub validation_fraction: f64,
    /// How raw metric values are scaled.
    pub scaler: ScalerConfig,
    /// Smallest spread a metric is scaled by, per unit of the schema (raw units). Keeps metrics
    /// that were quiet during a short baseline from making every later blip an anomaly. Units not
    /// listed (e.g. the `scaled` columns of labelled datasets) get none.
    pub min_spread: BTreeMap<String, f64>,
    /// Smallest typical error (squared scaled units, see [`ErrorProfile`](crate::scoring::ErrorProfile))
    /// of the metrics whose unit has a `min_spread`: about the error of a drift of a fifth of
    /// that spread. On a quiet host, disk or network barely move during the baseline, their
    /// typical error is close to zero, and without this floor the first few hundred kilobytes
    /// read would score as a disaster. Metrics of other units (the labelled datasets) keep
    /// their fitted error.
    pub min_metric_error: f32,
    /// Weight decay per step back inside a window's error (1 weighs all steps equally).
    pub recency_decay: f32,
    /// Scores are averaged over this many consecutive windows before thresholding.
    pub smoothing: usize,
    /// How a window's per-metric errors become its score.
    pub aggregation: Aggregation,
    /// How each host's typical errors follow its normal behaviour (see [`crate::adaptation`]).
    pub adaptation: Adaptation,
    /// How the threshold is calibrated from held-out training scores.
    pub calibration: Calibration,
    /// The lowest threshold calibration may give. Scores are in multiples of the model's mean
    /// error on normal held-out data (about 1 on normal data), so a floor of 2 means no window is
    /// an anomaly unless its error is at least twice the usual. It matters for short, very
    /// regular baselines (a few idle minutes of one machine), whose calibrated threshold can sit
    /// just above the normal level, where everyday noise crosses it. 0 disables it.
    pub min_threshold: f64,
    /// Autoencoder hyper-parameters.
    pub autoencoder: AutoencoderConfig,
    /// PCA baseline hyper-parameters.
    pub pca: PcaConfig,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            window: 10,
            validation_fraction: 0.25,
            scaler: ScalerConfig::default(),
            min_spread: BTreeMap::from([
                ("percent".to_string(), 5.0),
                ("load".to_string(), 0.5),
                ("bytes_per_second".to_string(), 1_048_576.0),
            ]),
            min_metric_error: 0.05,
            recency_decay: 0.7,
            smoothing: 5,
            aggregation: Aggregation::Mean,
            adaptation: Adaptation::default(),
            calibration: Calibration::default(),
            min_threshold: 2.0,
            autoencoder: AutoencoderConfig::default(),
            pca: PcaConfig::default(),
        }
    }
}

impl TrainingConfig {
    /// The fewest training rows [`Model::train`] accepts with these settings: two windows to fit
    /// on and two held out.
    pub fn min_training_rows(&self) -> usize {
        let windows = 2 * self.window.max(1);
        (2 * windows..)
            .find(|&rows| {
                let held_out = self.held_out_rows(rows);
                held_out >= windows && rows - held_out >= windows
            })
            .expect("a validation fraction in [0.05, 0.5] leaves both parts room")
    }

    /// How many of `rows` training rows are held out.
    fn held_out_rows(&self, rows: usize) -> usize {
        (rows as f64 * self.validation_fraction.clamp(0.05, 0.5)).round() as usize
    }
}

/// A trained model, ready to score.
#[derive(Debug, Clone)]
pub struct Model {
    manifest: Manifest,
    detector: AnyDetector,
}

/// Flattened windows (stride 1) over consecutive scaled rows of width `dims`.
pub fn sliding_windows(rows: &[f32], dims: usize, window: usize) -> Vec<f32> {
    let n = rows.len() / dims.max(1);
    if window == 0 || n < window {
        return Vec::new();
    }
    let mut out = Vec::with_capacity((n - window + 1) * window * dims);
    for start in 0..=(n - window) {
        out.extend_from_slice(&rows[start * dims..(start + window) * dims]);
    }
    out
}

impl Model {
    /// Trains a `kind` detector on the raw `train` rows of `schema`: fits the scaler on all rows,
    /// the detector on the earlier rows, and the error profile and threshold on the held-out later
    /// rows. Progress is reported after each epoch.
    pub fn train(
        schema: &MetricSchema,
        train: &Series,
        kind: DetectorKind,
        config: &TrainingConfig,
        progress: &mut dyn FnMut(&TrainingProgress),
    ) -> Result<Self> {
        let started = Instant::now();
        let dims = schema.len();
        if train.dims() != dims {
            return Err(Error::InvalidInput(format!(
                "training rows have {} metrics, schema {dims}",
                train.dims()
            )));
        }
        if !(0.05..=0.5).contains(&config.validation_fraction) {
            return Err(Error::InvalidInput(
                "validation_fraction must be between 0.05 and 0.5".into(),
            ));
        }
        if !(config.min_metric_error.is_finite() && config.min_metric_error >= 0.0) {
            return Err(Error::InvalidInput(format!(
                "min_metric_error must be a finite error >= 0, got {}",
                config.min_metric_error
            )));
        }
        if !(config.min_threshold.is_finite() && config.min_threshold >= 0.0) {
            return Err(Error::InvalidInput(format!(
                "min_threshold must be a finite score >= 0, got {}",
                config.min_threshold
            )));
        }
        config.aggregation.validate()?;
        config.adaptation.validate()?;
        let shape = WindowShape {
            window: config.window,
            dims,
        };
        let held_out_rows = config.held_out_rows(train.rows());
        let fit_rows = train.rows() - held_out_rows;
        if config.window == 0 || fit_rows < 2 * config.window || held_out_rows < 2 * config.window {
            return Err(Error::InvalidInput(format!(
                "{} training rows are too few for windows of {} (at least {})",
                train.rows(),
                config.window,
                config.min_training_rows()
            )));
        }
        // Metrics whose unit has a spread floor get the typical-error floor too.
        let (floors, error_floors): (Vec<f64>, Vec<f32>) = schema
            .metrics()
            .iter()
            .map(|m| match config.min_spread.get(&m.unit) {
                Some(&spread) => (spread, config.min_metric_error),
                None => (0.0, 0.0),
            })
            .unzip();
        let scaler = Scaler::fit_with_floors(train, &config.scaler, &floors)?;
        let mut scaled = vec![0.0f32; train.rows() * dims];
        for (raw, out) in train.iter_rows().zip(scaled.chunks_exact_mut(dims)) {
            scaler.transform_into(raw, out)?;
        }
        let fit_windows = sliding_windows(&scaled[..fit_rows * dims], dims, config.window);
        let held_out_windows = sliding_windows(&scaled[fit_rows * dims..], dims, config.window);

        let mut epochs = 0;
        let mut validation_loss = f64::NAN;
        let mut track = |p: &TrainingProgress| {
            epochs = p.epoch;
            validation_loss = p.validation_loss;
            progress(p);
        };
        let mut detector = AnyDetector::fit(
            kind,
            shape,
            &fit_windows,
            &held_out_windows,
            config,
            &mut track,
        )?;
        detector.raise_metric_floors(&error_floors);
        let mut held_out_errors = vec![0.0f32; held_out_windows.len() / config.window];
        detector.metric_errors(&held_out_windows, &mut held_out_errors)?;
        let created_at_ms = now_ms();
        let mut model = Self {
            manifest: Manifest {
                format: FORMAT_NAME.to_string(),
                format_version: FORMAT_VERSION,
                model_version: String::new(),
                created_at_ms,
                schema: schema.clone(),
                window: config.window,
                detector: kind,
                scaler,
                calibration: config.calibration.clone(),
                threshold: f64::INFINITY,
                smoothing: config.smoothing.max(1),
                recency_decay: config.recency_decay,
                aggregation: config.aggregation,
                adaptation: config.adaptation,
                training: TrainingStats {
                    rows: train.rows(),
                    fit_windows: fit_windows.len() / shape.width(),
                    validation_windows: held_out_errors.len() / dims,
                    epochs,
                    validation_loss,
                    validation_score_mean: f64::NAN,
                    train_secs: 0.0,
                },
            },
            detector,
        };
        // The threshold is calibrated on the held-out scores exactly as a host would compute
        // them live, adaptation included (nothing is over an infinite threshold, so every
        // held-out window is learnt from).
        let mut host = HostDetector::new(&model, anomaly_core::alerting::EventRule::default())?;
        let held_out_scores: Vec<f64> = held_out_errors
            .chunks_exact(dims)
            .enumerate()
            .map(|(i, errors)| {
                host.observe_against(&model, errors, i as i64, f64::INFINITY)
                    .score
            })
            .collect();
        let (calibration, calibrated) = calibrate(&config.calibration, &held_out_scores)?;
        let threshold = calibrated.max(config.min_threshold);
        let manifest = &mut model.manifest;
        manifest.calibration = calibration;
        manifest.threshold = threshold;
        manifest.model_version = format!(
            "{kind}-{created_at_ms}-{:08x}",
            fingerprint(threshold, &held_out_scores)
        );
        manifest.training.validation_score_mean =
            held_out_scores.iter().sum::<f64>() / held_out_scores.len().max(1) as f64;
        manifest.training.train_secs = started.elapsed().as_secs_f64();
        Ok(model)
    }

    /// Writes the artifact into `dir` (created if missing).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        self.detector.save(dir)?;
        // The manifest goes last: an interrupted save leaves no manifest, so no half artifact loads.
        self.manifest.save(dir)
    }

    /// Loads the artifact in `dir`, checking its format version and that its parts fit together.
    pub fn load(dir: &Path) -> Result<Self> {
        let manifest = Manifest::load(dir)?;
        let detector = AnyDetector::load(manifest.detector, dir)?;
        let shape = detector.shape();
        if shape
            != (WindowShape {
                window: manifest.window,
                dims: manifest.schema.len(),
            })
        {
            return Err(Error::Artifact {
                path: dir.to_path_buf(),
                message: format!("detector windows {shape:?} disagree with the manifest"),
            });
        }
        Ok(Self { manifest, detector })
    }

    /// The manifest: schema, threshold, version and training statistics.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The detector.
    pub fn detector(&self) -> &AnyDetector {
        &self.detector
    }

    /// The window shape this model scores.
    pub fn shape(&self) -> WindowShape {
        WindowShape {
            window: self.manifest.window,
            dims: self.manifest.schema.len(),
        }
    }

    /// Scales one raw row into `out`, replacing and reporting non-finite or extreme values; a row
    /// of the wrong width is an error.
    pub fn scale_row(&self, raw: &[f64], out: &mut [f32]) -> Result<ValueFlags> {
        Ok(self.manifest.scaler.transform_into(raw, out)?)
    }

    /// Each window's normalised error per metric (`dims` values per window of `windows`): the
    /// input of a [`HostDetector`], which scores them against the host's own typical errors.
    pub fn metric_errors(&self, windows: &[f32], errors: &mut [f32]) -> Result<()> {
        self.detector.metric_errors(windows, errors)
    }

    /// Raw (unsmoothed, unadapted) scores of flattened, scaled windows: the aggregation of their
    /// metric errors as a host that has learnt nothing yet would score them.
    pub fn score_windows(&self, windows: &[f32], scores: &mut [f32]) -> Result<()> {
        let dims = self.shape().dims;
        let mut errors = vec![0.0f32; scores.len() * dims];
        if errors.len() * self.shape().window != windows.len() {
            return Err(Error::InvalidInput(format!(
                "{} values are not {} windows of {}",
                windows.len(),
                scores.len(),
                self.shape().width()
            )));
        }
        self.detector.metric_errors(windows, &mut errors)?;
        for (score, window_errors) in scores.iter_mut().zip(errors.chunks_exact_mut(dims)) {
            *score = self.manifest.aggregation.apply(window_errors);
        }
        Ok(())
    }

    /// Each metric's share of the error of one scaled window, as a host that has learnt nothing
    /// yet would blame them (see [`HostDetector::contributions`] for a host's own view).
    pub fn contributions(&self, window: &[f32], shares: &mut [f32]) -> Result<()> {
        self.detector.contributions(window, shares)
    }

    /// A fresh smoother with this model's smoothing length, one per entity.
    pub(crate) fn smoother(&self) -> ScoreSmoother {
        ScoreSmoother::new(self.manifest.smoothing)
    }
}

/// Applies `wanted` to the held-out scores. POT needs enough scores above its initial quantile to
/// fit a tail; with a short baseline it falls back to the empirical quantile at the same risk, and
/// the manifest records the calibration actually used.
fn calibrate(wanted: &Calibration, scores: &[f64]) -> Result<(Calibration, f64)> {
    match (wanted.threshold(scores), wanted) {
        (Ok(threshold), _) => Ok((wanted.clone(), threshold)),
        (Err(_), Calibration::Pot { risk, .. }) if scores.len() >= 2 => {
            let fallback = Calibration::Quantile {
                false_alarm_rate: *risk,
            };
            let threshold = fallback.threshold(scores)?;
            Ok((fallback, threshold))
        }
        (Err(e), _) => Err(e.into()),
    }
}

/// A short fingerprint of what training produced, so that two models trained in the same
/// millisecond (a retraining right after a restart) still get different versions.
fn fingerprint(threshold: f64, scores: &[f64]) -> u32 {
    // FNV-1a over the threshold and the held-out scores: cheap, stable across platforms.
    let mut hash: u32 = 0x811c_9dc5;
    let bytes = threshold.to_bits().to_le_bytes().into_iter().chain(
        scores
            .iter()
            .flat_map(|s| (*s as f32).to_bits().to_le_bytes()),
    );
    for byte in bytes {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    hash
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
