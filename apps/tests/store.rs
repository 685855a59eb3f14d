//! The event store against a real PostgreSQL and an SQLite file: migrations apply, rows round-trip,
//! an event's update replaces it, a stale update changes nothing, and a replay adds nothing;
//! positions are stored with the events, detector states beside them, and neither moves back.

mod support;

use std::collections::BTreeSet;

use anomaly_apps::detect::group_model::newer_model;
use anomaly_apps::store::{AnomalyRow, Checkpoint, EventFilter, Position, Store};
use anomaly_model::{Model, ModelPackage};
use chrono::{TimeZone, Utc};
use diesel::RunQueryDsl;

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
        closed: false,
    }
}

/// Writes two events, replays one with a later end and higher peak (as when an event closes),
/// and checks that the store holds exactly the two, the replayed one updated.
fn round_trip_and_upsert(store: &mut Store) {
    let rows = vec![sample_row("web-1", 0), sample_row("web-2", 5)];
    store.upsert(&rows).expect("insert");
    assert_eq!(store.events().unwrap(), rows);

    let mut closed = rows[0].clone();
    closed.window_end = Utc.with_ymd_and_hms(2026, 11, 24, 10, 7, 0).unwrap();
    closed.score = 9.0;
    store.upsert(std::slice::from_ref(&closed)).expect("upsert");
    store.upsert(std::slice::from_ref(&closed)).expect("replay");
    // The open event's write, landing late (abandoned on a hanging server): no step back.
    store.upsert(&rows[..1]).expect("stale write");
    let back = store.events().unwrap();
    assert_eq!(back, vec![closed, rows[1].clone()]);
}

/// Commits events with positions of two partitions and stores a state, then a stale position
/// and a stale state (an instance that lost the partition), and reads them back.
fn checkpoints_round_trip_and_never_move_back(store: &mut Store) {
    let position = |partition, next_offset, replay_from| Position {
        topic: "metrics".to_string(),
        partition,
        next_offset,
        replay_from,
    };
    assert!(
        store
            .checkpoints("g", "metrics", &[0, 1])
            .unwrap()
            .is_empty()
    );
    store
        .commit("g", &[sample_row("db-1", 9)], &position(0, 100, 0))
        .unwrap();
    store.save_state("g", "metrics", 0, 90, b"s90").unwrap();
    store.commit("g", &[], &position(1, 7, 0)).unwrap();
    // Later: offsets move on, the state stays as it was.
    store.commit("g", &[], &position(0, 120, 90)).unwrap();
    // A stale writer's position and state change neither.
    store.commit("g", &[], &position(0, 95, 80)).unwrap();
    store.save_state("g", "metrics", 0, 80, b"s80").unwrap();
    let mut stored = store.checkpoints("g", "metrics", &[0, 1, 2]).unwrap();
    stored.sort_by_key(|c| c.position.partition);
    assert_eq!(
        stored,
        vec![
            Checkpoint {
                position: position(0, 120, 90),
                state: Some((90, b"s90".to_vec())),
            },
            Checkpoint {
                position: position(1, 7, 0),
                state: None,
            },
        ]
    );
    // A newer state replaces the older.
    store.save_state("g", "metrics", 0, 110, b"s110").unwrap();
    let stored = store.checkpoints("g", "metrics", &[0]).unwrap();
    assert_eq!(stored[0].state, Some((110, b"s110".to_vec())));
    // Another group's positions are its own.
    assert!(
        store
            .checkpoints("other", "metrics", &[0])
            .unwrap()
            .is_empty()
    );
    assert!(store.events().unwrap().iter().any(|r| r.host == "db-1"));
}

