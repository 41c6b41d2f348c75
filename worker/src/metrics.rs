//! The worker's Prometheus metrics, served at `/metrics` on its probe address:
//!
//! - `quire_worker_reports_processed_total{type,format,outcome}`: deliveries handled, by
//!   how they ended (`completed`, `retried`, `failed`, `cancelled`, `postponed`,
//!   `skipped` — a duplicate or another worker's lease —, `lease_lost`, `released`,
//!   `poison`);
//! - `quire_worker_attempts_total{type,format}`: attempts started (claims);
//! - `quire_worker_render_duration_seconds{type,format}` and
//!   `quire_worker_upload_duration_seconds`: how long rendering and storing took;
//! - `quire_worker_output_bytes_total{type,format}`: bytes of stored outputs;
//! - `quire_worker_in_flight`: reports rendering now;
//! - `quire_worker_queue_lag_seconds`: from a report's creation to its first attempt.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use quire_core::model::Report;

use crate::Outcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReportLabels {
    r#type: &'static str,
    format: &'static str,
}

impl ReportLabels {
    pub(crate) fn of(report: &Report) -> Self {
        Self {
            r#type: report.report_type.as_str(),
            format: report.format.as_str(),
        }
    }

    /// A delivery whose report could not be read.
    pub(crate) const UNKNOWN: Self = Self {
        r#type: "unknown",
        format: "unknown",
    };
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    r#type: &'static str,
    format: &'static str,
    outcome: &'static str,
}

fn histogram_seconds() -> Histogram {
    // 5 ms to ~160 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
}

/// The worker's metrics; clones share the same series.
#[derive(Clone)]
pub struct WorkerMetrics {
    processed: Family<OutcomeLabels, Counter>,
    attempts: Family<ReportLabels, Counter>,
    render: Family<ReportLabels, Histogram, fn() -> Histogram>,
    upload: Histogram,
    output_bytes: Family<ReportLabels, Counter>,
    in_flight: Gauge,
    queue_lag: Histogram,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self {
            processed: Family::default(),
            attempts: Family::default(),
            render: Family::new_with_constructor(histogram_seconds),
            upload: histogram_seconds(),
            output_bytes: Family::default(),
            in_flight: Gauge::default(),
            // 10 ms to ~2.8 h.
            queue_lag: Histogram::new(exponential_buckets(0.01, 2.0, 20)),
        }
    }
}

impl WorkerMetrics {
    /// Adds these metrics to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "quire_worker_reports_processed",
            "Deliveries handled, by report type, format and outcome",
            self.processed.clone(),
        );
        registry.register(
            "quire_worker_attempts",
            "Attempts started (reports claimed), by report type and format",
            self.attempts.clone(),
        );
        registry.register(
            "quire_worker_render_duration_seconds",
            "How long rendering a report took, by report type and format",
            self.render.clone(),
        );
        registry.register(
            "quire_worker_upload_duration_seconds",
            "How long storing an output took",
            self.upload.clone(),
        );
        registry.register(
            "quire_worker_output_bytes",
            "Bytes of outputs stored, by report type and format",
            self.output_bytes.clone(),
        );
        registry.register(
            "quire_worker_in_flight",
            "Reports this worker is rendering now",
            self.in_flight.clone(),
        );
        registry.register(
            "quire_worker_queue_lag_seconds",
            "Time from a report's creation to its first attempt",
            self.queue_lag.clone(),
        );
    }

    pub(crate) fn processed(&self, labels: &ReportLabels, outcome: &Outcome) {
        let outcome = match outcome {
            Outcome::Completed => "completed",
            Outcome::Retrying { .. } => "retried",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::AlreadyFinished | Outcome::Deferred => "skipped",
            Outcome::LeaseLost => "lease_lost",
            Outcome::Released => "released",
            Outcome::Postponed { .. } => "postponed",
            Outcome::Poison { .. } => "poison",
        };
        self.processed
            .get_or_create(&OutcomeLabels {
                r#type: labels.r#type,
                format: labels.format,
                outcome,
            })
            .inc();
    }

    /// An attempt of `report` starts: counts it and, on its first, the time it waited.
    pub(crate) fn attempt_started(&self, report: &Report) {
        self.attempts.get_or_create(&ReportLabels::of(report)).inc();
        if report.attempts <= 1
            && let Some(lag) = report
                .started_at
                .and_then(|started| (started - report.created_at).to_std().ok())
        {
            self.queue_lag.observe(lag.as_secs_f64());
        }
    }

    pub(crate) fn rendered(&self, report: &Report, seconds: f64) {
        self.render
            .get_or_create(&ReportLabels::of(report))
            .observe(seconds);
    }

    pub(crate) fn stored(&self, report: &Report, seconds: f64, bytes: u64) {
        self.upload.observe(seconds);
        self.output_bytes
            .get_or_create(&ReportLabels::of(report))
            .inc_by(bytes);
    }

    /// Counts a render in flight until the guard drops.
    pub(crate) fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }
}

/// Decrements `quire_worker_in_flight` when dropped.
pub(crate) struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
