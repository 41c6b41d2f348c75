//! Liveness and readiness: `/ping` (kept from the original service), `/healthz` (the
//! process answers) and `/readyz` (its dependencies answer too).

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use quire_core::health::Dependencies;
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
    Dependencies {
        store: state.store().clone(),
        queue: state.queue().clone(),
        storage: state.storage().clone(),
    }
    .readiness()
    .await
    .into_response()
}
