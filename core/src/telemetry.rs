//! Logging, traces and process signals, the same for every binary.
//!
//! Traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, every span (each HTTP request, each
//! report a worker handles, the store, queue and storage calls inside them) is exported
//! over OTLP/HTTP (protobuf) to `<endpoint>/v1/traces`, as `OTEL_SERVICE_NAME` (default
//! the binary's name); the SDK's standard `OTEL_*` variables tune it. Unset, nothing is
//! exported and nothing is set up. The W3C `traceparent` travels with the work: from the
//! request's headers into its span, from the span into the report row and every work
//! message dispatched for it ([`traceparent`]), and from the message into the worker's
//! span ([`adopt_parent`]), so one trace spans API → queue → worker → storage.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio_util::sync::CancellationToken;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The W3C trace-context header and field name.
pub const TRACEPARENT: &str = "traceparent";

/// What [`init`] set up; [`Telemetry::shutdown`] flushes the spans not yet exported.
#[must_use = "call shutdown() before exiting, or the last spans are lost"]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported (`OTEL_EXPORTER_OTLP_ENDPOINT` was set).
    pub fn exports_traces(&self) -> bool {
        self.traces.is_some()
    }

    /// Exports what is buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.traces
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "flushing the last spans failed");
        }
    }
}

/// Installs the global tracing subscriber: `RUST_LOG` filters (default `info`),
/// `QUIRE_LOG_FORMAT=json` switches to one JSON object per line for log collectors, and
/// `OTEL_EXPORTER_OTLP_ENDPOINT` adds trace export as `service` (see the module docs).
pub fn init(service: &str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    // Logs go to stderr (stdout is for what a command prints on purpose), coloured only
    // for a terminal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let json = std::env::var("QUIRE_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let (text, json) = if json {
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr);
        (None, Some(layer))
    } else {
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi);
        (Some(layer), None)
    };
    let traces = tracer_provider(service);
    let otel = traces
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("quire")));
    // `try_init` so tests and embedders that installed their own subscriber keep it.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(otel)
        .try_init();
    if let Some(provider) = &traces {
        opentelemetry::global::set_tracer_provider(provider.clone());
        tracing::info!("exporting traces over OTLP");
    }
    Telemetry { traces }
}

/// The OTLP exporter, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces-only variable)
/// names one.
fn tracer_provider(service: &str) -> Option<SdkTracerProvider> {
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|value| !value.trim().is_empty()));
    if !configured {
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("not exporting traces: the OTLP exporter cannot be built: {e}");
            return None;
        }
    };
    let name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| service.to_owned());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(name)
        .build();
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build(),
    )
}

/// The `traceparent` of the current span, if it belongs to an exported trace: what a new
/// report and its work messages carry.
pub fn traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` a child of the trace `traceparent` names (a malformed one is ignored).
pub fn adopt_parent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(context);
}

/// [`adopt_parent`] from a request's `traceparent` header, so a client's trace continues.
pub fn adopt_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    adopt_parent(
        span,
        headers
            .get(TRACEPARENT)
            .and_then(|value| value.to_str().ok()),
    );
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

/// Cancels `token` when the process is asked to stop.
pub async fn cancel_on_signal(token: CancellationToken) {
    shutdown_signal().await;
    tracing::info!("shutdown requested");
    token.cancel();
}
