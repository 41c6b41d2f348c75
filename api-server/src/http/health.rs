//! Liveness, readiness and metrics: `/ping`, `/healthz`, `/readyz`, `/metrics`. No token:
//! probes and scrapers call them (deny `/metrics` at the ingress if it must stay inside).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use quire_core::health::{Dependencies, Readiness};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ping))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// `{"message": "pong"}`.
#[derive(Serialize, utoipa::ToSchema)]
struct Pong {
    #[schema(example = "pong")]
    message: &'static str,
}

/// `{"status": "ok"}`.
#[derive(Serialize, utoipa::ToSchema)]
struct Alive {
    #[schema(example = "ok")]
    status: &'static str,
}

/// Answer if up
#[utoipa::path(get, path = "/ping", tag = "health",
    responses((status = 200, description = "The process answers", body = Pong)))]
async fn ping() -> axum::Json<Pong> {
    axum::Json(Pong { message: "pong" })
}

/// Liveness
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process is alive", body = Alive)))]
async fn healthz() -> axum::Json<Alive> {
    axum::Json(Alive { status: "ok" })
}

/// Readiness
///
/// Checks the database, the queue and output storage, each bounded in time.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Every dependency answers", body = Readiness),
        (status = 503, description = "A dependency does not answer", body = Readiness),
    ))]
async fn readyz(State(state): State<AppState>) -> Response {
    Dependencies {
        store: state.store().clone(),
        queue: state.queue().clone(),
        storage: state.storage().clone(),
    }
    .readiness()
    .await
    .into_response()
}

/// Prometheus metrics
///
/// OpenMetrics text: requests, sign-ins, reports, quotas, queue depth, retention (and, in
/// `quire dev`, the worker's).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "OpenMetrics text",
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String)))]
async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, quire_core::metrics::CONTENT_TYPE)],
        state.exposition().encode(),
    )
        .into_response()
}
