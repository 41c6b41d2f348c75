//! The API's integration tests: one binary (zero2prod style), each test against its own
//! app on a random port and its own fresh database. Needs `DATABASE_URL` (see
//! `scripts/test.sh`).

// A failing unwrap is the test's failure report (clippy.toml covers `#[test]` functions,
// not the helpers they call).
#![allow(clippy::unwrap_used)]

mod auth;
mod catalogue;
mod cluster;
mod downloads;
mod health;
mod helpers;
mod openapi;
mod operability;
mod orchestrator;
mod prefer_wait;
mod reports;
mod security;
mod sqlite;
mod tokens;
mod webhooks;
