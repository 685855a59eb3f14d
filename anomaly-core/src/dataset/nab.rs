//! The NAB layout: `data/<category>/<file>.csv` (header `timestamp,value`, UTC timestamps) and
//! `labels/combined_windows.json`, mapping `category/file.csv` to `[start, end]` anomaly windows.
//!
//! NAB has no train split. Its scorer treats the first rows of each file as a probationary period in
//! which a detector learns and is not scored (`getProbationPeriod`: `min(floor(0.15 n), 0.15 * 5000)`);
//! those rows are the train split here and the rest is the test split. Only test rows are labelled: a
//! row is anomalous when its timestamp lies in a window, ends included, as NAB scores it.
//!
//! Timestamps are kept as given; they are not always increasing (several files repeat `2014-03-09
//! 03:00:00`, a daylight-saving artefact, and `machine_temperature_system_failure.csv` steps back once),
//! so labelling compares each timestamp with the windows rather than assuming order.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Deserializer};

use super::text::{numbered_lines, parse_error, read_text};
use super::timestamp::parse_utc_ms;
use super::{LabelledEntity, Series};
use crate::{Error, Metric, MetricSchema, Result};

/// Percentage of a NAB file's rows in its probationary period (the train split).
pub const NAB_PROBATION_PERCENT: usize = 15;
/// Upper bound of a probationary period in rows (NAB: 15% of 5000).
pub const NAB_PROBATION_MAX_ROWS: usize = 750;

const WINDOWS_FILE: &str = "labels/combined_windows.json";
const HEADER: &str = "timestamp,value";

/// Rows of the probationary period of a NAB file with `total_rows` rows, exactly as NAB computes it.
pub fn nab_probation_rows(total_rows: usize) -> usize {
    // Integer arithmetic equals NAB's floor(0.15 * n): the float product never rounds below an integer.
    (total_rows.saturating_mul(NAB_PROBATION_PERCENT) / 100).min(NAB_PROBATION_MAX_ROWS)
}

/// Entity names `category/file` (no `.csv`) of every CSV under `data/`, sorted.
pub(crate) fn list(nab_dir: &Path) -> Result<Vec<String>> {
    let data_dir = nab_dir.join("data");
    let mut names = Vec::new();
    for category in read_dir_names(&data_dir)? {
        let category_dir = data_dir.join(&category);
        if !category_dir.is_dir() {
            continue;
        }
        for file in read_dir_names(&category_dir)? {
            if let Some(stem) = file.strip_suffix(".csv") {
                names.push(format!("{category}/{stem}"));
            }
        }
    }
    names.sort();
    Ok(names)
}

/// UTF-8 names of the entries of `dir`; other names cannot become entity names and are skipped.
fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    let io_error = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error)? {
        if let Ok(name) = entry.map_err(io_error)?.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// Loads `category/file`, splitting off the probationary period as train.
pub(crate) fn load(nab_dir: &Path, name: &str) -> Result<LabelledEntity> {
    let csv_path = nab_dir.join("data").join(format!("{name}.csv"));
    let (mut timestamps, values) = parse_csv(&csv_path, &read_text(&csv_path)?)?;

    let windows_path = nab_dir.join(WINDOWS_FILE);
    let mut all_windows = read_windows(&windows_path)?;
    let key = format!("{name}.csv");
    let windows = all_windows.remove(&key).ok_or_else(|| Error::Dataset {
        dataset: name.to_string(),
        message: format!("{} has no entry {key:?}", windows_path.display()),
    })?;

    let probation = nab_probation_rows(values.len());
    let (train, test) = Series::new(1, values)?.split_at_row(probation);
    let test_timestamps = timestamps.split_off(probation);
    let test_labels = test_timestamps
        .iter()
        .map(|&t| windows.iter().any(|w| w.start_ms <= t && t <= w.end_ms))
        .collect();

    let mut steps: Vec<i64> = test_timestamps
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .collect();
    steps.sort_unstable();
    let step_ms = steps.get(steps.len() / 2).copied().unwrap_or(1).max(1);

    Ok(LabelledEntity {
        name: name.to_string(),
        schema: MetricSchema::new(vec![Metric::new("value", "raw")]),
        train,
        test,
        test_labels,
        interpretation: Vec::new(),
        test_timestamps_ms: Some(test_timestamps),
        step_ms,
    })
}

/// Timestamps (epoch ms) and values of a NAB CSV.
fn parse_csv(path: &Path, text: &str) -> Result<(Vec<i64>, Vec<f64>)> {
    let mut lines = numbered_lines(text);
    match lines.next() {
        Some((_, HEADER)) => {}
        _ => {
            return Err(parse_error(
                path,
                1,
                format!("expected the header {HEADER:?}"),
            ));
        }
    }
    let mut timestamps = Vec::new();
    let mut values = Vec::new();
    for (line_no, line) in lines {
        let (timestamp, value) = line
            .split_once(',')
            .ok_or_else(|| parse_error(path, line_no, "expected timestamp,value"))?;
        let timestamp =
            parse_utc_ms(timestamp.trim()).map_err(|m| parse_error(path, line_no, m))?;
        let value = value.trim();
        let value = value
            .parse::<f64>()
            .map_err(|_| parse_error(path, line_no, format!("value {value:?} is not a number")))?;
        timestamps.push(timestamp);
        values.push(value);
    }
    if values.is_empty() {
        return Err(parse_error(path, 2, "no data rows"));
    }
    Ok((timestamps, values))
}

/// One labelled anomaly window, both ends included.
struct Window {
    start_ms: i64,
    end_ms: i64,
}

impl<'de> Deserialize<'de> for Window {
    /// Parsing and checking inside deserialization lets serde_json report the line of a bad window.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (start, end) = <(String, String)>::deserialize(deserializer)?;
        let start_ms = parse_utc_ms(&start).map_err(serde::de::Error::custom)?;
        let end_ms = parse_utc_ms(&end).map_err(serde::de::Error::custom)?;
        if end_ms < start_ms {
            return Err(serde::de::Error::custom(format!(
                "window ends ({end}) before it starts ({start})"
            )));
        }
        Ok(Window { start_ms, end_ms })
    }
}

