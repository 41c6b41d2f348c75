//! The one place errors become HTTP responses: `{"error": "<code>", "message": "…"}`.
//!
//! Client mistakes get a 4xx with a message meant for the client. Server-side failures are
//! logged here with their cause and answered with a generic message, so no SQL, path or
//! secret ever reaches a response.

use std::time::Duration;

use axum::extract::FromRequest;
use axum::extract::FromRequestParts;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// How soon a client refused because a dependency was unreachable (and nothing was
/// changed) should try again.
const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Every error a handler or extractor can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// Missing or invalid credentials; answered with `WWW-Authenticate: Bearer`.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    UnprocessableEntity(String),
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after: Duration,
    },
    /// The request could not be carried out now and should be retried; the message is for
    /// the client (the cause is logged where it happened). Answered 503 with `Retry-After`.
    #[error("{message}")]
    ServiceUnavailable {
        message: String,
        retry_after: Duration,
    },
    /// A dependency (database, queue, storage) cannot be reached. Logged, answered 503.
    #[error("service unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// A bug or an unexpected failure. Logged, answered 500.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    /// A stable code for programs: the status's reason in snake case (`not_found`,
    /// `unprocessable_entity`, `too_many_requests`, …).
    #[schema(example = "not_found")]
    pub error: &'a str,
    /// What went wrong, for people.
    #[schema(example = "report not found")]
    pub message: &'a str,
}

impl ApiError {
    pub fn not_found(what: &str) -> Self {
        Self::NotFound(format!("{what} not found"))
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }

    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Gone(_) => StatusCode::GONE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::UnprocessableEntity(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::ServiceUnavailable { .. } | Self::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message the client sees: generic for server-side failures.
    fn client_message(&self) -> String {
        match self {
            Self::Unavailable(_) => {
                "the service is temporarily unavailable; try again shortly".to_owned()
            }
            Self::Internal(_) => "an internal error occurred".to_owned(),
            other => other.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(e) => tracing::error!(error = format!("{e:#}"), "request failed"),
            Self::Unavailable(e) => {
                tracing::warn!(error = format!("{e:#}"), "dependency unavailable")
            }
            _ => {}
        }
        let status = self.status_code();
        let mut response = error_response(status, &self.client_message());
        let headers = response.headers_mut();
        match &self {
            Self::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::TooManyRequests { retry_after, .. }
            | Self::ServiceUnavailable { retry_after, .. } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after.as_secs().max(1)),
                );
            }
            Self::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}

/// The machine-readable code of a status: what clients switch on.
pub fn error_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::GONE => "gone",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable_entity",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        StatusCode::SERVICE_UNAVAILABLE => "service_unavailable",
        s if s.is_client_error() => "bad_request",
        _ => "internal",
    }
}

/// An error response with the standard body, for `status` and `message`.
pub fn error_response(status: StatusCode, message: &str) -> Response {
    let body = ErrorBody {
        error: error_code(status),
        message,
    };
    (status, axum::Json(body)).into_response()
}

impl From<quire_core::Error> for ApiError {
    fn from(error: quire_core::Error) -> Self {
        use quire_core::Error as E;
        match error {
            E::NotFound(_) => Self::NotFound("not found".to_owned()),
            E::Conflict(_) => {
                Self::Conflict("the request conflicts with the current state".to_owned())
            }
            E::Database(e) if database_unavailable(&e) => Self::Unavailable(e.into()),
            e @ (E::Queue { .. } | E::Storage { .. }) => Self::Unavailable(e.into()),
            E::QuotaExceeded(refusal) => Self::TooManyRequests {
                message: refusal.to_string(),
                retry_after: refusal.retry_after,
            },
            E::Unavailable(message) => Self::ServiceUnavailable {
                message,
                retry_after: UNAVAILABLE_RETRY_AFTER,
            },
            e => Self::Internal(e.into()),
        }
    }
}

/// True when the database could not be reached at all (as opposed to a query failing):
/// the pool is exhausted or closed, the connection broke, or the server is refusing.
pub fn database_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08xxx connection exceptions, 53300 too many connections, 57P0x shutting down.
            code.starts_with("08") || code == "53300" || code.starts_with("57P0")
        }),
        _ => false,
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType(
                "expected a JSON body with `Content-Type: application/json`".to_owned(),
            ),
            StatusCode::PAYLOAD_TOO_LARGE => {
                Self::PayloadTooLarge("the request body is too large".to_owned())
            }
            StatusCode::UNPROCESSABLE_ENTITY => Self::UnprocessableEntity(rejection.body_text()),
            s if s.is_client_error() => Self::BadRequest(rejection.body_text()),
            _ => Self::Internal(anyhow::anyhow!(rejection.body_text())),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        if rejection.status().is_client_error() {
            Self::NotFound("no such resource".to_owned())
        } else {
            Self::Internal(anyhow::anyhow!(rejection.body_text()))
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

/// `axum::Json` whose rejections are [`ApiError`]s: 415 without a JSON content type,
/// 400 for malformed JSON, 422 for well-formed JSON of the wrong shape, 413 when too large.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path` whose rejection is a 404 [`ApiError`].
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query` whose rejection is a 400 [`ApiError`].
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_side_failures_hide_their_cause() {
        let error = ApiError::internal(anyhow::anyhow!("password=hunter2 in SQL"));
        assert_eq!(error.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error.client_message(), "an internal error occurred");
    }

    #[test]
    fn service_unavailable_keeps_its_message_and_says_when_to_retry() {
        let error = ApiError::ServiceUnavailable {
            message: "could not be registered; try again shortly".to_owned(),
            retry_after: Duration::from_secs(7),
        };
        assert_eq!(
            error.client_message(),
            "could not be registered; try again shortly"
        );
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }

    #[test]
    fn an_unreachable_database_is_503_not_500() {
        let error = ApiError::from(quire_core::Error::Database(sqlx::Error::PoolTimedOut));
        assert_eq!(error.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        let error = ApiError::from(quire_core::Error::Database(sqlx::Error::RowNotFound));
        assert_eq!(error.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
