//! Per-metric scaling fitted on training data, stored with the model and applied to every sample.
//!
//! [`Scaler::transform_into`] is the hot path: it writes into a caller-owned buffer and allocates
//! nothing. Its policy for bad and extreme values is documented on [`Scaler`].

use serde::{Deserialize, Serialize};

use crate::dataset::Series;
use crate::{Error, Result};

/// Default [`ScalerConfig::clip`]: far enough that ordinary anomalies keep their magnitude, close
/// enough that a broken counter (1e18 bytes/s) cannot dominate a model's input.
pub const DEFAULT_CLIP: f64 = 10.0;

/// A dimension whose training spread is at most this fraction of its magnitude (largest absolute
/// training value, at least 1) counts as constant. Its spread is then taken as 1: the dimension is
/// centred but not divided, as scikit-learn does. Dividing by a tiny floor instead would send any
/// later jitter of a metric that never moved in training to the clip bound on every sample.
pub const CONSTANT_RELATIVE_SPREAD: f64 = 1e-9;

/// [`ValueFlags`] says which dimensions were flagged for the first this many dimensions; its counts
/// cover all dimensions.
pub const FLAGGED_DIMS_TRACKED: usize = 64;

/// How raw values map to scaled units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScalerKind {
    /// Training minimum to 0, training maximum to 1.
    MinMax,
    /// Training mean to 0, one (population) standard deviation to 1: z-scores.
    Standard,
}

/// How to fit a [`Scaler`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScalerConfig {
    /// The mapping.
    pub kind: ScalerKind,
    /// How far outside the training range a scaled value may go, in scaled units: outputs are clipped
    /// to `[-clip, 1 + clip]` for [`ScalerKind::MinMax`] and `[-clip, clip]` for
    /// [`ScalerKind::Standard`]. Must be finite and non-negative.
    pub clip: f64,
}

impl Default for ScalerConfig {
    /// Min-max scaling clipped at [`DEFAULT_CLIP`].
    fn default() -> Self {
        Self {
            kind: ScalerKind::MinMax,
            clip: DEFAULT_CLIP,
        }
    }
}

/// Per-dimension affine scaling `(x - offset) / spread`, fitted on training data.
///
/// Policy for values that do not scale cleanly, applied by [`Scaler::transform_into`]:
/// - a NaN or ±infinity is replaced by the scaled training mean of its dimension (what a typical
///   point looks like, so one broken reading does not look like an anomaly in itself) and counted in
///   [`ValueFlags::non_finite_count`];
/// - a finite value whose scaled value falls outside the clip bounds of [`ScalerConfig::clip`] is set
///   to the nearest bound and counted in [`ValueFlags::clipped_count`];
/// - hence every output is finite.
///
/// Fitting ignores non-finite training values; a dimension with none finite is an error. Dimensions
/// constant in training are handled as described at [`CONSTANT_RELATIVE_SPREAD`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "UncheckedScaler")]
pub struct Scaler {
    kind: ScalerKind,
    clip: f64,
    dims: Vec<DimScale>,
}

/// The scaling of one dimension, in raw units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct DimScale {
    offset: f64,
    /// Always finite and positive.
    spread: f64,
    /// Training mean: the stand-in for non-finite values.
    centre: f64,
}

impl DimScale {
    fn scale(&self, raw: f64) -> f64 {
        (raw - self.offset) / self.spread
    }
}

impl Scaler {
    /// Fits one scaling per dimension of `train`, skipping its non-finite values.
    ///
    /// Fails with [`Error::InvalidInput`] when `train` has no row, a dimension has no finite value or
    /// values too large to scale, or `cfg.clip` is negative or not finite.
    pub fn fit(train: &Series, cfg: &ScalerConfig) -> Result<Scaler> {
        Self::fit_with_floors(train, cfg, &vec![0.0; train.dims()])
    }

