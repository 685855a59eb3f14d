//! Reading dataset text files, plain or gzip-compressed, and splitting them into numbered lines.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::{Error, Result};

/// The two bytes every gzip member starts with (RFC 1952). Compression is detected from content, not
/// from the file name, so a renamed file still reads.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads `path` as UTF-8 text, decompressing it first when it is gzip.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let io_error = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let raw = std::fs::read(path).map_err(io_error)?;
    let bytes = if raw.starts_with(&GZIP_MAGIC) {
        // MultiGzDecoder: `cat a.gz b.gz` is a valid gzip file and must read whole.
        let mut decoded = Vec::with_capacity(raw.len() * 4);
        MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut decoded)
            .map_err(io_error)?;
        decoded
    } else {
        raw
    };
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
        parse_error(path, line, "not valid UTF-8 text")
    })
}

/// The lines of `text` with their 1-based numbers, trimmed. Trailing blank lines are dropped (files
/// often end with a newline or two); a blank line before the end is kept so callers reject it rather
/// than silently shifting every later row.
pub(crate) fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.trim_end()
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
}

/// An [`Error::Parse`] for line `line` of `path`.
pub(crate) fn parse_error(path: &Path, line: usize, message: impl Into<String>) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// Finds `NAME.txt` or `NAME.txt.gz` in `dir`; `None` when neither exists. Both existing is an error:
/// picking one silently could evaluate against stale data.
pub(crate) fn find_txt(dir: &Path, name: &str) -> Result<Option<PathBuf>> {
    let plain = dir.join(format!("{name}.txt"));
    let gzipped = dir.join(format!("{name}.txt.gz"));
    match (plain.is_file(), gzipped.is_file()) {
        (true, true) => Err(Error::Dataset {
            dataset: name.to_string(),
            message: format!(
                "both {} and {} exist; keep only one",
                plain.display(),
                gzipped.display()
            ),
        }),
        (true, false) => Ok(Some(plain)),
        (false, true) => Ok(Some(gzipped)),
        (false, false) => Ok(None),
    }
}

/// Parses a headerless CSV of numbers: one row per line, the same number of columns on every line.
/// Values parse as `f64`; `nan` and `inf` are accepted and left for the scaler's bad-value policy.
pub(crate) fn parse_matrix(path: &Path, text: &str) -> Result<crate::dataset::Series> {
    let mut dims = 0;
    let mut data = Vec::new();
    for (line_no, line) in numbered_lines(text) {
        let row_start = data.len();
        for (column, field) in line.split(',').enumerate() {
            let field = field.trim();
            let value = field.parse::<f64>().map_err(|_| {
                parse_error(
                    path,
                    line_no,
                    format!("column {}: {field:?} is not a number", column + 1),
                )
            })?;
            data.push(value);
        }
        let columns = data.len() - row_start;
        if line_no == 1 {
            dims = columns;
        } else if columns != dims {
            return Err(parse_error(
                path,
                line_no,
                format!("{columns} columns, but line 1 has {dims}"),
            ));
        }
    }
    if data.is_empty() {
        return Err(parse_error(path, 1, "no data rows"));
    }
    crate::dataset::Series::new(dims, data)
}

/// Parses a file of `0`/`1` labels, one per line (1 = anomalous).
pub(crate) fn parse_labels(path: &Path, text: &str) -> Result<Vec<bool>> {
    numbered_lines(text)
        .map(|(line_no, line)| match line {
            "0" => Ok(false),
            "1" => Ok(true),
            other => Err(parse_error(
                path,
                line_no,
                format!("label {other:?} is neither 0 nor 1"),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::{Compression, write::GzEncoder};

    use super::*;
    use crate::dataset::test_dir::TestDir;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn reads_plain_and_gzip_by_content_not_extension() {
        let dir = TestDir::new("text-read");
        let plain = dir.write("a.txt", b"1,2\n");
        // A gzip file without the .gz extension must still be decompressed.
        let disguised = dir.write("b.txt", &gzip(b"3,4\n"));
        assert_eq!(read_text(&plain).unwrap(), "1,2\n");
        assert_eq!(read_text(&disguised).unwrap(), "3,4\n");
    }

    #[test]
    fn truncated_gzip_is_an_io_error_naming_the_file() {
        let dir = TestDir::new("text-truncated");
        let full = gzip("0.5,0.25\n".repeat(1000).as_bytes());
        let path = dir.write("cut.txt.gz", &full[..full.len() / 2]);
        let err = read_text(&path).unwrap_err();
        assert!(
            matches!(&err, Error::Io { path: p, .. } if p == &path),
            "{err:?}"
        );
        assert!(err.to_string().contains("cut.txt.gz"), "{err}");
    }

    #[test]
    fn invalid_utf8_reports_its_line() {
        let dir = TestDir::new("text-utf8");
        let path = dir.write("bad.txt", b"1\n2\n\xff\n");
        let err = read_text(&path).unwrap_err();
        assert!(matches!(err, Error::Parse { line: 3, .. }), "{err:?}");
    }

    #[test]
    fn missing_file_is_an_io_error_with_its_path() {
        let dir = TestDir::new("text-missing");
        let err = read_text(&dir.path().join("nope.txt")).unwrap_err();
        assert!(err.to_string().contains("nope.txt"), "{err}");
    }

    #[test]
    fn find_txt_prefers_nothing_and_rejects_ambiguity() {
        let dir = TestDir::new("text-find");
        assert_eq!(find_txt(dir.path(), "m").unwrap(), None);
        let gz = dir.write("m.txt.gz", &gzip(b"1\n"));
        assert_eq!(find_txt(dir.path(), "m").unwrap(), Some(gz));
        dir.write("m.txt", b"1\n");
        assert!(matches!(
            find_txt(dir.path(), "m"),
            Err(Error::Dataset { .. })
        ));
    }

    #[test]
    fn matrix_parses_rows_and_ignores_trailing_blank_lines() {
        let path = Path::new("m.txt");
        let s = parse_matrix(path, "1, 2,3\r\n4,5,6e-1\n\n").unwrap();
        assert_eq!((s.rows(), s.dims()), (2, 3));
        assert_eq!(s.row(1), &[4.0, 5.0, 0.6]);
    }

    #[test]
    fn matrix_errors_name_file_and_line() {
        let path = Path::new("data/machine.txt");
        let err = parse_matrix(path, "1,2\n3,x\n").unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, Error::Parse { line: 2, .. }));
        assert!(
            message.contains("machine.txt:2") && message.contains("column 2"),
            "{message}"
        );

        let ragged = parse_matrix(path, "1,2\n3,4\n5\n").unwrap_err();
        assert!(matches!(ragged, Error::Parse { line: 3, .. }), "{ragged:?}");
        let blank_inside = parse_matrix(path, "1,2\n\n3,4\n").unwrap_err();
        assert!(
            matches!(blank_inside, Error::Parse { line: 2, .. }),
            "{blank_inside:?}"
        );
        assert!(matches!(
            parse_matrix(path, "\n\n"),
            Err(Error::Parse { .. })
        ));
    }

    #[test]
    fn labels_accept_only_zero_and_one() {
        let path = Path::new("l.txt");
        assert_eq!(
            parse_labels(path, "0\n1\n0\n").unwrap(),
            vec![false, true, false]
        );
        let err = parse_labels(path, "0\n2\n").unwrap_err();
        assert!(matches!(err, Error::Parse { line: 2, .. }), "{err:?}");
    }
}
