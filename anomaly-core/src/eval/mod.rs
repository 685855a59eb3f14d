//! Evaluation metrics for labelled anomaly detection.
//!
//! Point-wise metrics ([`point_wise`], [`best_f1`], [`auroc`], [`auprc`]) are the honest ones.
//! [`point_adjusted_f1`] exists only to compare with papers that report it; it inflates results.
//! [`event_score`] judges the events a detector opened as an operator would (false events per
//! day, detected segments, delay), and [`hit_rate`] scores root-cause attribution.
//!
//! Throughout, a window is predicted anomalous when its score
//! [`exceeds`](crate::threshold::exceeds) the threshold, and every
//! ratio whose denominator is zero (0/0) is defined as 0.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod events;

pub use events::{EventScore, RowEvent, event_score};

/// Precision, recall and F1 with the confusion counts they come from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prf {
    /// `tp / (tp + fp)`, 0 when nothing is predicted.
    pub precision: f64,
    /// `tp / (tp + fn)`, 0 when nothing is labelled.
    pub recall: f64,
    /// Harmonic mean of precision and recall, `2 tp / (2 tp + fp + fn)`, 0 when both are 0.
    pub f1: f64,
    /// Labelled and predicted.
    pub tp: usize,
    /// Predicted but not labelled.
    pub fp: usize,
    /// Labelled but not predicted (`fn` is a keyword).
    pub fn_: usize,
}

impl Prf {
    /// The metrics of the given confusion counts.
    pub fn from_counts(tp: usize, fp: usize, fn_: usize) -> Self {
        Self {
            precision: ratio(tp, tp + fp),
            recall: ratio(tp, tp + fn_),
            f1: ratio(2 * tp, 2 * tp + fp + fn_),
            tp,
            fp,
            fn_,
        }
    }
}

/// Point-wise precision, recall and F1 of `predicted` against `labels`, with no point adjustment.
/// Empty inputs give all zeros (0/0 is 0). Errors when the lengths differ.
pub fn point_wise(labels: &[bool], predicted: &[bool]) -> Result<Prf> {
    check_same_length(labels.len(), predicted.len())?;
    let count = |label: bool, prediction: bool| {
        labels
            .iter()
            .zip(predicted)
            .filter(|&(&l, &p)| l == label && p == prediction)
            .count()
    };
    Ok(Prf::from_counts(
        count(true, true),
        count(false, true),
        count(true, false),
    ))
}

/// The best point-wise F1 over every threshold that separates distinct scores, in O(n log n).
///
/// The returned threshold reproduces the chosen prediction under the crate's rule
/// `score > threshold` ([`exceeds`](crate::threshold::exceeds)): it is the largest `f64` below
/// the lowest predicted score.
/// Predicting nothing (threshold = the largest score) is also a candidate, and on equal F1 the
/// higher threshold (fewer alarms) wins; so with no positive label the result is F1 = 0 at the
/// largest score. This is an oracle threshold chosen with test labels: report it as an upper bound,
/// not as the detector's performance.
///
/// Errors when inputs are empty, lengths differ or a score is not finite.
pub fn best_f1(scores: &[f64], labels: &[bool]) -> Result<(Prf, f64)> {
    check_scores(scores, labels)?;
    let positives = labels.iter().filter(|&&l| l).count();
    let descending = sorted_descending(scores, labels);

    let (mut tp, mut fp) = (0, 0);
    let mut best = Prf::from_counts(0, 0, positives);
    let mut best_threshold = descending[0].0;
    for group in descending.chunk_by(|a, b| a.0 == b.0) {
        let group_positives = group.iter().filter(|(_, label)| *label).count();
        tp += group_positives;
        fp += group.len() - group_positives;
        let candidate = Prf::from_counts(tp, fp, positives - tp);
        if candidate.f1 > best.f1 {
            best = candidate;
            best_threshold = group[0].0.next_down();
        }
    }
    Ok((best, best_threshold))
}

