//! From a window and its reconstruction to one anomaly score and per-metric contributions.
//!
//! The error of a window is designed so that scores of different metrics and models are comparable:
//! 1. each cell's squared error is weighted toward the newest sample (`recency_decay` per step back),
//!    because the newest sample is the one the stream is deciding about;
//! 2. the weighted error of each metric is divided by that metric's typical error on held-out
//!    training windows, so a metric the model reconstructs poorly even when all is well does not
//!    drown the others;
//! 3. these normalised errors (about 1 each on normal data) become one score by an
//!    [`Aggregation`](crate::adaptation::Aggregation), after each host's own typical errors have
//!    divided them (see [`crate::adaptation`] and [`crate::host`]).
//!
//! A metric's contribution is its share of the sum of normalised errors.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How raw reconstruction errors become scores. Fitted on held-out training windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorProfile {
    window: usize,
    dims: usize,
    /// One weight per time step, oldest first, summing to 1.
    time_weights: Vec<f32>,
    /// Typical weighted error of each metric on held-out training windows.
    dim_scale: Vec<f32>,
}

/// Smallest typical error a metric may have, in squared scaled units. Metrics that were constant in
/// training would otherwise turn the tiniest change into an enormous score.
const MIN_DIM_SCALE: f32 = 1e-4;

impl ErrorProfile {
    /// Raises each metric's typical error to at least its entry in `floors` (one per metric, in
    /// squared scaled units), so a metric that barely moved in training cannot turn a small
    /// blip into an enormous score.
    pub fn raise_metric_floors(&mut self, floors: &[f32]) {
        for (scale, &floor) in self.dim_scale.iter_mut().zip(floors) {
            *scale = scale.max(floor);
        }
    }

    /// Fits the per-metric scales from `inputs` and their `reconstructions` (flattened windows of
    /// `window` rows by `dims` metrics).
    pub fn fit(
        window: usize,
        dims: usize,
        recency_decay: f32,
        inputs: &[f32],
        reconstructions: &[f32],
    ) -> Result<Self> {
        let width = window * dims;
        if width == 0
            || inputs.len() != reconstructions.len()
            || inputs.is_empty()
            || !inputs.len().is_multiple_of(width)
        {
            return Err(Error::InvalidInput(format!(
                "cannot fit an error profile on {} inputs / {} reconstructions of width {width}",
                inputs.len(),
                reconstructions.len()
            )));
        }
        if !(recency_decay > 0.0 && recency_decay <= 1.0) {
            return Err(Error::InvalidInput(format!(
                "recency_decay must be in (0, 1], got {recency_decay}"
            )));
        }
        let mut profile = Self {
            window,
            dims,
            time_weights: time_weights(window, recency_decay),
            dim_scale: vec![1.0; dims],
        };
        let mut sums = vec![0.0f64; dims];
        let mut errors = vec![0.0f32; dims];
        let n = inputs.len() / width;
        for (x, r) in inputs
            .chunks_exact(width)
            .zip(reconstructions.chunks_exact(width))
        {
            profile.weighted_errors(x, r, &mut errors);
            for (s, e) in sums.iter_mut().zip(&errors) {
                *s += f64::from(*e);
            }
        }
        profile.dim_scale = sums
            .iter()
            .map(|s| ((s / n as f64) as f32).max(MIN_DIM_SCALE))
            .collect();
        Ok(profile)
    }

    /// Rows per window.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Metrics per row.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The time weights, oldest step first.
    pub fn time_weights(&self) -> &[f32] {
        &self.time_weights
    }

    /// Recency-weighted squared error of each metric, before normalisation.
    fn weighted_errors(&self, input: &[f32], reconstruction: &[f32], errors: &mut [f32]) {
        errors.fill(0.0);
        let rows = input
            .chunks_exact(self.dims)
            .zip(reconstruction.chunks_exact(self.dims));
        for ((x, r), w) in rows.zip(&self.time_weights) {
            for ((e, a), b) in errors.iter_mut().zip(x).zip(r) {
                let d = a - b;
                *e += w * d * d;
            }
        }
    }

    /// Normalised error of each metric into `errors` (length `dims`).
    pub fn normalised_errors(&self, input: &[f32], reconstruction: &[f32], errors: &mut [f32]) {
        self.weighted_errors(input, reconstruction, errors);
        for (e, s) in errors.iter_mut().zip(&self.dim_scale) {
            *e /= s;
        }
    }

    /// Each metric's share of the window's error (sums to 1 unless every error is zero).
    pub fn contributions(&self, input: &[f32], reconstruction: &[f32], shares: &mut [f32]) {
        self.normalised_errors(input, reconstruction, shares);
        let total: f32 = shares.iter().sum();
        if total > 0.0 {
            shares.iter_mut().for_each(|s| *s /= total);
        }
    }
}

