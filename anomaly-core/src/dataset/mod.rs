//! Readers for the labelled datasets used to develop and evaluate detectors: SMD, ASD and NAB.
//!
//! The data root holds one folder per dataset (`SMD/`, `ASD/`, `NAB/`). Every entity (a machine, a
//! server, a NAB file) loads as a [`LabelledEntity`]: a train split, a test split with one label per
//! row and, for SMD and ASD, the metrics operators named as the cause of each anomalous segment.
//!
//! Sizes of the shipped data: SMD has 7 machines of 38 metrics with about 23.7k train and 23.7k test
//! rows each; ASD has 12 servers of 19 metrics with 8,640 train (omi-12: 7,291) and 4,320 test rows;
//! NAB has 24 univariate files of 1.2k to 22.7k rows.
//!
//! Reading never panics on bad data: an unreadable file is [`Error::Io`] with its path, a bad line is
//! [`Error::Parse`] with the file and 1-based line, files that disagree are [`Error::Parse`] at the
//! offending line or [`Error::Dataset`].

mod interpretation;
mod kind;
mod nab;
mod series;
mod server;
#[cfg(test)]
mod test_dir;
mod text;
mod timestamp;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub use kind::DatasetKind;
pub use nab::{NAB_PROBATION_MAX_ROWS, NAB_PROBATION_PERCENT, nab_probation_rows};
pub use series::Series;

use crate::eval::InterpretationSegment;
use crate::{Error, MetricSchema, Result};
use interpretation::RangeEnd;

/// Environment variable naming the data root (the folder holding `SMD/`, `ASD/`, `NAB/`).
pub const DATA_DIR_ENV: &str = "ANOMALY_DATA_DIR";

/// The data root: `$ANOMALY_DATA_DIR` when set and non-empty, else `default`.
pub fn data_dir_from_env(default: &Path) -> PathBuf {
    choose_data_dir(std::env::var_os(DATA_DIR_ENV), default)
}

/// The choice behind [`data_dir_from_env`], apart so tests need not mutate the process environment.
fn choose_data_dir(from_env: Option<OsString>, default: &Path) -> PathBuf {
    match from_env {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => default.to_path_buf(),
    }
}

/// One labelled entity of a dataset, split into train and test.
#[derive(Debug, Clone)]
pub struct LabelledEntity {
    /// Entity name: `machine-1-2`, `omi-3`, or `category/file` for NAB.
    pub name: String,
    /// The metrics of every row: names from the dataset's `columns.txt`, else `m1..mN`.
    pub schema: MetricSchema,
    /// Data to fit on; unlabelled (assumed mostly normal). For NAB, the probationary period.
    pub train: Series,
    /// Data to evaluate on, with the same metrics as `train`.
    pub test: Series,
    /// One label per test row, `true` when anomalous.
    pub test_labels: Vec<bool>,
    /// Root-cause segments of the test split (0-based inclusive rows, 0-based metrics), sorted by start.
    /// Empty when the dataset has none for this entity.
    pub interpretation: Vec<InterpretationSegment>,
    /// Event time of each test row, milliseconds since the Unix epoch, when the dataset has timestamps
    /// (NAB only; SMD and ASD are plain row sequences).
    pub test_timestamps_ms: Option<Vec<i64>>,
    /// Time between consecutive rows, milliseconds: one minute for SMD, five for ASD (as their
    /// papers document), the median step of the timestamps for NAB.
    pub step_ms: i64,
}

impl LabelledEntity {
    /// Rows per day at [`LabelledEntity::step_ms`], to turn counts over rows into daily rates.
    pub fn rows_per_day(&self) -> f64 {
        86_400_000.0 / self.step_ms.max(1) as f64
    }
}

/// Names of the entities of dataset `kind` under the data root `root`, sorted.
pub fn list_entities(root: &Path, kind: DatasetKind) -> Result<Vec<String>> {
    let dataset_dir = root.join(kind.folder_name());
    match kind {
        DatasetKind::Smd | DatasetKind::Asd => server::list(&dataset_dir),
        DatasetKind::Nab => nab::list(&dataset_dir),
    }
}

/// Loads entity `name` (as returned by [`list_entities`]) of dataset `kind` under the data root `root`.
pub fn load_entity(root: &Path, kind: DatasetKind, name: &str) -> Result<LabelledEntity> {
    check_entity_name(kind, name)?;
    let dataset_dir = root.join(kind.folder_name());
    if !dataset_dir.is_dir() {
        return Err(Error::Dataset {
            dataset: kind.to_string(),
            message: format!("folder {} not found", dataset_dir.display()),
        });
    }
    match kind {
        DatasetKind::Smd => server::load(&dataset_dir, name, RangeEnd::Exclusive, 60_000),
        DatasetKind::Asd => server::load(&dataset_dir, name, RangeEnd::Inclusive, 300_000),
        DatasetKind::Nab => nab::load(&dataset_dir, name),
    }
}

/// Names become path components: refuse anything that could point outside the dataset folder.
fn check_entity_name(kind: DatasetKind, name: &str) -> Result<()> {
    let components = match kind {
        DatasetKind::Smd | DatasetKind::Asd => 1,
        DatasetKind::Nab => 2,
    };
    let parts: Vec<&str> = name.split('/').collect();
    let plain =
        |part: &&str| !part.is_empty() && *part != "." && *part != ".." && !part.contains('\\');
    if parts.len() == components && parts.iter().all(plain) {
        Ok(())
    } else {
        let shape = if components == 1 {
            "a file name"
        } else {
            "category/file"
        };
        Err(Error::InvalidInput(format!(
            "{kind} entity name {name:?} is not {shape}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_names_cannot_escape_the_dataset_folder() {
        assert!(check_entity_name(DatasetKind::Smd, "machine-1-1").is_ok());
        assert!(check_entity_name(DatasetKind::Nab, "realKnownCause/nyc_taxi").is_ok());
        for (kind, bad) in [
            (DatasetKind::Smd, ""),
            (DatasetKind::Smd, ".."),
            (DatasetKind::Asd, "a/b"),
            (DatasetKind::Asd, "..\\x"),
            (DatasetKind::Nab, "nyc_taxi"),
            (DatasetKind::Nab, "../x"),
            (DatasetKind::Nab, "a/b/c"),
        ] {
            assert!(
                matches!(check_entity_name(kind, bad), Err(Error::InvalidInput(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn data_dir_prefers_a_non_empty_environment_value() {
        let default = Path::new("/x/data");
        assert_eq!(
            choose_data_dir(Some("/y".into()), default),
            PathBuf::from("/y")
        );
        assert_eq!(choose_data_dir(Some("".into()), default), default);
        assert_eq!(choose_data_dir(None, default), default);
    }

    #[test]
    fn missing_dataset_folder_is_reported_with_its_path() {
        let root = std::env::temp_dir().join("anomaly-core-no-such-root");
        let err = load_entity(&root, DatasetKind::Asd, "omi-1").unwrap_err();
        assert!(
            matches!(err, Error::Dataset { .. }) && err.to_string().contains("ASD"),
            "{err}"
        );
        let err = list_entities(&root, DatasetKind::Nab).unwrap_err();
        assert!(
            matches!(err, Error::Io { .. }) && err.to_string().contains("NAB"),
            "{err}"
        );
    }
}
