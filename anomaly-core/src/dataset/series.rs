//! A dense, row-major matrix of metric values: one row per time step, one column per metric.

use crate::{Error, Result};

/// A multivariate time series stored row-major: row `i` is the sample at time step `i` and holds one
/// value per metric. Values may be non-finite; [`crate::scaling::Scaler`] decides what to do with them.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    dims: usize,
    data: Vec<f64>,
}

impl Series {
    /// A series of `dims` metrics over the row-major `data`.
    ///
    /// Fails with [`Error::InvalidInput`] when `dims` is zero or `data` is not a whole number of rows.
    pub fn new(dims: usize, data: Vec<f64>) -> Result<Self> {
        if dims == 0 {
            return Err(Error::InvalidInput(
                "a series needs at least one metric".into(),
            ));
        }
        if !data.len().is_multiple_of(dims) {
            return Err(Error::InvalidInput(format!(
                "{} values are not a whole number of rows of {dims} metrics",
                data.len()
            )));
        }
        Ok(Self { dims, data })
    }

    /// A series built from rows that must all have the same, non-zero length.
    pub fn from_rows<R: AsRef<[f64]>>(rows: &[R]) -> Result<Self> {
        let dims = rows.first().map_or(0, |row| row.as_ref().len());
        let mut data = Vec::with_capacity(dims * rows.len());
        for (i, row) in rows.iter().enumerate() {
            let row = row.as_ref();
            if row.len() != dims {
                return Err(Error::InvalidInput(format!(
                    "row {i} has {} values, row 0 has {dims}",
                    row.len()
                )));
            }
            data.extend_from_slice(row);
        }
        Self::new(dims, data)
    }

    /// Number of rows (time steps).
    pub fn rows(&self) -> usize {
        self.data.len() / self.dims
    }

    /// Number of metrics per row.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Whether the series has no row.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Row `i`.
    ///
    /// # Panics
    /// When `i >= self.rows()`, like slice indexing.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.dims..(i + 1) * self.dims]
    }

    /// The rows in time order.
    pub fn iter_rows(&self) -> std::slice::ChunksExact<'_, f64> {
        self.data.chunks_exact(self.dims)
    }

    /// All values, row-major.
    pub fn as_slice(&self) -> &[f64] {
        &self.data
    }

    /// Splits into the first `rows` rows and the rest (`rows` is capped at the length).
    pub(crate) fn split_at_row(mut self, rows: usize) -> (Series, Series) {
        let at = rows.min(self.rows()) * self.dims;
        let tail = self.data.split_off(at);
        let dims = self.dims;
        (self, Series { dims, data: tail })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_row_major_slices() {
        let s = Series::new(2, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!((s.rows(), s.dims()), (3, 2));
        assert_eq!(s.row(1), &[3.0, 4.0]);
        let rows: Vec<&[f64]> = s.iter_rows().collect();
        assert_eq!(rows, vec![&[1.0, 2.0][..], &[3.0, 4.0], &[5.0, 6.0]]);
    }

    #[test]
    fn rejects_partial_rows_and_zero_dims() {
        assert!(matches!(
            Series::new(2, vec![1.0, 2.0, 3.0]),
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(
            Series::new(0, vec![]),
            Err(Error::InvalidInput(_))
        ));
    }

    #[test]
    fn from_rows_rejects_ragged_and_empty_input() {
        let err = Series::from_rows(&[vec![1.0, 2.0], vec![3.0]]).unwrap_err();
        assert!(err.to_string().contains("row 1 has 1 values"), "{err}");
        assert!(Series::from_rows::<Vec<f64>>(&[]).is_err());
    }

    #[test]
    fn split_at_row_keeps_order_and_caps() {
        let s = Series::from_rows(&[[1.0], [2.0], [3.0]]).unwrap();
        let (head, tail) = s.clone().split_at_row(1);
        assert_eq!(head.as_slice(), &[1.0]);
        assert_eq!(tail.as_slice(), &[2.0, 3.0]);
        let (all, none) = s.split_at_row(10);
        assert_eq!((all.rows(), none.rows(), none.dims()), (3, 0, 1));
        assert!(none.is_empty());
    }
}
