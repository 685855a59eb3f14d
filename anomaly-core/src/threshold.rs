//! Threshold calibration from training scores only.
//!
//! A window is anomalous when its score [`exceeds`] a threshold. The threshold is derived from
//! the scores of the (presumed normal) training data alone, never from test labels, so that a
//! reported result is not tuned on the data it is measured on.
//!
//! Two calibrations are offered:
//! - [`quantile_threshold`]: the empirical `1 - false_alarm_rate` quantile. Simple, but it cannot
//!   go beyond the largest training score, so very small rates are estimated poorly.
//! - [`pot_threshold`]: peaks over threshold (POT) as in SPOT (Siffer et al., KDD 2017), used by
//!   OmniAnomaly. The tail above a high initial quantile is modelled by a generalised Pareto
//!   distribution (GPD), which extrapolates to risks far smaller than `1 / n`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The crate's single definition of "a score exceeds a threshold": strictly greater.
///
/// A NaN score (or threshold) never exceeds, because every comparison with NaN is false: a broken
/// score cannot raise an alarm on its own.
pub fn exceeds(score: f64, threshold: f64) -> bool {
    score > threshold
}

/// The `q` quantile of `values`, interpolating linearly between order statistics (Hyndman–Fan
/// type 7, numpy's default): position `q * (n - 1)` in the sorted values.
///
/// Errors when `values` is empty, `q` is outside `[0, 1]` or a value is not finite.
pub fn quantile(values: &[f64], q: f64) -> Result<f64> {
    if values.is_empty() {
        return Err(Error::InvalidInput("quantile of an empty sample".into()));
    }
    if !(0.0..=1.0).contains(&q) {
        return Err(Error::InvalidInput(format!(
            "quantile level {q} is outside [0, 1]"
        )));
    }
    if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
        return Err(Error::InvalidInput(format!(
            "quantile of a sample holding {bad}"
        )));
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let position = q * (sorted.len() - 1) as f64;
    let below = sorted[position.floor() as usize];
    let above = sorted[position.ceil() as usize];
    Ok(below + position.fract() * (above - below))
}

/// The empirical `1 - false_alarm_rate` quantile of the training scores: about that fraction of
/// training windows [`exceeds`] it.
///
/// Errors when `false_alarm_rate` is outside `[0, 1]` or as [`quantile`] does.
pub fn quantile_threshold(train_scores: &[f64], false_alarm_rate: f64) -> Result<f64> {
    if !(0.0..=1.0).contains(&false_alarm_rate) {
        return Err(Error::InvalidInput(format!(
            "false alarm rate {false_alarm_rate} is outside [0, 1]"
        )));
    }
    quantile(train_scores, 1.0 - false_alarm_rate)
}

/// Settings of a peaks-over-threshold calibration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PotConfig {
    /// Quantile of the training scores above which the tail is modelled (SPOT's "level"),
    /// e.g. 0.98.
    /// Must lie in `(0, 1)`.
    pub initial_quantile: f64,
    /// Target probability of a normal window exceeding the final threshold (SPOT's `q`), e.g. 1e-4.
    /// Must lie in `(0, 1 - initial_quantile)`: a larger risk would put the threshold below the
    /// start of the modelled tail.
    pub risk: f64,
}

impl PotConfig {
    /// Checks the ranges documented on the fields.
    pub fn validate(&self) -> Result<()> {
        let Self {
            initial_quantile,
            risk,
        } = *self;
        if !(initial_quantile > 0.0 && initial_quantile < 1.0) {
            return Err(Error::InvalidInput(format!(
                "POT initial quantile {initial_quantile} is outside (0, 1)"
            )));
        }
        if !(risk > 0.0 && risk < 1.0 - initial_quantile) {
            return Err(Error::InvalidInput(format!(
                "POT risk {risk} is outside (0, 1 - initial quantile {initial_quantile})"
            )));
        }
        Ok(())
    }
}

/// How the generalised Pareto tail of a [`PotFit`] was estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GpdEstimator {
    /// Maximum likelihood by Grimshaw's reduction, the normal case.
    MaximumLikelihood,
    /// Method of moments, the fallback when the maximum-likelihood tail gives no finite threshold.
    Moments,
}

