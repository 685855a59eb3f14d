//! The live detector's per-sample path over a fleet, free of I/O: scale a sample, append it to its
//! host's window, score the window, follow the host's normal ([`HostDetector`]), and turn
//! threshold crossings into anomaly events with their likely cause.
//!
//! One [`FleetScorer`] holds every host's window and decision state for one model; hosts silent
//! for a configured time are forgotten, so its memory follows the live set of hosts.
//!
//! ```
//! use anomaly_core::{MetricSchema, Sample, alerting::EventRule, dataset::Series};
//! use anomaly_model::fleet::{Detection, FleetScorer};
//! use anomaly_model::{DetectorKind, Model, TrainingConfig};
//!
//! let normal = |i: u64| anomaly_core::synthetic::cyclic_host_row(i).to_vec();
//! let rows: Vec<Vec<f64>> = (0..3000).map(normal).collect();
//! let model = Model::train(&MetricSchema::host(), &Series::from_rows(&rows)?, DetectorKind::Pca,
//!     &TrainingConfig::default(), &mut |_| {})?;
//! let mut fleet = FleetScorer::new(model, EventRule::new(2, 3, 5)?)?;
//! let mut out = Vec::new();
//! for i in 3000..3100 {
//!     let mut row = normal(i);
//!     if i >= 3050 { row[1] = 97.0; } // memory jumps on web-1
//!     fleet.on_sample(&Sample::new("web-1", i as i64 * 1000, row), &mut out)?;
//! }
//! let opened = out.iter().find_map(|d| match d { Detection::Event(a) => Some(a), _ => None });
//! assert_eq!(opened.unwrap().top_metrics[0].metric, "memory_used");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;

use anomaly_core::alerting::{EventChange, EventRule};
use anomaly_core::anomaly::{top_contributions, top_contributions_into};
use anomaly_core::{Anomaly, Sample, Severity};
use anomaly_stream::window::{CountWindowSpec, IndexedRowWindows, RetainedRows};
use foldhash::fast::RandomState as FastState;

use crate::error::{Error, Result};
use crate::{HostDetector, Model};

/// How many metrics an anomaly names as its likely cause.
const TOP_METRICS: usize = 3;

/// What one sample led to.
#[derive(Debug, Clone, PartialEq)]
pub enum Detection {
    /// A window was scored (which host's is not said: at hundreds of thousands of windows a
    /// second, copying its name costs more than the scoring; see [`FleetScorer::latest_scores`]).
    Scored {
        /// Timestamp of the newest sample in the window.
        window_end_ms: i64,
        /// The smoothed score.
        score: f64,
    },
    /// An anomaly event opened (`closed == false`) or closed (`closed == true`, with its final
    /// end and peak).
    Event(Anomaly),
}

/// Per-host state beside the window: the host's scoring and event state, and the event reported.
struct HostState {
    name: String,
    /// The source partition the host's samples come from: state is stored and restored per
    /// partition (see [`FleetScorer::snapshot`]).
    partition: i32,
    detector: HostDetector,
    /// The event being reported: opened, not yet closed.
    open: Option<Anomaly>,
    /// Windows still to score before the tracker sees this host's scores again: those whose
    /// window or smoothing still holds a disturbed sample (see [`FleetScorer::disturbed_until`]).
    settling: usize,
    /// The smoothed score of the host's latest window (NaN before its first).
    latest_score: f64,
    /// The fleet's newest event time (or the host's own, if newer) when the host last sent a
    /// sample: a host catching up on a backlog is not idle, however old its samples are.
    last_ms: i64,
}

/// Layout version of [`FleetScorer::snapshot`]; a snapshot of another layout is not restored.
const SNAPSHOT_FORMAT: u32 = 1;

/// One host in a [`PartitionSnapshot`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct HostSnapshot {
    name: String,
    rows: RetainedRows,
    detector: HostDetector,
    open: Option<Anomaly>,
    settling: usize,
    latest_score: f64,
    last_ms: i64,
}

