//! The `quire` API client: every command but `dev`.
//!
//! - `api.rs`: the HTTP client, the session and its automatic refresh, error answers;
//! - `config.rs`: the config directory and `credentials.json` (0600, written atomically);
//! - `auth.rs`, `reports.rs`, `webhooks.rs`, `catalogue.rs`: the commands;
//! - `download.rs`: following the download redirect and streaming the file to disk;
//! - `output.rs`: JSON for scripts, tables for people;
//! - `error.rs`: the one error type and its exit codes.

mod api;
mod auth;
mod catalogue;
mod config;
mod download;
pub mod error;
mod output;
mod reports;
mod webhooks;

use std::process::ExitCode;

pub use error::Error;

use crate::args::{Command, GlobalArgs, ReportsCommand};

/// Runs a client command and prints its error, if any, as `error: …` on standard error;
/// the exit code says what kind of failure it was (see [`Error::exit_code`]).
pub async fn main(global: GlobalArgs, command: Command) -> ExitCode {
    match run(global, command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::note(&format!("error: {e}"));
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(global: GlobalArgs, command: Command) -> Result<(), Error> {
    let store = config::CredentialStore::from_env()?;
    let mut api = api::Api::new(&global.server, store)?;
    let api = &mut api;
    let output = global.output;
    match command {
        Command::Signup(args) => auth::signup(api, args, output).await,
        Command::Login(args) => auth::login(api, args, output).await,
        Command::Logout => auth::logout(api, output).await,
        Command::Types => catalogue::types(api, output).await,
        Command::Sources => catalogue::sources(api, output).await,
        Command::Reports(command) => match command {
            ReportsCommand::Create(args) => reports::create(api, args, output).await,
            ReportsCommand::List(args) => reports::list(api, args, output).await,
            ReportsCommand::Get { id } => reports::get(api, &id, output).await,
            ReportsCommand::Cancel { id } => reports::cancel(api, &id, output).await,
            ReportsCommand::Download { id, file } => {
                reports::download_one(api, &id, file.as_deref(), output).await
            }
        },
        Command::Webhooks(command) => webhooks::run(api, command, output).await,
        Command::Dev(_) | Command::Completions { .. } => {
            Err(Error::Usage("not a client command".to_owned()))
        }
    }
}