/// The result of [`pot_threshold`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PotFit {
    /// The calibrated threshold `z_q`; never below `initial_threshold`.
    pub threshold: f64,
    /// The `initial_quantile` quantile `t` of the training scores, where the modelled tail starts.
    pub initial_threshold: f64,
    /// GPD shape `gamma` of the excesses over `t`: 0 is an exponential tail, > 0 heavier,
    /// < 0 bounded.
    pub shape: f64,
    /// GPD scale `sigma` of the excesses over `t`, > 0.
    pub scale: f64,
    /// How many training scores exceed `t` (the peaks the tail was fitted to).
    pub peaks: usize,
    /// Which estimator produced `shape` and `scale`.
    pub estimator: GpdEstimator,
}

/// Fewer peaks than this give a tail fit too noisy to extrapolate from.
pub const MIN_POT_PEAKS: usize = 10;

/// Peaks-over-threshold calibration (SPOT's initialisation step).
///
/// 1. `t` = the `initial_quantile` quantile of the training scores; the peaks are the scores that
///    [`exceeds`] it, and their excesses `y = score - t` are modelled by a GPD.
/// 2. The GPD is fitted by maximum likelihood using Grimshaw's trick: with `x = gamma / sigma`,
///    the likelihood equations reduce to the roots of the one-dimensional function
///    `w(x) = u(x) v(x) - 1`, `u(x) = mean(1 / (1 + x y))`, `v(x) = 1 + mean(ln(1 + x y))`, and a
///    root gives `gamma = v(x) - 1`, `sigma = gamma / x`. Roots are bracketed on a grid over
///    `(-1 / max y, 0)` and `(0, 2 (mean y - min y) / (min y)^2)` (Grimshaw's bounds), leaving out
///    `|gamma| < ~1e-4` where `w` is rounding noise, and refined by bisection; the exponential
///    tail (`gamma = 0`, `sigma = mean y`) is always a candidate, and the candidate with the
///    highest log-likelihood wins.
/// 3. `z_q = t + sigma / gamma * ((risk * n / peaks)^(-gamma) - 1)`, computed with `expm1` so
///    that it tends smoothly to the exponential limit `t - sigma * ln(risk * n / peaks)` as
///    `gamma -> 0`.
///
/// If the maximum-likelihood tail yields no finite threshold (an extreme shape overflowing the
/// power), the tail is refitted by the method of moments (`gamma = (1 - mean^2 / var) / 2`,
/// `sigma = mean (1 + mean^2 / var) / 2`, always with `gamma < 1/2`) and [`PotFit::estimator`]
/// says so. The threshold is never NaN and never below `t`.
///
/// Errors when the configuration is invalid, the scores are empty or not all finite, fewer than
/// [`MIN_POT_PEAKS`] scores exceed `t`, ties at `t` leave so few peaks that `risk` is not below
/// their observed frequency, or neither estimator gives a finite threshold.
pub fn pot_threshold(train_scores: &[f64], cfg: &PotConfig) -> Result<PotFit> {
    cfg.validate()?;
    let initial_threshold = quantile(train_scores, cfg.initial_quantile)?;
    let excesses: Vec<f64> = train_scores
        .iter()
        .filter(|&&score| exceeds(score, initial_threshold))
        .map(|score| score - initial_threshold)
        .collect();
    if excesses.len() < MIN_POT_PEAKS {
        return Err(Error::InvalidInput(format!(
            "POT needs at least {MIN_POT_PEAKS} training scores above the initial threshold \
             {initial_threshold}, got {}",
            excesses.len()
        )));
    }
    // The target tail probability relative to the observed probability of exceeding t.
    let tail_ratio = cfg.risk * train_scores.len() as f64 / excesses.len() as f64;
    if tail_ratio >= 1.0 {
        return Err(Error::InvalidInput(format!(
            "POT risk {} is not below the observed exceedance rate {} (ties at the initial \
             threshold)",
            cfg.risk,
            excesses.len() as f64 / train_scores.len() as f64
        )));
    }

    let maximum_likelihood = fit_maximum_likelihood(&excesses);
    let (tail, estimator, excess) = match excess_quantile(maximum_likelihood, tail_ratio) {
        Some(excess) => (maximum_likelihood, GpdEstimator::MaximumLikelihood, excess),
        None => {
            let degenerate =
                || Error::InvalidInput("POT tail fit degenerates under every estimator".into());
            let moments = fit_moments(&excesses).ok_or_else(degenerate)?;
            let excess = excess_quantile(moments, tail_ratio).ok_or_else(degenerate)?;
            (moments, GpdEstimator::Moments, excess)
        }
    };
    let threshold = initial_threshold + excess;
    if !threshold.is_finite() {
        return Err(Error::InvalidInput(format!(
            "POT threshold overflows: {threshold}"
        )));
    }
    Ok(PotFit {
        threshold,
        initial_threshold,
        shape: tail.shape,
        scale: tail.scale,
        peaks: excesses.len(),
        estimator,
    })
}

