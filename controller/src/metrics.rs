//! Prometheus metrics of the controller, served at `/metrics` (OpenMetrics text):
//!
//! - `quire_controller_reconciles_total`, `quire_controller_reconcile_failures_total{error}`
//!   and `quire_controller_reconcile_duration_seconds`;
//! - `quire_controller_dispatches_total`: reports handed to the work queue;
//! - `quire_controller_leader`: 1 while this replica holds the lease (or runs without
//!   leader election), else 0.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: &'static str,
}

/// The controller's metrics and the registry they are exposed from.
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    failures: Family<ErrorLabels, Counter>,
    duration: Histogram,
    dispatches: Counter,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let reconciles = Counter::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        // 1 ms to ~16 s.
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let dispatches = Counter::default();
        let leader = Gauge::default();
        registry.register(
            "quire_controller_reconciles",
            "ReportRequest reconciliations run",
            reconciles.clone(),
        );
        registry.register(
            "quire_controller_reconcile_failures",
            "Reconciliations that failed, by error kind",
            failures.clone(),
        );
        registry.register(
            "quire_controller_reconcile_duration_seconds",
            "How long reconciliations took",
            duration.clone(),
        );
        registry.register(
            "quire_controller_dispatches",
            "Reports handed to the work queue",
            dispatches.clone(),
        );
        registry.register(
            "quire_controller_leader",
            "1 while this replica reconciles (holds the lease)",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            failures,
            duration,
            dispatches,
            leader,
        }
    }
}

impl Metrics {
    /// Counts a reconciliation and times it until the guard drops.
    pub fn reconcile(&self) -> ReconcileTimer<'_> {
        self.reconciles.inc();
        ReconcileTimer {
            histogram: &self.duration,
            start: Instant::now(),
        }
    }

    pub fn reconcile_failed(&self, error: &'static str) {
        self.failures.get_or_create(&ErrorLabels { error }).inc();
    }

    pub fn dispatched(&self) {
        self.dispatches.inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Records a reconciliation's duration when dropped.
pub struct ReconcileTimer<'a> {
    histogram: &'a Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}
