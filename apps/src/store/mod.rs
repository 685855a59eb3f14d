//! PostgreSQL persistence of anomaly events (diesel), with migrations embedded in the binary.

pub mod schema;

use anyhow::Context;
use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use serde::{Deserialize, Serialize};

/// The PostgreSQL migrations, compiled into the binary and applied at start.
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// An anomaly event as stored.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = schema::anomalies)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct AnomalyRow {
    /// The host (entity) the event is about.
    pub host: String,
    /// Start of the first window of the event.
    pub window_start: DateTime<Utc>,
    /// End of the last window of the event.
    pub window_end: DateTime<Utc>,
    /// Peak score over the event.
    pub score: f64,
    /// The threshold the score was compared with.
    pub threshold: f64,
    /// `warning` or `critical`.
    pub severity: String,
    /// The metrics that contributed most, with their share of the error.
    pub top_metrics: serde_json::Value,
    /// Version of the model that found the event.
    pub model_version: String,
}

/// Opens a connection to `url` and applies every pending migration.
pub fn connect_and_migrate(url: &str) -> anyhow::Result<PgConnection> {
    let mut conn = PgConnection::establish(url)
        .with_context(|| format!("cannot connect to PostgreSQL at {url}"))?;
    conn.run_pending_migrations(POSTGRES_MIGRATIONS)
        .map_err(|e| anyhow::anyhow!("cannot apply migrations: {e}"))?;
    Ok(conn)
}

/// Inserts `rows`, skipping any event already stored (same host, window start and model version),
/// so that replaying the same input never duplicates a row. Returns how many rows were new.
pub fn insert_anomalies(conn: &mut PgConnection, rows: &[AnomalyRow]) -> anyhow::Result<usize> {
    diesel::insert_into(schema::anomalies::table)
        .values(rows)
        .on_conflict_do_nothing()
        .execute(conn)
        .context("cannot insert anomalies")
}
