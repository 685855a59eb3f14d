//! The dataset readers against the real data in `shared/data` (or `$ANOMALY_DATA_DIR`). These tests
//! fail, never skip, when the data is missing: a silent skip would let a broken reader pass CI.

use std::path::{Path, PathBuf};

use anomaly_core::dataset::{
    DatasetKind, LabelledEntity, data_dir_from_env, list_entities, load_entity,
};

fn data_root() -> PathBuf {
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    let root = data_dir_from_env(&default);
    assert!(
        root.join("SMD").is_dir() && root.join("ASD").is_dir() && root.join("NAB").is_dir(),
        "labelled data not found under {}: set ANOMALY_DATA_DIR to the folder holding SMD/, ASD/ and NAB/",
        root.display()
    );
    root
}

fn load_all(kind: DatasetKind) -> Vec<LabelledEntity> {
    let root = data_root();
    let names = list_entities(&root, kind).unwrap_or_else(|e| panic!("listing {kind}: {e}"));
    names
        .iter()
        .map(|name| load_entity(&root, kind, name).unwrap_or_else(|e| panic!("{kind} {name}: {e}")))
        .collect()
}

/// Invariants every entity must hold, whatever the dataset.
fn check_consistent(entity: &LabelledEntity, dims: usize) {
    let name = &entity.name;
    assert_eq!(entity.schema.len(), dims, "{name} schema");
    assert_eq!(
        (entity.train.dims(), entity.test.dims()),
        (dims, dims),
        "{name} dims"
    );
    assert_eq!(
        entity.test_labels.len(),
        entity.test.rows(),
        "{name} labels"
    );
    assert!(
        entity.test_labels.iter().any(|&l| l),
        "{name} has no anomalous test row"
    );
    for segment in &entity.interpretation {
        assert!(
            segment.start <= segment.end && segment.end < entity.test.rows(),
            "{name} {segment:?}"
        );
        assert!(
            !segment.dims.is_empty() && segment.dims.iter().all(|&d| d < dims),
            "{name} {segment:?}"
        );
    }
}

/// Interpretation segments line up with the labels: every row of a segment is labelled, and a
/// labelled row just outside a segment belongs to another one. A convention off by one row fails.
fn check_segments_match_labels(entity: &LabelledEntity) {
    let name = &entity.name;
    let labels = &entity.test_labels;
    assert!(
        !entity.interpretation.is_empty(),
        "{name} has no interpretation"
    );
    let in_some_segment = |row: usize| {
        entity
            .interpretation
            .iter()
            .any(|s| s.start <= row && row <= s.end)
    };
    for segment in &entity.interpretation {
        assert!(
            (segment.start..=segment.end).all(|row| labels[row]),
            "{name} {segment:?} has normal rows"
        );
        let before = segment.start.checked_sub(1);
        let after = Some(segment.end + 1).filter(|&row| row < labels.len());
        for row in before.into_iter().chain(after) {
            assert!(
                !labels[row] || in_some_segment(row),
                "{name} {segment:?}: labelled row {row} left out"
            );
        }
    }
}

#[test]
fn smd_has_seven_machines_of_38_named_metrics() {
    let entities = load_all(DatasetKind::Smd);
    let names: Vec<&str> = entities.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "machine-1-2",
            "machine-1-6",
            "machine-2-1",
            "machine-2-2",
            "machine-2-8",
            "machine-3-2",
            "machine-3-4"
        ]
    );
    for entity in &entities {
        check_consistent(entity, 38);
        check_segments_match_labels(entity);
        assert!(
            (23_600..23_800).contains(&entity.train.rows()),
            "{} train {}",
            entity.name,
            entity.train.rows()
        );
        assert!(
            (23_600..23_800).contains(&entity.test.rows()),
            "{} test {}",
            entity.name,
            entity.test.rows()
        );
        assert_eq!(entity.schema.name(0), Some("cpu_r"));
        assert_eq!(entity.test_timestamps_ms, None);
        assert_eq!(entity.rows_per_day(), 1440.0);
    }
    let machine_1_2 = &entities[0];
    assert_eq!(
        (machine_1_2.train.rows(), machine_1_2.test.rows()),
        (23_694, 23_694)
    );
    assert_eq!(machine_1_2.test_labels.iter().filter(|&&l| l).count(), 542);
    // First line of its interpretation file: `4629-4688:9,10,11,13,15,18` (END exclusive, dims 1-based).
    let first = &machine_1_2.interpretation[0];
    assert_eq!(
        (first.start, first.end, first.dims.as_slice()),
        (4629, 4687, &[8, 9, 10, 12, 14, 17][..])
    );
}

