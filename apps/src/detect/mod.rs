//! The pieces of `anomaly detect` that do I/O: the sink that runs the detector's lifecycle
//! (`anomaly_model::lifecycle`) on the sample stream and writes its events, the trainer that saves
//! what it trains, and the metric names.

pub mod event_topic;
pub mod metric_names;
pub mod sink;
pub mod trainer;