    /// Like [`Scaler::fit`], with a smallest spread per dimension (0: none), in raw units. A
    /// metric that barely moved during a short baseline (an idle disk, a quiet network) would
    /// otherwise turn the first ordinary blip into an extreme value; a floor such as 1 MB/s says
    /// what change is worth noticing.
    pub fn fit_with_floors(train: &Series, cfg: &ScalerConfig, floors: &[f64]) -> Result<Scaler> {
        check_clip(cfg.clip)?;
        if floors.len() != train.dims() || floors.iter().any(|f| !f.is_finite() || *f < 0.0) {
            return Err(Error::InvalidInput(format!(
                "expected {} finite, non-negative spread floors, got {floors:?}",
                train.dims()
            )));
        }
        if train.is_empty() {
            return Err(Error::InvalidInput(
                "cannot fit a scaler on an empty series".into(),
            ));
        }
        let mut stats = vec![RunningStats::default(); train.dims()];
        for row in train.iter_rows() {
            for (dim_stats, &value) in stats.iter_mut().zip(row) {
                if value.is_finite() {
                    dim_stats.push(value);
                }
            }
        }
        let dims = stats
            .iter()
            .enumerate()
            .map(|(dim, dim_stats)| dim_stats.to_scale(cfg.kind, dim, floors[dim]))
            .collect::<Result<Vec<_>>>()?;
        Ok(Scaler {
            kind: cfg.kind,
            clip: cfg.clip,
            dims,
        })
    }

    /// Scales one sample `raw` into `out` (both of length [`Scaler::dims`]) following the policy on
    /// [`Scaler`], and reports which values it had to replace or clip. Allocates nothing.
    ///
    /// Fails with [`Error::InvalidInput`] when a length differs from [`Scaler::dims`].
    pub fn transform_into(&self, raw: &[f64], out: &mut [f32]) -> Result<ValueFlags> {
        if raw.len() != self.dims.len() || out.len() != self.dims.len() {
            return Err(Error::InvalidInput(format!(
                "scaler has {} metrics, got {} values and an output of {}",
                self.dims.len(),
                raw.len(),
                out.len()
            )));
        }
        let (low, high) = self.bounds();
        let mut flags = ValueFlags::default();
        for (dim, ((&value, slot), scale)) in
            raw.iter().zip(out.iter_mut()).zip(&self.dims).enumerate()
        {
            let scaled = if value.is_finite() {
                // Finite input over finite positive spread cannot give NaN; overflow gives ±inf,
                // which the bounds catch.
                let scaled = scale.scale(value);
                if scaled < low || scaled > high {
                    flags.mark_clipped(dim);
                }
                scaled.clamp(low, high)
            } else {
                flags.mark_non_finite(dim);
                scale.scale(scale.centre).clamp(low, high)
            };
            // In range of f32 after clamping, so the narrowing cannot produce infinity.
            *slot = scaled as f32;
        }
        Ok(flags)
    }

    /// The raw value of dimension `dim` that scales to `scaled`; `None` when `dim` is out of range.
    /// Clipped and replaced values do not invert to their originals.
    pub fn inverse(&self, dim: usize, scaled: f32) -> Option<f64> {
        self.dims
            .get(dim)
            .map(|scale| scale.offset + f64::from(scaled) * scale.spread)
    }

    /// Number of dimensions the scaler was fitted on.
    pub fn dims(&self) -> usize {
        self.dims.len()
    }

    /// The mapping it applies.
    pub fn kind(&self) -> ScalerKind {
        self.kind
    }

    /// The clip distance it was fitted with, in scaled units.
    pub fn clip(&self) -> f64 {
        self.clip
    }

    /// Smallest and largest output, in scaled units.
    fn bounds(&self) -> (f64, f64) {
        match self.kind {
            ScalerKind::MinMax => (-self.clip, 1.0 + self.clip),
            ScalerKind::Standard => (-self.clip, self.clip),
        }
    }
}

fn check_clip(clip: f64) -> Result<()> {
    if clip.is_finite() && clip >= 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "scaler clip must be finite and non-negative, got {clip}"
        )))
    }
}

/// Count, extremes, mean and squared deviations of one dimension, updated one value at a time
/// (Welford's method, which stays accurate where `sum(x²) - n·mean²` would cancel).
#[derive(Debug, Clone, Copy, Default)]
struct RunningStats {
    count: u64,
    min: f64,
    max: f64,
    mean: f64,
    squared_deviations: f64,
}

