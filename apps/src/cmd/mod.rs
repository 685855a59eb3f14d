//! One module per subcommand of the `anomaly` binary.

use std::path::Path;

use anomaly_model::TrainingConfig;
use anyhow::Context;

pub mod collect;
pub mod demo;
pub mod detect;
pub mod eval;
pub mod events;
pub mod replay;
pub mod topics;
pub mod train;

/// The training settings of `--config FILE` (JSON, any subset of [`TrainingConfig`]'s fields; the
/// rest keep their defaults), or the defaults without one.
pub fn training_config(path: Option<&Path>) -> anyhow::Result<TrainingConfig> {
    let Some(path) = path else {
        return Ok(TrainingConfig::default());
    };
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a valid training config", path.display()))
}
