//! Liveness and readiness: `/ping` (kept from the original service), `/healthz` (the
//! process answers) and `/readyz` (its dependencies answer too).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use quire_core::health::readiness;
use serde_json::json;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ping", get(ping))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn ping() -> Response {
    axum::Json(json!({ "message": "pong" })).into_response()
}

async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

/// 200 when the database, the work queue and output storage all answer, 503 naming the
/// ones that do not (see [`quire_core::health`]).
async fn readyz(State(state): State<AppState>) -> Response {
    let readiness = readiness(vec![
        ("database", state.store().ping()),
        ("queue", state.queue().ping()),
        ("storage", state.storage().ping()),
    ])
    .await;
    let status = if readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(readiness)).into_response()
}