/// The state of one source partition's hosts, taken by [`FleetScorer::snapshot`]: a copy, so
/// that encoding and storing it need not hold up scoring.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct PartitionSnapshot {
    format: u32,
    model_version: String,
    newest_ms: i64,
    hosts: Vec<HostSnapshot>,
}

impl PartitionSnapshot {
    /// The snapshot in its stored form (`postcard`), for [`FleetScorer::restore`].
    pub fn encode(&self) -> Result<Vec<u8>> {
        postcard::to_stdvec(self).map_err(Error::Snapshot)
    }
}

/// Scores samples of many hosts with one model.
pub struct FleetScorer {
    model: Model,
    rule: EventRule,
    /// Each host's index into `hosts`: the name is hashed once per sample, and the window
    /// operator takes the index as its slot, with no lookup of its own. The map uses foldhash,
    /// seeded per process: SipHash's flooding resistance costs a third of the window's time, and
    /// host names come from the fleet's own collectors.
    ids: HashMap<String, u32, FastState>,
    /// Each host's rows, at its index (ids are dense: freed ones are reused first).
    windows: IndexedRowWindows,
    /// Per-host state, by index; `None` for an index freed by eviction, reused by the next new
    /// host (see [`FleetScorer::with_idle_eviction`]).
    hosts: Vec<Option<HostState>>,
    free_ids: Vec<u32>,
    /// Hosts silent for this long in event time are forgotten; 0 never.
    idle_host_ms: i64,
    /// The newest sample time seen, and when (in it) idle hosts are next looked for.
    newest_ms: i64,
    next_eviction_ms: i64,
    scaled: Vec<f32>,
    /// The window's per-metric errors.
    errors: Vec<f32>,
    shares: Vec<f32>,
    /// Samples stamped at or before this are disturbed (see [`FleetScorer::disturbed_until`]).
    disturbed_until_ms: i64,
    /// Values replaced because they were NaN or infinite, since start.
    pub non_finite_values: u64,
    /// Values clipped because they were far outside the training range, since start.
    pub clipped_values: u64,
    /// Hosts forgotten because they fell silent, since start.
    pub evicted_hosts: u64,
}

impl FleetScorer {
    /// A scorer for `model` that opens events by `rule`.
    pub fn new(model: Model, rule: EventRule) -> Result<Self> {
        let shape = model.shape();
        let spec = CountWindowSpec::sliding(shape.window, 1)?;
        let windows = IndexedRowWindows::new(spec, shape.dims)?;
        Ok(Self {
            model,
            rule,
            ids: HashMap::with_hasher(FastState::default()),
            windows,
            hosts: Vec::new(),
            free_ids: Vec::new(),
            idle_host_ms: 0,
            newest_ms: i64::MIN,
            next_eviction_ms: i64::MIN,
            scaled: vec![0.0; shape.dims],
            errors: vec![0.0; shape.dims],
            shares: vec![0.0; shape.dims],
            disturbed_until_ms: i64::MIN,
            non_finite_values: 0,
            clipped_values: 0,
            evicted_hosts: 0,
        })
    }

    /// Forgets hosts that sent nothing for `idle_ms` of event time (their window, scoring state
    /// and name), so a fleet whose hosts come and go holds only the live ones; an event still
    /// open on such a host closes where it last exceeded. Looked for every tenth of `idle_ms` of
    /// event time, so replaying the same input evicts at the same samples. 0 never forgets.
    pub fn with_idle_eviction(mut self, idle_ms: i64) -> Self {
        self.idle_host_ms = idle_ms.max(0);
        self
    }

    /// The model in use.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Hosts with a window in memory.
    pub fn tracked_hosts(&self) -> usize {
        self.windows.len()
    }

    /// Whether `host` has state here (it sent a sample and was not forgotten since).
    pub fn tracks(&self, host: &str) -> bool {
        self.ids.contains_key(host)
    }

    /// Whether `host` is inside an anomaly event.
    pub fn in_event(&self, host: &str) -> bool {
        self.ids
            .get(host)
            .and_then(|&id| self.hosts[id as usize].as_ref())
            .is_some_and(|h| h.open.is_some())
    }

