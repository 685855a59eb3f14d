//! A model as one checksummed sequence of bytes, for stores that keep blobs rather than folders:
//! the table of a consumer group's model versions in the event store, which every instance of
//! the group reads. A package holds every file of the artifact (`manifest.json` and the
//! detector's own) by name, postcard-encoded, with the SHA-256 of the whole; unpacking checks
//! the checksum first and refuses a damaged package with the reason.
//!
//! ```
//! use anomaly_core::{MetricSchema, dataset::Series};
//! use anomaly_model::{DetectorKind, Model, ModelPackage, TrainingConfig};
//!
//! let rows: Vec<Vec<f64>> = (0..3000)
//!     .map(|i| anomaly_core::synthetic::cyclic_host_row(i).to_vec())
//!     .collect();
//! let model = Model::train(&MetricSchema::host(), &Series::from_rows(&rows)?, DetectorKind::Pca,
//!     &TrainingConfig::default(), &mut |_| {})?;
//! let package = ModelPackage::pack(&model)?;
//! assert_eq!(package.unpack()?.manifest(), model.manifest());
//!
//! let mut damaged = package.clone();
//! damaged.bytes[10] ^= 1;
//! assert!(damaged.unpack().unwrap_err().to_string().contains("checksum mismatch"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Model;
use crate::error::{Error, Result};
use crate::versions::sha256_hex;

/// A model packed for a blob store.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelPackage {
    /// The model's version (its manifest's `model_version`).
    pub version: String,
    /// The artifact's files, postcard-encoded.
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`, hex.
    pub sha256: String,
}

impl ModelPackage {
    /// Packs `model`.
    pub fn pack(model: &Model) -> Result<Self> {
        let version = model.manifest().model_version.clone();
        let dir = ScratchDir::new()?;
        model.save(&dir.0)?;
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(&dir.0).map_err(|source| io(&dir.0, source))? {
            let path = entry.map_err(|source| io(&dir.0, source))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| package_error(&version, "a file name that is not UTF-8"))?
                .to_string();
            let bytes = std::fs::read(&path).map_err(|source| io(&path, source))?;
            files.insert(name, bytes);
        }
        let bytes = postcard::to_allocvec(&files).map_err(Error::Snapshot)?;
        let sha256 = sha256_hex(&bytes);
        Ok(Self {
            version,
            bytes,
            sha256,
        })
    }

    /// The model, once the checksum and the version it claims are verified.
    pub fn unpack(&self) -> Result<Model> {
        if sha256_hex(&self.bytes) != self.sha256 {
            return Err(package_error(
                &self.version,
                "checksum mismatch: the stored package is damaged",
            ));
        }
        let files: BTreeMap<String, Vec<u8>> = postcard::from_bytes(&self.bytes)
            .map_err(|e| package_error(&self.version, &format!("undecodable: {e}")))?;
        let dir = ScratchDir::new()?;
        for (name, bytes) in &files {
            // Names come from `pack`; anything that could leave the folder is not ours.
            if name.contains(['/', '\\']) || name.starts_with('.') {
                return Err(package_error(
                    &self.version,
                    &format!("holds a file named {name:?}"),
                ));
            }
            let path = dir.0.join(name);
            std::fs::write(&path, bytes).map_err(|source| io(&path, source))?;
        }
        let model = Model::load(&dir.0)?;
        if model.manifest().model_version != self.version {
            return Err(package_error(
                &self.version,
                &format!("holds version {}", model.manifest().model_version),
            ));
        }
        Ok(model)
    }
}

/// A folder of its own under the system's temporary folder, removed when dropped: the artifact's
/// files pass through it (models save to and load from folders).
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "anomaly-model-package-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|source| io(&dir, source))?;
        Ok(Self(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn package_error(version: &str, message: &str) -> Error {
    Error::Package {
        version: version.to_string(),
        message: message.to_string(),
    }
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
