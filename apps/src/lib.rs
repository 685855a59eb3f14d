//! # anomaly-apps
//!
//! The pieces behind the `anomaly` binary: configuration, the PostgreSQL store and the composition of
//! the library crates into subcommands. Algorithms live in the libraries (`anomaly-core`,
//! `anomaly-stream`, `anomaly-model`); this crate only wires them to the outside world.
//!
//! ```no_run
//! // Open (and migrate) the embedded SQLite store, then list the anomaly events it holds.
//! let mut store = anomaly_apps::store::Store::open("anomalies.db")?;
//! let events = store.events()?;
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod cmd;
pub mod collect;
pub mod config_file;
pub mod detect;
#[cfg(feature = "count-allocations")]
pub mod heap_count;
pub mod kafka_options;
pub mod progress;
pub mod store;
pub mod telemetry;
