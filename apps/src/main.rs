//! The `anomaly` binary: thin subcommands composed from the library crates.

use anomaly_apps::cmd;
use anomaly_apps::telemetry::{self, LogFormat};
use clap::{CommandFactory, Parser, Subcommand};

#[cfg(feature = "count-allocations")]
#[global_allocator]
static HEAP: anomaly_apps::heap_count::CountingAllocator =
    anomaly_apps::heap_count::CountingAllocator;

/// Real-time anomaly detection for fleets of machines.
///
/// Every flag can also come from its ANOMALY_* environment variable or from a TOML file named by
/// --config-file PATH (or ANOMALY_CONFIG_FILE), one table per subcommand keyed by flag names;
/// flags win over variables, variables over the file.
#[derive(Debug, Parser)]
#[command(name = "anomaly", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log line format on stderr: human or json.
    #[arg(long, global = true, env = "ANOMALY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole topology in one process with embedded defaults: this host's collector, an
    /// in-process Kafka, the self-training detector and an SQLite store.
    Demo(cmd::demo::DemoArgs),
    /// Evaluate a detector on a labelled dataset (fit and calibrate on train, stream-score test).
    Eval(cmd::eval::EvalArgs),
    /// Sample this host's CPU, memory, load, disk and network every interval, serve them on
    /// /metrics and stream them to Kafka keyed by host.
    Collect(cmd::collect::CollectArgs),
    /// Consume host samples, score every host's windows and write anomaly events to the store
    /// and the anomalies topic; trains a model on a baseline first when there is none.
    Detect(cmd::detect::DetectArgs),
    /// Publish a labelled dataset entity or synthetic hosts into a topic at a chosen rate.
    Replay(cmd::replay::ReplayArgs),
    /// Train a model on recorded metrics (CSV) or a labelled dataset entity and save the artifact.
    Train(cmd::train::TrainArgs),
    /// Create the samples, anomalies and dead-letter topics on a broker that does not create
    /// topics on first use.
    Topics(cmd::topics::TopicsArgs),
    /// List the stored anomaly events, newest first: a table, or JSON lines with --json.
    Events(cmd::events::EventsArgs),
}

fn main() -> anyhow::Result<()> {
    let args = anomaly_apps::config_file::apply(std::env::args_os().collect(), &Cli::command())?;
    let cli = Cli::parse_from(args);
    telemetry::init_tracing(cli.log_format);
    match cli.command {
        Command::Demo(args) => cmd::demo::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Collect(args) => cmd::collect::run(args),
        Command::Train(args) => cmd::train::run(args),
        Command::Replay(args) => cmd::replay::run(args),
        Command::Detect(args) => cmd::detect::run(args),
        Command::Topics(args) => cmd::topics::run(args),
        Command::Events(args) => cmd::events::run(args),
    }
}
