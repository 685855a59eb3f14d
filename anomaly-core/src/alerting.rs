//! Alerting: turning per-window threshold crossings into events.
//!
//! A single window over the threshold is usually noise; paging on each one trains people to
//! ignore alerts. An [`EventTracker`] opens an event only when `k` of the last `n` windows of an
//! entity exceed the threshold and one of them clearly does (by a factor, `confirm`), or when the
//! score has stayed over the threshold for `sustain` windows in a row; it keeps the event open
//! through short dips and closes it after `m` consecutive quiet windows. It is pure: times are
//! whatever the caller passes, no clock is read.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::threshold::exceeds;

/// When an event opens and closes: `k` exceeding windows among the last `n`, one of them above
/// `confirm` times the threshold, open it, and so do `sustain` exceeding windows in a row; `m`
/// consecutive quiet windows close it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EventRule {
    /// Exceeding windows needed among the last `n` to open an event; `1 <= k <= n`.
    pub k: usize,
    /// Length of the sliding look-back, in windows.
    pub n: usize,
    /// Consecutive quiet windows that close an open event; `m >= 1`.
    pub m: usize,
    /// How far over the threshold one of the `k` windows must be, as a factor (`>= 1`; 1 asks
    /// nothing more than exceeding). Scores that barely cross and fall back are the commonest
    /// false alarm; a real incident is usually far over.
    pub confirm: f64,
    /// Exceeding windows in a row that open an event whatever their height, so a mild but
    /// lasting anomaly still pages; 0 never.
    pub sustain: usize,
}

impl Default for EventRule {
    /// Two of the last three windows over the threshold, one of them at least twice over, or ten
    /// windows over in a row, open an event; thirty quiet windows in a row close it, so that a
    /// flapping score is one event, not a page every few windows (half a minute at one sample a
    /// second, half an hour at SMD's minute). On the labelled data this pages about half as
    /// often for nothing as plain 2-of-3, for some mild events missed (docs/DETECTION.md). The
    /// rule `anomaly detect` uses unless told otherwise, and the one `anomaly eval` judges
    /// events by.
    fn default() -> Self {
        Self {
            k: 2,
            n: 3,
            m: 30,
            confirm: 2.0,
            sustain: 10,
        }
    }
}

impl EventRule {
    /// A validated plain `k`-of-`n` rule closed by `m` quiet windows: no confirmation factor and
    /// no sustained opening (see [`EventRule::validate`]).
    pub fn new(k: usize, n: usize, m: usize) -> Result<Self> {
        let rule = Self {
            k,
            n,
            m,
            confirm: 1.0,
            sustain: 0,
        };
        rule.validate()?;
        Ok(rule)
    }

    /// The same rule with a confirmation factor and a sustained opening, validated.
    pub fn confirmed(self, confirm: f64, sustain: usize) -> Result<Self> {
        let rule = Self {
            confirm,
            sustain,
            ..self
        };
        rule.validate()?;
        Ok(rule)
    }

    /// Checks `1 <= k <= n`, `m >= 1` and a finite `confirm >= 1`; needed because the fields are
    /// public and the rule may come from a configuration file.
    pub fn validate(&self) -> Result<()> {
        let Self {
            k, n, m, confirm, ..
        } = *self;
        if !(confirm.is_finite() && confirm >= 1.0) {
            return Err(Error::InvalidInput(format!(
                "event rule needs a finite confirmation factor >= 1, got {confirm}"
            )));
        }
        if k == 0 || k > n {
            return Err(Error::InvalidInput(format!(
                "event rule needs 1 <= k <= n, got k={k}, n={n}"
            )));
        }
        if m == 0 {
            return Err(Error::InvalidInput(
                "event rule needs m >= 1 quiet windows to close".into(),
            ));
        }
        Ok(())
    }
}

/// A contiguous anomalous episode of one entity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Time of the first exceeding window of the event.
    pub start_ms: i64,
    /// Time of the last exceeding window of the event (the quiet windows that closed it are not
    /// part of it).
    pub end_ms: i64,
    /// Highest score among the exceeding windows.
    pub peak_score: f64,
    /// How many windows of the event exceeded the threshold.
    pub windows_over: usize,
}

/// What an observation changed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum EventChange {
    /// An event opened.
    Opened {
        /// Time of the first exceeding window among those that opened it.
        start_ms: i64,
        /// Highest score among the exceeding windows that opened it.
        score: f64,
    },
    /// The open event closed.
    Closed(Event),
}

