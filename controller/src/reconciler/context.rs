//! [`Context`]: the state every reconciliation shares — the Kubernetes client, the record
//! store, the dispatcher, output storage, the Event recorder, metrics and the per-object
//! backoff of [`error_policy`](super::error_policy).

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::runtime::events::Recorder;
use quire_core::dispatch::Dispatcher;
use quire_core::storage::OutputStorage;
use quire_core::store::RecordStore;

use super::Backoff;
use crate::metrics::Metrics;

/// Everything a reconciliation can reach.
pub struct Context {
    pub client: Client,
    pub store: Arc<dyn RecordStore>,
    pub dispatcher: Arc<dyn Dispatcher>,
    pub storage: Arc<dyn OutputStorage>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// How long an unfinished request waits for its next pass when nothing wakes it.
    pub resync: Duration,
    pub(super) backoff: Backoff,
}

impl Context {
    pub fn new(
        client: Client,
        store: Arc<dyn RecordStore>,
        dispatcher: Arc<dyn Dispatcher>,
        storage: Arc<dyn OutputStorage>,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        resync: Duration,
    ) -> Self {
        Self {
            client,
            store,
            dispatcher,
            storage,
            recorder,
            metrics,
            resync,
            backoff: Backoff::default(),
        }
    }
}
