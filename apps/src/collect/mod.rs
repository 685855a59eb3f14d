//! The pieces of `anomaly collect` (composed in [`crate::cmd::collect`]):
//!
//! * [`source`]: reads the kernel statistics files under `--proc-root` and `--sys-root`;
//! * [`collector`]: feeds them to [`anomaly_core::host::HostSampler`] and sets the Prometheus series;
//! * [`delivery`]: streams the samples to Kafka through a bounded buffer;
//! * [`metric_names`]: the name and description of every series.

pub mod collector;
pub mod delivery;
pub mod metric_names;
pub mod source;

pub use collector::{Collector, Step};
pub use delivery::{Delivery, DeliveryConfig, DeliveryReport, Outbox, SampleFormat};
pub use source::ProcSource;
