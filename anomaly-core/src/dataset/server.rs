//! The SMD/ASD layout (OmniAnomaly and InterFusion format). Under the dataset folder:
//! `train/NAME.txt[.gz]` and `test/NAME.txt[.gz]` (headerless numeric CSV, one row per time step),
//! `test_label/NAME.txt` (one `0`/`1` per test row), optional `interpretation_label/NAME.txt` and
//! optional `columns.txt` (one metric name per line, shared by every entity).

use std::path::{Path, PathBuf};

use super::interpretation::{RangeEnd, parse_interpretation};
use super::text::{find_txt, numbered_lines, parse_error, parse_labels, parse_matrix, read_text};
use super::{LabelledEntity, Series};
use crate::{Error, Metric, MetricSchema, Result};

/// Entity names: the `train/` files without `.txt` / `.txt.gz`, sorted and deduplicated.
pub(crate) fn list(dataset_dir: &Path) -> Result<Vec<String>> {
    let train_dir = dataset_dir.join("train");
    let entries = std::fs::read_dir(&train_dir).map_err(|source| Error::Io {
        path: train_dir.clone(),
        source,
    })?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            path: train_dir.clone(),
            source,
        })?;
        let file_name = entry.file_name();
        // Names that are not UTF-8 cannot be entity names (they are passed around as `&str`).
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if let Some(name) = file_name
            .strip_suffix(".txt.gz")
            .or_else(|| file_name.strip_suffix(".txt"))
        {
            names.push(name.to_string());
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// Loads entity `name`, checking that the files agree with each other.
pub(crate) fn load(
    dataset_dir: &Path,
    name: &str,
    range_end: RangeEnd,
    step_ms: i64,
) -> Result<LabelledEntity> {
    let train_path = required_file(dataset_dir, "train", name)?;
    let train = parse_matrix(&train_path, &read_text(&train_path)?)?;
    let test_path = required_file(dataset_dir, "test", name)?;
    let test = parse_matrix(&test_path, &read_text(&test_path)?)?;
    if test.dims() != train.dims() {
        return Err(parse_error(
            &test_path,
            1,
            format!(
                "{} columns, but {} has {}",
                test.dims(),
                train_path.display(),
                train.dims()
            ),
        ));
    }

    let labels_path = required_file(dataset_dir, "test_label", name)?;
    let test_labels = parse_labels(&labels_path, &read_text(&labels_path)?)?;
    check_label_count(&labels_path, test_labels.len(), &test_path, &test)?;

    let interpretation = match find_txt(&dataset_dir.join("interpretation_label"), name)? {
        Some(path) => parse_interpretation(
            &path,
            &read_text(&path)?,
            range_end,
            test.rows(),
            test.dims(),
        )?,
        None => Vec::new(),
    };

    Ok(LabelledEntity {
        name: name.to_string(),
        schema: read_schema(dataset_dir, test.dims())?,
        train,
        test,
        test_labels,
        interpretation,
        test_timestamps_ms: None,
        step_ms,
    })
}

fn required_file(dataset_dir: &Path, split: &str, name: &str) -> Result<PathBuf> {
    let dir = dataset_dir.join(split);
    find_txt(&dir, name)?.ok_or_else(|| Error::Dataset {
        dataset: name.to_string(),
        message: format!("no {name}.txt or {name}.txt.gz in {}", dir.display()),
    })
}

/// One label per test row: the error points at the first label line too many, or just past the end.
fn check_label_count(
    labels_path: &Path,
    labels: usize,
    test_path: &Path,
    test: &Series,
) -> Result<()> {
    if labels == test.rows() {
        return Ok(());
    }
    let line = labels.min(test.rows()) + 1;
    Err(parse_error(
        labels_path,
        line,
        format!(
            "{labels} labels, but {} has {} rows",
            test_path.display(),
            test.rows()
        ),
    ))
}

/// Metric names from `columns.txt` when the dataset ships one, else `m1..mN`. The datasets ship values
/// already min-max scaled, hence the unit.
fn read_schema(dataset_dir: &Path, dims: usize) -> Result<MetricSchema> {
    let path = dataset_dir.join("columns.txt");
    if !path.is_file() {
        return Ok(MetricSchema::numbered(dims));
    }
    let text = read_text(&path)?;
    let names: Vec<(usize, &str)> = numbered_lines(&text).collect();
    if let Some(&(line, _)) = names.iter().find(|(_, name)| name.is_empty()) {
        return Err(parse_error(&path, line, "empty metric name"));
    }
    if names.len() != dims {
        let line = names.len().min(dims) + 1;
        return Err(parse_error(
            &path,
            line,
            format!("{} names for {dims} metrics", names.len()),
        ));
    }
    Ok(MetricSchema::new(
        names
            .into_iter()
            .map(|(_, name)| Metric::new(name, "scaled"))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::{Compression, write::GzEncoder};

    use crate::dataset::test_dir::TestDir;
    use crate::dataset::{DatasetKind, list_entities, load_entity};
    use crate::{Error, Result};

    fn gzip(text: &str) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(text.as_bytes()).unwrap();
        encoder.finish().unwrap()
    }

    /// A two-metric SMD entity `m`: train plain, test gzip, 4 test rows with rows 1..=2 anomalous.
    fn write_valid_smd(dir: &TestDir) {
        dir.write("SMD/train/m.txt", b"0.1,0.2\n0.3,0.4\n0.5,0.6\n");
        dir.write(
            "SMD/test/m.txt.gz",
            &gzip("0.1,0.2\n0.9,0.8\n0.9,0.7\n0.2,0.1\n"),
        );
        dir.write("SMD/test_label/m.txt", b"0\n1\n1\n0\n");
        dir.write("SMD/interpretation_label/m.txt", b"1-3:2\n");
    }

    fn load_smd(dir: &TestDir) -> Result<crate::dataset::LabelledEntity> {
        load_entity(dir.path(), DatasetKind::Smd, "m")
    }

    #[test]
    fn loads_plain_train_and_gzip_test_with_labels_and_segments() {
        let dir = TestDir::new("server-valid");
        write_valid_smd(&dir);
        let entity = load_smd(&dir).unwrap();
        assert_eq!(
            (entity.train.rows(), entity.test.rows(), entity.test.dims()),
            (3, 4, 2)
        );
        assert_eq!(entity.test.row(2), &[0.9, 0.7]);
        assert_eq!(entity.test_labels, vec![false, true, true, false]);
        // SMD ends are exclusive: `1-3` covers rows 1 and 2, the labelled ones.
        let segment = &entity.interpretation[0];
        assert_eq!(
            (segment.start, segment.end, segment.dims.clone()),
            (1, 2, vec![1])
        );
        assert_eq!(entity.schema.name(1), Some("m2"));
        assert_eq!(entity.test_timestamps_ms, None);
        assert_eq!(
            list_entities(dir.path(), DatasetKind::Smd).unwrap(),
            vec!["m".to_string()]
        );
    }

    #[test]
    fn asd_segment_ends_are_inclusive() {
        let dir = TestDir::new("server-asd");
        dir.write("ASD/train/s.txt", b"1\n2\n");
        dir.write("ASD/test/s.txt", b"1\n2\n3\n");
        dir.write("ASD/test_label/s.txt", b"0\n1\n1\n");
        dir.write("ASD/interpretation_label/s.txt", b"1-2:1\n");
        let entity = load_entity(dir.path(), DatasetKind::Asd, "s").unwrap();
        assert_eq!(
            (entity.interpretation[0].start, entity.interpretation[0].end),
            (1, 2)
        );
    }

    #[test]
    fn missing_interpretation_is_empty_and_columns_name_metrics() {
        let dir = TestDir::new("server-columns");
        write_valid_smd(&dir);
        std::fs::remove_file(dir.path().join("SMD/interpretation_label/m.txt")).unwrap();
        dir.write("SMD/columns.txt", b"cpu_r\nmem_u\n");
        let entity = load_smd(&dir).unwrap();
        assert!(entity.interpretation.is_empty());
        assert_eq!(entity.schema.name(0), Some("cpu_r"));

        dir.write("SMD/columns.txt", b"cpu_r\nmem_u\nextra\n");
        let err = load_smd(&dir).unwrap_err();
        assert!(
            matches!(err, Error::Parse { line: 3, .. }) && err.to_string().contains("columns.txt"),
            "{err}"
        );
    }

    #[test]
    fn malformed_value_names_file_and_line() {
        let dir = TestDir::new("server-malformed");
        write_valid_smd(&dir);
        dir.write("SMD/train/m.txt", b"0.1,0.2\n0.3,oops\n");
        let message = load_smd(&dir).unwrap_err().to_string();
        assert!(
            message.contains("train/m.txt:2:") && message.contains("oops"),
            "{message}"
        );
    }

    #[test]
    fn ragged_row_is_rejected() {
        let dir = TestDir::new("server-ragged");
        write_valid_smd(&dir);
        dir.write("SMD/test/m.txt.gz", &gzip("0.1,0.2\n0.9\n"));
        let err = load_smd(&dir).unwrap_err();
        assert!(
            matches!(err, Error::Parse { line: 2, .. }) && err.to_string().contains("m.txt.gz"),
            "{err}"
        );
    }

    #[test]
    fn train_and_test_must_have_the_same_metrics() {
        let dir = TestDir::new("server-dims");
        write_valid_smd(&dir);
        dir.write("SMD/train/m.txt", b"0.1,0.2,0.3\n");
        let err = load_smd(&dir).unwrap_err();
        assert!(
            matches!(err, Error::Parse { line: 1, .. })
                && err.to_string().contains("test/m.txt.gz"),
            "{err}"
        );
    }

    #[test]
    fn label_count_must_match_test_rows() {
        let dir = TestDir::new("server-labels");
        write_valid_smd(&dir);
        dir.write("SMD/test_label/m.txt", b"0\n1\n1\n");
        let err = load_smd(&dir).unwrap_err();
        assert!(matches!(err, Error::Parse { line: 4, .. }), "{err:?}");
        assert!(
            err.to_string().contains("3 labels") && err.to_string().contains("4 rows"),
            "{err}"
        );

        dir.write("SMD/test_label/m.txt", b"0\n1\n1\n0\n0\n");
        assert!(matches!(load_smd(&dir), Err(Error::Parse { line: 5, .. })));
    }

    #[test]
    fn segment_past_the_test_rows_is_rejected() {
        let dir = TestDir::new("server-segment");
        write_valid_smd(&dir);
        dir.write("SMD/interpretation_label/m.txt", b"1-3:2\n2-5:1\n");
        let err = load_smd(&dir).unwrap_err();
        assert!(matches!(err, Error::Parse { line: 2, .. }), "{err:?}");
    }

    #[test]
    fn truncated_gzip_is_a_clean_error() {
        let dir = TestDir::new("server-truncated");
        write_valid_smd(&dir);
        let full = gzip(&"0.5,0.25\n".repeat(500));
        dir.write("SMD/test/m.txt.gz", &full[..full.len() - 10]);
        let err = load_smd(&dir).unwrap_err();
        assert!(
            matches!(err, Error::Io { .. }) && err.to_string().contains("m.txt.gz"),
            "{err}"
        );
    }

    #[test]
    fn missing_split_file_names_the_folder() {
        let dir = TestDir::new("server-missing");
        write_valid_smd(&dir);
        std::fs::remove_file(dir.path().join("SMD/test_label/m.txt")).unwrap();
        let err = load_smd(&dir).unwrap_err();
        assert!(
            matches!(err, Error::Dataset { .. }) && err.to_string().contains("test_label"),
            "{err}"
        );
    }
}
