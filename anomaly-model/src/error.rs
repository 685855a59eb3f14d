//! The one error type of `anomaly-model`.

use std::path::PathBuf;

/// Everything that can go wrong while training, scoring, saving or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A domain computation (scaling, calibration, ...) failed.
    #[error(transparent)]
    Core(#[from] anomaly_core::Error),
    /// A file of an artifact could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An artifact is damaged, foreign, of another format version, or disagrees with itself.
    #[error("artifact {path}: {message}")]
    Artifact {
        /// The artifact directory or file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A packed model (see [`crate::package`]) is damaged or is not what it claims to be.
    #[error("model package {version}: {message}")]
    Package {
        /// The version the package claims to hold.
        version: String,
        /// What is wrong with it.
        message: String,
    },
    /// Input data does not fit the model (wrong width, too few rows to train, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A host's window could not be kept (the model's window shape is unusable for the window
    /// operator).
    #[error(transparent)]
    Window(#[from] anomaly_stream::Error),
    /// A stored detector state could not be encoded or decoded.
    #[error("detector state: {0}")]
    Snapshot(#[source] postcard::Error),
    /// Training could not produce a usable model.
    #[error("training failed: {0}")]
    Training(String),
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
