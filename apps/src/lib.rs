//! # anomaly-apps
//!
//! The pieces behind the `anomaly` binary: configuration, the PostgreSQL store and the composition of
//! the library crates into subcommands. Algorithms live in the libraries (`anomaly-core`,
//! `anomaly-stream`, `anomaly-model`); this crate only wires them to the outside world.
//!
//! ```no_run
//! // Apply the embedded migrations to a database and write nothing else.
//! let _conn = anomaly_apps::store::connect_and_migrate("postgres://postgres@127.0.0.1:5432/postgres")?;
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod cmd;
pub mod collect;
pub mod detect;
pub mod progress;
pub mod store;
pub mod telemetry;
