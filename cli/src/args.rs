//! The command line: every subcommand and flag of `quire`, in one place, so `main.rs` stays a
//! dispatcher and `quire completions` can describe the whole command.

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::dev::DevArgs;

/// The server `quire dev` listens on by default, so the client works with it out of the box.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

#[derive(Debug, Parser)]
#[command(
    name = "quire",
    version,
    about = "Quire, the asynchronous report service",
    after_help = "Exit codes: 0 success, 1 other error, 2 usage, 3 not signed in or refused, \
                  4 not found, 5 report failed or cancelled."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted anywhere on the line (`global`), before or after the subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// The Quire API to talk to.
    #[arg(long, global = true, env = "QUIRE_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// `human` (default) or `json`: the API's JSON as it is, one document, for scripts.
    #[arg(long, global = true, value_enum, default_value_t = OutputMode::Human)]
    pub output: OutputMode,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputMode {
    /// Compact lines and tables; progress bars on a terminal.
    Human,
    /// The API's JSON, one document on standard output; no progress bar.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API, the worker and the queue in one process on embedded defaults
    /// (SQLite, local files, database queue): no Postgres, AWS or Kubernetes needed.
    Dev(DevArgs),
    /// Create an account on the server, then sign in with it.
    Signup(PasswordArgs),
    /// Sign in; the tokens are kept in `credentials.json` under the config directory.
    Login(PasswordArgs),
    /// Sign out: revoke the session on the server and forget the local tokens.
    Logout,
    /// The report types the server renders, their formats and parameters.
    Types,
    /// The data sources `dataset` reports can read from.
    Sources,
    /// Request, follow, list, cancel and download reports.
    #[command(subcommand)]
    Reports(ReportsCommand),
    /// Webhook endpoints that hear about finished reports.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Print a shell completion script to standard output.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// The account's email address.
    #[arg(long)]
    pub email: String,
    /// Read the password from standard input instead of prompting for it.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum ReportsCommand {
    /// Request a report; with `--wait`, follow it to the end and download it.
    Create(CreateArgs),
    /// Your reports, newest first.
    List(ListArgs),
    /// One report: status, progress, times, download link.
    Get { id: String },
    /// Cancel a report that has not finished.
    Cancel { id: String },
    /// Download a completed report.
    Download {
        id: String,
        /// Where to write it (default `<id>.<ext>` here; `-` for standard output).
        #[arg(short = 'o', long = "file", value_name = "FILE")]
        file: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The report type (`quire types` lists them).
    pub report_type: String,
    /// The output format: pdf, csv or json, as the type allows.
    #[arg(long)]
    pub format: String,
    /// A parameter, `key=value`; the value is read as JSON when it is valid JSON (numbers,
    /// true, arrays), else as a string. Repeat for more.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Wait until the report is finished (a progress bar on a terminal), then download it.
    #[arg(long)]
    pub wait: bool,
    /// With `--wait`: where to write the file (default `<id>.<ext>` here; `-` for
    /// standard output).
    #[arg(short = 'o', long = "file", value_name = "FILE", requires = "wait")]
    pub file: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only reports in this status (pending, queued, running, completed, failed, cancelled).
    #[arg(long)]
    pub status: Option<String>,
    /// At most this many (1–100; the server's default is 20).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Continue after the page that returned this cursor.
    #[arg(long)]
    pub cursor: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Register an endpoint; prints its signing secret once.
    Create {
        /// The URL deliveries are POSTed to.
        url: String,
        /// An event to deliver (report.completed, report.failed, report.cancelled); repeat
        /// for more.
        #[arg(long = "event", value_name = "EVENT", required = true)]
        events: Vec<String>,
    },
    /// Your webhook endpoints.
    List,
    /// One endpoint.
    Get { id: String },
    /// Remove an endpoint.
    Delete { id: String },
    /// The recent deliveries to an endpoint and their outcomes.
    Deliveries { id: String },
}

/// `key=value`, split at the first `=`; the value is interpreted later, with the others.
fn parse_param(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected KEY=VALUE, got `{raw}`")),
    }
}

/// The completion script for `shell` (built in memory: writing it is the caller's, so a
/// closed pipe is an error to report rather than a panic).
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "quire", &mut script);
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_are_accepted_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "quire",
            "reports",
            "list",
            "--output",
            "json",
            "--server",
            "http://x:1",
        ])
        .expect("parses");
        assert_eq!(cli.global.output, OutputMode::Json);
        assert_eq!(cli.global.server, "http://x:1");
    }

    #[test]
    fn params_split_at_the_first_equals_sign() {
        assert_eq!(parse_param("q=a=b"), Ok(("q".to_owned(), "a=b".to_owned())));
        assert!(parse_param("novalue").is_err());
        assert!(parse_param("=1").is_err());
    }
}