impl RunningStats {
    fn push(&mut self, value: f64) {
        if self.count == 0 {
            (self.min, self.max) = (value, value);
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.count += 1;
        let delta = value - self.mean;
        self.mean += delta / self.count as f64;
        self.squared_deviations += delta * (value - self.mean);
    }

    fn to_scale(self, kind: ScalerKind, dim: usize, floor: f64) -> Result<DimScale> {
        if self.count == 0 {
            return Err(Error::InvalidInput(format!(
                "metric {dim} has no finite training value"
            )));
        }
        let (offset, spread) = match kind {
            ScalerKind::MinMax => (self.min, self.max - self.min),
            ScalerKind::Standard => (
                self.mean,
                (self.squared_deviations / self.count as f64).sqrt(),
            ),
        };
        if !spread.is_finite() || !self.mean.is_finite() {
            return Err(Error::InvalidInput(format!(
                "metric {dim} has training values too large to scale"
            )));
        }
        let magnitude = self.min.abs().max(self.max.abs()).max(1.0);
        let spread = if floor > 0.0 {
            spread.max(floor)
        } else if spread <= CONSTANT_RELATIVE_SPREAD * magnitude {
            1.0
        } else {
            spread
        };
        Ok(DimScale {
            offset,
            spread,
            centre: self.mean,
        })
    }
}

/// What [`Scaler::transform_into`] had to change in one sample. Counts cover every dimension; which
/// dimensions were flagged is known for the first [`FLAGGED_DIMS_TRACKED`], so the type stays `Copy`
/// and allocation-free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValueFlags {
    non_finite: usize,
    clipped: usize,
    non_finite_mask: u64,
    clipped_mask: u64,
}

impl ValueFlags {
    /// How many values were NaN or infinite (and replaced by the training centre).
    pub fn non_finite_count(&self) -> usize {
        self.non_finite
    }

    /// How many finite values lay beyond the clip bounds (and were clipped).
    pub fn clipped_count(&self) -> usize {
        self.clipped
    }

    /// Whether the sample scaled without any replacement or clipping.
    pub fn is_clean(&self) -> bool {
        self.non_finite == 0 && self.clipped == 0
    }

    /// Whether dimension `dim` was non-finite; `None` when `dim` is not tracked (`>= 64`).
    pub fn was_non_finite(&self, dim: usize) -> Option<bool> {
        bit(dim).map(|bit| self.non_finite_mask & bit != 0)
    }

    /// Whether dimension `dim` was clipped; `None` when `dim` is not tracked (`>= 64`).
    pub fn was_clipped(&self, dim: usize) -> Option<bool> {
        bit(dim).map(|bit| self.clipped_mask & bit != 0)
    }

    fn mark_non_finite(&mut self, dim: usize) {
        self.non_finite += 1;
        self.non_finite_mask |= bit(dim).unwrap_or(0);
    }

    fn mark_clipped(&mut self, dim: usize) {
        self.clipped += 1;
        self.clipped_mask |= bit(dim).unwrap_or(0);
    }
}

/// The mask bit of `dim`, if it is tracked.
fn bit(dim: usize) -> Option<u64> {
    (dim < FLAGGED_DIMS_TRACKED).then(|| 1u64 << dim)
}

/// The serialized form, checked before it becomes a [`Scaler`]: a hand-edited or corrupted model file
/// must not bring a zero spread (and so NaN outputs) onto the hot path.
#[derive(Deserialize)]
struct UncheckedScaler {
    kind: ScalerKind,
    clip: f64,
    dims: Vec<DimScale>,
}

impl TryFrom<UncheckedScaler> for Scaler {
    type Error = Error;

