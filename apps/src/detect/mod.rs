//! The pieces of `anomaly detect`.

pub mod metric_names;
pub mod pipeline;
pub mod sink;
pub mod state;