fn read_windows(path: &Path) -> Result<HashMap<String, Vec<Window>>> {
    serde_json::from_str(&read_text(path)?).map_err(|e| parse_error(path, e.line(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::test_dir::TestDir;

    #[test]
    fn probation_matches_nab() {
        assert_eq!(nab_probation_rows(0), 0);
        assert_eq!(nab_probation_rows(6), 0);
        assert_eq!(nab_probation_rows(20), 3);
        assert_eq!(nab_probation_rows(4032), 604);
        assert_eq!(nab_probation_rows(5000), 750);
        assert_eq!(nab_probation_rows(22695), 750);
    }

    fn write_entity(dir: &TestDir, csv: &str, windows: &str) {
        dir.write("NAB/data/cat/file.csv", csv.as_bytes());
        dir.write(&format!("NAB/{WINDOWS_FILE}"), windows.as_bytes());
    }

    fn nab_dir(dir: &TestDir) -> std::path::PathBuf {
        dir.path().join("NAB")
    }

    #[test]
    fn splits_probation_and_labels_test_rows_inside_windows() {
        let dir = TestDir::new("nab-load");
        let mut csv = String::from("timestamp,value\n");
        for minute in 0..20 {
            csv.push_str(&format!("2014-01-01 00:{minute:02}:00,{minute}.5\n"));
        }
        let windows = r#"{"cat/file.csv": [["2014-01-01 00:10:00.000000", "2014-01-01 00:12:00.000000"]],
                          "cat/other.csv": []}"#;
        write_entity(&dir, &csv, windows);

        let entity = load(&nab_dir(&dir), "cat/file").unwrap();
        assert_eq!(
            (entity.train.rows(), entity.test.rows(), entity.test.dims()),
            (3, 17, 1)
        );
        assert_eq!(entity.train.row(2), &[2.5]);
        let timestamps = entity.test_timestamps_ms.unwrap();
        assert_eq!(timestamps[0], 1_388_534_400_000 + 3 * 60_000);
        let positives: Vec<usize> = entity
            .test_labels
            .iter()
            .enumerate()
            .filter(|&(_, &l)| l)
            .map(|(i, _)| i + 3)
            .collect();
        assert_eq!(positives, vec![10, 11, 12]);
        assert_eq!(list(&nab_dir(&dir)).unwrap(), vec!["cat/file".to_string()]);
    }

    #[test]
    fn bad_csv_lines_name_file_and_line() {
        let dir = TestDir::new("nab-bad-csv");
        for (csv, line) in [
            ("time,value\n", 1),
            (
                "timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:01:00,abc\n",
                3,
            ),
            ("timestamp,value\n2014-01-01 00:00:00\n", 2),
            ("timestamp,value\n2014-02-30 00:00:00,1\n", 2),
            ("timestamp,value\n", 2),
        ] {
            write_entity(&dir, csv, r#"{"cat/file.csv": []}"#);
            let err = load(&nab_dir(&dir), "cat/file").unwrap_err();
            assert!(
                matches!(err, Error::Parse { line: l, .. } if l == line),
                "{csv:?}: {err:?}"
            );
            assert!(err.to_string().contains("file.csv"), "{err}");
        }
    }

    #[test]
    fn bad_or_missing_windows_are_reported() {
        let dir = TestDir::new("nab-bad-windows");
        let csv = "timestamp,value\n2014-01-01 00:00:00,1\n";
        write_entity(
            &dir,
            csv,
            "{\n\"cat/file.csv\": [[\"2014-01-02 00:00:00\", \"2014-01-01 00:00:00\"]]}",
        );
        let err = load(&nab_dir(&dir), "cat/file").unwrap_err();
        assert!(matches!(err, Error::Parse { line: 2, .. }), "{err:?}");
        assert!(err.to_string().contains("combined_windows.json"), "{err}");

        write_entity(&dir, csv, r#"{"cat/other.csv": []}"#);
        let err = load(&nab_dir(&dir), "cat/file").unwrap_err();
        assert!(matches!(err, Error::Dataset { .. }), "{err:?}");
    }
}
