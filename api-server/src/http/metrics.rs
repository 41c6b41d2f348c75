//! The API's Prometheus metrics, served with the rest of the process's at `GET /metrics`:
//!
//! - `quire_http_requests_total{method,route,status}` and
//!   `quire_http_request_duration_seconds{method,route}`: every request, by route template
//!   (`/reports/{id}`, never the path itself, so ids never become series; `unmatched` for
//!   404s of unknown paths);
//! - `quire_signins_total{outcome}` (`success`, `invalid_credentials`, `rate_limited`,
//!   `busy`, `error`) and `quire_token_refreshes_total{outcome}` (`success`, `invalid`,
//!   `reused`, `error`);
//! - `quire_reports_created_total{type,format}`;
//! - `quire_quota_refusals_total{limit}` (`unfinished`, `per_hour`);
//! - `quire_webhook_deliveries_total{outcome}` (`delivered`, `retried`, `failed`): webhook
//!   delivery attempts by what they came to.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use quire_core::{ReportFormat, ReportType};

use crate::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReportLabels {
    r#type: &'static str,
    format: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~33 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

/// The API's metrics; clones share the same series.
#[derive(Clone)]
pub struct ApiMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    signins: Family<OutcomeLabels, Counter>,
    refreshes: Family<OutcomeLabels, Counter>,
    reports_created: Family<ReportLabels, Counter>,
    quota_refusals: Family<LimitLabels, Counter>,
    webhook_deliveries: Family<OutcomeLabels, Counter>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            signins: Family::default(),
            refreshes: Family::default(),
            reports_created: Family::default(),
            quota_refusals: Family::default(),
            webhook_deliveries: Family::default(),
        }
    }
}

impl ApiMetrics {
    /// Adds these metrics to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "quire_http_requests",
            "HTTP requests answered, by method, route template and status",
            self.requests.clone(),
        );
        registry.register(
            "quire_http_request_duration_seconds",
            "Time to answer HTTP requests, by method and route template",
            self.duration.clone(),
        );
        registry.register(
            "quire_signins",
            "Sign-in attempts, by outcome",
            self.signins.clone(),
        );
        registry.register(
            "quire_token_refreshes",
            "Refresh-token exchanges, by outcome",
            self.refreshes.clone(),
        );
        registry.register(
            "quire_reports_created",
            "Reports created (idempotent replays excluded), by type and format",
            self.reports_created.clone(),
        );
        registry.register(
            "quire_quota_refusals",
            "Report requests refused by a per-user quota, by limit",
            self.quota_refusals.clone(),
        );
        registry.register(
            "quire_webhook_deliveries",
            "Webhook delivery attempts, by outcome (delivered, retried, failed)",
            self.webhook_deliveries.clone(),
        );
    }

    pub fn signin(&self, outcome: &'static str) {
        self.signins.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn refresh(&self, outcome: &'static str) {
        self.refreshes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn report_created(&self, report_type: ReportType, format: ReportFormat) {
        self.reports_created
            .get_or_create(&ReportLabels {
                r#type: report_type.as_str(),
                format: format.as_str(),
            })
            .inc();
    }

    /// A webhook delivery attempt came to `outcome`: `delivered`, `retried` or `failed`.
    pub fn webhook_delivery(&self, outcome: &'static str) {
        self.webhook_deliveries
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn quota_refused(&self, limit: &'static str) {
        self.quota_refusals
            .get_or_create(&LimitLabels { limit })
            .inc();
    }
}

/// Counts and times every request by its route template.
pub(super) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let metrics = state.metrics();
    metrics
        .duration
        .get_or_create(&RouteLabels {
            method,
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// The method as a label: the standard ones by name, anything else `other`, so a client
/// cannot mint series.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