    /// Every host's latest smoothed score, for gauges refreshed on a timer rather than per window.
    pub fn latest_scores(&self) -> impl Iterator<Item = (&str, f64)> {
        self.hosts
            .iter()
            .flatten()
            .filter(|h| !h.latest_score.is_nan())
            .map(|h| (h.name.as_str(), h.latest_score))
    }

    /// Events currently open.
    pub fn open_events(&self) -> usize {
        self.hosts
            .iter()
            .flatten()
            .filter(|h| h.open.is_some())
            .count()
    }

    /// Marks every sample stamped at or before `until_ms` as disturbed by the detector itself:
    /// training burns CPU for seconds, and when the detector runs on a host it watches (the demo,
    /// a single machine) the samples measured meanwhile show its own burst. They are scored and
    /// reported, but no window or smoothed score that holds one of them opens an event, so a
    /// detector never alarms on itself.
    pub fn disturbed_until(&mut self, until_ms: i64) {
        self.disturbed_until_ms = until_ms;
    }

    /// The index of `host`, made on first use (without cloning the name on every sample).
    fn host_id(&mut self, host: &str, partition: i32) -> Result<u32> {
        if let Some(&id) = self.ids.get(host) {
            return Ok(id);
        }
        let state = HostState {
            name: host.to_string(),
            partition,
            detector: HostDetector::new(&self.model, self.rule)?,
            open: None,
            settling: 0,
            latest_score: f64::NAN,
            last_ms: i64::MIN,
        };
        self.insert_host(state)
    }

    fn insert_host(&mut self, state: HostState) -> Result<u32> {
        let name = state.name.clone();
        let id = match self.free_ids.pop() {
            Some(id) => {
                self.hosts[id as usize] = Some(state);
                id
            }
            None => {
                let id = u32::try_from(self.hosts.len())
                    .map_err(|_| Error::InvalidInput("more than 2^32 hosts".into()))?;
                self.hosts.push(Some(state));
                id
            }
        };
        self.ids.insert(name, id);
        Ok(id)
    }

    /// Forgets every host that has sent nothing while the fleet's event time moved on by more
    /// than `idle_host_ms`; an open event closes first (its closing update goes to `out`).
    fn evict_idle(&mut self, out: &mut Vec<Detection>) {
        let oldest_kept = self.newest_ms.saturating_sub(self.idle_host_ms);
        for id in 0..self.hosts.len() {
            let idle = self.hosts[id]
                .as_ref()
                .is_some_and(|h| h.last_ms < oldest_kept);
            if !idle {
                continue;
            }
            if let Some(mut anomaly) = self.remove_host(id as u32).open {
                anomaly.closed = true;
                out.push(Detection::Event(anomaly));
            }
            self.evicted_hosts += 1;
        }
    }

    /// Forgets the host at `id` (a live one) and frees the id.
    fn remove_host(&mut self, id: u32) -> HostState {
        let host = self.hosts[id as usize].take().expect("a live id");
        self.ids.remove(&host.name);
        self.windows.evict(id);
        self.free_ids.push(id);
        host
    }

    /// A copy of every host of source `partition`: their windows, decision state and open
    /// events, for storing with the partition's offsets ([`PartitionSnapshot::encode`]). With
    /// the model, it is all the fleet scorer needs to carry on with those hosts as if it had
    /// never stopped. Copying is the only part done here, so a caller holding the scorer behind
    /// a lock can encode and store the copy after letting go of it.
    pub fn snapshot(&self, partition: i32) -> PartitionSnapshot {
        let hosts = self
            .hosts
            .iter()
            .enumerate()
            .filter_map(|(id, h)| h.as_ref().map(|h| (id as u32, h)))
            .filter(|(_, h)| h.partition == partition)
            .map(|(id, h)| HostSnapshot {
                name: h.name.clone(),
                rows: self.windows.retained(id).unwrap_or_default(),
                detector: h.detector.clone(),
                open: h.open.clone(),
                settling: h.settling,
                latest_score: h.latest_score,
                last_ms: h.last_ms,
            })
            .collect();
        PartitionSnapshot {
            format: SNAPSHOT_FORMAT,
            model_version: self.model.manifest().model_version.clone(),
            newest_ms: self.newest_ms,
            hosts,
        }
    }

