//! How `anomaly detect` gets a model when its lifecycle asks for one (the first, or a scheduled
//! retraining): one instance of the consumer group trains, the others take its model.
//!
//! The instance that takes the group's training lease (see `store::models`) trains on its
//! baseline, with progress shown on the terminal, and publishes the model: first in its
//! `--model-dir` store (atomically, see `anomaly_model::versions`), then as the group's current
//! version. An instance that finds the lease taken waits for the model that comes of it. If the
//! lease holder dies while training, PostgreSQL releases its lease and a waiting instance trains
//! instead. A model published by another instance meanwhile is taken rather than trained again.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anomaly_core::MetricSchema;
use anomaly_core::dataset::Series;
use anomaly_model::{DetectorKind, Model, ModelPackage, Trainer, TrainingConfig};

use super::group_model::{keep_locally, newer_model};
use crate::progress::ProgressReporter;
use crate::store::Store;

/// How often an instance waiting for another one's training looks again.
const WAIT_POLL: Duration = Duration::from_secs(2);
/// Backoff while the store cannot be reached: from the first to the longest, doubling.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const LONGEST_BACKOFF: Duration = Duration::from_secs(10);

/// Trains `detector` with `config` for consumer `group`, or takes the group's model.
#[derive(Debug, Clone)]
pub struct GroupTrainer {
    /// The detector to train.
    pub detector: DetectorKind,
    /// Training settings.
    pub config: TrainingConfig,
    /// The local model store a trained or taken model is saved in.
    pub model_dir: PathBuf,
    /// The event store holding the group's versions and lease.
    pub database_url: String,
    /// The consumer group.
    pub group: String,
}

/// One try's outcome.
enum Turn {
    /// A model to use.
    Model(Box<Model>),
    /// Another instance trains: wait for its model.
    Wait,
}

/// Why a try did not give a model.
enum Failure {
    /// The store could not be reached or used: try again later.
    Store(anyhow::Error),
    /// Training itself failed: the lifecycle decides.
    Training(anomaly_model::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Store(e)
    }
}

impl Trainer for GroupTrainer {
    fn train(
        &self,
        schema: &MetricSchema,
        rows: &Series,
        replacing: Option<&str>,
    ) -> anomaly_model::Result<Model> {
        let mut refused = BTreeSet::new();
        let mut backoff = FIRST_BACKOFF;
        let mut said_waiting = false;
        // Kept while waiting; the lease, once taken, lives as long as this connection.
        let mut connection = None;
        loop {
            match self.try_once(&mut connection, schema, rows, replacing, &mut refused) {
                Ok(Turn::Model(model)) => return Ok(*model),
                Ok(Turn::Wait) => {
                    if !said_waiting {
                        tracing::info!(
                            group = %self.group,
                            "another instance of the group trains the model; waiting for it"
                        );
                        said_waiting = true;
                    }
                    backoff = FIRST_BACKOFF;
                    std::thread::sleep(WAIT_POLL);
                }
                Err(Failure::Training(e)) => return Err(e),
                Err(Failure::Store(e)) => {
                    connection = None;
                    tracing::warn!(
                        error = %format!("{e:#}"),
                        retry_in_ms = backoff.as_millis() as u64,
                        "cannot reach the group's model versions; training waits"
                    );
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(LONGEST_BACKOFF);
                }
            }
        }
    }
}

impl GroupTrainer {
    fn try_once(
        &self,
        connection: &mut Option<Store>,
        schema: &MetricSchema,
        rows: &Series,
        replacing: Option<&str>,
        refused: &mut BTreeSet<String>,
    ) -> Result<Turn, Failure> {
        let store = match connection {
            Some(store) => store,
            None => connection.insert(Store::open(&self.database_url)?),
        };
        let mut taken = |store: &mut Store| -> Result<Option<Model>, Failure> {
            let Some(model) = newer_model(store, &self.group, replacing, refused)? else {
                return Ok(None);
            };
            keep_locally(&self.model_dir, &model)?;
            tracing::info!(
                model_version = %model.manifest().model_version,
                "the group's model taken instead of training"
            );
            Ok(Some(model))
        };
        if let Some(model) = taken(store)? {
            return Ok(Turn::Model(Box::new(model)));
        }
        if !store.try_lead_training(&self.group)? {
            return Ok(Turn::Wait);
        }
        // Published between the first look and the lease?
        if let Some(model) = taken(store)? {
            return Ok(Turn::Model(Box::new(model)));
        }
        tracing::info!(group = %self.group, "training the group's model");
        let reporter = ProgressReporter::new("baseline");
        let model = Model::train(schema, rows, self.detector, &self.config, &mut |p| {
            reporter.report(p)
        })
        .map_err(Failure::Training)?;
        reporter.finish();
        anomaly_model::ModelStore::new(&self.model_dir)
            .publish(&model)
            .map_err(Failure::Training)?;
        let package = ModelPackage::pack(&model).map_err(Failure::Training)?;
        // Published, then closed: the lease goes with the connection.
        self.publish(connection.take().expect("opened above"), &package);
        Ok(Turn::Model(Box::new(model)))
    }

    /// Makes `package` the group's current version, retrying (on fresh connections) until the
    /// store takes it: a model trained is not thrown away for an outage.
    fn publish(&self, mut store: Store, package: &ModelPackage) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match store.publish_model(&self.group, package) {
                Ok(()) => {
                    tracing::info!(model_version = %package.version, group = %self.group, "model published to the group");
                    return;
                }
                Err(e) => tracing::warn!(
                    error = %format!("{e:#}"),
                    retry_in_ms = backoff.as_millis() as u64,
                    "cannot publish the model to the group; retrying"
                ),
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(LONGEST_BACKOFF);
            match Store::open(&self.database_url) {
                Ok(fresh) => store = fresh,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot reach the store to publish the model")
                }
            }
        }
    }
}
