//! `quire`: the Quire command line. The API client (`signup`, `login`, `reports`, …) and
//! `quire dev`, which runs the whole system in one process.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use quire::args::{Cli, Command, completions};
use quire::client::error::exit;

/// mimalloc, faster than glibc's malloc at the many small allocations of requests,
/// reconciles and renders (see the workspace `Cargo.toml`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // Usage errors exit 2 (clap's own convention, and the issue's).
    let Cli { global, command } = Cli::parse();
    match command {
        Command::Dev(args) => {
            // Only the server logs: a client command's output is its own.
            let telemetry = quire_core::telemetry::init("quire");
            let outcome = quire::dev::run(args).await;
            telemetry.shutdown();
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("Error: {e:?}");
                    ExitCode::from(exit::OTHER)
                }
            }
        }
        Command::Completions { shell } => {
            match std::io::stdout().lock().write_all(&completions(shell)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: writing the completion script: {e}");
                    ExitCode::from(exit::OTHER)
                }
            }
        }
        command => quire::client::main(global, command).await,
    }
}