    /// Replaces the hosts of `partition` by those of `snapshot` (from [`snapshot`](Self::snapshot));
    /// returns how many were restored, or `None` (restoring nothing, forgetting the partition's
    /// hosts) when the snapshot was taken under another model version or format: its hosts then
    /// start afresh. A snapshot that does not decode is an error.
    pub fn restore(&mut self, partition: i32, snapshot: &[u8]) -> Result<Option<usize>> {
        self.forget_partition(partition);
        let restored = self.restore_hosts(partition, snapshot);
        if restored.is_err() {
            // Nothing half restored stays behind.
            self.forget_partition(partition);
        }
        restored
    }

    fn restore_hosts(&mut self, partition: i32, snapshot: &[u8]) -> Result<Option<usize>> {
        let snapshot: PartitionSnapshot =
            postcard::from_bytes(snapshot).map_err(Error::Snapshot)?;
        if snapshot.format != SNAPSHOT_FORMAT
            || snapshot.model_version != self.model.manifest().model_version
        {
            return Ok(None);
        }
        self.newest_ms = self.newest_ms.max(snapshot.newest_ms);
        let restored = snapshot.hosts.len();
        for host in snapshot.hosts {
            if let Some(&id) = self.ids.get(&host.name) {
                // The host moved here from another partition (a re-keyed producer): the stored
                // state is the newer one for this partition's samples.
                self.remove_host(id);
            }
            let id = self.insert_host(HostState {
                name: host.name,
                partition,
                detector: host.detector,
                open: host.open,
                settling: host.settling,
                latest_score: host.latest_score,
                last_ms: host.last_ms,
            })?;
            self.windows.restore(id, &host.rows)?;
        }
        Ok(Some(restored))
    }

