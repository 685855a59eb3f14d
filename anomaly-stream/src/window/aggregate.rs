//! Aggregators: how the values of one window fold into one result.
//!
//! Time windows ([`TimeWindows`](super::TimeWindows)) are generic over an [`Aggregator`] so that
//! only the accumulator, not every value, is kept per open window. Build one from closures with
//! [`aggregate`] or [`reduce`], or use a ready one: [`Count`], [`Sum`], [`Mean`], [`Min`], [`Max`].

/// Folds the values of a window into an accumulator, one value at a time.
///
/// Values are added in arrival order. The accumulator must be `Clone` because early
/// (speculative) updates emit a copy of it while the window stays open.
pub trait Aggregator<V> {
    /// The running state of one window, emitted as the window's aggregate.
    type Acc: Clone;

    /// The accumulator of a window that holds no value yet.
    fn init(&self) -> Self::Acc;

    /// Folds one value into the accumulator.
    fn add(&self, acc: &mut Self::Acc, value: &V);
}

/// An [`Aggregator`] made of two closures; see [`aggregate`].
#[derive(Debug, Clone, Copy)]
pub struct FnAggregator<I, F> {
    init: I,
    add: F,
}

/// Builds an aggregator from an `init` closure creating the empty accumulator and an `add`
/// closure folding one value into it (Kafka Streams' `aggregate(initializer, aggregator)`).
///
/// ```
/// use anomaly_stream::window::{Aggregator, aggregate};
///
/// let longest = aggregate(|| 0usize, |acc: &mut usize, s: &String| *acc = (*acc).max(s.len()));
/// let mut acc = longest.init();
/// longest.add(&mut acc, &"abc".to_string());
/// assert_eq!(acc, 3);
/// ```
pub fn aggregate<V, A, I, F>(init: I, add: F) -> FnAggregator<I, F>
where
    A: Clone,
    I: Fn() -> A,
    F: Fn(&mut A, &V),
{
    FnAggregator { init, add }
}

impl<V, A, I, F> Aggregator<V> for FnAggregator<I, F>
where
    A: Clone,
    I: Fn() -> A,
    F: Fn(&mut A, &V),
{
    type Acc = A;

    fn init(&self) -> A {
        (self.init)()
    }

    fn add(&self, acc: &mut A, value: &V) {
        (self.add)(acc, value);
    }
}

/// An [`Aggregator`] combining values pairwise; see [`reduce`].
#[derive(Debug, Clone, Copy)]
pub struct Reduce<F> {
    combine: F,
}

/// Builds an aggregator that combines values of the same type pairwise (Kafka Streams'
/// `reduce`). The accumulator is `None` until the first value, which is cloned in as-is; every
/// emitted window holds at least one record, so emitted accumulators are always `Some`.
///
/// ```
/// use anomaly_stream::window::{Aggregator, reduce};
///
/// let max = reduce(|a: &i32, b: &i32| *a.max(b));
/// let mut acc = max.init();
/// for v in [3, 9, 4] {
///     max.add(&mut acc, &v);
/// }
/// assert_eq!(acc, Some(9));
/// ```
pub fn reduce<V, F>(combine: F) -> Reduce<F>
where
    V: Clone,
    F: Fn(&V, &V) -> V,
{
    Reduce { combine }
}

impl<V, F> Aggregator<V> for Reduce<F>
where
    V: Clone,
    F: Fn(&V, &V) -> V,
{
    type Acc = Option<V>;

    fn init(&self) -> Option<V> {
        None
    }

    fn add(&self, acc: &mut Option<V>, value: &V) {
        *acc = Some(match acc {
            None => value.clone(),
            Some(current) => (self.combine)(current, value),
        });
    }
}

/// Counts values; the accumulator is the count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count;

impl<V> Aggregator<V> for Count {
    type Acc = u64;

    fn init(&self) -> u64 {
        0
    }

    fn add(&self, acc: &mut u64, _value: &V) {
        *acc += 1;
    }
}

/// Sums an `f64` field extracted from each value by a closure.
#[derive(Debug, Clone, Copy)]
pub struct Sum<F> {
    field: F,
}

impl<F> Sum<F> {
    /// Sums `field(value)` over the window.
    pub fn new(field: F) -> Self {
        Self { field }
    }
}

impl<V, F: Fn(&V) -> f64> Aggregator<V> for Sum<F> {
    type Acc = f64;

    fn init(&self) -> f64 {
        0.0
    }

    fn add(&self, acc: &mut f64, value: &V) {
        *acc += (self.field)(value);
    }
}

/// Averages an `f64` field extracted from each value by a closure.
#[derive(Debug, Clone, Copy)]
pub struct Mean<F> {
    field: F,
}

impl<F> Mean<F> {
    /// Averages `field(value)` over the window.
    pub fn new(field: F) -> Self {
        Self { field }
    }
}