/// Area under the ROC curve, computed from ranks (Mann–Whitney U): the probability that a random
/// anomalous window scores above a random normal one, tied scores counting one half (average
/// ranks).
///
/// Errors when inputs are empty, lengths differ, a score is not finite, or either class is absent.
pub fn auroc(scores: &[f64], labels: &[bool]) -> Result<f64> {
    check_scores(scores, labels)?;
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(Error::InvalidInput(
            "AUROC needs both anomalous and normal labels".into(),
        ));
    }
    let mut ascending = sorted_descending(scores, labels);
    ascending.reverse();
    let mut positive_rank_sum = 0.0;
    let mut rank_before_group = 0usize;
    for group in ascending.chunk_by(|a, b| a.0 == b.0) {
        // Ranks rank_before_group + 1 ..= rank_before_group + len share their average.
        let average_rank = rank_before_group as f64 + (group.len() as f64 + 1.0) / 2.0;
        let group_positives = group.iter().filter(|(_, label)| *label).count();
        positive_rank_sum += average_rank * group_positives as f64;
        rank_before_group += group.len();
    }
    let (p, n) = (positives as f64, negatives as f64);
    Ok((positive_rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Area under the precision-recall curve as average precision, like scikit-learn's
/// `average_precision_score`: `sum_k (R_k - R_{k-1}) P_k` over the thresholds at each distinct
/// score, from the highest down, windows with equal scores entering together.
///
/// Errors when inputs are empty, lengths differ, a score is not finite, or no label is positive.
pub fn auprc(scores: &[f64], labels: &[bool]) -> Result<f64> {
    check_scores(scores, labels)?;
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 {
        return Err(Error::InvalidInput(
            "AUPRC needs at least one anomalous label".into(),
        ));
    }
    let descending = sorted_descending(scores, labels);
    let (mut tp, mut fp) = (0, 0);
    let mut previous_recall = 0.0;
    let mut average_precision = 0.0;
    for group in descending.chunk_by(|a, b| a.0 == b.0) {
        let group_positives = group.iter().filter(|(_, label)| *label).count();
        tp += group_positives;
        fp += group.len() - group_positives;
        let recall = ratio(tp, positives);
        average_precision += (recall - previous_recall) * ratio(tp, tp + fp);
        previous_recall = recall;
    }
    Ok(average_precision)
}

/// The labelled anomalous segments as inclusive `(start, end)` index ranges, in order.
pub fn segments(labels: &[bool]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut start = None;
    for (i, &label) in labels.iter().enumerate() {
        match (label, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                found.push((s, i - 1));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        found.push((s, labels.len() - 1));
    }
    found
}

/// Point adjustment: if any point of a labelled segment is predicted, every point of that segment
/// counts as predicted; predictions outside segments are unchanged.
///
/// **Point adjustment inflates results** (a single lucky alarm in a long segment earns the whole
/// segment, and even random scores reach high adjusted F1). Use it only to compare with papers
/// that report it, never to judge a detector.
///
/// Errors when the lengths differ.
pub fn point_adjust(labels: &[bool], predicted: &[bool]) -> Result<Vec<bool>> {
    check_same_length(labels.len(), predicted.len())?;
    let mut adjusted = predicted.to_vec();
    for (start, end) in segments(labels) {
        if predicted[start..=end].contains(&true) {
            adjusted[start..=end].fill(true);
        }
    }
    Ok(adjusted)
}

/// [`point_wise`] metrics after [`point_adjust`].
///
/// **Inflated by construction**: for comparison with papers only, see [`point_adjust`].
pub fn point_adjusted_f1(labels: &[bool], predicted: &[bool]) -> Result<Prf> {
    point_wise(labels, &point_adjust(labels, predicted)?)
}

/// Ground truth for root-cause attribution: the metrics responsible for an anomalous segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterpretationSegment {
    /// First row of the segment, 0-based.
    pub start: usize,
    /// Last row of the segment, inclusive, 0-based.
    pub end: usize,
    /// The responsible metrics, 0-based indices.
    pub dims: Vec<usize>,
}

/// HitRate@P% of root-cause rankings (OmniAnomaly, Su et al., KDD 2019).
///
/// `rankings` holds `(time index, dims ordered most-contributing first)`. For each ranked time `t`
/// inside ground-truth segments, `G` is the union of the dims of the segments holding `t`;
/// the top `max(1, floor(|G| * percent / 100))` ranked dims are taken and
/// `hit(t) = |top ∩ G| / |G|`. The result is the mean of `hit(t)` over those times, `None` when
/// no ranked time lies in a segment with dims. A `percent` that is NaN or so small that the floor
/// is 0 takes just the top dim.
pub fn hit_rate(
    rankings: &[(usize, Vec<usize>)],
    segments: &[InterpretationSegment],
    percent: f64,
) -> Option<f64> {
    let mut hits = Vec::new();
    for (time, ranked) in rankings {
        // A linear scan: segments are few (tens per entity) and may overlap.
        let mut truth: Vec<usize> = segments
            .iter()
            .filter(|s| (s.start..=s.end).contains(time))
            .flat_map(|s| s.dims.iter().copied())
            .collect();
        truth.sort_unstable();
        truth.dedup();
        if truth.is_empty() {
            continue;
        }
        // `as usize` saturates (NaN -> 0), so no percent can make this panic.
        let take = ((truth.len() as f64 * percent / 100.0).floor() as usize).max(1);
        let top = &ranked[..take.min(ranked.len())];
        let found = truth.iter().filter(|dim| top.contains(dim)).count();
        hits.push(found as f64 / truth.len() as f64);
    }
    (!hits.is_empty()).then(|| hits.iter().sum::<f64>() / hits.len() as f64)
}

/// `numerator / denominator`, with 0/0 defined as 0.
fn ratio(numerator: usize, denominator: usize) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

fn check_same_length(labels: usize, other: usize) -> Result<()> {
    if labels != other {
        return Err(Error::InvalidInput(format!(
            "{labels} labels but {other} predictions or scores"
        )));
    }
    Ok(())
}

/// Non-empty, equal lengths, finite scores: what every score-based metric needs.
fn check_scores(scores: &[f64], labels: &[bool]) -> Result<()> {
    check_same_length(labels.len(), scores.len())?;
    if scores.is_empty() {
        return Err(Error::InvalidInput("no scores to evaluate".into()));
    }
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(Error::InvalidInput(format!("score {i} is {}", scores[i])));
    }
    Ok(())
}

/// `(score, label)` pairs by decreasing score.
fn sorted_descending(scores: &[f64], labels: &[bool]) -> Vec<(f64, bool)> {
    let mut pairs: Vec<(f64, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threshold::exceeds;

    const T: bool = true;
    const F: bool = false;

    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() < 1e-12
    }

    #[test]
    fn point_wise_counts_by_hand() {
        let labels = [T, T, F, F, T, F];
        let predicted = [T, F, T, F, T, F];
        // tp: 0, 4; fp: 2; fn: 1.
        let prf = point_wise(&labels, &predicted).unwrap();
        assert_eq!((prf.tp, prf.fp, prf.fn_), (2, 1, 1));
        assert!(close(prf.precision, 2.0 / 3.0));
        assert!(close(prf.recall, 2.0 / 3.0));
        assert!(close(prf.f1, 2.0 / 3.0));
    }

    #[test]
    fn point_wise_defines_zero_over_zero_as_zero() {
        let prf = point_wise(&[F, F], &[F, F]).unwrap();
        assert_eq!(
            prf,
            Prf {
                precision: 0.0,
                recall: 0.0,
                f1: 0.0,
                tp: 0,
                fp: 0,
                fn_: 0
            }
        );
        let nothing_predicted = point_wise(&[T, F], &[F, F]).unwrap();
        assert_eq!(
            (nothing_predicted.precision, nothing_predicted.recall),
            (0.0, 0.0)
        );
        assert!(point_wise(&[T], &[T, F]).is_err());
    }

    #[test]
    fn best_f1_picks_the_best_cut_and_a_threshold_that_reproduces_it() {
        // Descending: 0.8 T, 0.4 F, 0.35 T, 0.1 F. F1 by cut: 2/3, 1/2, 4/5, 2/3.
        let scores = [0.1, 0.4, 0.35, 0.8];
        let labels = [F, F, T, T];
        let (prf, threshold) = best_f1(&scores, &labels).unwrap();
        assert_eq!((prf.tp, prf.fp, prf.fn_), (2, 1, 0));
        assert!(close(prf.f1, 0.8));
        assert!(threshold < 0.35 && threshold > 0.1);
        let predicted: Vec<bool> = scores.iter().map(|&s| exceeds(s, threshold)).collect();
        assert_eq!(predicted, [F, T, T, T]);
        assert_eq!(point_wise(&labels, &predicted).unwrap(), prf);
    }

    #[test]
    fn best_f1_keeps_tied_scores_together() {
        // Cut at 0.5 predicts both tied windows: tp 1, fp 1 -> F1 2/3; at 0.2: F1 1/2.
        let (prf, threshold) = best_f1(&[0.5, 0.5, 0.2], &[T, F, F]).unwrap();
        assert_eq!((prf.tp, prf.fp, prf.fn_), (1, 1, 0));
        assert!(close(prf.f1, 2.0 / 3.0));
        assert!(exceeds(0.5, threshold) && !exceeds(0.2, threshold));
    }

    #[test]
    fn best_f1_without_positives_predicts_nothing() {
        let (prf, threshold) = best_f1(&[0.3, 0.9], &[F, F]).unwrap();
        assert_eq!((prf.tp, prf.fp, prf.f1), (0, 0, 0.0));
        assert_eq!(threshold, 0.9);
    }

    #[test]
    fn score_metrics_reject_bad_input() {
        for (scores, labels) in [
            (vec![], vec![]),
            (vec![0.1, 0.2], vec![T]),
            (vec![0.1, f64::NAN], vec![T, F]),
            (vec![0.1, f64::NEG_INFINITY], vec![T, F]),
        ] {
            assert!(best_f1(&scores, &labels).is_err());
            assert!(auroc(&scores, &labels).is_err());
            assert!(auprc(&scores, &labels).is_err());
        }
        assert!(auroc(&[0.1, 0.2], &[T, T]).is_err());
        assert!(auroc(&[0.1, 0.2], &[F, F]).is_err());
        assert!(auprc(&[0.1, 0.2], &[F, F]).is_err());
    }

    #[test]
    fn auroc_matches_the_pair_count() {
        // scikit-learn's doc example: 3 of the 4 (positive, negative) pairs are ordered right.
        assert!(close(
            auroc(&[0.1, 0.4, 0.35, 0.8], &[F, F, T, T]).unwrap(),
            0.75
        ));
        assert!(close(auroc(&[0.1, 0.2, 0.3], &[F, T, T]).unwrap(), 1.0));
        assert!(close(auroc(&[0.1, 0.2, 0.3], &[T, T, F]).unwrap(), 0.0));
    }

    #[test]
    fn auroc_counts_ties_as_half() {
        // Pairs (pos, neg): (0.5, 0.5) tie = 1/2, (0.5, 0.1), (0.9, 0.5), (0.9, 0.1) -> 3.5 / 4.
        assert!(close(
            auroc(&[0.5, 0.5, 0.9, 0.1], &[T, F, T, F]).unwrap(),
            0.875
        ));
        assert!(close(auroc(&[0.5, 0.5], &[T, F]).unwrap(), 0.5));
    }

    #[test]
    fn auprc_is_average_precision() {
        // scikit-learn's doc example: 0.5 * 1 + 0 * 1/2 + 0.5 * 2/3 = 0.8333.
        let ap = auprc(&[0.1, 0.4, 0.35, 0.8], &[F, F, T, T]).unwrap();
        assert!(close(ap, 0.5 + 1.0 / 3.0));
        assert!(close(auprc(&[0.9, 0.8, 0.1], &[T, T, F]).unwrap(), 1.0));
    }

    #[test]
    fn auprc_groups_tied_scores() {
        // Groups: 0.9 {T}: P 1, R 1/2; 0.5 {T, F}: P 2/3, R 1; 0.1 adds no recall.
        // Ungrouped, the order of the tied pair would change the answer.
        let ap = auprc(&[0.9, 0.5, 0.5, 0.1], &[T, T, F, F]).unwrap();
        assert!(close(ap, 0.5 + 0.5 * 2.0 / 3.0));
        let ap_swapped = auprc(&[0.9, 0.5, 0.5, 0.1], &[T, F, T, F]).unwrap();
        assert!(close(ap_swapped, ap));
        assert!(close(auprc(&[0.5, 0.5], &[T, F]).unwrap(), 0.5));
    }

    #[test]
    fn segments_are_inclusive_ranges() {
        assert_eq!(segments(&[F, T, T, T, F, T, T, F]), vec![(1, 3), (5, 6)]);
        assert_eq!(segments(&[T, F, T]), vec![(0, 0), (2, 2)]);
        assert_eq!(segments(&[T, T]), vec![(0, 1)]);
        assert_eq!(segments(&[F, F]), vec![]);
        assert_eq!(segments(&[]), vec![]);
    }

    #[test]
    fn point_adjustment_fills_detected_segments_only() {
        let labels = [F, T, T, T, F, T, T, F];
        let predicted = [T, F, T, F, F, F, F, F];
        let adjusted = point_adjust(&labels, &predicted).unwrap();
        assert_eq!(adjusted, vec![T, T, T, T, F, F, F, F]);

        // Raw: tp 1, fp 1, fn 4 -> F1 2/7. Adjusted: tp 3, fp 1, fn 2 -> F1 6/9.
        let raw = point_wise(&labels, &predicted).unwrap();
        assert!(close(raw.f1, 2.0 / 7.0));
        let inflated = point_adjusted_f1(&labels, &predicted).unwrap();
        assert_eq!((inflated.tp, inflated.fp, inflated.fn_), (3, 1, 2));
        assert!(close(inflated.precision, 0.75));
        assert!(close(inflated.recall, 0.6));
        assert!(close(inflated.f1, 2.0 / 3.0));

        assert!(point_adjust(&labels, &predicted[1..]).is_err());
        assert!(point_adjusted_f1(&labels, &predicted[1..]).is_err());
    }

    fn segment(start: usize, end: usize, dims: &[usize]) -> InterpretationSegment {
        InterpretationSegment {
            start,
            end,
            dims: dims.to_vec(),
        }
    }

    #[test]
    fn hit_rate_by_hand() {
        let truth = [segment(10, 20, &[1, 3])];
        let ranked = vec![(12, vec![3, 0, 1, 2])];
        // 100%: top 2 = {3, 0}, one of {1, 3} -> 0.5.
        assert_eq!(hit_rate(&ranked, &truth, 100.0), Some(0.5));
        // 150%: floor(3) = 3 -> {3, 0, 1} -> 1.0.
        assert_eq!(hit_rate(&ranked, &truth, 150.0), Some(1.0));
        // 10%: floor(0.2) = 0, at least 1 -> {3} -> 0.5.
        assert_eq!(hit_rate(&ranked, &truth, 10.0), Some(0.5));
        assert_eq!(hit_rate(&ranked, &truth, f64::NAN), Some(0.5));
    }

    #[test]
    fn hit_rate_averages_over_ranked_times_inside_segments() {
        let truth = [segment(10, 20, &[1, 3]), segment(30, 30, &[0])];
        let ranked = vec![
            (5, vec![1, 3]),     // outside every segment: ignored
            (12, vec![3, 0, 1]), // 0.5
            (20, vec![1, 3, 0]), // 1.0 (the end is inclusive)
            (30, vec![2, 0]),    // G = {0}, top 1 = {2} -> 0.0
        ];
        assert_eq!(hit_rate(&ranked, &truth, 100.0), Some(0.5));
    }

    #[test]
    fn hit_rate_unions_overlapping_segments_and_skips_empty_truth() {
        let truth = [
            segment(0, 10, &[1]),
            segment(5, 15, &[2, 1]),
            segment(20, 25, &[]),
        ];
        // At 7, G = {1, 2}: top 2 of [2, 4] holds 2 -> 0.5. At 21 there is no truth.
        let ranked = vec![(7, vec![2, 4]), (21, vec![0])];
        assert_eq!(hit_rate(&ranked, &truth, 100.0), Some(0.5));
    }

    #[test]
    fn hit_rate_is_none_without_ranked_anomalous_times() {
        let truth = [segment(10, 20, &[1])];
        assert_eq!(
            hit_rate(&[(9, vec![1]), (21, vec![1])], &truth, 100.0),
            None
        );
        assert_eq!(hit_rate(&[], &truth, 100.0), None);
    }
}
