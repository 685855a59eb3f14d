//! The event store against a real PostgreSQL and an SQLite file: migrations apply, rows round-trip,
//! an event's update replaces it, a stale update changes nothing, and a replay adds nothing;
//! positions are stored with the events, detector states beside them, and neither moves back.

mod support;

use std::collections::BTreeSet;

use anomaly_apps::detect::group_model::newer_model;
use anomaly_apps::store::{AnomalyRow, Checkpoint, Position, Store};
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

#[test]
fn sqlite_migrates_round_trips_and_never_duplicates_an_event() {
    let path = std::env::temp_dir().join(format!("{}.db", support::unique_name("anomaly_store")));
    let mut store = Store::open(path.to_str().unwrap()).expect("open SQLite store");
    assert!(matches!(store, Store::Sqlite(_)));
    round_trip_and_upsert(&mut store);
    checkpoints_round_trip_and_never_move_back(&mut store);
    group_models_switch_atomically_and_refuse_a_damaged_version(&mut store);
    drop(store);
    std::fs::remove_file(&path).unwrap();
}
