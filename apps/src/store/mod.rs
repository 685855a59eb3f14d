//! Persistence of anomaly events with diesel: PostgreSQL for fleets, SQLite for the demo and
//! single machines. Migrations are embedded in the binary and applied when the store opens.
//!
//! Events are upserted on (host, window start, model version): an event is written when it
//! opens and updated when it closes, and replaying the same input never duplicates a row. An
//! update never takes an event back to an earlier end (a late, stale write changes nothing).
//!
//! Beside the events, the detector stores where it stands in each source partition, in the
//! same transaction ([`Position`], exactly-once), and its state there, in a transaction of its
//! own once that position is stored ([`Checkpoint`]); and each consumer group's model
//! versions, one of them current (`models`).

mod checkpoint;
mod listing;
mod models;
pub mod postgres_schema;
mod redact;
pub mod sqlite_schema;
pub mod writer;

pub use checkpoint::{Checkpoint, Position};
pub use listing::EventFilter;
pub use redact::redact_url;
use redact::scrub_password;
pub use writer::StoreWriter;

use anomaly_core::Anomaly;
use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
// Only called by path: with the prelude's `QueryDsl` its `filter` would be ambiguous on tables.
use diesel::query_dsl::methods::FilterDsl;
use diesel::sqlite::SqliteConnection;
use diesel::upsert::excluded;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use serde::{Deserialize, Serialize};

/// The PostgreSQL migrations.
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
/// The SQLite migrations.
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// The key of the PostgreSQL advisory lock migrations run under ("anomaly" in ASCII, truncated):
/// any constant every instance agrees on.
const MIGRATION_LOCK: i64 = 0x0061_6e6f_6d61_6c79;

/// An anomaly event as stored.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = postgres_schema::anomalies)]
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
    /// Whether the event has ended (a later write never reopens it).
    pub closed: bool,
}

/// The SQLite form of [`AnomalyRow`]: JSON as text.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sqlite_schema::anomalies)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
struct SqliteAnomalyRow {
    host: String,
    window_start: DateTime<Utc>,
    window_end: DateTime<Utc>,
    score: f64,
    threshold: f64,
    severity: String,
    top_metrics: String,
    model_version: String,
    closed: bool,
}

impl From<&Anomaly> for AnomalyRow {
    fn from(a: &Anomaly) -> Self {
        let at = |ms: i64| {
            Utc.timestamp_millis_opt(ms)
                .single()
                .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        };
        Self {
            host: a.entity.clone(),
            window_start: at(a.window_start_ms),
            window_end: at(a.window_end_ms),
            score: a.score,
            threshold: a.threshold,
            severity: a.severity.as_str().to_string(),
            top_metrics: serde_json::to_value(&a.top_metrics).unwrap_or(serde_json::Value::Null),
            model_version: a.model_version.clone(),
            closed: a.closed,
        }
    }
}

/// A connection to the event store.
pub enum Store {
    /// A PostgreSQL database.
    Postgres(PgConnection),
    /// An SQLite file.
    Sqlite(SqliteConnection),
}

