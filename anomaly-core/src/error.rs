//! The one error type of `anomaly-core`.

use std::path::PathBuf;

/// Everything that can go wrong in `anomaly-core`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A data file has a line that does not parse.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file with the bad line.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A dataset folder lacks what it needs or its files disagree with each other.
    #[error("dataset {dataset}: {message}")]
    Dataset {
        /// The dataset or entity concerned.
        dataset: String,
        /// What is wrong.
        message: String,
    },
    /// Input to a computation is unusable (empty, mismatched lengths, wrong dimensions).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A kernel statistics text (`/proc/stat`, `/proc/meminfo`, ...) does not have the expected
    /// shape: a line or field is missing, a number does not parse, or values contradict each other.
    #[error("{file}: {message}")]
    HostStats {
        /// The kernel file the text came from, as the kernel names it (`/proc/stat`).
        file: &'static str,
        /// What is wrong, with the 1-based line number where one applies.
        message: String,
    },
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
