//! The worker's probes, served on `QUIRE_HEALTH_LISTEN`: `/healthz` (the process answers)
//! and `/readyz` (the database, the work queue and output storage answer; 503 naming the
//! ones that do not).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use quire_core::health::readiness;
use quire_core::queue::WorkQueue;
use quire_core::storage::OutputStorage;
use quire_core::store::RecordStore;
use serde_json::json;

#[derive(Clone)]
struct Dependencies {
    store: Arc<dyn RecordStore>,
    queue: Arc<dyn WorkQueue>,
    storage: Arc<dyn OutputStorage>,
}

/// The probe routes on the worker's dependencies.
pub fn router(
    store: Arc<dyn RecordStore>,
    queue: Arc<dyn WorkQueue>,
    storage: Arc<dyn OutputStorage>,
) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .with_state(Dependencies {
            store,
            queue,
            storage,
        })
}

async fn readyz(State(deps): State<Dependencies>) -> Response {
    let readiness = readiness(vec![
        ("database", deps.store.ping()),
        ("queue", deps.queue.ping()),
        ("storage", deps.storage.ping()),
    ])
    .await;
    let status = if readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(readiness)).into_response()
}