/// The accumulator of [`Mean`]: a running sum and count, so the mean is exact to one division.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MeanAcc {
    /// Sum of the field over the values seen.
    pub sum: f64,
    /// Number of values seen.
    pub count: u64,
}

impl MeanAcc {
    /// The mean, or `None` before any value (rather than a NaN from 0/0).
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

impl<V, F: Fn(&V) -> f64> Aggregator<V> for Mean<F> {
    type Acc = MeanAcc;

    fn init(&self) -> MeanAcc {
        MeanAcc::default()
    }

    fn add(&self, acc: &mut MeanAcc, value: &V) {
        acc.sum += (self.field)(value);
        acc.count += 1;
    }
}

/// The smallest value of an `f64` field extracted by a closure.
///
/// The accumulator is `None` before any value. NaNs are ignored (as by [`f64::min`]) unless
/// every value is NaN, so one bad sample does not poison the window.
#[derive(Debug, Clone, Copy)]
pub struct Min<F> {
    field: F,
}

impl<F> Min<F> {
    /// Tracks the minimum of `field(value)` over the window.
    pub fn new(field: F) -> Self {
        Self { field }
    }
}

impl<V, F: Fn(&V) -> f64> Aggregator<V> for Min<F> {
    type Acc = Option<f64>;

    fn init(&self) -> Option<f64> {
        None
    }

    fn add(&self, acc: &mut Option<f64>, value: &V) {
        let x = (self.field)(value);
        *acc = Some(acc.map_or(x, |m| m.min(x)));
    }
}

/// The largest value of an `f64` field extracted by a closure.
///
/// The accumulator is `None` before any value. NaNs are ignored (as by [`f64::max`]) unless
/// every value is NaN.
#[derive(Debug, Clone, Copy)]
pub struct Max<F> {
    field: F,
}

impl<F> Max<F> {
    /// Tracks the maximum of `field(value)` over the window.
    pub fn new(field: F) -> Self {
        Self { field }
    }
}

impl<V, F: Fn(&V) -> f64> Aggregator<V> for Max<F> {
    type Acc = Option<f64>;

    fn init(&self) -> Option<f64> {
        None
    }

    fn add(&self, acc: &mut Option<f64>, value: &V) {
        let x = (self.field)(value);
        *acc = Some(acc.map_or(x, |m| m.max(x)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold<V, A: Aggregator<V>>(agg: &A, values: &[V]) -> A::Acc {
        let mut acc = agg.init();
        for v in values {
            agg.add(&mut acc, v);
        }
        acc
    }

    #[derive(Debug, Clone, PartialEq)]
    struct Reading {
        cpu: f64,
    }

    fn readings(xs: &[f64]) -> Vec<Reading> {
        xs.iter().map(|&cpu| Reading { cpu }).collect()
    }

    #[test]
    fn ready_aggregators() {
        let rs = readings(&[2.0, -1.0, 5.0, 2.0]);
        assert_eq!(fold(&Count, &rs), 4);
        assert_eq!(fold(&Sum::new(|r: &Reading| r.cpu), &rs), 8.0);
        assert_eq!(fold(&Mean::new(|r: &Reading| r.cpu), &rs).mean(), Some(2.0));
        assert_eq!(fold(&Min::new(|r: &Reading| r.cpu), &rs), Some(-1.0));
        assert_eq!(fold(&Max::new(|r: &Reading| r.cpu), &rs), Some(5.0));
    }

    #[test]
    fn empty_accumulators() {
        let none: Vec<Reading> = Vec::new();
        assert_eq!(fold(&Count, &none), 0);
        assert_eq!(fold(&Sum::new(|r: &Reading| r.cpu), &none), 0.0);
        assert_eq!(fold(&Mean::new(|r: &Reading| r.cpu), &none).mean(), None);
        assert_eq!(fold(&Min::new(|r: &Reading| r.cpu), &none), None);
        assert_eq!(fold(&Max::new(|r: &Reading| r.cpu), &none), None);
        assert_eq!(
            fold(&reduce(|a: &Reading, _b: &Reading| a.clone()), &none),
            None
        );
    }

    #[test]
    fn min_max_skip_nan() {
        let rs = readings(&[f64::NAN, 3.0, f64::NAN, 1.0]);
        assert_eq!(fold(&Min::new(|r: &Reading| r.cpu), &rs), Some(1.0));
        assert_eq!(fold(&Max::new(|r: &Reading| r.cpu), &rs), Some(3.0));
    }

    #[test]
    fn closure_adapters() {
        let collect = aggregate(Vec::new, |acc: &mut Vec<u32>, v: &u32| acc.push(*v));
        assert_eq!(fold(&collect, &[3, 1, 2]), vec![3, 1, 2]);
        let concat = reduce(|a: &String, b: &String| format!("{a}{b}"));
        assert_eq!(
            fold(&concat, &["a".to_string(), "b".into(), "c".into()]),
            Some("abc".into())
        );
    }
}
