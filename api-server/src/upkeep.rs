//! What an API process runs in the background besides its orchestrator, the same in
//! `api-server` and `quire dev`: the purge of dead refresh tokens, the retention pass
//! ([`quire_core::retention`]), the sampling of the work queue's depth for `/metrics` and
//! the webhook [`Dispatcher`].

use quire_core::metrics::QueueMetrics;
use quire_core::retention::{Retention, RetentionPolicy};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::auth::tokens::{PURGE_EVERY, purge_periodically};
use crate::state::AppState;
use crate::webhooks::Dispatcher;

/// Starts the background work on `state`'s store, storage and queue; every task ends when
/// `shutdown` fires.
pub fn spawn(
    state: &AppState,
    retention: RetentionPolicy,
    shutdown: &CancellationToken,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    tasks.spawn(purge_periodically(
        state.store().clone(),
        PURGE_EVERY,
        shutdown.clone(),
    ));
    let retention = Retention::new(
        state.store().clone(),
        state.storage().clone(),
        retention,
        state.retention_metrics().clone(),
    );
    tasks.spawn(retention.run(shutdown.clone()));
    tasks.spawn(state.queue_metrics().clone().sample_periodically(
        state.queue().clone(),
        QueueMetrics::SAMPLE_EVERY,
        shutdown.clone(),
    ));
    match Dispatcher::new(state.clone()) {
        Ok(dispatcher) => {
            tasks.spawn(dispatcher.run(shutdown.clone()));
        }
        // Only a TLS backend that cannot start; the API still serves everything else.
        Err(e) => {
            tracing::error!(error = %e, "webhook dispatcher could not start; no webhooks are sent")
        }
    }
    tasks
}