/// One recently observed window, kept while no event is open.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct RecentWindow {
    time_ms: i64,
    score: f64,
    over: bool,
}

/// The event in progress and how long it has been quiet.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct OpenEvent {
    /// `end_ms` is the last exceeding window so far.
    event: Event,
    quiet_run: usize,
}

/// The event state of one entity, fed one window at a time in time order. It serialises (with
/// serde) so that a stream processor can store it and carry on after a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventTracker {
    rule: EventRule,
    /// The last `n` windows while no event is open; emptied when an event opens or closes, so that
    /// windows of a closed event cannot help reopen one.
    recent: VecDeque<RecentWindow>,
    open: Option<OpenEvent>,
    /// Exceeding windows in a row while no event is open, and the time of the first of them.
    over_run: usize,
    over_run_start_ms: i64,
}

impl EventTracker {
    /// A tracker with no history; errors when `rule` is invalid.
    pub fn new(rule: EventRule) -> Result<Self> {
        rule.validate()?;
        Ok(Self {
            rule,
            // Its full look-back at once: watching windows then never allocates.
            recent: VecDeque::with_capacity(rule.n),
            open: None,
            over_run: 0,
            over_run_start_ms: 0,
        })
    }

    /// Records the window at `time_ms` with `score` against `threshold` and reports whether an
    /// event opened or closed. A window counts as exceeding by [`exceeds`], so a NaN score (or
    /// threshold) is a quiet window: it neither opens an event nor extends one, and it counts
    /// towards closing one.
    pub fn observe(&mut self, time_ms: i64, score: f64, threshold: f64) -> Option<EventChange> {
        let over = exceeds(score, threshold);
        match self.open.as_mut() {
            Some(open) if over => {
                open.event.end_ms = time_ms;
                open.event.peak_score = open.event.peak_score.max(score);
                open.event.windows_over += 1;
                open.quiet_run = 0;
                None
            }
            Some(open) => {
                open.quiet_run += 1;
                if open.quiet_run < self.rule.m {
                    return None;
                }
                self.flush().map(EventChange::Closed)
            }
            None => self.watch(
                RecentWindow {
                    time_ms,
                    score,
                    over,
                },
                threshold,
            ),
        }
    }

    /// The event in progress, if any, as it would close now: `end_ms` is its last exceeding
    /// window so far and `peak_score` its peak so far.
    pub fn open_event(&self) -> Option<Event> {
        self.open.map(|open| open.event)
    }

    /// Closes the event in progress, if any, at the end of the stream, and forgets all history.
    pub fn flush(&mut self) -> Option<Event> {
        self.recent.clear();
        self.over_run = 0;
        self.open.take().map(|open| open.event)
    }

    /// Bytes the tracker holds on the heap (its look-back).
    pub fn heap_bytes(&self) -> usize {
        self.recent.capacity() * std::mem::size_of::<RecentWindow>()
    }

