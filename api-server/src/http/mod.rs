//! The HTTP surface: every route, the layers around them and the server loop.
//!
//! Each module contributes its own `router()`; [`app`] merges them and adds, from the
//! outside in: a request id (`x-request-id`: the client's if it is at most 64 letters,
//! digits, `-`, `_`, `.`, `:` or `/`, else a generated UUID, so a client cannot forge log
//! fields), a trace
//! span per request (method, path and request id; never headers, query strings or bodies,
//! which can carry tokens and signatures), JSON bodies for bare error responses, panic
//! recovery, a request timeout and the body size limit.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

pub mod auth;
pub mod catalogue;
pub mod client;
pub mod error;
pub mod files;
pub mod health;
pub mod me;
pub mod metrics;
pub mod openapi;
pub mod prefer;
pub mod reports;
pub mod webhooks;

pub use auth::AuthUser;
pub use error::{ApiError, Json};

/// Every documented route, and the OpenAPI document that describes them.
pub fn documented() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut document) = OpenApiRouter::with_openapi(openapi::base())
        .merge(auth::router())
        .merge(reports::router())
        .merge(catalogue::router())
        .merge(me::router())
        .merge(webhooks::router())
        .merge(health::router())
        .split_for_parts();
    openapi::complete(&mut document);
    (router, document)
}

/// The API's OpenAPI document, as `GET /openapi.json` serves it.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    documented().1
}

/// The whole API: every route with its layers. Serve it with [`serve`] so handlers see the
/// client's address.
pub fn app(state: AppState) -> Router {
    let body_limit = state.config().body_limit;
    let (mut router, document) = documented();
    router = router.merge(openapi::docs(document));
    if state.local_files().is_some() {
        router = router.merge(files::router());
    }
    router
        .fallback(|| async { ApiError::NotFound("no such route".to_owned()) })
        .with_state(state.clone())
        // Layers wrap what is above them: the last one added sees the request first.
        .layer(DefaultBodyLimit::max(body_limit))
        // The request timeout, lengthened for requests held by `Prefer: wait`.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            prefer::timeout,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            // The panic message is logged by the panic hook; it is not for the client.
            ApiError::internal(anyhow::anyhow!("a request handler panicked")).into_response()
        }))
        .layer(middleware::map_response(json_error_bodies))
        .layer(middleware::from_fn_with_state(state, metrics::track))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(access_log),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::map_request(drop_unsafe_request_id))
}

/// Longest client-chosen request id kept.
const MAX_REQUEST_ID_LEN: usize = 64;

/// Removes a client's `x-request-id` unless it is short and of a safe charset, so the
/// request-id layer generates one instead.
async fn drop_unsafe_request_id(mut request: Request) -> Request {
    let safe = |value: &[u8]| {
        !value.is_empty()
            && value.len() <= MAX_REQUEST_ID_LEN
            && value
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(b))
    };
    let headers = request.headers_mut();
    let all_safe = headers
        .get_all("x-request-id")
        .iter()
        .all(|value| safe(value.as_bytes()));
    if !all_safe || headers.get_all("x-request-id").iter().count() > 1 {
        headers.remove("x-request-id");
    }
    request
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes the requests in
/// flight. Handlers get the peer address (`ConnectInfo<SocketAddr>`) for rate limiting.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// The span of one request: method, path (no query: download links carry signatures) and
/// request id, in the trace the client's `traceparent` names, if any.
fn request_span(request: &Request) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
    );
    // A client's `traceparent` continues its trace (when traces are exported).
    quire_core::telemetry::adopt_parent_from_headers(&span, request.headers());
    span
}

/// One line per answered request, off the hot path: successes at `debug` (counted and
/// timed by `/metrics` instead), client errors at `info`, server errors at `warn`.
fn access_log(response: &Response, latency: std::time::Duration, _span: &tracing::Span) {
    let status = response.status().as_u16();
    let latency_ms = latency.as_secs_f64() * 1000.0;
    if response.status().is_server_error() {
        tracing::warn!(status, latency_ms, "answered");
    } else if response.status().is_client_error() {
        tracing::info!(status, latency_ms, "answered");
    } else {
        tracing::debug!(status, latency_ms, "answered");
    }
}

/// Gives error responses produced outside our handlers (axum's 405, the timeout's 503, …)
/// the same JSON body as [`ApiError`], keeping their headers (`Allow`, …).
async fn json_error_bodies(response: Response) -> Response {
    let status = response.status();
    let bare = (status.is_client_error() || status.is_server_error())
        && !response.headers().contains_key(header::CONTENT_TYPE);
    if !bare {
        return response;
    }
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => "this route does not accept that method",
        StatusCode::SERVICE_UNAVAILABLE => "the request took too long; try again shortly",
        s => s.canonical_reason().unwrap_or("request failed"),
    };
    let (parts, _) = response.into_parts();
    let mut fresh = error::error_response(status, message);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_LENGTH && !fresh.headers().contains_key(name) {
            fresh.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fresh
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::HeaderValue;

    use super::*;

    #[tokio::test]
    async fn bare_error_responses_get_the_json_error_body_and_keep_their_headers() {
        let bare = Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(header::ALLOW, "GET,HEAD")
            .body(Body::empty())
            .unwrap();
        let response = json_error_bodies(bare).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "GET,HEAD");
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "method_not_allowed");
    }

    #[tokio::test]
    async fn responses_with_a_body_pass_through() {
        let ok = Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .body(Body::from("{\"status\":\"unavailable\"}"))
            .unwrap();
        let response = json_error_bodies(ok).await;
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], b"{\"status\":\"unavailable\"}");
    }
}