/// How the alarm threshold is derived from training scores; serialisable so that it can live in
/// a model's configuration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Calibration {
    /// [`quantile_threshold`] at the given rate.
    Quantile {
        /// Fraction of training windows allowed to exceed the threshold.
        false_alarm_rate: f64,
    },
    /// [`pot_threshold`] with these settings (see [`PotConfig`]).
    Pot {
        /// See [`PotConfig::initial_quantile`].
        initial_quantile: f64,
        /// See [`PotConfig::risk`].
        risk: f64,
    },
}

impl Default for Calibration {
    /// POT from the 0.95 quantile at risk 1e-2. The tail is modelled from the top 5% of held-out
    /// training scores (enough peaks from a few hundred windows). A risk of 1e-2 rather than
    /// 1e-3 was chosen on the SMD development machines (docs/DETECTION.md): test-time normal
    /// scores drift above held-out ones, so a stricter threshold lost most anomalies while the
    /// event rules of [`crate::alerting`] already filter isolated exceedances.
    fn default() -> Self {
        Self::Pot {
            initial_quantile: 0.95,
            risk: 1e-2,
        }
    }
}

impl Calibration {
    /// The threshold this calibration derives from `train_scores`.
    pub fn threshold(&self, train_scores: &[f64]) -> Result<f64> {
        match *self {
            Self::Quantile { false_alarm_rate } => {
                quantile_threshold(train_scores, false_alarm_rate)
            }
            Self::Pot {
                initial_quantile,
                risk,
            } => pot_threshold(
                train_scores,
                &PotConfig {
                    initial_quantile,
                    risk,
                },
            )
            .map(|fit| fit.threshold),
        }
    }
}

/// A generalised Pareto distribution of excesses over a threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Gpd {
    shape: f64,
    scale: f64,
}

/// The excess over `t` whose GPD survival probability is `tail_ratio` (in `(0, 1)`), or `None`
/// when the parameters or the result are not usable.
fn excess_quantile(tail: Gpd, tail_ratio: f64) -> Option<f64> {
    if !(tail.shape.is_finite() && tail.scale.is_finite() && tail.scale > 0.0) {
        return None;
    }
    let log_ratio = tail_ratio.ln();
    let excess = if tail.shape == 0.0 {
        -tail.scale * log_ratio
    } else {
        // expm1 keeps full precision as shape -> 0, where the formula tends to the exponential one.
        tail.scale * (-tail.shape * log_ratio).exp_m1() / tail.shape
    };
    (excess.is_finite() && excess >= 0.0).then_some(excess)
}

/// Log-likelihood of `excesses` under `tail`, `None` outside the support or when not finite.
fn log_likelihood(excesses: &[f64], tail: Gpd) -> Option<f64> {
    if !(tail.scale.is_finite() && tail.scale > 0.0) {
        return None;
    }
    let n = excesses.len() as f64;
    let likelihood = if tail.shape == 0.0 {
        -n * tail.scale.ln() - excesses.iter().sum::<f64>() / tail.scale
    } else {
        let mut sum_log = 0.0;
        for &y in excesses {
            let stretched = 1.0 + tail.shape * y / tail.scale;
            if stretched <= 0.0 {
                return None;
            }
            sum_log += stretched.ln();
        }
        -n * tail.scale.ln() - (1.0 + 1.0 / tail.shape) * sum_log
    };
    likelihood.is_finite().then_some(likelihood)
}

/// Maximum-likelihood GPD fit by Grimshaw's reduction (see [`pot_threshold`]). `excesses` must be
/// non-empty and positive; the exponential candidate guarantees a finite answer.
fn fit_maximum_likelihood(excesses: &[f64]) -> Gpd {
    let mean = mean(excesses);
    let mut best = Gpd {
        shape: 0.0,
        scale: mean,
    };
    let mut best_likelihood = log_likelihood(excesses, best).unwrap_or(f64::NEG_INFINITY);
    for x in grimshaw_roots(excesses) {
        let shape = grimshaw_v(excesses, x) - 1.0;
        let candidate = Gpd {
            shape,
            scale: shape / x,
        };
        if let Some(likelihood) = log_likelihood(excesses, candidate)
            && likelihood > best_likelihood
        {
            best = candidate;
            best_likelihood = likelihood;
        }
    }
    best
}

