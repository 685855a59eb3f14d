//! Interpretation labels of SMD and ASD: lines `START-END:d1,d2,...` naming, for one anomalous row
//! range of the test split, the 1-based metrics an operator gave as its cause.
//!
//! The two datasets write the row range differently. Checked against `test_label/` on the shipped
//! files (every segment lines up exactly with a run of `1` labels):
//! - SMD: 0-based, END exclusive (`4629-4688` labels rows 4629..=4687);
//! - ASD: 0-based, END inclusive (`760-765` labels rows 760..=765).
//!
//! Both become [`InterpretationSegment`]s with 0-based, inclusive rows and 0-based metric indices.

use std::path::Path;

use super::text::{numbered_lines, parse_error};
use crate::Result;
use crate::eval::InterpretationSegment;

/// How a dataset writes the END of a `START-END` row range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeEnd {
    /// END is the last row of the segment.
    Inclusive,
    /// END is the first row after the segment.
    Exclusive,
}

/// Parses an interpretation file of a test split with `test_rows` rows and `dims` metrics. Segments
/// come back sorted by start row (the SMD files are not).
pub(crate) fn parse_interpretation(
    path: &Path,
    text: &str,
    range_end: RangeEnd,
    test_rows: usize,
    dims: usize,
) -> Result<Vec<InterpretationSegment>> {
    let mut segments = numbered_lines(text)
        .map(|(line_no, line)| {
            parse_segment(line, range_end, test_rows, dims)
                .map_err(|message| parse_error(path, line_no, message))
        })
        .collect::<Result<Vec<_>>>()?;
    segments.sort_by_key(|s| (s.start, s.end));
    Ok(segments)
}

fn parse_segment(
    line: &str,
    range_end: RangeEnd,
    test_rows: usize,
    dims: usize,
) -> Result<InterpretationSegment, String> {
    let expected = || format!("{line:?} is not START-END:d1,d2,...");
    let (range, dim_list) = line.split_once(':').ok_or_else(expected)?;
    let (start, end) = range.split_once('-').ok_or_else(expected)?;
    let number = |s: &str| s.trim().parse::<usize>().map_err(|_| expected());
    let (start, end) = (number(start)?, number(end)?);
    let last = match range_end {
        RangeEnd::Inclusive if end >= start => end,
        RangeEnd::Exclusive if end > start => end - 1,
        _ => return Err(format!("segment {start}-{end} is empty or reversed")),
    };
    if last >= test_rows {
        return Err(format!(
            "segment {start}-{end} runs past the {test_rows} test rows"
        ));
    }
    let dims = dim_list
        .split(',')
        .map(|d| match number(d)? {
            d if (1..=dims).contains(&d) => Ok(d - 1),
            d => Err(format!("metric {d} is outside 1..={dims}")),
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(InterpretationSegment {
        start,
        end: last,
        dims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    fn parse(text: &str, range_end: RangeEnd) -> Result<Vec<InterpretationSegment>> {
        parse_interpretation(Path::new("interp.txt"), text, range_end, 100, 5)
    }

    #[test]
    fn converts_to_zero_based_inclusive_rows_and_dims_sorted() {
        let segs = parse("50-60:2,5\n10-20:1\n", RangeEnd::Exclusive).unwrap();
        assert_eq!(
            (segs[0].start, segs[0].end, segs[0].dims.clone()),
            (10, 19, vec![0])
        );
        assert_eq!(
            (segs[1].start, segs[1].end, segs[1].dims.clone()),
            (50, 59, vec![1, 4])
        );

        let segs = parse("10-20:3\n", RangeEnd::Inclusive).unwrap();
        assert_eq!(
            (segs[0].start, segs[0].end, segs[0].dims.clone()),
            (10, 20, vec![2])
        );
    }

    #[test]
    fn exclusive_end_may_equal_the_row_count() {
        assert_eq!(parse("90-100:1", RangeEnd::Exclusive).unwrap()[0].end, 99);
        assert!(parse("90-100:1", RangeEnd::Inclusive).is_err());
    }

    #[test]
    fn rejects_out_of_range_and_malformed_lines_with_their_line() {
        for (text, line) in [
            ("1-2:1\n1-2:6\n", 2),
            ("1-2:0\n", 1),
            ("1-2:1\n3-2:1\n", 2),
            ("5-5:1\n", 1),
            ("1-2\n", 1),
            ("a-2:1\n", 1),
            ("1-2:\n", 1),
            ("1-2:1\n\n2-3:1\n", 2),
        ] {
            let err = parse(text, RangeEnd::Exclusive).unwrap_err();
            assert!(
                matches!(err, Error::Parse { line: l, .. } if l == line),
                "{text:?}: {err:?}"
            );
            assert!(err.to_string().contains("interp.txt"), "{err}");
        }
    }
}