/// Lists events newest first, narrowed by each filter; an ended event is never reopened by a
/// late write of its open state.
fn listing_filters_and_an_ended_event_stays_ended(store: &mut Store) {
    let mut ended = sample_row("api-1", 20);
    ended.severity = "warning".to_string();
    ended.closed = true;
    let open = sample_row("api-2", 30);
    store.upsert(&[ended.clone(), open.clone()]).unwrap();
    // The open state of the ended event, landing late with the same end.
    store
        .upsert(&[AnomalyRow {
            closed: false,
            ..ended.clone()
        }])
        .unwrap();
    let list = |store: &mut Store, filter: EventFilter| -> Vec<(String, bool)> {
        store
            .list_events(&filter)
            .unwrap()
            .into_iter()
            .filter(|r| r.host.starts_with("api-"))
            .map(|r| (r.host, r.closed))
            .collect()
    };
    let all = list(store, EventFilter::default());
    assert_eq!(
        all,
        vec![("api-2".to_string(), false), ("api-1".to_string(), true)]
    );
    let only = |host: &str, closed| vec![(host.to_string(), closed)];
    assert_eq!(
        list(
            store,
            EventFilter {
                open_only: true,
                ..EventFilter::default()
            }
        ),
        only("api-2", false)
    );
    assert_eq!(
        list(
            store,
            EventFilter {
                severity: Some("warning".to_string()),
                ..EventFilter::default()
            }
        ),
        only("api-1", true)
    );
    assert_eq!(
        list(
            store,
            EventFilter {
                host: Some("api-1".to_string()),
                ..EventFilter::default()
            }
        ),
        only("api-1", true)
    );
    // Still running at 10:30 or later: only the event whose last window ends at 10:31.
    assert_eq!(
        list(
            store,
            EventFilter {
                since: Some(open.window_start),
                ..EventFilter::default()
            }
        ),
        only("api-2", false)
    );
    let newest = store
        .list_events(&EventFilter {
            limit: Some(1),
            ..EventFilter::default()
        })
        .unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].host, "api-2");
}

/// A PCA model of the reference host, trained on its steps from `from`: each call a new version.
fn model(from: u64) -> Model {
    let rows: Vec<[f64; 7]> = (from..from + 3000)
        .map(anomaly_core::synthetic::cyclic_host_row)
        .collect();
    Model::train(
        &anomaly_core::MetricSchema::host(),
        &anomaly_core::dataset::Series::from_rows(&rows).unwrap(),
        anomaly_model::DetectorKind::Pca,
        &anomaly_model::TrainingConfig::default(),
        &mut |_| {},
    )
    .unwrap()
}

fn version(model: &Model) -> String {
    model.manifest().model_version.clone()
}

fn group_models_switch_atomically_and_refuse_a_damaged_version(store: &mut Store) {
    let (a, b) = (model(0), model(500));
    assert_ne!(version(&a), version(&b));
    let group = "detectors";
    assert_eq!(store.current_model_version(group).unwrap(), None);

    // The first offer wins; a later one changes nothing.
    assert!(
        store
            .seed_model(group, &ModelPackage::pack(&a).unwrap())
            .unwrap()
    );
    assert!(
        !store
            .seed_model(group, &ModelPackage::pack(&b).unwrap())
            .unwrap()
    );
    assert_eq!(
        store.current_model_version(group).unwrap(),
        Some(version(&a))
    );
    let mut refused = BTreeSet::new();
    let found = newer_model(store, group, None, &mut refused)
        .unwrap()
        .unwrap();
    assert_eq!(found.manifest(), a.manifest());
    assert!(
        newer_model(store, group, Some(&version(&a)), &mut refused)
            .unwrap()
            .is_none()
    );

    // Publishing switches every follower to the new version.
    store
        .publish_model(group, &ModelPackage::pack(&b).unwrap())
        .unwrap();
    assert_eq!(
        store.current_model_version(group).unwrap(),
        Some(version(&b))
    );
    let found = newer_model(store, group, Some(&version(&a)), &mut refused).unwrap();
    assert_eq!(found.unwrap().manifest(), b.manifest());

    // A damaged current version is refused, with its name kept, and the previous one serves.
    let cut = match store {
        Store::Postgres(conn) => diesel::sql_query(format!(
            "UPDATE model_versions SET artifact = substr(artifact, 1, 200) WHERE version = '{}'",
            version(&b)
        ))
        .execute(conn),
        Store::Sqlite(conn) => diesel::sql_query(format!(
            "UPDATE model_versions SET artifact = substr(artifact, 1, 200) WHERE version = '{}'",
            version(&b)
        ))
        .execute(conn),
    };
    assert_eq!(cut.unwrap(), 1);
    let found = newer_model(store, group, None, &mut refused).unwrap();
    assert_eq!(found.unwrap().manifest(), a.manifest());
    assert_eq!(refused, BTreeSet::from([version(&b)]));
    assert!(
        newer_model(store, group, Some(&version(&a)), &mut refused)
            .unwrap()
            .is_none()
    );

    // Another group has versions of its own; old versions are pruned.
    assert_eq!(store.current_model_version("others").unwrap(), None);
    for from in [1000, 1500, 2000, 2500] {
        let next = model(from);
        store
            .publish_model(group, &ModelPackage::pack(&next).unwrap())
            .unwrap();
    }
    assert_eq!(
        store.model_versions(group).unwrap().len(),
        4,
        "the current one and 3 more"
    );
}

