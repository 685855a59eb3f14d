//! Reading stored events back, newest first, narrowed by host, time, severity and state: what
//! `anomaly events` shows.

use anyhow::Context;
use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::{AnomalyRow, SqliteAnomalyRow, Store, postgres_schema, sqlite_schema};

/// Which stored events to list; the default lists them all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// Only this host's events.
    pub host: Option<String>,
    /// Only events still running at or after this time (their last window ends then or later).
    pub since: Option<DateTime<Utc>>,
    /// Only events of this severity (`warning` or `critical`).
    pub severity: Option<String>,
    /// Only events that have not ended.
    pub open_only: bool,
    /// At most this many, the newest.
    pub limit: Option<i64>,
}

/// The query of [`Store::list_events`] on either backend (diesel's tables are per backend).
macro_rules! list_events {
    ($schema:ident, $conn:expr, $filter:expr, $row:ty) => {{
        use $schema::anomalies::dsl::*;
        let filter: &EventFilter = $filter;
        let mut query = anomalies
            .select(<$row>::as_select())
            .order((window_start.desc(), host.desc()))
            .into_boxed();
        if let Some(name) = &filter.host {
            query = query.filter(host.eq(name.clone()));
        }
        if let Some(at) = filter.since {
            query = query.filter(window_end.ge(at));
        }
        if let Some(level) = &filter.severity {
            query = query.filter(severity.eq(level.clone()));
        }
        if filter.open_only {
            query = query.filter(closed.eq(false));
        }
        if let Some(n) = filter.limit {
            query = query.limit(n);
        }
        query.load::<$row>($conn).context("cannot read anomalies")
    }};
}

impl Store {
    /// The stored events `filter` selects, newest window first.
    pub fn list_events(&mut self, filter: &EventFilter) -> anyhow::Result<Vec<AnomalyRow>> {
        match self {
            Self::Postgres(conn) => list_events!(postgres_schema, conn, filter, AnomalyRow),
            Self::Sqlite(conn) => list_events!(sqlite_schema, conn, filter, SqliteAnomalyRow)?
                .into_iter()
                .map(|r| {
                    Ok(AnomalyRow {
                        top_metrics: serde_json::from_str(&r.top_metrics)
                            .context("stored top metrics")?,
                        host: r.host,
                        window_start: r.window_start,
                        window_end: r.window_end,
                        score: r.score,
                        threshold: r.threshold,
                        severity: r.severity,
                        model_version: r.model_version,
                        closed: r.closed,
                    })
                })
                .collect(),
        }
    }
}
