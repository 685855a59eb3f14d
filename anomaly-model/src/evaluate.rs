//! Evaluation of a detector on a labelled entity, exactly as it would run live: fit and calibrate
//! on the training rows only, then score the test rows as a stream, one window per time step,
//! through the same [`HostDetector`] the live detector runs (adaptation and event rule included).

use std::time::Instant;

use anomaly_core::alerting::{EventChange, EventRule};
use anomaly_core::dataset::LabelledEntity;
use anomaly_core::eval::{self, RowEvent};
use serde::{Deserialize, Serialize};

use crate::detector::{DetectorKind, TrainingProgress};
use crate::error::Result;
use crate::host::HostDetector;
use crate::model::{Model, TrainingConfig, sliding_windows};

/// Quality and speed of one detector on one entity. `f1`, `precision` and `recall` are point-wise,
/// without point adjustment, at the threshold calibrated on training data: the headline figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EntityReport {
    /// Entity name.
    pub name: String,
    /// Point-wise F1 at the calibrated threshold (no point adjustment).
    pub f1: f64,
    /// Point-wise precision at the calibrated threshold.
    pub precision: f64,
    /// Point-wise recall at the calibrated threshold.
    pub recall: f64,
    /// Best point-wise F1 over all thresholds: an upper bound chosen on test labels, not a result.
    pub best_f1: f64,
    /// Area under the ROC curve of the smoothed scores.
    pub auroc: f64,
    /// Area under the precision-recall curve (average precision) of the smoothed scores.
    pub auprc: f64,
    /// Point-ADJUSTED F1 at the calibrated threshold, only for comparison with papers: it inflates.
    pub pa_f1: f64,
    /// Anomaly events the detector's event rule opened on the test rows.
    pub events: f64,
    /// Events that match no labelled segment, per day of test rows (see
    /// [`anomaly_core::eval::event_score`]).
    pub false_events_per_day: f64,
    /// Share of labelled segments with an event inside them or starting within the smoothing span
    /// after them.
    pub event_recall: f64,
    /// Mean rows from a detected segment's start to the opening of its first event (NaN when
    /// none was detected).
    pub detection_delay_rows: f64,
    /// HitRate@150% of the per-metric attribution against interpretation labels, at the labelled
    /// rows the detector flagged (true positives), as in the OmniAnomaly paper. NaN when the entity
    /// has no interpretation labels or no true positive.
    pub hitrate150: f64,
    /// HitRate@100% likewise.
    pub hitrate100: f64,
    /// HitRate@150% at every labelled row with an interpretation, flagged or not: stricter, since
    /// it also ranks rows where the anomaly barely shows.
    pub hitrate150_all_rows: f64,
    /// Seconds to fit and calibrate.
    pub train_secs: f64,
    /// Test windows scaled, windowed and scored per second (one thread).
    pub windows_per_sec: f64,
    /// The calibrated threshold.
    pub threshold: f64,
}

/// Windows scored per call when streaming the test rows: the detector's micro-batch.
const SCORE_BATCH: usize = 64;

/// Trains on `entity.train` and scores `entity.test` as a stream, opening events by `rule`; see
/// [`EntityReport`].
pub fn evaluate_entity(
    entity: &LabelledEntity,
    kind: DetectorKind,
    config: &TrainingConfig,
    rule: EventRule,
    progress: &mut dyn FnMut(&TrainingProgress),
) -> Result<EntityReport> {
    let started = Instant::now();
    let model = Model::train(&entity.schema, &entity.train, kind, config, progress)?;
    let train_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let scaled = scaled_test_rows(&model, entity)?;
    let stream = stream(&model, rule, &scaled, &attributed_rows(entity))?;
    let windows_per_sec = stream.scores.len() as f64 / started.elapsed().as_secs_f64().max(1e-9);

    let labels = &entity.test_labels;
    let at_threshold = eval::point_wise(labels, &stream.over)?;
    let (best, _) = eval::best_f1(&stream.scores, labels)?;
    let events = eval::event_score(
        labels,
        &stream.events,
        model.manifest().smoothing,
        entity.rows_per_day(),
    )?;
    let flagged: Vec<(usize, Vec<usize>)> = stream
        .rankings
        .iter()
        .filter(|(t, _)| stream.over[*t])
        .cloned()
        .collect();
    let hit_rate = |rankings: &[(usize, Vec<usize>)], percent| {
        eval::hit_rate(rankings, &entity.interpretation, percent).unwrap_or(f64::NAN)
    };
    Ok(EntityReport {
        name: entity.name.clone(),
        f1: at_threshold.f1,
        precision: at_threshold.precision,
        recall: at_threshold.recall,
        best_f1: best.f1,
        auroc: ranking_metric(eval::auroc, &stream.scores, labels)?,
        auprc: ranking_metric(eval::auprc, &stream.scores, labels)?,
        pa_f1: eval::point_adjusted_f1(labels, &stream.over)?.f1,
        events: events.events as f64,
        false_events_per_day: events.false_events_per_day,
        event_recall: events.event_recall,
        detection_delay_rows: events.detection_delay_rows,
        hitrate150: hit_rate(&flagged, 150.0),
        hitrate100: hit_rate(&flagged, 100.0),
        hitrate150_all_rows: hit_rate(&stream.rankings, 150.0),
        train_secs,
        windows_per_sec,
        threshold: model.manifest().threshold,
    })
}