#[test]
fn postgres_migrates_round_trips_and_never_duplicates_an_event() {
    let (_db, url) = support::ScratchDatabase::create();
    let mut store = Store::open(&url).expect("open PostgreSQL store");
    assert!(matches!(store, Store::Postgres(_)));
    round_trip_and_upsert(&mut store);
    checkpoints_round_trip_and_never_move_back(&mut store);
    group_models_switch_atomically_and_refuse_a_damaged_version(&mut store);
    // Opening again applies no migration twice and keeps the rows.
    let mut again = Store::open(&url).expect("reopen");
    assert_eq!(again.events().unwrap().len(), 3);
    listing_filters_and_an_ended_event_stays_ended(&mut store);

    // The training lease: one holder per group, released when its connection closes (as when
    // its process dies).
    assert!(store.try_lead_training("detectors").unwrap());
    assert!(!again.try_lead_training("detectors").unwrap());
    assert!(
        again.try_lead_training("others").unwrap(),
        "a lease per group"
    );
    drop(store);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !again.try_lead_training("detectors").unwrap() {
        assert!(
            std::time::Instant::now() < deadline,
            "the lease outlived its connection"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A cluster that serves TLS with a certificate of a private CA: `sslmode=verify-full` with that
/// CA connects (and the store works over it); without the CA, or with another one, it is
/// refused, and no error shows the password.
#[test]
fn postgres_over_tls_with_verify_full_trusts_only_the_given_ca() {
    let postgres = support::postgres::PrivatePostgres::start_with_tls();
    let url = |params: &str| format!("{}?sslmode=verify-full{params}", postgres.url());
    let ca = postgres.tls_file("ca.pem");
    let mut store = Store::open(&url(&format!("&sslrootcert={}", ca.display())))
        .expect("verify-full with the cluster's CA");
    store.upsert(&[sample_row("tls-1", 3)]).unwrap();
    assert_eq!(store.events().unwrap()[0].host, "tls-1");

    let other_ca = postgres.tls_file("other-ca.pem");
    for (what, params) in [
        ("no CA", "&sslrootcert=/nonexistent/ca.pem".to_string()),
        ("another CA", format!("&sslrootcert={}", other_ca.display())),
    ] {
        let refused = match Store::open(&url(&params)) {
            Ok(_) => panic!("{what}: connected without trusting the server's certificate"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            !refused.contains(support::postgres::PASSWORD),
            "{what}: {refused}"
        );
    }
}

#[test]
fn sqlite_migrates_round_trips_and_never_duplicates_an_event() {
    let path = std::env::temp_dir().join(format!("{}.db", support::unique_name("anomaly_store")));
    let mut store = Store::open(path.to_str().unwrap()).expect("open SQLite store");
    assert!(matches!(store, Store::Sqlite(_)));
    round_trip_and_upsert(&mut store);
    checkpoints_round_trip_and_never_move_back(&mut store);
    listing_filters_and_an_ended_event_stays_ended(&mut store);
    group_models_switch_atomically_and_refuse_a_damaged_version(&mut store);
    drop(store);
    std::fs::remove_file(&path).unwrap();
}
