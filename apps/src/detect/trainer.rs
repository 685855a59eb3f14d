//! How `anomaly detect` trains on its baseline: the chosen detector and settings, progress shown
//! on the terminal, and the artifact published as a new version of the `--model-dir` store
//! (atomically, see `anomaly_model::versions`) so a restart loads it instead of retraining.

use std::path::PathBuf;

use anomaly_core::MetricSchema;
use anomaly_core::dataset::Series;
use anomaly_model::{DetectorKind, Model, ModelStore, Trainer, TrainingConfig};

use crate::progress::ProgressReporter;

/// Trains `detector` with `config` and publishes the model in the store at `model_dir`.
#[derive(Debug, Clone)]
pub struct SavingTrainer {
    /// The detector to train.
    pub detector: DetectorKind,
    /// Training settings.
    pub config: TrainingConfig,
    /// The model store the trained model is published to.
    pub model_dir: PathBuf,
}

impl Trainer for SavingTrainer {
    fn train(&self, schema: &MetricSchema, rows: &Series) -> anomaly_model::Result<Model> {
        let reporter = ProgressReporter::new("baseline");
        let model = Model::train(schema, rows, self.detector, &self.config, &mut |p| {
            reporter.report(p)
        })?;
        reporter.finish();
        ModelStore::new(&self.model_dir).publish(&model)?;
        Ok(model)
    }
}