#[test]
fn asd_has_twelve_servers_of_19_metrics() {
    let entities = load_all(DatasetKind::Asd);
    assert_eq!(entities.len(), 12);
    for entity in &entities {
        check_consistent(entity, 19);
        check_segments_match_labels(entity);
        assert_eq!(entity.test.rows(), 4_320, "{}", entity.name);
        let expected_train = if entity.name == "omi-12" {
            7_291
        } else {
            8_640
        };
        assert_eq!(entity.train.rows(), expected_train, "{}", entity.name);
        assert_eq!(entity.schema.name(18), Some("m19"));
        assert_eq!(entity.rows_per_day(), 288.0);
    }
    // `760-765:4,...` in omi-1 is inclusive: both ends are labelled.
    let omi_1 = entities.iter().find(|e| e.name == "omi-1").expect("omi-1");
    assert_eq!(
        (omi_1.interpretation[0].start, omi_1.interpretation[0].end),
        (760, 765)
    );
}

#[test]
fn nab_loads_every_file_with_timestamps_and_positive_labels() {
    let root = data_root();
    let names = list_entities(&root, DatasetKind::Nab).expect("list NAB");
    assert_eq!(names.len(), 24);
    assert!(names.contains(&"realKnownCause/nyc_taxi".to_string()));
    let mut files_with_anomalies = 0;
    for name in &names {
        let entity = load_entity(&root, DatasetKind::Nab, name)
            .unwrap_or_else(|e| panic!("NAB {name}: {e}"));
        let total = entity.train.rows() + entity.test.rows();
        assert_eq!(
            entity.train.rows(),
            anomaly_core::dataset::nab_probation_rows(total),
            "{name}"
        );
        assert_eq!(entity.test_labels.len(), entity.test.rows(), "{name}");
        let timestamps = entity
            .test_timestamps_ms
            .as_ref()
            .expect("NAB has timestamps");
        assert_eq!(timestamps.len(), entity.test.rows(), "{name}");
        // Every file spans dates between 2013 and 2016.
        assert!(
            timestamps
                .iter()
                .all(|&t| (1_356_998_400_000..1_483_228_800_000).contains(&t)),
            "{name}"
        );
        files_with_anomalies += usize::from(entity.test_labels.iter().any(|&l| l));
    }
    // Every file but ec2_cpu_utilization_c6585a (no windows) has labelled anomalies.
    assert_eq!(files_with_anomalies, 23);

    let taxi = load_entity(&root, DatasetKind::Nab, "realKnownCause/nyc_taxi").expect("nyc_taxi");
    assert_eq!((taxi.train.rows(), taxi.test.rows()), (750, 10_320 - 750));
    assert_eq!(taxi.test_labels.iter().filter(|&&l| l).count(), 1_035);
    // Half-hourly rows: 48 a day.
    assert_eq!(taxi.rows_per_day(), 48.0);
    // 2014-07-01 00:00:00 UTC is the first row; the probationary period is 750 half-hours.
    assert_eq!(
        taxi.test_timestamps_ms.as_ref().unwrap()[0],
        1_404_172_800_000 + 750 * 1_800_000
    );
}
