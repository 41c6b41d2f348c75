//! Readiness: whether the dependencies a binary needs answer, as `/readyz` reports it in
//! every binary (`{"status": "ready"|"unavailable", "checks": {"database": "ok", …}}`).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::Error;
use crate::queue::WorkQueue;
use crate::storage::OutputStorage;
use crate::store::RecordStore;

/// What a Quire process depends on: the record store, the work queue, output storage.
#[derive(Clone)]
pub struct Dependencies {
    pub store: Arc<dyn RecordStore>,
    pub queue: Arc<dyn WorkQueue>,
    pub storage: Arc<dyn OutputStorage>,
}

impl Dependencies {
    /// Checks all three (`database`, `queue`, `storage`).
    pub async fn readiness(&self) -> Readiness {
        readiness(vec![
            ("database", self.store.ping()),
            ("queue", self.queue.ping()),
            ("storage", self.storage.ping()),
        ])
        .await
    }
}

/// The probe routes of a background process (worker, controller): `/healthz` (the process
/// answers) and `/readyz` (its dependencies answer; 503 naming the ones that do not).
pub fn probes(dependencies: Dependencies) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .with_state(dependencies)
}

async fn readyz(State(dependencies): State<Dependencies>) -> Response {
    dependencies.readiness().await.into_response()
}

impl IntoResponse for Readiness {
    /// 200 when ready, else 503; the JSON body names every check's outcome.
    fn into_response(self) -> Response {
        let status = if self.is_ready() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, axum::Json(self)).into_response()
    }
}

/// How long each check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One named probe, such as `("queue", queue.ping())`.
pub type Check<'a> = (
    &'static str,
    Pin<Box<dyn Future<Output = crate::Result<()>> + Send + 'a>>,
);

/// The outcome of all checks: `ok`, or `unavailable: <short reason>` per dependency.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    #[schema(example = "ready")]
    pub status: &'static str,
    /// Per dependency (`database`, `queue`, `storage`): `ok`, or `unavailable: <reason>`.
    pub checks: BTreeMap<&'static str, String>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.status == "ready"
    }
}

/// Runs the checks concurrently, each bounded by [`CHECK_TIMEOUT`]. Failures are logged
/// in full; the report carries only a short description with no secrets in it.
pub async fn readiness(checks: Vec<Check<'_>>) -> Readiness {
    let results = futures::future::join_all(checks.into_iter().map(|(name, probe)| async move {
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
            Ok(Ok(())) => return (name, "ok".to_owned()),
            Ok(Err(e)) => {
                tracing::warn!(check = name, error = %e, "readiness check failed");
                describe(&e)
            }
            Err(_) => {
                tracing::warn!(check = name, "readiness check timed out");
                format!("timed out after {}s", CHECK_TIMEOUT.as_secs())
            }
        };
        (name, format!("unavailable: {outcome}"))
    }))
    .await;
    let ready = results.iter().all(|(_, outcome)| outcome == "ok");
    Readiness {
        status: if ready { "ready" } else { "unavailable" },
        checks: results.into_iter().collect(),
    }
}

/// A short, secret-free description of why a dependency failed.
fn describe(error: &Error) -> String {
    match error {
        Error::Database(sqlx::Error::PoolTimedOut) => {
            "timed out waiting for a connection".to_owned()
        }
        Error::Database(sqlx::Error::PoolClosed) => "the connection pool is closed".to_owned(),
        Error::Database(sqlx::Error::Io(e)) | Error::Io(e) => format!("i/o error ({})", e.kind()),
        Error::Database(sqlx::Error::Database(db)) => {
            format!("database error {}", db.code().unwrap_or_default())
        }
        Error::Database(sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed) => {
            "cannot connect".to_owned()
        }
        Error::Database(_) | Error::Migrate(_) => "database error".to_owned(),
        Error::Queue { .. } => "work queue error".to_owned(),
        Error::Storage { .. } => "storage error".to_owned(),
        _ => "unexpected error".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_failing_check_is_named_without_its_details() {
        let readiness = readiness(vec![
            ("database", Box::pin(async { Ok(()) })),
            (
                "queue",
                Box::pin(async { Err(Error::queue("https://secret@host")) }),
            ),
        ])
        .await;
        assert!(!readiness.is_ready());
        assert_eq!(readiness.checks["database"], "ok");
        assert_eq!(readiness.checks["queue"], "unavailable: work queue error");
    }
}
