//! `GET /files/{*key}`: downloads from [`LocalStorage`](quire_core::storage::LocalStorage)
//! behind its signed, expiring links. No bearer token: the signature is the authorization,
//! exactly like an S3 presigned URL. Only mounted when local storage is configured.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use quire_core::storage::local::LinkError;
use serde::Deserialize;
use tokio_util::io::ReaderStream;

use super::error::{ApiError, Path, Query};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/files/{*key}", get(download_file))
}

/// The signed query of a download link. Every field is optional here so that a link with a
/// field missing is refused like any other bad link (403), not as a malformed request.
#[derive(Deserialize)]
struct LinkQuery {
    expires: Option<String>,
    content_type: Option<String>,
    file_name: Option<String>,
    signature: Option<String>,
}

#[tracing::instrument(skip_all)]
async fn download_file(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(link): Query<LinkQuery>,
) -> Result<Response, ApiError> {
    let Some(local) = state.local_files() else {
        return Err(ApiError::not_found("file"));
    };
    let bad_link = || ApiError::Forbidden(LinkError::BadSignature.to_string());
    let (Some(expires), Some(content_type), Some(file_name), Some(signature)) = (
        link.expires,
        link.content_type,
        link.file_name,
        link.signature,
    ) else {
        return Err(bad_link());
    };
    let expires: i64 = expires.parse().map_err(|_| bad_link())?;
    let verified = local
        .verify(
            &key,
            expires,
            &content_type,
            &file_name,
            &signature,
            Utc::now(),
        )
        .map_err(|e| match e {
            LinkError::BadSignature => ApiError::Forbidden(e.to_string()),
            LinkError::Expired => ApiError::Gone(e.to_string()),
            LinkError::Gone => ApiError::NotFound(e.to_string()),
        })?;
    let file = match tokio::fs::File::open(&verified.path).await {
        Ok(file) => file,
        // Deleted between the check and the open.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::NotFound(LinkError::Gone.to_string()));
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let length = file.metadata().await.map_err(ApiError::internal)?.len();
    let content_type = HeaderValue::try_from(verified.meta.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let disposition = HeaderValue::try_from(format!(
        "attachment; filename=\"{}\"",
        quoted(&verified.meta.file_name)
    ))
    .unwrap_or(HeaderValue::from_static("attachment"));
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_LENGTH, HeaderValue::from(length)),
        (header::CONTENT_DISPOSITION, disposition),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        ),
    ];
    // Streamed in chunks: a large report never sits in memory whole.
    Ok((
        StatusCode::OK,
        headers,
        Body::from_stream(ReaderStream::new(file)),
    )
        .into_response())
}

/// `name` made safe inside a quoted `filename="…"`: printable ASCII without `"` or `\`.
fn quoted(name: &str) -> String {
    name.chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_cannot_break_out_of_their_quotes() {
        assert_eq!(quoted("quire-profile-1.pdf"), "quire-profile-1.pdf");
        assert_eq!(quoted("a\"b\\c\r\nd é.pdf"), "a_b_c__d _.pdf");
    }
}
