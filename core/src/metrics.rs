//! Prometheus metrics, the same way in every process: each component registers its
//! metrics (full names, `quire_…`) in a [`Registry`] of its own, and a process serves the
//! registries it holds at `GET /metrics` as one OpenMetrics exposition ([`Exposition`]).
//!
//! Here live the metrics of what `quire-core` runs itself: the queue's depth
//! ([`QueueMetrics`], exported by the API server and `quire dev` only, so a deployment
//! counts its queue once) and the retention pass ([`RetentionMetrics`]).

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::queue::WorkQueue;

/// The `Content-Type` of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registries a process serves at `/metrics`. Cloning shares them.
#[derive(Clone, Default)]
pub struct Exposition {
    registries: Arc<RwLock<Vec<Arc<Registry>>>>,
}

impl Exposition {
    /// An exposition of `registry` alone.
    pub fn new(registry: Registry) -> Self {
        let exposition = Self::default();
        exposition.add(registry);
        exposition
    }

    /// Serves `registry` too (`quire dev` adds the worker's to the API's).
    pub fn add(&self, registry: impl Into<Arc<Registry>>) {
        self.registries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(registry.into());
    }

    /// The OpenMetrics text of every registry, ended by one `# EOF`.
    pub fn encode(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut text = String::new();
        let registries = self
            .registries
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        // Writing into a String cannot fail.
        for registry in registries.iter() {
            let _ = encode_registry(&mut text, registry);
        }
        let _ = encode_eof(&mut text);
        text
    }

    /// `GET /metrics`.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/metrics", get(serve))
            .with_state(self.clone())
    }
}

async fn serve(State(exposition): State<Exposition>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], exposition.encode())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// `quire_queue_messages{state="visible"|"in_flight"}` and `quire_queue_dead_letters`,
/// sampled from the queue ([`WorkQueue::depth`]) every [`QueueMetrics::SAMPLE_EVERY`].
#[derive(Clone, Default)]
pub struct QueueMetrics {
    messages: Family<StateLabel, Gauge>,
    dead_letters: Gauge,
}

impl QueueMetrics {
    /// How often [`sample_periodically`](Self::sample_periodically) asks the queue.
    pub const SAMPLE_EVERY: Duration = Duration::from_secs(15);

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "quire_queue_messages",
            "Work messages in the queue, by state: visible (waiting) or in_flight (received, not yet deleted)",
            self.messages.clone(),
        );
        registry.register(
            "quire_queue_dead_letters",
            "Work messages in the dead-letter queue",
            self.dead_letters.clone(),
        );
        // Both states from the start (at 0 until the first sample), so dashboards see them.
        for state in ["visible", "in_flight"] {
            let _ = self.messages.get_or_create(&StateLabel { state });
        }
    }

    /// Samples the queue's depth now; a failure is logged and keeps the last values.
    pub async fn sample(&self, queue: &dyn WorkQueue) {
        match queue.depth().await {
            Ok(depth) => {
                let set = |state, value: u64| {
                    self.messages
                        .get_or_create(&StateLabel { state })
                        .set(i64::try_from(value).unwrap_or(i64::MAX));
                };
                set("visible", depth.visible);
                set("in_flight", depth.in_flight);
                self.dead_letters
                    .set(i64::try_from(depth.dead_letters).unwrap_or(i64::MAX));
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the work queue's depth"),
        }
    }

    /// Samples the queue every `every` until `shutdown` fires.
    pub async fn sample_periodically(
        self,
        queue: Arc<dyn WorkQueue>,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        loop {
            self.sample(queue.as_ref()).await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// What the retention pass deleted: `quire_retention_outputs_deleted_total` and
/// `quire_retention_reports_deleted_total`.
#[derive(Clone, Default)]
pub struct RetentionMetrics {
    pub outputs_deleted: Counter,
    pub reports_deleted: Counter,
}

impl RetentionMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "quire_retention_outputs_deleted",
            "Report outputs deleted because they outlived QUIRE_OUTPUT_RETENTION",
            self.outputs_deleted.clone(),
        );
        registry.register(
            "quire_retention_reports_deleted",
            "Finished reports deleted because they outlived QUIRE_RECORD_RETENTION",
            self.reports_deleted.clone(),
        );
    }
}
