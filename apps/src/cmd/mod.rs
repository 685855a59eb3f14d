//! One module per subcommand of the `anomaly` binary.

pub mod collect;
pub mod eval;