    /// Forgets every host of `partition` (its partition went to another instance, or is about
    /// to be restored from a snapshot).
    pub fn forget_partition(&mut self, partition: i32) {
        let ids: Vec<u32> = self
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.as_ref().is_some_and(|h| h.partition == partition))
            .map(|(id, _)| id as u32)
            .collect();
        for id in ids {
            self.remove_host(id);
        }
    }

    /// Handles one sample; what it led to is appended to `out`. A sample of the wrong width is an
    /// error and changes nothing.
    pub fn on_sample(&mut self, sample: &Sample, out: &mut Vec<Detection>) -> Result<()> {
        self.on_sample_from(0, sample, out)
    }

    /// [`on_sample`](Self::on_sample) for a sample read from source `partition`; the host's state
    /// belongs to that partition's [`snapshot`](Self::snapshot).
    pub fn on_sample_from(
        &mut self,
        partition: i32,
        sample: &Sample,
        out: &mut Vec<Detection>,
    ) -> Result<()> {
        let flags = self.model.scale_row(&sample.values, &mut self.scaled)?;
        self.non_finite_values += flags.non_finite_count() as u64;
        self.clipped_values += flags.clipped_count() as u64;
        if self.idle_host_ms > 0 && sample.timestamp_ms > self.newest_ms {
            self.newest_ms = sample.timestamp_ms;
            if self.newest_ms >= self.next_eviction_ms {
                self.evict_idle(out);
                self.next_eviction_ms = self.newest_ms + (self.idle_host_ms / 10).max(1);
            }
        }
        let id = self.host_id(&sample.entity, partition)?;
        let settling = self.model.shape().window + self.model.manifest().smoothing.max(1) - 1;
        let disturbed = sample.timestamp_ms <= self.disturbed_until_ms;
        let host = self.hosts[id as usize].as_mut().expect("a live id");
        host.last_ms = host.last_ms.max(sample.timestamp_ms.max(self.newest_ms));
        if disturbed {
            // The windows that hold this sample (this one and the next `window - 1`) stay away
            // from the tracker, and so do the `smoothing - 1` after them that still average it in.
            host.settling = settling;
        }
        let Some(window) = self
            .windows
            .push(id, sample.timestamp_ms, 0, &self.scaled)?
        else {
            return Ok(());
        };
        let (start_ms, end_ms) = (window.start_timestamp_ms, window.end_timestamp_ms);
        self.model.metric_errors(window.values, &mut self.errors)?;
        let threshold = self.model.manifest().threshold;
        let host = self.hosts[id as usize].as_mut().expect("a live id");
        if host.settling > 0 {
            host.settling -= 1;
            let score = host.detector.observe_disturbed(&self.model, &self.errors);
            host.latest_score = score;
            out.push(Detection::Scored {
                window_end_ms: end_ms,
                score,
            });
            return Ok(());
        }
        // The tracker sees window starts, so an event's start is the start of its first window.
        let seen = host.detector.observe(&self.model, &self.errors, start_ms);
        let (score, over, change) = (seen.score, seen.over, seen.change);
        host.latest_score = score;
        out.push(Detection::Scored {
            window_end_ms: end_ms,
            score,
        });
        // An exceeding window teaches the host nothing (but in an event long enough to be
        // relearnt), so its attribution after the observation is the one its score used.
        let peak_so_far = host.open.as_ref().map_or(f64::NEG_INFINITY, |a| a.score);
        if matches!(change, Some(EventChange::Opened { .. })) || (over && score > peak_so_far) {
            host.detector.contributions(&self.errors, &mut self.shares);
        }
        match change {
            Some(EventChange::Opened {
                start_ms: event_start,
                ..
            }) => {
                let anomaly = Anomaly {
                    entity: sample.entity.to_string(),
                    window_start_ms: event_start,
                    window_end_ms: end_ms,
                    score,
                    threshold,
                    severity: Severity::of(score, threshold),
                    top_metrics: top_contributions(
                        &self.model.manifest().schema,
                        &self.shares,
                        TOP_METRICS,
                    ),
                    model_version: self.model.manifest().model_version.clone(),
                    closed: false,
                };
                out.push(Detection::Event(anomaly.clone()));
                host.open = Some(anomaly);
            }
            Some(EventChange::Closed(_)) => {
                if let Some(mut anomaly) = host.open.take() {
                    anomaly.closed = true;
                    out.push(Detection::Event(anomaly));
                }
            }
            None => {
                if let (Some(open), true) = (host.open.as_mut(), over) {
                    open.window_end_ms = end_ms;
                    if score > open.score {
                        open.score = score;
                        open.severity = Severity::of(score, threshold);
                        top_contributions_into(
                            &self.model.manifest().schema,
                            &self.shares,
                            TOP_METRICS,
                            &mut open.top_metrics,
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DetectorKind, TrainingConfig};
    use anomaly_core::MetricSchema;
    use anomaly_core::dataset::Series;

    fn normal_row(i: usize) -> Vec<f64> {
        anomaly_core::synthetic::cyclic_host_row(i as u64).to_vec()
    }

    /// The PCA reference model, trained once for every test here.
    fn model() -> Model {
        static MODEL: std::sync::OnceLock<Model> = std::sync::OnceLock::new();
        MODEL
            .get_or_init(|| {
                let rows: Vec<Vec<f64>> = (0..3000).map(normal_row).collect();
                Model::train(
                    &MetricSchema::host(),
                    &Series::from_rows(&rows).unwrap(),
                    DetectorKind::Pca,
                    &TrainingConfig::default(),
                    &mut |_| {},
                )
                .unwrap()
            })
            .clone()
    }

    fn scorer() -> FleetScorer {
        FleetScorer::new(model(), EventRule::new(2, 3, 5).unwrap()).unwrap()
    }

    fn events(out: &[Detection]) -> Vec<&Anomaly> {
        out.iter()
            .filter_map(|d| {
                if let Detection::Event(a) = d {
                    Some(a)
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn normal_samples_score_without_events_and_hosts_stay_apart() {
        let mut s = scorer();
        let mut out = Vec::new();
        for i in 3000..3200 {
            for host in ["a", "b"] {
                s.on_sample(&Sample::new(host, i as i64 * 1000, normal_row(i)), &mut out)
                    .unwrap();
            }
        }
        assert!(events(&out).is_empty(), "{:?}", events(&out));
        // Each host closes its first window at its 10th sample: 191 windows per host.
        let scored = out
            .iter()
            .filter(|d| matches!(d, Detection::Scored { .. }))
            .count();
        assert_eq!(scored, 2 * (200 - 9));
        assert_eq!(s.tracked_hosts(), 2);
    }

    #[test]
    fn an_injected_anomaly_opens_one_event_with_its_host_time_and_cause_then_closes() {
        let mut s = scorer();
        let mut out = Vec::new();
        for i in 3000..3300 {
            let mut row = normal_row(i);
            if (3100..3130).contains(&i) {
                row[1] = 97.0; // memory jumps while everything else stays normal
            }
            s.on_sample(
                &Sample::new("web-1", i as i64 * 1000, row.clone()),
                &mut out,
            )
            .unwrap();
            s.on_sample(
                &Sample::new("web-2", i as i64 * 1000, normal_row(i)),
                &mut out,
            )
            .unwrap();
        }
        let events = events(&out);
        assert_eq!(events.len(), 2, "one open and one close: {events:?}");
        let (opened, closed) = (events[0], events[1]);
        assert_eq!(opened.entity, "web-1");
        assert!(!opened.closed && closed.closed);
        assert_eq!(opened.window_start_ms, closed.window_start_ms);
        // The event starts with a window holding the first anomalous sample (3100 s) and ends by
        // the last window still holding one, plus the 4 windows the 5-window smoothing lags:
        // 3129 + 9 + 4 = 3142 s.
        assert!(
            (3_091_000..=3_100_000).contains(&opened.window_start_ms),
            "{opened:?}"
        );
        assert!(
            (3_100_000..=3_142_000).contains(&closed.window_end_ms),
            "{closed:?}"
        );
        assert_eq!(opened.top_metrics[0].metric, "memory_used");
        assert!(closed.score >= opened.score);
        assert_eq!(s.open_events(), 0);
    }

    #[test]
    fn disturbed_samples_are_scored_but_open_no_event_and_the_host_alarms_again_after_settling() {
        let mut s = scorer();
        let mut out = Vec::new();
        let burst = |i: usize| {
            let mut row = normal_row(i);
            row[1] = 97.0;
            row
        };
        // A burst while the model trained (until 3029 s): scored, yet silent.
        s.disturbed_until(3_029_000);
        for i in 3000..3030 {
            s.on_sample(&Sample::new("h", i as i64 * 1000, burst(i)), &mut out)
                .unwrap();
        }
        let scores: Vec<f64> = out
            .iter()
            .filter_map(|d| match d {
                Detection::Scored { score, .. } => Some(*score),
                _ => None,
            })
            .collect();
        let threshold = s.model().manifest().threshold;
        assert!(
            scores.iter().any(|&x| x > threshold),
            "the burst scores high: {scores:?}"
        );
        assert!(events(&out).is_empty(), "{:?}", events(&out));
        // Normal samples settle the host; a later burst opens an event as usual.
        for i in 3030..3100 {
            s.on_sample(&Sample::new("h", i as i64 * 1000, normal_row(i)), &mut out)
                .unwrap();
        }
        assert!(events(&out).is_empty(), "{:?}", events(&out));
        for i in 3100..3130 {
            s.on_sample(&Sample::new("h", i as i64 * 1000, burst(i)), &mut out)
                .unwrap();
        }
        let events = events(&out);
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(events[0].window_start_ms >= 3_091_000, "{:?}", events[0]);
    }

    #[test]
    fn live_scores_are_those_of_the_evaluation_path() {
        // `anomaly eval` streams windows through `Model::metric_errors` and one `HostDetector`
        // per entity; the live scorer must give the same scores for the same samples, drifting
        // memory (which the host adapts to) and a burst included.
        let mut s = scorer();
        let model = s.model().clone();
        let rows: Vec<Vec<f64>> = (3000..3600)
            .map(|i| {
                let mut row = normal_row(i);
                row[1] += (i - 3000) as f64 * 0.02;
                if (3400..3420).contains(&i) {
                    row[0] = 99.0;
                }
                row
            })
            .collect();
        let mut out = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            s.on_sample(&Sample::new("h", i as i64 * 1000, row.clone()), &mut out)
                .unwrap();
        }
        let live: Vec<f64> = out
            .iter()
            .filter_map(|d| match d {
                Detection::Scored { score, .. } => Some(*score),
                _ => None,
            })
            .collect();

        let shape = model.shape();
        let mut scaled = vec![0.0f32; rows.len() * shape.dims];
        for (row, out) in rows.iter().zip(scaled.chunks_exact_mut(shape.dims)) {
            model.scale_row(row, out).unwrap();
        }
        let windows = crate::model::sliding_windows(&scaled, shape.dims, shape.window);
        let mut errors = vec![0.0f32; windows.len() / shape.window];
        model.metric_errors(&windows, &mut errors).unwrap();
        let mut host = HostDetector::new(&model, EventRule::new(2, 3, 5).unwrap()).unwrap();
        let evaluated: Vec<f64> = errors
            .chunks_exact(shape.dims)
            .enumerate()
            .map(|(i, e)| host.observe(&model, e, i as i64).score)
            .collect();
        assert_eq!(live.len(), evaluated.len());
        assert_eq!(live, evaluated);
        assert!(!events(&out).is_empty(), "the burst opens an event");
    }

    #[test]
    fn silent_hosts_are_forgotten_and_an_event_still_open_on_them_closes() {
        let mut s = scorer().with_idle_eviction(60_000);
        let mut out = Vec::new();
        // `gone` sends a burst and then nothing; new hosts keep arriving, one a second.
        for i in 3000..3030 {
            let mut row = normal_row(i);
            row[1] = 97.0;
            s.on_sample(&Sample::new("gone", i as i64 * 1000, row), &mut out)
                .unwrap();
        }
        assert!(s.in_event("gone"), "{:?}", events(&out));
        for i in 3030..4000 {
            let host = format!("churn-{}", i % 300 + (i / 300) * 1000);
            for step in 0..10 {
                s.on_sample(
                    &Sample::new(host.clone(), (i * 10 + step) as i64 * 100, normal_row(i)),
                    &mut out,
                )
                .unwrap();
            }
        }
        // Hosts of the last minute of event time stay (at most ~61 of them); older ones went.
        assert!(
            s.tracked_hosts() <= 70,
            "{} hosts tracked",
            s.tracked_hosts()
        );
        assert!(s.evicted_hosts > 800, "{} evicted", s.evicted_hosts);
        assert!(!s.in_event("gone"));
        let gone: Vec<_> = events(&out)
            .into_iter()
            .filter(|a| a.entity == "gone")
            .collect();
        assert_eq!(gone.len(), 2, "opened, then closed on eviction: {gone:?}");
        assert!(gone[1].closed);
        // Ids are reused: the per-host slab stays the size of the live set.
        assert!(s.hosts.len() <= 80, "{} slots", s.hosts.len());
    }

    #[test]
    fn a_host_catching_up_on_a_backlog_is_not_idle() {
        let mut s = scorer().with_idle_eviction(60_000);
        let mut out = Vec::new();
        // `late` replays samples two hours behind the rest of the fleet, as a collector
        // emptying its buffer after an outage does: old in event time, yet not silent.
        for i in 0..600 {
            let at = i as i64 * 1000;
            s.on_sample(
                &Sample::new("live", 7_200_000 + at, normal_row(i)),
                &mut out,
            )
            .unwrap();
            s.on_sample(&Sample::new("late", at, normal_row(i)), &mut out)
                .unwrap();
        }
        assert_eq!(s.evicted_hosts, 0);
        assert_eq!(s.tracked_hosts(), 2);
        // Once it stops sending, it is forgotten like any other.
        for i in 600..700 {
            let at = 7_200_000 + i as i64 * 1000;
            s.on_sample(&Sample::new("live", at, normal_row(i)), &mut out)
                .unwrap();
        }
        assert_eq!(s.evicted_hosts, 1);
        assert_eq!(s.tracked_hosts(), 1);
    }

    #[test]
    fn a_sample_of_the_wrong_width_is_refused_and_non_finite_values_are_counted() {
        let mut s = scorer();
        let mut out = Vec::new();
        assert!(
            s.on_sample(&Sample::new("a", 0, vec![1.0; 3]), &mut out)
                .is_err()
        );
        let mut row = normal_row(0);
        row[0] = f64::NAN;
        s.on_sample(&Sample::new("a", 0, row), &mut out).unwrap();
        assert_eq!(s.non_finite_values, 1);
        assert!(out.is_empty());
    }

    #[test]
    fn a_partition_restored_from_its_snapshot_carries_on_exactly_as_if_never_stopped() {
        // Two hosts on partition 0 (one anomalous), one on partition 1.
        let input: Vec<(i32, Sample)> = (3000..3300)
            .flat_map(|i| {
                let mut burst = normal_row(i);
                if (3100..3140).contains(&i) {
                    burst[1] = 97.0;
                }
                let at = i as i64 * 1000;
                [
                    (0, Sample::new("web-1", at, burst)),
                    (0, Sample::new("web-2", at, normal_row(i))),
                    (1, Sample::new("db-1", at, normal_row(i + 7))),
                ]
            })
            .collect();
        let straight = {
            let mut s = scorer();
            let mut out = Vec::new();
            for (p, sample) in &input {
                s.on_sample_from(*p, sample, &mut out).unwrap();
            }
            out
        };
        assert!(!events(&straight).is_empty(), "the burst opens an event");
        // Stop inside the event (and at a few other points), restore partition 0 into a scorer
        // that has its own partition-1 state, and carry on.
        for stop in [1, 5, 100, 333, 350, 400, 899] {
            let mut first = scorer();
            let mut out = Vec::new();
            for (p, sample) in &input[..stop] {
                first.on_sample_from(*p, sample, &mut out).unwrap();
            }
            let saved = [
                first.snapshot(0).encode().unwrap(),
                first.snapshot(1).encode().unwrap(),
            ];
            let mut second = scorer();
            // Stale state of the partition, from an earlier owner, is replaced.
            second
                .on_sample_from(0, &Sample::new("web-1", 0, normal_row(1)), &mut Vec::new())
                .unwrap();
            for (p, bytes) in saved.iter().enumerate() {
                assert!(second.restore(p as i32, bytes).unwrap().is_some());
            }
            for (p, sample) in &input[stop..] {
                second.on_sample_from(*p, sample, &mut out).unwrap();
            }
            assert_eq!(out, straight, "stopped after {stop} samples");
        }
    }

    #[test]
    fn a_snapshot_of_another_model_restores_nothing_and_garbage_is_an_error() {
        let mut s = scorer();
        s.on_sample_from(3, &Sample::new("h", 0, normal_row(0)), &mut Vec::new())
            .unwrap();
        let bytes = s.snapshot(3).encode().unwrap();
        let other_model = {
            let rows: Vec<Vec<f64>> = (0..2500).map(|i| normal_row(i + 11)).collect();
            Model::train(
                &MetricSchema::host(),
                &Series::from_rows(&rows).unwrap(),
                DetectorKind::Pca,
                &TrainingConfig::default(),
                &mut |_| {},
            )
            .unwrap()
        };
        let mut other = FleetScorer::new(other_model, EventRule::new(2, 3, 5).unwrap()).unwrap();
        if other.model().manifest().model_version != s.model().manifest().model_version {
            assert_eq!(other.restore(3, &bytes).unwrap(), None);
            assert_eq!(other.tracked_hosts(), 0);
        }
        assert!(matches!(
            s.restore(3, b"\xff\xff\xff"),
            Err(Error::Snapshot(_))
        ));
        assert_eq!(s.restore(3, &bytes).unwrap(), Some(1));
        assert_eq!(s.tracked_hosts(), 1);
    }
}
