//! A directory of model versions with one current version, switched atomically, so that a
//! process killed while it saves a model never leaves a mix of two models behind.
//!
//! Layout of a store at `DIR`:
//!
//! ```text
//! DIR/CURRENT                    the current version's name (replaced by rename, never edited)
//! DIR/versions/<version>/        one complete artifact (manifest.json, the detector's files)
//! DIR/versions/<version>/checksums.json   SHA-256 of every other file of the artifact
//! ```
//!
//! [`ModelStore::publish`] writes a version under a temporary name, checksums and syncs every
//! file, renames the directory into place and only then points `CURRENT` at it (a temporary file
//! renamed over the old pointer). A crash at any point leaves either the previous current version
//! or the new one, each complete. [`ModelStore::load_current`] verifies the checksums and refuses
//! a damaged version with the reason, going back to the newest earlier version that is intact.
//! A plain artifact directory (`anomaly train --out DIR`, `manifest.json` at the top) loads as
//! before while the store has no `CURRENT`.
//!
//! ```
//! use anomaly_core::{MetricSchema, dataset::Series};
//! use anomaly_model::versions::ModelStore;
//! use anomaly_model::{DetectorKind, Model, TrainingConfig};
//!
//! let rows: Vec<Vec<f64>> = (0..3000)
//!     .map(|i| anomaly_core::synthetic::cyclic_host_row(i).to_vec())
//!     .collect();
//! let model = Model::train(&MetricSchema::host(), &Series::from_rows(&rows)?, DetectorKind::Pca,
//!     &TrainingConfig::default(), &mut |_| {})?;
//! let dir = std::env::temp_dir().join(format!("model-store-doc-{}", std::process::id()));
//! let store = ModelStore::new(&dir);
//! store.publish(&model)?;
//! let loaded = store.load_current()?.expect("a version was published");
//! assert_eq!(loaded.model.manifest().model_version, model.manifest().model_version);
//! assert!(loaded.refused.is_empty());
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::Model;
use crate::artifact::{MANIFEST_FILE, read_json, write_json};
use crate::error::{Error, Result};

/// The pointer file naming the current version.
pub const CURRENT_FILE: &str = "CURRENT";
/// The folder holding one folder per version.
pub const VERSIONS_DIR: &str = "versions";
/// The checksum file inside a version's folder.
pub const CHECKSUMS_FILE: &str = "checksums.json";
/// Versions kept besides the current one, to go back to when it is damaged.
const KEPT_VERSIONS: usize = 3;
/// A staging folder this old was left by a killed writer and is removed.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// A model directory with versions and an atomically switched current one.
#[derive(Debug, Clone)]
pub struct ModelStore {
    dir: PathBuf,
}

/// A model loaded from a [`ModelStore`].
#[derive(Debug)]
pub struct LoadedModel {
    /// The model in use.
    pub model: Model,
    /// Versions refused on the way (newest first), each with why: a damaged current version
    /// sends the store back to the newest intact one.
    pub refused: Vec<(String, Error)>,
}

