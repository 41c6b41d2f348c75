//! Liveness and readiness: `/ping` (kept from the original service), `/healthz` (the
//! process answers) and `/readyz` (its dependencies answer too).

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::error::database_unavailable;
use crate::state::AppState;

/// How long each readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

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
/// ones that do not. The checks run concurrently, each bounded by [`CHECK_TIMEOUT`].
async fn readyz(State(state): State<AppState>) -> Response {
    let (database, queue, storage) = tokio::join!(
        check("database", state.store().ping()),
        check("queue", state.queue().ping()),
        check("storage", state.storage().ping()),
    );
    let ready = [&database, &queue, &storage].iter().all(|c| c.is_ok());
    let show = |check: Result<(), String>| check.map_or_else(|e| e, |()| "ok".to_owned());
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "checks": { "database": show(database), "queue": show(queue), "storage": show(storage) },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn check(
    name: &'static str,
    probe: impl Future<Output = quire_core::Result<()>>,
) -> Result<(), String> {
    let outcome = match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(check = name, error = %e, "readiness check failed");
            describe(&e)
        }
        Err(_) => {
            tracing::warn!(check = name, "readiness check timed out");
            format!("timed out after {}s", CHECK_TIMEOUT.as_secs())
        }
    };
    Err(format!("unavailable: {outcome}"))
}

/// A short, secret-free description of why a dependency failed. The full error is logged.
fn describe(error: &quire_core::Error) -> String {
    use quire_core::Error as E;
    match error {
        E::Database(sqlx::Error::PoolTimedOut) => "timed out waiting for a connection".to_owned(),
        E::Database(sqlx::Error::PoolClosed) => "the connection pool is closed".to_owned(),
        E::Database(sqlx::Error::Io(e)) | E::Io(e) => format!("i/o error ({})", e.kind()),
        E::Database(sqlx::Error::Database(db)) => {
            format!("database error {}", db.code().unwrap_or_default())
        }
        E::Database(e) if database_unavailable(e) => "cannot connect".to_owned(),
        E::Database(_) | E::Migrate(_) => "database error".to_owned(),
        E::Queue(_) => "work queue error".to_owned(),
        E::Storage(_) => "storage error".to_owned(),
        _ => "unexpected error".to_owned(),
    }
}
