//! Integration tests of quire-render: every output is read back (PDF text with lopdf, CSV
//! with the csv crate, JSON with serde_json) and fetches go to a local HTTP server.

// Fixture helpers outside `#[test]` functions unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod activity;
mod dataset;
mod fetch;
mod fetch_guard;
mod helpers;
mod profile;
mod samples;
mod stream;
