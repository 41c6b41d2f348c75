//! The worker's probes, served on `QUIRE_HEALTH_LISTEN` beside `/metrics`: `/healthz` (the process answers)
//! and `/readyz` (the database, the work queue and output storage answer; 503 naming the
//! ones that do not).

use std::sync::Arc;

use axum::Router;
use quire_core::health::{Dependencies, probes};
use quire_core::queue::WorkQueue;
use quire_core::storage::OutputStorage;
use quire_core::store::RecordStore;

/// The probe routes on the worker's dependencies.
pub fn router(
    store: Arc<dyn RecordStore>,
    queue: Arc<dyn WorkQueue>,
    storage: Arc<dyn OutputStorage>,
) -> Router {
    probes(Dependencies {
        store,
        queue,
        storage,
    })
}