impl Store {
    /// Opens `url` and applies pending migrations: `postgres://...` or `postgresql://...` for
    /// PostgreSQL, anything else is an SQLite file path (`sqlite://` prefix optional).
    ///
    /// Instances that start together against a fresh database take turns: PostgreSQL migrations
    /// run under an advisory lock. No error names the password of `url` (see [`redact_url`]).
    pub fn open(url: &str) -> anyhow::Result<Self> {
        let migrate = |e: Box<dyn std::error::Error + Send + Sync>| {
            anyhow::anyhow!("cannot apply migrations: {e}")
        };
        if let Some((scheme, _)) = url.split_once("://") {
            anyhow::ensure!(
                ["postgres", "postgresql", "sqlite"].contains(&scheme),
                "unsupported database URL {}: use postgres://, postgresql:// or an SQLite file path",
                redact_url(url)
            );
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // libpq's message may quote the URL or a piece of it (a badly encoded password, for
            // one): it is kept only as text with the password taken out.
            let mut conn = PgConnection::establish(url).map_err(|e| {
                anyhow::anyhow!(
                    "cannot connect to PostgreSQL at {}: {}",
                    redact_url(url),
                    scrub_password(&e.to_string(), url)
                )
            })?;
            // Bounded: an instance that hangs holding the lock must not hang every other one
            // (the caller retries on a fresh connection).
            diesel::sql_query("SET lock_timeout = '5s'")
                .execute(&mut conn)
                .context("cannot bound the wait for the migration lock")?;
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
                .execute(&mut conn)
                .context("cannot take the migration lock")?;
            let migrated = conn.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ());
            // The lock is the session's: released here, or by PostgreSQL if the process dies.
            diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
                .execute(&mut conn)
                .context("cannot release the migration lock")?;
            diesel::sql_query("RESET lock_timeout")
                .execute(&mut conn)
                .context("cannot reset the lock timeout")?;
            migrated.map_err(migrate)?;
            Ok(Self::Postgres(conn))
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            let mut conn = SqliteConnection::establish(path)
                .with_context(|| format!("cannot open SQLite file {path}"))?;
            // The trainer writes model versions on a connection of its own: a writer finding
            // the file locked waits rather than fails.
            diesel::sql_query("PRAGMA busy_timeout = 5000")
                .execute(&mut conn)
                .context("cannot set SQLite's busy timeout")?;
            conn.run_pending_migrations(SQLITE_MIGRATIONS)
                .map_err(migrate)?;
            Ok(Self::Sqlite(conn))
        }
    }

    /// Writes `rows`: new events are inserted, known ones (same host, window start and model
    /// version) get their end, peak score, severity and top metrics updated.
    pub fn upsert(&mut self, rows: &[AnomalyRow]) -> anyhow::Result<()> {
        match self {
            Self::Postgres(conn) => {
                upsert_postgres(conn, rows).context("cannot write anomalies to PostgreSQL")
            }
            Self::Sqlite(conn) => {
                upsert_sqlite(conn, rows).context("cannot write anomalies to SQLite")
            }
        }
    }

    /// Every stored event, oldest window first (see [`list_events`](Self::list_events)).
    pub fn events(&mut self) -> anyhow::Result<Vec<AnomalyRow>> {
        let mut rows = self.list_events(&EventFilter::default())?;
        rows.reverse();
        Ok(rows)
    }
}

/// [`Store::upsert`] on a PostgreSQL connection (inside a transaction or not).
fn upsert_postgres(conn: &mut PgConnection, rows: &[AnomalyRow]) -> QueryResult<()> {
    use postgres_schema::anomalies::dsl::*;
    for row in rows {
        let upsert = diesel::insert_into(anomalies)
            .values(row)
            .on_conflict((host, window_start, model_version))
            .do_update()
            .set((
                window_end.eq(excluded(window_end)),
                score.eq(excluded(score)),
                severity.eq(excluded(severity)),
                top_metrics.eq(excluded(top_metrics)),
                // Once ended, an event stays ended.
                closed.eq(closed.or(excluded(closed))),
            ));
        // A write abandoned on a hanging server may land after a newer one: it must not take
        // the event back to an earlier state.
        FilterDsl::filter(upsert, window_end.le(excluded(window_end))).execute(conn)?;
    }
    Ok(())
}

/// [`Store::upsert`] on an SQLite connection (inside a transaction or not).
fn upsert_sqlite(conn: &mut SqliteConnection, rows: &[AnomalyRow]) -> QueryResult<()> {
    use sqlite_schema::anomalies::dsl::*;
    for row in rows {
        let row = SqliteAnomalyRow {
            host: row.host.clone(),
            window_start: row.window_start,
            window_end: row.window_end,
            score: row.score,
            threshold: row.threshold,
            severity: row.severity.clone(),
            top_metrics: row.top_metrics.to_string(),
            model_version: row.model_version.clone(),
            closed: row.closed,
        };
        let upsert = diesel::insert_into(anomalies)
            .values(&row)
            .on_conflict((host, window_start, model_version))
            .do_update()
            .set((
                window_end.eq(excluded(window_end)),
                score.eq(excluded(score)),
                severity.eq(excluded(severity)),
                top_metrics.eq(excluded(top_metrics)),
                // Once ended, an event stays ended.
                closed.eq(closed.or(excluded(closed))),
            ));
        FilterDsl::filter(upsert, window_end.le(excluded(window_end))).execute(conn)?;
    }
    Ok(())
}
