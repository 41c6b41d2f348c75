//! Quire's REST API: accounts and tokens, report requests, report status and downloads.
//!
//! The library is the whole server minus process concerns, so the `api-server` binary and
//! the CLI's embedded mode (`quire dev`) run the same routes:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use quire_core::{orchestrator::Orchestrator, queue::WorkQueue, storage::OutputStorage, store::RecordStore};
//! use quire_api::{ApiConfig, AppState, app, serve};
//!
//! # async fn run(
//! #     store: Arc<dyn RecordStore>,
//! #     orchestrator: Arc<dyn Orchestrator>,
//! #     storage: Arc<dyn OutputStorage>,
//! #     queue: Arc<dyn WorkQueue>,
//! # ) -> std::io::Result<()> {
//! let config = ApiConfig::new("a secret of at least thirty-two bytes".into());
//! let state = AppState::new(config, store, orchestrator, storage, queue, None);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(listener, app(state), quire_core::telemetry::shutdown_signal()).await
//! # }
//! ```
//!
//! - [`http`]: the routes, the one error type ([`http::ApiError`]) and the layers.
//! - [`auth`]: access tokens (JWT), refresh tokens, the bounded password hasher and the
//!   sign-in rate limits.
//! - [`state`]: [`ApiConfig`] and [`AppState`], everything a handler can reach.
//! - [`upkeep`]: the background work of an API process (token purge, retention, queue
//!   depth).
//! - [`webhooks`]: completion webhooks (Standard Webhooks): destinations, signatures and
//!   the dispatcher that sends, retries and disables.
//! - [`cluster`]: cluster mode's orchestrator ([`cluster::Kubernetes`]), where reports
//!   become `ReportRequest` resources and the Kubernetes controller dispatches them.

pub mod auth;
pub mod cluster;
pub mod http;
pub mod state;
pub mod upkeep;
pub mod webhooks;

pub use cluster::ReportRequests;
pub use http::{ApiError, app, serve};
pub use state::{ApiConfig, AppState};
