//! The store against a real PostgreSQL: migrations apply, a row round-trips, a replay adds nothing.

mod support;

use anomaly_apps::store::{self, AnomalyRow};
use chrono::{TimeZone, Utc};
use diesel::prelude::*;

/// A fresh database for one test, dropped when the guard goes.
struct ScratchDatabase {
    name: String,
}

impl ScratchDatabase {
    fn create() -> (Self, String) {
        let base = support::postgres_base_url();
        let mut admin = PgConnection::establish(&format!("{base}/postgres")).unwrap_or_else(|e| {
            panic!("PostgreSQL must run at {base} (scripts/services start): {e}")
        });
        let name = support::unique_name("anomaly_test");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .expect("create database");
        (Self { name: name.clone() }, format!("{base}/{name}"))
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let base = support::postgres_base_url();
        if let Ok(mut admin) = PgConnection::establish(&format!("{base}/postgres")) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin);
        }
    }
}

fn sample_row(host: &str, minute: u32) -> AnomalyRow {
    AnomalyRow {
        host: host.to_string(),
        window_start: Utc.with_ymd_and_hms(2026, 11, 24, 10, minute, 0).unwrap(),
        window_end: Utc
            .with_ymd_and_hms(2026, 11, 24, 10, minute + 1, 0)
            .unwrap(),
        score: 7.5,
        threshold: 3.25,
        severity: "critical".to_string(),
        top_metrics: serde_json::json!([{"metric": "cpu_busy", "share": 0.8}]),
        model_version: "v1-test".to_string(),
    }
}

#[test]
fn migrations_apply_and_an_anomaly_row_round_trips() {
    let (_db, url) = ScratchDatabase::create();
    let mut conn = store::connect_and_migrate(&url).expect("migrate");

    let rows = vec![sample_row("web-1", 0), sample_row("web-2", 5)];
    assert_eq!(store::insert_anomalies(&mut conn, &rows).unwrap(), 2);

    use store::schema::anomalies::dsl;
    let back: Vec<AnomalyRow> = dsl::anomalies
        .select(AnomalyRow::as_select())
        .order(dsl::host)
        .load(&mut conn)
        .expect("select");
    assert_eq!(back, rows);
}

#[test]
fn replaying_the_same_events_adds_no_rows() {
    let (_db, url) = ScratchDatabase::create();
    let mut conn = store::connect_and_migrate(&url).expect("migrate");
    let rows = vec![sample_row("db-1", 10)];
    assert_eq!(store::insert_anomalies(&mut conn, &rows).unwrap(), 1);
    assert_eq!(store::insert_anomalies(&mut conn, &rows).unwrap(), 0);

    // Migrations are idempotent: a restart applies nothing twice.
    let mut again = store::connect_and_migrate(&url).expect("second migrate");
    use store::schema::anomalies::dsl;
    let count: i64 = dsl::anomalies.count().get_result(&mut again).unwrap();
    assert_eq!(count, 1);
}
