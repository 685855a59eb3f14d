//! What an operator feels: the events a detector opened on a labelled stream, scored against the
//! labelled anomalous segments. Point-wise F1 says how well scores and labels agree row by row;
//! these figures say how often someone is paged for nothing, how many incidents page someone at
//! all, and how late.

use serde::{Deserialize, Serialize};

use super::{ratio, segments};
use crate::error::{Error, Result};

/// One event a detector opened on a stream, in row indices of that stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowEvent {
    /// The row at which the event opened: when someone would have been paged.
    pub opened_at: usize,
    /// The first exceeding row among those that opened it (`<= opened_at`).
    pub start: usize,
    /// The last exceeding row of the event (`>= opened_at`).
    pub end: usize,
}

/// Events scored against labelled segments; see [`event_score`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EventScore {
    /// Events opened.
    pub events: usize,
    /// Events that match no labelled segment.
    pub false_events: usize,
    /// `false_events` per day of the stream.
    pub false_events_per_day: f64,
    /// Labelled segments.
    pub segments: usize,
    /// Labelled segments matched by at least one event.
    pub detected_segments: usize,
    /// `detected_segments / segments` (0 without segments).
    pub event_recall: f64,
    /// Mean over detected segments of the rows from the segment's first row to the opening of
    /// its first matching event (0 when an event was already open); NaN when none was detected.
    pub detection_delay_rows: f64,
}

/// Scores `events` against the segments of `labels`.
///
/// An event matches the segment `[s, e]` when its rows `[start, end]` overlap `[s, e + span]`:
/// inside the segment, or starting within `span` rows after it, because a detector that smooths
/// its scores over `span` windows reacts that much late. A segment is detected when an event
/// matches it; an event that matches none is a false event. `rows_per_day` converts rows into days
/// (1,440 at a one-minute step).
///
/// Errors when an event lies outside the stream, has `start > opened_at` or `opened_at > end`, or
/// `rows_per_day` is not positive and finite.
pub fn event_score(
    labels: &[bool],
    events: &[RowEvent],
    span: usize,
    rows_per_day: f64,
) -> Result<EventScore> {
    if !(rows_per_day.is_finite() && rows_per_day > 0.0) {
        return Err(Error::InvalidInput(format!(
            "rows per day must be positive, got {rows_per_day}"
        )));
    }
    if let Some(bad) = events
        .iter()
        .find(|e| e.start > e.opened_at || e.opened_at > e.end || e.end >= labels.len())
    {
        return Err(Error::InvalidInput(format!(
            "event {bad:?} is not ordered start <= opened_at <= end inside {} rows",
            labels.len()
        )));
    }
    let labelled = segments(labels);
    let matches =
        |event: &RowEvent, (s, e): (usize, usize)| event.start <= e + span && event.end >= s;
    let false_events = events
        .iter()
        .filter(|event| !labelled.iter().any(|&segment| matches(event, segment)))
        .count();
    let delays: Vec<usize> = labelled
        .iter()
        .filter_map(|&segment| {
            events
                .iter()
                .filter(|event| matches(event, segment))
                .map(|event| event.opened_at.saturating_sub(segment.0))
                .min()
        })
        .collect();
    let days = labels.len() as f64 / rows_per_day;
    Ok(EventScore {
        events: events.len(),
        false_events,
        false_events_per_day: if days > 0.0 {
            false_events as f64 / days
        } else {
            0.0
        },
        segments: labelled.len(),
        detected_segments: delays.len(),
        event_recall: ratio(delays.len(), labelled.len()),
        detection_delay_rows: if delays.is_empty() {
            f64::NAN
        } else {
            delays.iter().sum::<usize>() as f64 / delays.len() as f64
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: bool = true;
    const F: bool = false;

    fn event(opened_at: usize, start: usize, end: usize) -> RowEvent {
        RowEvent {
            opened_at,
            start,
            end,
        }
    }

    #[test]
    fn events_inside_or_just_after_a_segment_detect_it_and_the_rest_are_false() {
        // Segments [2, 3] and [8, 9] in 20 rows; 10 rows per day, so 2 days.
        let mut labels = vec![F; 20];
        labels[2..=3].fill(T);
        labels[8..=9].fill(T);
        let events = [
            event(3, 2, 4),    // inside the first segment, opened one row after its start
            event(12, 11, 13), // starts 2 rows after the second segment ends: within a span of 2
            event(16, 16, 17), // matches nothing
        ];
        let score = event_score(&labels, &events, 2, 10.0).unwrap();
        assert_eq!(score.events, 3);
        assert_eq!(score.false_events, 1);
        assert_eq!(score.false_events_per_day, 0.5);
        assert_eq!((score.segments, score.detected_segments), (2, 2));
        assert_eq!(score.event_recall, 1.0);
        // Delays 1 and 4 rows.
        assert_eq!(score.detection_delay_rows, 2.5);

        // With no span the late event is false and the second segment is missed.
        let strict = event_score(&labels, &events, 0, 10.0).unwrap();
        assert_eq!(strict.false_events, 2);
        assert_eq!(strict.event_recall, 0.5);
        assert_eq!(strict.detection_delay_rows, 1.0);
    }

    #[test]
    fn an_event_open_before_a_segment_detects_it_with_no_delay() {
        let labels = [F, F, F, T, T, F];
        let score = event_score(&labels, &[event(1, 0, 4)], 0, 6.0).unwrap();
        assert_eq!(score.detected_segments, 1);
        assert_eq!(score.false_events, 0);
        assert_eq!(score.detection_delay_rows, 0.0);
    }

    #[test]
    fn nothing_detected_gives_nan_delay_and_zero_recall() {
        let labels = [F, T, T, F];
        let score = event_score(&labels, &[], 1, 4.0).unwrap();
        assert_eq!(score.event_recall, 0.0);
        assert!(score.detection_delay_rows.is_nan());
        assert_eq!(score.false_events_per_day, 0.0);
    }

    #[test]
    fn malformed_events_and_day_lengths_are_refused() {
        let labels = [F; 4];
        assert!(event_score(&labels, &[event(1, 2, 3)], 0, 4.0).is_err());
        assert!(event_score(&labels, &[event(3, 2, 2)], 0, 4.0).is_err());
        assert!(event_score(&labels, &[event(3, 3, 4)], 0, 4.0).is_err());
        assert!(event_score(&labels, &[], 0, 0.0).is_err());
        assert!(event_score(&labels, &[], 0, f64::NAN).is_err());
    }
}
