//! The pieces of `anomaly detect` that do I/O: the sink that runs the detector's lifecycle
//! (`anomaly_model::lifecycle`) on the sample stream and writes its events, one model for the
//! consumer group (the trainer that publishes what it trains, the follower that adopts what
//! another instance published), and the metric names.

pub mod event_topic;
pub mod group_model;
pub mod metric_names;
pub mod sink;
pub mod trainer;