/// Points per side of the grid on which sign changes of `w` are looked for.
const GRID_POINTS: usize = 400;
/// Bisection steps per bracketed root: 2^-60 of the bracket is below f64 resolution.
const BISECTION_STEPS: usize = 60;
/// The grid stays where |gamma| is at least about this. Nearer 0, `w(x)` is O(gamma^2) and drowns
/// in rounding noise (spurious sign changes), and the exponential candidate represents such
/// tails anyway.
const NEGLIGIBLE_SHAPE: f64 = 1e-4;

/// Roots of Grimshaw's `w(x)` in `(-1 / max y, 0)` and `(0, 2 (mean - min) / min^2)`.
fn grimshaw_roots(excesses: &[f64]) -> Vec<f64> {
    let max = excesses.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = excesses.iter().copied().fold(f64::INFINITY, f64::min);
    let mean = mean(excesses);
    let w = |x: f64| grimshaw_u(excesses, x) * grimshaw_v(excesses, x) - 1.0;
    // |gamma| ~ |x| * mean for small x: nearer 0 than this the exponential candidate suffices.
    let nearest_to_zero = NEGLIGIBLE_SHAPE / mean;

    // Negative side: the support limit -1/max matters as much as 0, so the grid is uniform in the
    // logit of the fraction of the way to it, dense at both ends (up to 1 - 1e-7). When even the
    // first fraction is large, every shape on this side is negligible (max >> mean).
    let support_limit = -1.0 / max;
    let first_fraction = nearest_to_zero * max;
    let negative: Vec<f64> = if first_fraction < 0.5 {
        let (first_logit, last_logit) = (logit(first_fraction), 16.0);
        (0..GRID_POINTS)
            .map(|i| {
                let step = (last_logit - first_logit) / (GRID_POINTS - 1) as f64;
                support_limit * logistic(first_logit + step * i as f64)
            })
            .collect()
    } else {
        Vec::new()
    };

    // Positive side: the upper bound grows like 1/min^2 and may be astronomically far from the
    // roots of near-exponential tails, so the grid is geometric.
    let upper = 2.0 * (mean - min) / (min * min);
    let positive: Vec<f64> = if upper.is_finite() && upper > nearest_to_zero {
        let log_span = (upper / nearest_to_zero).ln();
        (0..GRID_POINTS)
            .map(|i| nearest_to_zero * (log_span * i as f64 / (GRID_POINTS - 1) as f64).exp())
            .collect()
    } else {
        Vec::new()
    };

    let mut roots = bracketed_roots(&negative, &w);
    roots.extend(bracketed_roots(&positive, &w));
    roots
}

/// Roots of `f` between consecutive grid points where it changes sign, refined by bisection.
fn bracketed_roots(grid: &[f64], f: &impl Fn(f64) -> f64) -> Vec<f64> {
    let values: Vec<f64> = grid.iter().map(|&x| f(x)).collect();
    let mut roots = Vec::new();
    for i in 1..grid.len() {
        let (mut a, mut b) = (grid[i - 1], grid[i]);
        let (fa, fb) = (values[i - 1], values[i]);
        if !(fa.is_finite() && fb.is_finite()) || fa.signum() == fb.signum() {
            continue;
        }
        let mut fa = fa;
        for _ in 0..BISECTION_STEPS {
            let middle = 0.5 * (a + b);
            let fm = f(middle);
            if fm.signum() == fa.signum() {
                (a, fa) = (middle, fm);
            } else {
                b = middle;
            }
        }
        roots.push(0.5 * (a + b));
    }
    roots
}

/// Grimshaw's `u(x) = mean(1 / (1 + x y))`.
fn grimshaw_u(excesses: &[f64], x: f64) -> f64 {
    excesses.iter().map(|&y| 1.0 / (1.0 + x * y)).sum::<f64>() / excesses.len() as f64
}