/// AUROC and AUPRC are undefined for a test part without anomalies (some NAB files): NaN there,
/// so the mean over entities leaves them out instead of failing the whole run.
fn ranking_metric(
    metric: fn(&[f64], &[bool]) -> anomaly_core::Result<f64>,
    scores: &[f64],
    labels: &[bool],
) -> Result<f64> {
    if labels.iter().all(|&l| !l) {
        return Ok(f64::NAN);
    }
    Ok(metric(scores, labels)?)
}

/// The test rows scaled with the last `window - 1` training rows in front, so the first test row
/// already closes a full window, as it would in a stream that never stopped.
fn scaled_test_rows(model: &Model, entity: &LabelledEntity) -> Result<Vec<f32>> {
    let dims = model.shape().dims;
    let context = (model.shape().window - 1).min(entity.train.rows());
    let first = entity.train.rows() - context;
    let rows = (first..entity.train.rows())
        .map(|i| entity.train.row(i))
        .chain(entity.test.iter_rows());
    let mut scaled = vec![0.0f32; (context + entity.test.rows()) * dims];
    for (raw, out) in rows.zip(scaled.chunks_exact_mut(dims)) {
        model.scale_row(raw, out)?;
    }
    Ok(scaled)
}

/// What streaming the test rows through one host gave.
struct Stream {
    /// The smoothed, adapted score of each test row's window.
    scores: Vec<f64>,
    /// Whether it exceeded the threshold.
    over: Vec<bool>,
    /// The events opened, in rows.
    events: Vec<RowEvent>,
    /// The attribution ranking (metrics, most-contributing first) at each row of `attributed`.
    rankings: Vec<(usize, Vec<usize>)>,
}

/// Streams the context-prefixed `scaled` test rows through one [`HostDetector`] as the live
/// detector does: window, per-metric errors in micro-batches, adapted score, smoothing, threshold,
/// events. The host's attribution is ranked at the rows `attributed` says (sorted).
fn stream(model: &Model, rule: EventRule, scaled: &[f32], attributed: &[usize]) -> Result<Stream> {
    let shape = model.shape();
    let windows = sliding_windows(scaled, shape.dims, shape.window);
    let rows = windows.len() / shape.width();
    let mut host = HostDetector::new(model, rule)?;
    let mut out = Stream {
        scores: Vec::with_capacity(rows),
        over: Vec::with_capacity(rows),
        events: Vec::new(),
        rankings: Vec::with_capacity(attributed.len()),
    };
    let mut errors = vec![0.0f32; SCORE_BATCH * shape.dims];
    let mut shares = vec![0.0f32; shape.dims];
    let mut opened: Option<usize> = None;
    let mut next_attributed = attributed.iter().peekable();
    for (batch, batch_windows) in windows.chunks(SCORE_BATCH * shape.width()).enumerate() {
        let batch_errors = &mut errors[..batch_windows.len() / shape.window];
        model.metric_errors(batch_windows, batch_errors)?;
        for (i, window_errors) in batch_errors.chunks_exact(shape.dims).enumerate() {
            let row = batch * SCORE_BATCH + i;
            if next_attributed.next_if_eq(&&row).is_some() {
                host.contributions(window_errors, &mut shares);
                let mut order: Vec<usize> = (0..shape.dims).collect();
                order.sort_by(|&a, &b| shares[b].total_cmp(&shares[a]));
                out.rankings.push((row, order));
            }
            let seen = host.observe(model, window_errors, row as i64);
            match seen.change {
                Some(EventChange::Opened { .. }) => opened = Some(row),
                Some(EventChange::Closed(event)) => out
                    .events
                    .push(row_event(opened.take().unwrap_or(row), &event)),
                None => {}
            }
            out.scores.push(seen.score);
            out.over.push(seen.over);
        }
    }
    if let (Some(event), Some(at)) = (host.flush(), opened) {
        out.events.push(row_event(at, &event));
    }
    Ok(out)
}

/// An event of the tracker, whose times are rows, in rows.
fn row_event(opened_at: usize, event: &anomaly_core::alerting::Event) -> RowEvent {
    RowEvent {
        opened_at,
        start: event.start_ms as usize,
        end: (event.end_ms as usize).max(opened_at),
    }
}

/// The labelled anomalous test rows that have an interpretation label, sorted: where the
/// attribution is ranked (HitRate is computed on all of them and on the flagged ones, as the
/// OmniAnomaly paper does).
fn attributed_rows(entity: &LabelledEntity) -> Vec<usize> {
    let mut rows: Vec<usize> = entity
        .interpretation
        .iter()
        .flat_map(|segment| segment.start..=segment.end.min(entity.test.rows().saturating_sub(1)))
        .collect();
    rows.sort_unstable();
    rows.dedup();
    rows
}
