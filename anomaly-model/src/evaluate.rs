//! Evaluation of a detector on a labelled entity, exactly as it would run live: fit and calibrate
//! on the training rows only, then score the test rows as a stream, one window per time step.

use std::time::Instant;

use anomaly_core::dataset::LabelledEntity;
use anomaly_core::eval;
use serde::{Deserialize, Serialize};

use crate::detector::{DetectorKind, TrainingProgress};
use crate::error::Result;
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
    /// Share of labelled anomaly segments with at least one alarm.
    pub event_recall: f64,
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

/// Trains on `entity.train` and scores `entity.test` as a stream; see [`EntityReport`].
pub fn evaluate_entity(
    entity: &LabelledEntity,
    kind: DetectorKind,
    config: &TrainingConfig,
    progress: &mut dyn FnMut(&TrainingProgress),
) -> Result<EntityReport> {
    let started = Instant::now();
    let model = Model::train(&entity.schema, &entity.train, kind, config, progress)?;
    let train_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let scaled = scaled_test_rows(&model, entity)?;
    let scores = stream_scores(&model, &scaled)?;
    let windows_per_sec = scores.len() as f64 / started.elapsed().as_secs_f64().max(1e-9);

    let threshold = model.manifest().threshold;
    let labels = &entity.test_labels;
    let predicted: Vec<bool> = scores
        .iter()
        .map(|&s| anomaly_core::threshold::exceeds(s, threshold))
        .collect();
    let at_threshold = eval::point_wise(labels, &predicted)?;
    let (best, _) = eval::best_f1(&scores, labels)?;
    let all_rows = attribution_rankings(&model, entity, &scaled)?;
    let flagged: Vec<(usize, Vec<usize>)> = all_rows
        .iter()
        .filter(|(t, _)| predicted[*t])
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
        auroc: ranking_metric(eval::auroc, &scores, labels)?,
        auprc: ranking_metric(eval::auprc, &scores, labels)?,
        pa_f1: eval::point_adjusted_f1(labels, &predicted)?.f1,
        event_recall: eval::event_recall(labels, &predicted)?,
        hitrate150: hit_rate(&flagged, 150.0),
        hitrate100: hit_rate(&flagged, 100.0),
        hitrate150_all_rows: hit_rate(&all_rows, 150.0),
        train_secs,
        windows_per_sec,
        threshold,
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

/// Smoothed scores, one per test row, computed as the live detector does: scale, window, score
/// in micro-batches, smooth.
fn stream_scores(model: &Model, scaled: &[f32]) -> Result<Vec<f64>> {
    let shape = model.shape();
    let windows = sliding_windows(scaled, shape.dims, shape.window);
    let mut raw = vec![0.0f32; windows.len() / shape.width()];
    for (w, s) in windows
        .chunks(SCORE_BATCH * shape.width())
        .zip(raw.chunks_mut(SCORE_BATCH))
    {
        model.score_windows(w, s)?;
    }
    let mut smoother = model.smoother();
    Ok(raw
        .into_iter()
        .map(|s| f64::from(smoother.push(s)))
        .collect())
}

/// The attribution ranking (metrics, most-contributing first) at every labelled anomalous row
/// that has an interpretation label, from the context-prefixed `scaled` test rows. HitRate is
/// computed on all of them and on the flagged ones, as the paper does (NaN when none qualify).
fn attribution_rankings(
    model: &Model,
    entity: &LabelledEntity,
    scaled: &[f32],
) -> Result<Vec<(usize, Vec<usize>)>> {
    let shape = model.shape();
    let mut shares = vec![0.0f32; shape.dims];
    let mut rankings = Vec::new();
    for segment in &entity.interpretation {
        let last = segment.end.min(entity.test.rows().saturating_sub(1));
        for t in segment.start..=last {
            // Test row t closes the window that starts t rows into the context-prefixed rows.
            let window = &scaled[t * shape.dims..(t + shape.window) * shape.dims];
            model.contributions(window, &mut shares)?;
            let mut order: Vec<usize> = (0..shape.dims).collect();
            order.sort_by(|&a, &b| shares[b].total_cmp(&shares[a]));
            rankings.push((t, order));
        }
    }
    Ok(rankings)
}