/// Grimshaw's `v(x) = 1 + mean(ln(1 + x y))`; at a root, `gamma = v(x) - 1`.
fn grimshaw_v(excesses: &[f64], x: f64) -> f64 {
    1.0 + excesses.iter().map(|&y| (x * y).ln_1p()).sum::<f64>() / excesses.len() as f64
}

/// Method-of-moments GPD fit (population variance), `None` when the spread is zero or overflows.
fn fit_moments(excesses: &[f64]) -> Option<Gpd> {
    let mean = mean(excesses);
    let variance = excesses.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / excesses.len() as f64;
    if !(variance.is_finite() && variance > 0.0) {
        return None;
    }
    let squared_mean_over_variance = mean * mean / variance;
    Some(Gpd {
        shape: 0.5 * (1.0 - squared_mean_over_variance),
        scale: 0.5 * mean * (1.0 + squared_mean_over_variance),
    })
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn logistic(s: f64) -> f64 {
    1.0 / (1.0 + (-s).exp())
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64: a tiny deterministic generator, so that the statistical tests are reproducible.
    struct SplitMix64(u64);

    impl SplitMix64 {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in the open interval (0, 1), so that inverse CDFs never see 0 or 1.
        fn uniform(&mut self) -> f64 {
            ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
    }

    fn exponential_samples(rate: f64, n: usize, seed: u64) -> Vec<f64> {
        let mut rng = SplitMix64(seed);
        (0..n).map(|_| -rng.uniform().ln() / rate).collect()
    }

    /// Inverse CDF of GPD(shape, scale): sigma / gamma * ((1 - U)^-gamma - 1).
    fn gpd_samples(shape: f64, scale: f64, n: usize, seed: u64) -> Vec<f64> {
        let mut rng = SplitMix64(seed);
        (0..n)
            .map(|_| scale / shape * (rng.uniform().powf(-shape) - 1.0))
            .collect()
    }

    fn relative_error(actual: f64, expected: f64) -> f64 {
        ((actual - expected) / expected).abs()
    }

    #[test]
    fn exceeds_is_strict_and_nan_never_exceeds() {
        assert!(exceeds(1.5, 1.0));
        assert!(!exceeds(1.0, 1.0));
        assert!(!exceeds(f64::NAN, 1.0));
        assert!(!exceeds(2.0, f64::NAN));
    }

    #[test]
    fn quantile_of_0_to_100_is_the_percentile() {
        let values: Vec<f64> = (0..=100).rev().map(f64::from).collect();
        assert_eq!(quantile(&values, 0.0).unwrap(), 0.0);
        assert_eq!(quantile(&values, 0.5).unwrap(), 50.0);
        assert_eq!(quantile(&values, 0.98).unwrap(), 98.0);
        assert_eq!(quantile(&values, 1.0).unwrap(), 100.0);
        assert!((quantile(&values, 0.255).unwrap() - 25.5).abs() < 1e-12);
    }

    #[test]
    fn quantile_interpolates_between_order_statistics() {
        // Sorted [1, 2, 4, 8]; q = 0.5 -> position 1.5 -> 2 + 0.5 * (4 - 2) = 3 (numpy: 3.0).
        assert_eq!(quantile(&[8.0, 1.0, 4.0, 2.0], 0.5).unwrap(), 3.0);
        // q = 0.9 -> position 2.7 -> 4 + 0.7 * 4 = 6.8.
        assert!((quantile(&[8.0, 1.0, 4.0, 2.0], 0.9).unwrap() - 6.8).abs() < 1e-12);
        assert_eq!(quantile(&[7.0], 0.3).unwrap(), 7.0);
    }

    #[test]
    fn quantile_rejects_bad_input() {
        assert!(quantile(&[], 0.5).is_err());
        assert!(quantile(&[1.0, f64::NAN], 0.5).is_err());
        assert!(quantile(&[1.0, f64::INFINITY], 0.5).is_err());
        assert!(quantile(&[1.0, 2.0], 1.5).is_err());
        assert!(quantile(&[1.0, 2.0], -0.1).is_err());
        assert!(quantile(&[1.0, 2.0], f64::NAN).is_err());
    }

    #[test]
    fn quantile_threshold_is_the_complementary_quantile() {
        let values: Vec<f64> = (0..=100).map(f64::from).collect();
        assert_eq!(quantile_threshold(&values, 0.1).unwrap(), 90.0);
        assert!(quantile_threshold(&values, 1.1).is_err());
        assert!(quantile_threshold(&[], 0.1).is_err());
    }

    #[test]
    fn quantile_threshold_of_exponential_samples_is_near_the_true_quantile() {
        let samples = exponential_samples(2.0, 200_000, 7);
        let expected = -(1e-3f64).ln() / 2.0; // 3.4539
        let threshold = quantile_threshold(&samples, 1e-3).unwrap();
        assert!(
            relative_error(threshold, expected) < 0.04,
            "{threshold} vs {expected}"
        );
    }

    #[test]
    fn pot_on_exponential_samples_finds_the_true_quantile() {
        let samples = exponential_samples(2.0, 200_000, 42);
        let cfg = PotConfig {
            initial_quantile: 0.98,
            risk: 1e-4,
        };
        let fit = pot_threshold(&samples, &cfg).unwrap();
        let expected = -(1e-4f64).ln() / 2.0; // 4.6052, beyond what 200k samples pin down well
        assert!(
            relative_error(fit.threshold, expected) < 0.05,
            "{fit:?} vs {expected}"
        );
        // Exponential excesses are memoryless: shape 0, scale 1 / rate.
        assert!(fit.shape.abs() < 0.05, "{fit:?}");
        assert!(relative_error(fit.scale, 0.5) < 0.05, "{fit:?}");
        assert!(relative_error(fit.initial_threshold, -(0.02f64).ln() / 2.0) < 0.02);
        assert_eq!(fit.peaks, 4_000);
        assert_eq!(fit.estimator, GpdEstimator::MaximumLikelihood);
    }

    #[test]
    fn pot_recovers_a_heavy_tail_shape() {
        // Excesses of GPD(0.3, 1) over t are GPD(0.3, 1 + 0.3 t): same shape.
        let (shape, scale, risk) = (0.3, 1.0, 1e-4);
        let samples = gpd_samples(shape, scale, 100_000, 3);
        let fit = pot_threshold(
            &samples,
            &PotConfig {
                initial_quantile: 0.95,
                risk,
            },
        )
        .unwrap();
        assert!((fit.shape - shape).abs() < 0.06, "{fit:?}");
        let t = fit.initial_threshold;
        assert!(
            relative_error(fit.scale, scale + shape * t) < 0.08,
            "{fit:?}"
        );
        let expected = scale / shape * (risk.powf(-shape) - 1.0); // 51.8
        assert!(
            relative_error(fit.threshold, expected) < 0.15,
            "{fit:?} vs {expected}"
        );
    }

    #[test]
    fn pot_recovers_a_bounded_tail_shape() {
        // GPD(-0.25, 1) is bounded by scale / |shape| = 4.
        let (shape, scale, risk) = (-0.25, 1.0, 1e-4);
        let samples = gpd_samples(shape, scale, 100_000, 11);
        let fit = pot_threshold(
            &samples,
            &PotConfig {
                initial_quantile: 0.95,
                risk,
            },
        )
        .unwrap();
        assert!((fit.shape - shape).abs() < 0.06, "{fit:?}");
        let expected = scale / shape * (risk.powf(-shape) - 1.0); // 3.6
        assert!(
            relative_error(fit.threshold, expected) < 0.03,
            "{fit:?} vs {expected}"
        );
        assert!(fit.threshold <= 4.0 + 0.1, "{fit:?}");
    }

    #[test]
    fn pot_threshold_is_never_below_the_initial_threshold() {
        // Few distinct values: a tail that barely extrapolates.
        let samples: Vec<f64> = (0..1_000).map(|i| f64::from(i % 50)).collect();
        let fit = pot_threshold(
            &samples,
            &PotConfig {
                initial_quantile: 0.9,
                risk: 0.01,
            },
        )
        .unwrap();
        assert!(fit.threshold.is_finite());
        assert!(fit.threshold >= fit.initial_threshold, "{fit:?}");
    }

    #[test]
    fn pot_rejects_bad_input() {
        let cfg = PotConfig {
            initial_quantile: 0.98,
            risk: 1e-3,
        };
        assert!(pot_threshold(&[], &cfg).is_err());
        let mut samples = exponential_samples(1.0, 10_000, 1);
        samples[5] = f64::NAN;
        assert!(pot_threshold(&samples, &cfg).is_err());
        // 200 samples at 0.98 leave only 4 peaks.
        assert!(pot_threshold(&exponential_samples(1.0, 200, 1), &cfg).is_err());
        // Constant scores: nothing exceeds the initial threshold.
        assert!(pot_threshold(&[1.0; 10_000], &cfg).is_err());
        let samples = exponential_samples(1.0, 10_000, 1);
        for bad in [
            PotConfig {
                initial_quantile: 1.0,
                risk: 1e-3,
            },
            PotConfig {
                initial_quantile: 0.98,
                risk: 0.0,
            },
            PotConfig {
                initial_quantile: 0.98,
                risk: 0.02,
            },
            PotConfig {
                initial_quantile: f64::NAN,
                risk: 1e-3,
            },
        ] {
            assert!(pot_threshold(&samples, &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pot_rejects_a_risk_above_the_frequency_of_peaks_left_by_ties() {
        // 0.9 quantile is 0, tied by 950 of 1000 scores: 50 peaks, frequency 0.05 < risk 0.08.
        let samples: Vec<f64> = (0..1_000)
            .map(|i| if i < 950 { 0.0 } else { f64::from(i) })
            .collect();
        assert!(
            pot_threshold(
                &samples,
                &PotConfig {
                    initial_quantile: 0.9,
                    risk: 0.08
                }
            )
            .is_err()
        );
    }

    #[test]
    fn moments_fit_matches_hand_computation() {
        // Excesses [1, 2, 3]: mean 2, population variance 2/3, mean^2 / var = 6.
        let tail = fit_moments(&[1.0, 2.0, 3.0]).unwrap();
        assert!((tail.shape - -2.5).abs() < 1e-12);
        assert!((tail.scale - 7.0).abs() < 1e-12);
        assert_eq!(fit_moments(&[2.0, 2.0]), None);
    }

    #[test]
    fn excess_quantile_rejects_overflowing_tails_and_matches_the_exponential_limit() {
        assert_eq!(
            excess_quantile(
                Gpd {
                    shape: 500.0,
                    scale: 1.0
                },
                1e-3
            ),
            None
        );
        assert_eq!(
            excess_quantile(
                Gpd {
                    shape: 0.1,
                    scale: 0.0
                },
                1e-3
            ),
            None
        );
        let exponential = excess_quantile(
            Gpd {
                shape: 0.0,
                scale: 2.0,
            },
            0.01,
        )
        .unwrap();
        assert!((exponential - 2.0 * 100f64.ln()).abs() < 1e-12);
        let nearly = excess_quantile(
            Gpd {
                shape: 1e-12,
                scale: 2.0,
            },
            0.01,
        )
        .unwrap();
        assert!((nearly - exponential).abs() < 1e-9);
        // shape 1, scale 1, ratio 0.25: (0.25^-1 - 1) = 3.
        let heavy = excess_quantile(
            Gpd {
                shape: 1.0,
                scale: 1.0,
            },
            0.25,
        )
        .unwrap();
        assert!((heavy - 3.0).abs() < 1e-12);
    }

    #[test]
    fn maximum_likelihood_beats_the_exponential_candidate_on_heavy_tails() {
        let excesses = gpd_samples(0.5, 1.0, 5_000, 5);
        let fitted = fit_maximum_likelihood(&excesses);
        let exponential = Gpd {
            shape: 0.0,
            scale: mean(&excesses),
        };
        assert!(
            log_likelihood(&excesses, fitted).unwrap()
                > log_likelihood(&excesses, exponential).unwrap()
        );
        assert!((fitted.shape - 0.5).abs() < 0.06, "{fitted:?}");
    }

    #[test]
    fn calibration_dispatches_and_round_trips_through_json() {
        let values: Vec<f64> = (0..=100).map(f64::from).collect();
        let quantile = Calibration::Quantile {
            false_alarm_rate: 0.1,
        };
        assert_eq!(quantile.threshold(&values).unwrap(), 90.0);

        let samples = exponential_samples(2.0, 50_000, 9);
        let pot = Calibration::default();
        let expected = pot_threshold(
            &samples,
            &PotConfig {
                initial_quantile: 0.95,
                risk: 1e-2,
            },
        )
        .unwrap()
        .threshold;
        assert_eq!(pot.threshold(&samples).unwrap(), expected);

        let json = serde_json::to_string(&pot).unwrap();
        assert_eq!(serde_json::from_str::<Calibration>(&json).unwrap(), pot);
    }
}
