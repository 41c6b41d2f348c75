//! Renders Quire reports to files: the profile PDF, the activity CSV/PDF and the dataset
//! CSV/JSON/PDF, and fetches dataset rows from operator-configured data sources.
//!
//! The worker drives everything here:
//!
//! 1. for a dataset report, [`fetch_dataset`] (async) downloads the rows of a named
//!    [`DataSource`], advancing [`Progress`] from 0 to 50;
//! 2. one of [`render_profile`], [`render_activity`] or [`render_dataset`] (blocking,
//!    CPU-bound: call it inside `spawn_blocking`) writes the finished file, advancing
//!    [`Progress`] to 100 (a dataset render covers 50–100, the others 0–100).
//!
//! A render writes to a temporary file next to `out` and renames it over `out` only once
//! the file is complete, so a failed render never leaves a partial file at `out`.
//!
//! # Data sources
//!
//! Users pick a data source by name; they never supply a URL. The operator lists the
//! sources in a TOML file whose path is in `QUIRE_DATA_SOURCES_FILE`
//! (the worker loads it with [`DataSources::from_file`]):
//!
//! ```toml
//! [sources.games]
//! url = "https://api.example.com/games"      # required; http(s) only, validated at load
//! rows_pointer = "/results"                    # optional JSON pointer to the array of rows
//!                                              #   (default: the whole body is the array)
//! columns = ["name", "url"]                    # optional default columns (default: every key,
//!                                              #   in first-seen order)
//! timeout_secs = 10                            # optional whole-request timeout (default 10)
//! # timeout_ms = 2500                          # optional, the same in milliseconds
//! max_bytes = 10485760                         # optional response size cap (default 10 MiB)
//! max_rows = 10000                             # optional row cap (default 10 000); a request's
//!                                              #   `limit` can only lower it
//! headers = { "Accept" = "application/json" }  # optional static request headers, e.g. an API
//!                                              #   key; values are never logged or shown
//! title = "Games"                              # optional PDF title (default: the name)
//! allow_private = false                        # optional; true lets the URL's host be a
//!                                              #   loopback/private/link-local address
//!                                              #   (default false: only public addresses)
//! ```
//!
//! Source names follow the rules of a dataset report's `source` parameter: 1–64 ASCII
//! letters, digits, `-` and `_`. Unknown keys are rejected so a typo cannot silently
//! drop a limit.
//!
//! Fetches go through a [`FetchClient`]: it follows redirects only within the source's
//! origin (at most [`MAX_REDIRECTS`], never https to http), so configured headers never
//! reach another origin, and it refuses a source whose host is or resolves to a loopback,
//! private, link-local (cloud metadata), unique-local or otherwise non-public address,
//! unless the source sets `allow_private = true` because it really is internal.
//!
//! The upstream must answer `2xx` with a JSON array of objects (at `rows_pointer`). Nested
//! values are kept as JSON in [`Dataset::rows`]; CSV and PDF cells show them as compact
//! JSON text, JSON output keeps them nested.
//!
//! # CSV cells
//!
//! A text cell of any CSV output (dataset or activity, header included) that begins with
//! `=`, `+`, `-`, `@`, a tab or a carriage return is prefixed with `'`, so spreadsheets
//! show it as text instead of running it as a formula (OWASP's CSV injection remedy).
//! Numbers are written as they are: a JSON `-5` stays `-5`, the string `"-5"` becomes `'-5`.

mod activity;
mod client;
mod csv_cell;
mod dataset;
mod error;
mod fetch;
pub mod net;
mod output;
mod pdf;
mod profile;
mod progress;
mod sources;
mod stream;
mod text;

pub use activity::{ActivityData, render_activity};
pub use client::{FetchClient, MAX_REDIRECTS, RedirectRefusal};
pub use dataset::{render_dataset, render_streamed_dataset};
pub use error::{ConfigError, RenderError};
pub use fetch::{Dataset, fetch_dataset};
pub use profile::{ProfileData, profile_pdf, render_profile};
pub use progress::Progress;
pub use sources::{DEFAULT_MAX_BYTES, DEFAULT_MAX_ROWS, DEFAULT_TIMEOUT, DataSource, DataSources};
pub use stream::{StreamedDataset, download_dataset};