/// Weights `decay^(window-1-t)` for t = 0 (oldest) .. window-1 (newest), normalised to sum 1.
fn time_weights(window: usize, decay: f32) -> Vec<f32> {
    let raw: Vec<f32> = (0..window)
        .map(|t| decay.powi((window - 1 - t) as i32))
        .collect();
    let total: f32 = raw.iter().sum();
    raw.into_iter().map(|w| w / total).collect()
}

/// A streaming moving average of the last `len` scores of one entity, so that a single noisy
/// window does not decide alone.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ScoreSmoother {
    recent: Vec<f32>,
    next: usize,
    filled: usize,
}

impl ScoreSmoother {
    /// Bytes it holds on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.recent.capacity() * std::mem::size_of::<f32>()
    }

    /// A smoother over the last `len` scores (`len` 1 passes scores through).
    pub fn new(len: usize) -> Self {
        Self {
            recent: vec![0.0; len.max(1)],
            next: 0,
            filled: 0,
        }
    }

    /// Adds `score` and returns the mean of the last `len` scores seen (fewer at the start).
    pub fn push(&mut self, score: f32) -> f32 {
        self.recent[self.next] = score;
        self.next = (self.next + 1) % self.recent.len();
        self.filled = (self.filled + 1).min(self.recent.len());
        // Summing a handful of values beats keeping a running sum that drifts in f32.
        let sum: f32 = if self.filled == self.recent.len() {
            self.recent.iter().sum()
        } else {
            self.recent[..self.filled].iter().sum()
        };
        sum / self.filled as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_weights_favour_the_newest_step_and_sum_to_one() {
        let w = time_weights(3, 0.5);
        // raw 0.25, 0.5, 1 over 1.75
        assert!((w[0] - 0.25 / 1.75).abs() < 1e-6);
        assert!((w[2] - 1.0 / 1.75).abs() < 1e-6);
        assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(time_weights(4, 1.0), vec![0.25; 4]);
    }

    #[test]
    fn errors_are_normalised_by_the_held_out_error_of_each_metric() {
        // Two rows, two metrics, equal weights. Held-out errors: metric 0 errs by 0.1, metric 1 by 0.2.
        let inputs = [0.0, 0.0, 0.0, 0.0];
        let recon = [0.1, 0.2, 0.1, 0.2];
        let p = ErrorProfile::fit(2, 2, 1.0, &inputs, &recon).unwrap();
        assert!((p.dim_scale[0] - 0.01).abs() < 1e-6);
        assert!((p.dim_scale[1] - 0.04).abs() < 1e-6);
        // A window erring by 0.3 on metric 0 only: normalised errors [9, 0].
        let mut e = [0.0; 2];
        p.normalised_errors(&[0.3, 0.0, 0.3, 0.0], &[0.0; 4], &mut e);
        assert!((e[0] - 9.0).abs() < 1e-4, "{e:?}");
        assert_eq!(e[1], 0.0);
        let mut shares = [0.0; 2];
        p.contributions(&[0.3, 0.0, 0.3, 0.0], &[0.0; 4], &mut shares);
        assert_eq!(shares, [1.0, 0.0]);
    }

    #[test]
    fn a_metric_constant_in_training_gets_the_minimum_scale() {
        let p = ErrorProfile::fit(1, 1, 1.0, &[0.5, 0.5], &[0.5, 0.5]).unwrap();
        assert_eq!(p.dim_scale, vec![MIN_DIM_SCALE]);
    }

    #[test]
    fn metric_floors_raise_only_the_metrics_below_them() {
        let mut p = ErrorProfile::fit(1, 2, 1.0, &[0.0, 0.0], &[0.1, 0.5]).unwrap();
        p.raise_metric_floors(&[0.05, 0.05]);
        assert_eq!(p.dim_scale, vec![0.05, 0.25]);
    }

    #[test]
    fn bad_shapes_and_decays_are_refused() {
        assert!(ErrorProfile::fit(2, 2, 1.0, &[0.0; 3], &[0.0; 3]).is_err());
        assert!(ErrorProfile::fit(2, 2, 1.0, &[0.0; 4], &[0.0; 8]).is_err());
        assert!(ErrorProfile::fit(2, 2, 0.0, &[0.0; 4], &[0.0; 4]).is_err());
        assert!(ErrorProfile::fit(2, 2, f32::NAN, &[0.0; 4], &[0.0; 4]).is_err());
    }

    #[test]
    fn smoother_averages_the_last_scores() {
        let mut s = ScoreSmoother::new(3);
        assert_eq!(s.push(3.0), 3.0);
        assert_eq!(s.push(6.0), 4.5);
        assert_eq!(s.push(9.0), 6.0);
        assert_eq!(s.push(0.0), 5.0);
        let mut one = ScoreSmoother::new(1);
        assert_eq!(one.push(2.0), 2.0);
        assert_eq!(one.push(7.0), 7.0);
    }
}
