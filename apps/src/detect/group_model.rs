//! One model for the whole consumer group. The group's versions live in the event store (see
//! `store::models`), which every instance shares; each instance follows the current one:
//! - an instance that starts with a model of its own (`--model-dir`) offers it as the group's
//!   first version, and the first offer wins;
//! - every few seconds each instance looks at the current version and, when it is another than
//!   the one in use, loads it (a damaged version is refused with the reason, once, and the newest
//!   intact earlier one is taken), saves it in its `--model-dir` (so a restart finds it even with
//!   the database down) and scores with it from then on;
//! - training (`trainer::GroupTrainer`) is done by the instance holding the group's training
//!   lease, and published to the group.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anomaly_model::{Model, ModelPackage, ModelStore};

use crate::store::Store;

/// How often an instance looks at the group's current version.
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(5);

/// The group's model that should replace `in_use`: its current version's when that is another
/// one, `None` when the group has none or uses `in_use`. A version that cannot be unpacked is
/// refused (logged the first time, remembered in `refused`) and the newest intact earlier one
/// is taken instead.
pub fn newer_model(
    store: &mut Store,
    group: &str,
    in_use: Option<&str>,
    refused: &mut BTreeSet<String>,
) -> anyhow::Result<Option<Model>> {
    let versions = store.model_versions(group)?;
    newest_intact(store, group, versions, in_use, refused)
}

/// [`newer_model`] over `versions`, the group's listed current first.
fn newest_intact(
    store: &mut Store,
    group: &str,
    versions: Vec<String>,
    in_use: Option<&str>,
    refused: &mut BTreeSet<String>,
) -> anyhow::Result<Option<Model>> {
    for version in versions {
        if Some(version.as_str()) == in_use {
            return Ok(None);
        }
        if refused.contains(&version) {
            continue;
        }
        let Some(package) = store.model_package(group, &version)? else {
            continue; // removed since it was listed
        };
        match package.unpack() {
            Ok(model) => return Ok(Some(model)),
            Err(problem) => {
                tracing::error!(%version, %problem, "the group's model version refused");
                refused.insert(version);
            }
        }
    }
    Ok(None)
}

/// Saves `model` as the current version of the local model store in `model_dir`, so that a
/// restart loads it.
pub fn keep_locally(model_dir: &Path, model: &Model) -> anyhow::Result<()> {
    ModelStore::new(model_dir).publish(model).map_err(|e| {
        anyhow::Error::new(e).context(format!(
            "cannot save the group's model in {}",
            model_dir.display()
        ))
    })
}

/// What one look at the group's versions found.
pub enum Followed {
    /// The group has no version yet.
    Nothing,
    /// The group uses the model in use here.
    Same,
    /// The group uses this model (already saved locally).
    Adopt(Box<Model>),
}

/// One instance's way of following its group's model (see the module overview).
#[derive(Clone)]
pub struct GroupModelFollower {
    model_dir: PathBuf,
    next_look: Arc<Mutex<Instant>>,
    refused: Arc<Mutex<BTreeSet<String>>>,
}

impl GroupModelFollower {
    /// A follower keeping adopted models in the local store at `model_dir`.
    pub fn new(model_dir: PathBuf) -> Self {
        Self {
            model_dir,
            next_look: Arc::new(Mutex::new(Instant::now())),
            refused: Arc::default(),
        }
    }

    /// Whether a look is due now (and, if so, the next one is scheduled).
    pub fn due(&self) -> bool {
        let mut next = self.next_look.lock().expect("follower lock");
        if Instant::now() < *next {
            return false;
        }
        *next = Instant::now() + FOLLOW_INTERVAL;
        true
    }

    /// Looks at `group`'s versions through `store`; `in_use` is the version scored with here.
    pub fn look(
        &self,
        store: &mut Store,
        group: &str,
        in_use: Option<&str>,
    ) -> anyhow::Result<Followed> {
        // A version is stored and made current in one transaction: none listed, none current.
        let versions = store.model_versions(group)?;
        if versions.is_empty() {
            return Ok(Followed::Nothing);
        }
        let mut refused = self.refused.lock().expect("follower lock");
        match newest_intact(store, group, versions, in_use, &mut refused)? {
            None => Ok(Followed::Same),
            Some(model) => {
                keep_locally(&self.model_dir, &model)?;
                Ok(Followed::Adopt(Box::new(model)))
            }
        }
    }

    /// Offers `model`, in use here, as `group`'s first version; whether the group took it.
    pub fn offer(&self, store: &mut Store, group: &str, model: &Model) -> anyhow::Result<bool> {
        let package = ModelPackage::pack(model)?;
        store.seed_model(group, &package)
    }
}