    fn try_from(unchecked: UncheckedScaler) -> Result<Self> {
        check_clip(unchecked.clip)?;
        if unchecked.dims.is_empty() {
            return Err(Error::InvalidInput("scaler has no dimension".into()));
        }
        for (dim, scale) in unchecked.dims.iter().enumerate() {
            let valid = scale.offset.is_finite()
                && scale.centre.is_finite()
                && scale.spread.is_finite()
                && scale.spread > 0.0;
            if !valid {
                return Err(Error::InvalidInput(format!(
                    "scaler metric {dim} has invalid parameters {scale:?}"
                )));
            }
        }
        Ok(Scaler {
            kind: unchecked.kind,
            clip: unchecked.clip,
            dims: unchecked.dims,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(rows: &[&[f64]]) -> Series {
        Series::from_rows(rows).unwrap()
    }

    fn fit(rows: &[&[f64]], kind: ScalerKind, clip: f64) -> Scaler {
        Scaler::fit(&series(rows), &ScalerConfig { kind, clip }).unwrap()
    }

    fn transform(scaler: &Scaler, raw: &[f64]) -> (Vec<f32>, ValueFlags) {
        let mut out = vec![f32::NAN; raw.len()];
        let flags = scaler.transform_into(raw, &mut out).unwrap();
        (out, flags)
    }

    fn assert_close(actual: f32, expected: f64) {
        assert!(
            (f64::from(actual) - expected).abs() < 1e-6,
            "{actual} != {expected}"
        );
    }

    #[test]
    fn min_max_maps_training_range_to_unit_interval() {
        let scaler = fit(
            &[&[0.0, 10.0], &[5.0, 20.0], &[10.0, 30.0]],
            ScalerKind::MinMax,
            1.0,
        );
        let (out, flags) = transform(&scaler, &[5.0, 25.0]);
        assert_close(out[0], 0.5);
        assert_close(out[1], 0.75);
        assert!(flags.is_clean());
        assert_eq!(scaler.inverse(1, 0.75), Some(25.0));
        assert_eq!(scaler.inverse(2, 0.0), None);
    }

    #[test]
    fn standard_maps_to_z_scores_with_population_std() {
        // Mean 2.5, population variance 1.25.
        let scaler = fit(&[&[1.0], &[2.0], &[3.0], &[4.0]], ScalerKind::Standard, 5.0);
        let std = 1.25f64.sqrt();
        let (out, _) = transform(&scaler, &[2.5 + std]);
        assert_close(out[0], 1.0);
        let (out, _) = transform(&scaler, &[1.0]);
        assert_close(out[0], -1.5 / std);
    }

    #[test]
    fn non_finite_inputs_become_the_scaled_training_mean_and_are_flagged() {
        // Mean 2.5 differs from the midpoint 5, so the test tells the two apart.
        let scaler = fit(
            &[&[0.0, 1.0], &[0.0, 1.0], &[0.0, 1.0], &[10.0, 2.0]],
            ScalerKind::MinMax,
            1.0,
        );
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let (out, flags) = transform(&scaler, &[bad, 1.5]);
            assert_close(out[0], 0.25);
            assert_eq!((flags.non_finite_count(), flags.clipped_count()), (1, 0));
            assert_eq!(
                (flags.was_non_finite(0), flags.was_non_finite(1)),
                (Some(true), Some(false))
            );
        }
    }

    #[test]
    fn far_values_are_clipped_to_the_bounds_and_flagged() {
        let scaler = fit(&[&[0.0], &[10.0]], ScalerKind::MinMax, 1.0);
        let (out, flags) = transform(&scaler, &[100.0]);
        assert_close(out[0], 2.0);
        assert_eq!(
            (flags.clipped_count(), flags.was_clipped(0)),
            (1, Some(true))
        );
        let (out, _) = transform(&scaler, &[-100.0]);
        assert_close(out[0], -1.0);
        // Just inside the bound is kept as is.
        let (out, flags) = transform(&scaler, &[19.0]);
        assert_close(out[0], 1.9);
        assert!(flags.is_clean());

        let standard = fit(&[&[-1.0], &[1.0]], ScalerKind::Standard, 3.0);
        let (out, flags) = transform(&standard, &[f64::MAX]);
        assert_close(out[0], 3.0);
        assert_eq!(flags.clipped_count(), 1);
        let (out, _) = transform(&standard, &[-4.0]);
        assert_close(out[0], -3.0);
    }

    #[test]
    fn constant_dimensions_are_centred_not_divided() {
        for kind in [ScalerKind::MinMax, ScalerKind::Standard] {
            let scaler = fit(&[&[3.0], &[3.0], &[3.0]], kind, 10.0);
            let (out, flags) = transform(&scaler, &[3.0]);
            assert_close(out[0], 0.0);
            let (out, _) = transform(&scaler, &[3.5]);
            assert_close(out[0], 0.5);
            assert!(flags.is_clean());
            let (out, _) = transform(&scaler, &[f64::NAN]);
            assert_close(out[0], 0.0);
        }
        // A large constant whose mean carries rounding error still counts as constant.
        let scaler = fit(&[&[1e6 + 0.1][..]; 7], ScalerKind::Standard, 10.0);
        let (out, _) = transform(&scaler, &[1e6 + 0.1]);
        assert_close(out[0], 0.0);
    }

    #[test]
    fn fitting_skips_non_finite_values_and_needs_one_finite_per_dimension() {
        let scaler = fit(
            &[&[1.0], &[f64::NAN], &[f64::INFINITY], &[3.0]],
            ScalerKind::MinMax,
            1.0,
        );
        let (out, _) = transform(&scaler, &[2.0]);
        assert_close(out[0], 0.5);

        let err = Scaler::fit(
            &series(&[&[1.0, f64::NAN], &[2.0, f64::NEG_INFINITY]]),
            &ScalerConfig::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput(m) if m.contains("metric 1")),
            "{err}"
        );
        let empty = Series::new(2, Vec::new()).unwrap();
        assert!(Scaler::fit(&empty, &ScalerConfig::default()).is_err());
        let overflowing = series(&[&[-f64::MAX], &[f64::MAX]]);
        assert!(Scaler::fit(&overflowing, &ScalerConfig::default()).is_err());
    }

    #[test]
    fn rejects_bad_clip_and_mismatched_lengths() {
        let train = series(&[&[1.0], &[2.0]]);
        for clip in [-1.0, f64::NAN, f64::INFINITY] {
            let cfg = ScalerConfig {
                kind: ScalerKind::MinMax,
                clip,
            };
            assert!(
                matches!(Scaler::fit(&train, &cfg), Err(Error::InvalidInput(_))),
                "{clip}"
            );
        }
        let scaler = Scaler::fit(&train, &ScalerConfig::default()).unwrap();
        assert!(scaler.transform_into(&[1.0, 2.0], &mut [0.0; 2]).is_err());
        assert!(scaler.transform_into(&[1.0], &mut [0.0; 2]).is_err());
    }

    #[test]
    fn outputs_are_always_finite() {
        let scaler = fit(&[&[-5.0, 0.0], &[5.0, 1e-300]], ScalerKind::Standard, 4.0);
        let specials = [
            f64::NAN,
            f64::INFINITY,
            -f64::MAX,
            f64::MAX,
            f64::MIN_POSITIVE,
            0.0,
            1e300,
        ];
        for &a in &specials {
            for &b in &specials {
                let (out, _) = transform(&scaler, &[a, b]);
                assert!(
                    out.iter().all(|v| v.is_finite() && v.abs() <= 4.0),
                    "{a} {b} -> {out:?}"
                );
            }
        }
    }

    #[test]
    fn flags_count_beyond_the_tracked_dimensions() {
        let dims = 70;
        let scaler = fit(
            &[&vec![0.0; dims][..], &vec![1.0; dims][..]],
            ScalerKind::MinMax,
            1.0,
        );
        let mut raw = vec![0.5; dims];
        raw[3] = f64::NAN;
        raw[65] = f64::NAN;
        raw[66] = 50.0;
        let (out, flags) = transform(&scaler, &raw);
        assert_eq!((flags.non_finite_count(), flags.clipped_count()), (2, 1));
        assert_eq!(flags.was_non_finite(3), Some(true));
        assert_eq!(flags.was_non_finite(65), None);
        assert_eq!(flags.was_clipped(66), None);
        assert_close(out[66], 2.0);
    }

    #[test]
    fn serde_round_trip_keeps_behaviour_and_rejects_broken_parameters() {
        let scaler = fit(
            &[&[0.0, 7.0], &[4.0, 7.0], &[8.0, 7.0]],
            ScalerKind::Standard,
            2.5,
        );
        let json = serde_json::to_string(&scaler).unwrap();
        let back: Scaler = serde_json::from_str(&json).unwrap();
        assert_eq!(back, scaler);
        assert_eq!(
            transform(&back, &[3.0, f64::NAN]),
            transform(&scaler, &[3.0, f64::NAN])
        );

        let broken = json.replacen("\"spread\":1.0", "\"spread\":0.0", 1);
        assert_ne!(broken, json, "fixture must contain a unit spread: {json}");
        assert!(serde_json::from_str::<Scaler>(&broken).is_err());
    }

    #[test]
    fn spread_floors_keep_a_quiet_metric_from_turning_blips_into_extremes() {
        // An idle disk: 0 to 4 KB/s in the baseline. Without a floor 40 KB/s is ten ranges out.
        let train = Series::from_rows(&[[0.0, 10.0], [4096.0, 20.0]]).unwrap();
        let cfg = ScalerConfig::default();
        let mut out = [0.0f32; 2];
        let plain = Scaler::fit(&train, &cfg).unwrap();
        plain.transform_into(&[40_960.0, 15.0], &mut out).unwrap();
        assert_eq!(out[0], 10.0);
        let floored = Scaler::fit_with_floors(&train, &cfg, &[1_048_576.0, 0.0]).unwrap();
        floored.transform_into(&[40_960.0, 15.0], &mut out).unwrap();
        assert!((out[0] - 40_960.0 / 1_048_576.0).abs() < 1e-6, "{out:?}");
        assert!(
            (out[1] - 0.5).abs() < 1e-6,
            "a dimension without a floor is unchanged"
        );
        assert!(Scaler::fit_with_floors(&train, &cfg, &[1.0]).is_err());
        assert!(Scaler::fit_with_floors(&train, &cfg, &[-1.0, 0.0]).is_err());
    }
}
