//! NAB timestamps (`YYYY-MM-DD HH:MM:SS[.ffffff]`, UTC) to milliseconds since the Unix epoch, without a
//! date crate: the format is fixed and the calendar arithmetic is a dozen lines.

const MS_PER_SECOND: i64 = 1_000;
const MS_PER_DAY: i64 = 86_400 * MS_PER_SECOND;

/// Parses `YYYY-MM-DD HH:MM:SS` (a `T` separator and a fractional second are accepted; the fraction is
/// truncated to milliseconds) as UTC. The error says what is wrong, for the caller to place in a file.
pub(crate) fn parse_utc_ms(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a YYYY-MM-DD HH:MM:SS timestamp");
    // ASCII-only makes every byte offset below a char boundary, so slicing cannot panic.
    let b = text.as_bytes();
    if !text.is_ascii() || b.len() < 19 {
        return Err(bad());
    }
    let separators_ok = b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b' ' || b[10] == b'T')
        && b[13] == b':'
        && b[16] == b':';
    if !separators_ok {
        return Err(bad());
    }
    let number = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let digits = &text[range];
        if digits.bytes().all(|c| c.is_ascii_digit()) {
            digits.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let millis = fraction_ms(&text[19..]).ok_or_else(bad)?;

    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(format!("{text:?} is not a calendar date"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!("{text:?} is not a time of day"));
    }
    let seconds = hour * 3_600 + minute * 60 + second;
    Ok(days_from_civil(year, month, day) * MS_PER_DAY + seconds * MS_PER_SECOND + millis)
}

/// Milliseconds of an optional `.digits` suffix; `None` when the suffix is anything else.
fn fraction_ms(suffix: &str) -> Option<i64> {
    if suffix.is_empty() {
        return Some(0);
    }
    let digits = suffix.strip_prefix('.')?;
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // Pad or truncate to exactly three digits: ".5" is 500 ms, ".123456" is 123 ms.
    let ms: String = digits.chars().chain("00".chars()).take(3).collect();
    ms.parse().ok()
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's `days_from_civil`):
/// shifting the year to start in March puts the leap day last, so 400-year eras are uniform.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        // Reference values from Python's datetime with tzinfo=UTC.
        assert_eq!(parse_utc_ms("1970-01-01 00:00:00"), Ok(0));
        assert_eq!(parse_utc_ms("2014-02-26 13:45:00"), Ok(1_393_422_300_000));
        assert_eq!(parse_utc_ms("2000-03-01 00:00:00"), Ok(951_868_800_000));
        assert_eq!(parse_utc_ms("2016-02-29 12:00:00"), Ok(1_456_747_200_000));
        assert_eq!(parse_utc_ms("1969-12-31 23:59:59"), Ok(-1_000));
    }

    #[test]
    fn fractions_and_t_separator() {
        assert_eq!(
            parse_utc_ms("2014-02-26 13:45:00.000000"),
            Ok(1_393_422_300_000)
        );
        assert_eq!(parse_utc_ms("1970-01-01T00:00:01.5"), Ok(1_500));
        assert_eq!(parse_utc_ms("1970-01-01 00:00:00.123999"), Ok(123));
    }

    #[test]
    fn rejects_malformed_and_impossible_dates() {
        for bad in [
            "",
            "2014-02-26",
            "2014/02/26 13:45:00",
            "2014-02-26 13:45:0x",
            "2014-02-26 13:45:00.",
            "2014-02-26 13:45:00Z",
            "2015-02-29 00:00:00",
            "2014-13-01 00:00:00",
            "2014-04-31 00:00:00",
            "2014-01-01 24:00:00",
            "2014-01-01 00:60:00",
            "2014-01-01 00:00:00.\u{e9}",
            "+014-01-01 00:00:00",
        ] {
            assert!(parse_utc_ms(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