impl ModelStore {
    /// The store in `dir` (created on the first publish).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current version's name, if one was published.
    pub fn current_version(&self) -> Result<Option<String>> {
        let path = self.dir.join(CURRENT_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    /// Whether the store holds anything to load: a current version or a plain artifact.
    pub fn has_model(&self) -> bool {
        self.dir.join(CURRENT_FILE).is_file() || self.dir.join(MANIFEST_FILE).is_file()
    }

    /// Saves `model` as a new version and makes it current, atomically (see the module
    /// overview); older versions beyond the few kept are removed.
    pub fn publish(&self, model: &Model) -> Result<()> {
        let version = model.manifest().model_version.clone();
        check_version_name(&version, &self.dir)?;
        let versions = self.dir.join(VERSIONS_DIR);
        create_dir(&versions)?;
        let target = versions.join(&version);
        // A version folder appears only complete (by rename), so one already there is this very
        // model, published before: only the switch is left to do.
        if !target.is_dir() {
            let staging = versions.join(format!(".{version}.tmp-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&staging);
            model.save(&staging)?;
            let sums = checksums(&staging)?;
            write_json(&staging.join(CHECKSUMS_FILE), &sums)?;
            for name in sums.keys().map(String::as_str).chain([CHECKSUMS_FILE]) {
                sync_file(&staging.join(name))?;
            }
            rename(&staging, &target)?;
            sync_dir(&versions)?;
        }
        // The switch: a new pointer file, complete and synced, renamed over the old one.
        let pointer = self
            .dir
            .join(format!(".{CURRENT_FILE}.tmp-{}", std::process::id()));
        let mut file = File::create(&pointer).map_err(|source| io(&pointer, source))?;
        file.write_all(version.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| io(&pointer, source))?;
        rename(&pointer, &self.dir.join(CURRENT_FILE))?;
        sync_dir(&self.dir)?;
        self.prune(&version);
        Ok(())
    }

    /// Loads the current version, verifying its checksums; a damaged or unreadable current
    /// version is refused and the newest earlier intact version is loaded instead. `None` when
    /// nothing was ever published here (and there is no plain artifact).
    pub fn load_current(&self) -> Result<Option<LoadedModel>> {
        let Some(current) = self.current_version()? else {
            if self.dir.join(MANIFEST_FILE).is_file() {
                let model = Model::load(&self.dir)?;
                return Ok(Some(LoadedModel {
                    model,
                    refused: Vec::new(),
                }));
            }
            return Ok(None);
        };
        let mut refused = Vec::new();
        let mut candidates = vec![current.clone()];
        candidates.extend(
            self.versions_newest_first()?
                .into_iter()
                .filter(|v| *v != current),
        );
        for version in candidates {
            match self.load_version(&version) {
                Ok(model) => return Ok(Some(LoadedModel { model, refused })),
                Err(e) => refused.push((version, e)),
            }
        }
        let (version, first) = refused.swap_remove(0);
        Err(Error::Artifact {
            path: self.dir.join(VERSIONS_DIR).join(version),
            message: format!("no intact model version in the store (the current one: {first})"),
        })
    }

    /// Loads one version, checking every file against its checksum first.
    pub fn load_version(&self, version: &str) -> Result<Model> {
        check_version_name(version, &self.dir)?;
        let dir = self.dir.join(VERSIONS_DIR).join(version);
        let expected: BTreeMap<String, String> = read_json(&dir.join(CHECKSUMS_FILE))?;
        if expected.is_empty() {
            return Err(Error::Artifact {
                path: dir,
                message: "the checksum list is empty".into(),
            });
        }
        for (name, sum) in &expected {
            let path = dir.join(name);
            let actual = sha256_file(&path)?;
            if actual != *sum {
                return Err(Error::Artifact {
                    path,
                    message: "checksum mismatch: the file is damaged".into(),
                });
            }
        }
        let model = Model::load(&dir)?;
        if model.manifest().model_version != version {
            return Err(Error::Artifact {
                path: dir,
                message: format!(
                    "holds version {}, not {version}",
                    model.manifest().model_version
                ),
            });
        }
        Ok(model)
    }

    /// Complete versions (staging folders aside), most recently written first.
    fn versions_newest_first(&self) -> Result<Vec<String>> {
        let dir = self.dir.join(VERSIONS_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(io(&dir, source)),
        };
        let mut versions: Vec<(std::time::SystemTime, String)> = entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().is_dir())
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let modified = entry.metadata().and_then(|m| m.modified()).ok()?;
                (!name.starts_with('.')).then_some((modified, name))
            })
            .collect();
        versions.sort_by(|a, b| b.cmp(a));
        Ok(versions.into_iter().map(|(_, name)| name).collect())
    }

    /// Removes versions beyond the kept ones and staging folders left by killed writers;
    /// failures are harmless (the next publish tries again).
    fn prune(&self, current: &str) {
        let Ok(versions) = self.versions_newest_first() else {
            return;
        };
        let old = versions
            .iter()
            .filter(|v| *v != current)
            .skip(KEPT_VERSIONS);
        for version in old {
            let _ = std::fs::remove_dir_all(self.dir.join(VERSIONS_DIR).join(version));
        }
        // Staging folders of writers killed mid-publish; young ones may belong to a writer still
        // at work (another instance sharing the directory).
        if let Ok(entries) = std::fs::read_dir(self.dir.join(VERSIONS_DIR)) {
            for entry in entries.filter_map(|e| e.ok()) {
                let abandoned = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > ABANDONED_AFTER);
                if entry.file_name().to_string_lossy().starts_with('.') && abandoned {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }
}

/// A version name is a folder name: no separators, no leading dot.
fn check_version_name(version: &str, dir: &Path) -> Result<()> {
    let ok = !version.is_empty()
        && !version.starts_with('.')
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Artifact {
            path: dir.to_path_buf(),
            message: format!("{version:?} is not a usable version name"),
        })
    }
}

/// SHA-256 (hex) of every file in `dir`, by file name.
fn checksums(dir: &Path) -> Result<BTreeMap<String, String>> {
    let mut sums = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(|source| io(dir, source))? {
        let path = entry.map_err(|source| io(dir, source))?.path();
        if path.is_file() {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| Error::Artifact {
                    path: path.clone(),
                    message: "a file name that is not UTF-8".into(),
                })?
                .to_string();
            sums.insert(name, sha256_file(&path)?);
        }
    }
    Ok(sums)
}

fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| io(path, source))?;
    Ok(sha256_hex(&bytes))
}

/// SHA-256 of `bytes`, as lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|source| io(path, source))
}

/// Makes a rename inside `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| io(dir, source))
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| io(dir, source))
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|source| io(to, source))
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
