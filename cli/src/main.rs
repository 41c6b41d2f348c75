//! `quire`: the Quire command line. `quire dev` runs the whole system in one process.

use clap::{Parser, Subcommand};
use quire::dev;

#[derive(Debug, Parser)]
#[command(
    name = "quire",
    version,
    about = "Quire, the asynchronous report service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API, the worker and the queue in one process on embedded defaults
    /// (SQLite, local files, database queue): no Postgres, AWS or Kubernetes needed.
    Dev(dev::DevArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = quire_core::telemetry::init("quire");
    let outcome = run_main().await;
    telemetry.shutdown();
    outcome
}

async fn run_main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Dev(args) => dev::run(args).await,
    }
}