    /// Slides `window` into the look-back and opens an event when `k` of the last `n` exceed,
    /// one of them by the confirmation factor, or when `sustain` windows in a row have.
    fn watch(&mut self, window: RecentWindow, threshold: f64) -> Option<EventChange> {
        if self.recent.len() == self.rule.n {
            self.recent.pop_front();
        }
        self.recent.push_back(window);
        if window.over {
            if self.over_run == 0 {
                self.over_run_start_ms = window.time_ms;
            }
            self.over_run += 1;
        } else {
            self.over_run = 0;
        }
        let mut over = self.recent.iter().filter(|w| w.over);
        let first = *over.next()?;
        let (windows_over, peak_score) = over.fold((1, first.score), |(count, peak), w| {
            (count + 1, f64::max(peak, w.score))
        });
        let confirmed =
            windows_over >= self.rule.k && exceeds(peak_score, self.rule.confirm * threshold);
        let sustained = self.rule.sustain > 0 && self.over_run >= self.rule.sustain;
        if !(confirmed || sustained) {
            return None;
        }
        let event = Event {
            start_ms: if confirmed {
                first.time_ms
            } else {
                self.over_run_start_ms
            },
            end_ms: window.time_ms,
            peak_score,
            windows_over: if confirmed {
                windows_over
            } else {
                self.over_run
            },
        };
        self.recent.clear();
        self.over_run = 0;
        self.open = Some(OpenEvent {
            event,
            quiet_run: 0,
        });
        Some(EventChange::Opened {
            start_ms: event.start_ms,
            score: peak_score,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THRESHOLD: f64 = 1.0;

    fn tracker(k: usize, n: usize, m: usize) -> EventTracker {
        EventTracker::new(EventRule::new(k, n, m).unwrap()).unwrap()
    }

    /// Feeds `scores` at times 0, 10, 20, ... and returns the changes with their time.
    fn feed(tracker: &mut EventTracker, scores: &[f64]) -> Vec<(i64, EventChange)> {
        (0..)
            .step_by(10)
            .zip(scores)
            .filter_map(|(time, &score)| tracker.observe(time, score, THRESHOLD).map(|c| (time, c)))
            .collect()
    }

    #[test]
    fn rule_validation() {
        assert!(EventRule::new(0, 3, 1).is_err());
        assert!(EventRule::new(4, 3, 1).is_err());
        assert!(EventRule::new(2, 3, 0).is_err());
        let plain = EventRule::new(3, 3, 1).unwrap();
        assert_eq!((plain.k, plain.n, plain.m), (3, 3, 1));
        assert_eq!((plain.confirm, plain.sustain), (1.0, 0));
        assert!(
            EventTracker::new(EventRule {
                k: 2,
                n: 1,
                ..plain
            })
            .is_err()
        );
        assert!(plain.confirmed(0.5, 0).is_err());
        assert!(plain.confirmed(f64::NAN, 0).is_err());
        assert!(plain.confirmed(f64::INFINITY, 0).is_err());
        assert_eq!(plain.confirmed(2.0, 10).unwrap().confirm, 2.0);
        assert!(EventRule::default().validate().is_ok());
    }

    #[test]
    fn a_confirmation_factor_needs_one_window_clearly_over() {
        let mut t =
            EventTracker::new(EventRule::new(2, 3, 2).unwrap().confirmed(2.0, 0).unwrap()).unwrap();
        // Barely over (1.5 < 2 x 1.0) in twenty windows: no event, however long. Then one
        // window at 2.5 opens it, starting at the first over window still in the look-back.
        let mut scores = vec![1.5; 21];
        scores.push(2.5);
        let changes = feed(&mut t, &scores);
        assert_eq!(
            changes,
            vec![(
                210,
                EventChange::Opened {
                    start_ms: 190,
                    score: 2.5
                }
            )]
        );
    }

    #[test]
    fn a_sustained_mild_excess_opens_an_event_from_its_first_window() {
        let mut t =
            EventTracker::new(EventRule::new(2, 3, 2).unwrap().confirmed(2.0, 5).unwrap()).unwrap();
        // A dip resets the run: four over, one quiet, then five over in a row.
        let scores = [1.5, 1.5, 1.5, 1.5, 0.5, 1.2, 1.2, 1.2, 1.2, 1.3];
        let changes = feed(&mut t, &scores);
        assert_eq!(
            changes,
            vec![(
                90,
                EventChange::Opened {
                    start_ms: 50,
                    score: 1.3
                }
            )]
        );
        assert_eq!(t.open_event().unwrap().windows_over, 5);
    }

    #[test]
    fn opens_when_k_of_the_last_n_exceed_starting_at_the_first_of_them() {
        let mut t = tracker(2, 3, 2);
        // Windows at 0 (over, 2.0), 10 (quiet), 20 (over, 3.0): 2 of the last 3.
        let changes = feed(&mut t, &[2.0, 0.5, 3.0]);
        assert_eq!(
            changes,
            vec![(
                20,
                EventChange::Opened {
                    start_ms: 0,
                    score: 3.0
                }
            )]
        );
        let open = t.open_event().unwrap();
        assert_eq!(
            open,
            Event {
                start_ms: 0,
                end_ms: 20,
                peak_score: 3.0,
                windows_over: 2
            }
        );
    }

    #[test]
    fn the_start_is_the_first_exceeding_window_still_in_the_look_back() {
        let mut t = tracker(2, 3, 1);
        // Over at 0, quiet at 10 and 20 (0 has slid out by 30), over at 30 and 40.
        let changes = feed(&mut t, &[5.0, 0.0, 0.0, 2.0, 4.0]);
        assert_eq!(
            changes,
            vec![(
                40,
                EventChange::Opened {
                    start_ms: 30,
                    score: 4.0
                }
            )]
        );
    }

    #[test]
    fn isolated_spikes_never_open_an_event_when_k_exceeds_one() {
        let mut t = tracker(2, 3, 1);
        let spikes = [9.0, 0.0, 0.0, 9.0, 0.0, 0.0, 9.0, 0.0, 0.0, 9.0];
        assert!(feed(&mut t, &spikes).is_empty());
        assert_eq!(t.open_event(), None);
    }

    #[test]
    fn closes_exactly_after_m_consecutive_quiet_windows() {
        let mut t = tracker(1, 1, 3);
        let changes = feed(&mut t, &[2.0, 0.0, 0.0, 2.5, 0.0, 0.0, 0.0, 0.0]);
        // The exceeding window at 30 resets the quiet run; 40, 50, 60 close it at 60.
        let closed = Event {
            start_ms: 0,
            end_ms: 30,
            peak_score: 2.5,
            windows_over: 2,
        };
        assert_eq!(
            changes,
            vec![
                (
                    0,
                    EventChange::Opened {
                        start_ms: 0,
                        score: 2.0
                    }
                ),
                (60, EventChange::Closed(closed)),
            ]
        );
        assert_eq!(t.open_event(), None);
    }

    #[test]
    fn tracks_the_peak_while_open() {
        let mut t = tracker(1, 2, 2);
        t.observe(0, 5.0, THRESHOLD);
        t.observe(10, 9.0, THRESHOLD);
        assert_eq!(t.open_event().unwrap().peak_score, 9.0);
        t.observe(20, 7.0, THRESHOLD);
        t.observe(30, 0.0, THRESHOLD);
        let open = t.open_event().unwrap();
        assert_eq!(
            open,
            Event {
                start_ms: 0,
                end_ms: 20,
                peak_score: 9.0,
                windows_over: 3
            }
        );
        let closed = t.observe(40, 0.0, THRESHOLD);
        assert_eq!(closed, Some(EventChange::Closed(open)));
    }

    #[test]
    fn reopens_after_close_only_on_fresh_evidence() {
        let mut t = tracker(2, 3, 1);
        let changes = feed(&mut t, &[2.0, 3.0, 0.0, 4.0, 5.0]);
        let first = Event {
            start_ms: 0,
            end_ms: 10,
            peak_score: 3.0,
            windows_over: 2,
        };
        // At 30 the look-back would still hold 10 (over) if it were not cleared on close.
        assert_eq!(
            changes,
            vec![
                (
                    10,
                    EventChange::Opened {
                        start_ms: 0,
                        score: 3.0
                    }
                ),
                (20, EventChange::Closed(first)),
                (
                    40,
                    EventChange::Opened {
                        start_ms: 30,
                        score: 5.0
                    }
                ),
            ]
        );
    }

    #[test]
    fn flush_closes_the_running_event_once() {
        let mut t = tracker(1, 1, 5);
        feed(&mut t, &[3.0, 0.0, 2.0]);
        let expected = Event {
            start_ms: 0,
            end_ms: 20,
            peak_score: 3.0,
            windows_over: 2,
        };
        assert_eq!(t.flush(), Some(expected));
        assert_eq!(t.open_event(), None);
        assert_eq!(t.flush(), None);
    }

    #[test]
    fn flush_forgets_pending_evidence() {
        let mut t = tracker(2, 5, 1);
        t.observe(0, 3.0, THRESHOLD);
        assert_eq!(t.flush(), None);
        assert_eq!(t.observe(10, 3.0, THRESHOLD), None);
    }

    #[test]
    fn nan_scores_are_quiet_windows() {
        let mut t = tracker(1, 1, 2);
        assert_eq!(t.observe(0, f64::NAN, THRESHOLD), None);
        assert_eq!(t.observe(10, 2.0, f64::NAN), None);
        assert!(t.observe(20, 2.0, THRESHOLD).is_some());
        assert_eq!(t.observe(30, f64::NAN, THRESHOLD), None);
        let closed = Event {
            start_ms: 20,
            end_ms: 20,
            peak_score: 2.0,
            windows_over: 1,
        };
        assert_eq!(
            t.observe(40, f64::NAN, THRESHOLD),
            Some(EventChange::Closed(closed))
        );
    }
}
