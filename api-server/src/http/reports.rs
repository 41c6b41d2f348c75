//! `/reports`: request a report, follow it, list, cancel and download.
//!
//! Every route requires a signed-in user and only ever shows that user's reports: another
//! user's report answers 404, exactly like one that does not exist.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use futures::StreamExt;
use quire_core::model::{Cancelled, Inserted, NewReport, Report, ReportFilter};
use quire_core::{ReportFormat, ReportStatus, ReportType};
use quire_crds::UnknownVariant;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

mod view;

pub use view::ReportView;
use view::{download_link, view};

use super::auth::AuthUser;
use super::error::{ApiError, Json, Path, Query};
use crate::state::AppState;

/// Page size when the client does not ask for one.
const DEFAULT_PAGE_SIZE: u32 = 20;
/// Largest page a client may ask for.
const MAX_PAGE_SIZE: u32 = 100;
/// How many download URLs a page signs at once when its stored ones are stale.
const CONCURRENT_SIGNINGS: usize = 8;

static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/reports", get(list_reports).post(create_report))
        .route("/reports/{id}", get(get_report))
        .route("/reports/{id}/cancel", post(cancel_report))
        .route("/reports/{id}/download", get(download_report))
}

/// One page of `GET /reports`.
#[derive(Debug, Serialize)]
pub struct ReportPage {
    pub items: Vec<ReportView>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateReport {
    report_type: String,
    format: String,
    #[serde(default)]
    parameters: Value,
}

impl CreateReport {
    /// The report this body asks for, checked by [`NewReport::new`] like every other way in.
    fn into_new_report(self, user_id: Uuid) -> Result<NewReport, ApiError> {
        let invalid = |field: &str, e: UnknownVariant| {
            ApiError::UnprocessableEntity(format!(
                "unknown {field} `{}`; expected one of: {}",
                e.value,
                e.expected.join(", ")
            ))
        };
        let report_type: ReportType = self
            .report_type
            .parse()
            .map_err(|e| invalid("report_type", e))?;
        let format: ReportFormat = self.format.parse().map_err(|e| invalid("format", e))?;
        NewReport::new(
            Uuid::now_v7(),
            user_id,
            report_type,
            format,
            &self.parameters,
        )
        .map_err(|e| ApiError::UnprocessableEntity(e.to_string()))
    }
}

/// `POST /reports`: stores the report and hands it to the [`Orchestrator`]: 202 once it
/// accepted it (`queued`, or `pending` while the queue is slow or down: the built-in
/// orchestrator's sweep sends it later); 503 when it could not, and then nothing was
/// created (cluster mode, the Kubernetes API unreachable).
///
/// [`Orchestrator`]: quire_core::orchestrator::Orchestrator
#[tracing::instrument(skip_all, fields(user_id = %user.user_id))]
async fn create_report(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Json(body): Json<CreateReport>,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&headers)?;
    let mut new_report = body
        .into_new_report(user.user_id)?
        .with_traceparent(quire_core::telemetry::traceparent());
    if let Some(key) = idempotency_key {
        new_report = new_report.with_idempotency_key(key);
    }
    let fingerprint = new_report.request_fingerprint.clone();
    let (report_type, format) = (new_report.report_type, new_report.format);
    let quota = state.config().quota();
    let inserted = match state.store().insert_report_within(new_report, quota).await {
        Err(quire_core::Error::QuotaExceeded(refusal)) => {
            state.metrics().quota_refused(refusal.limit.as_str());
            tracing::info!(limit = refusal.limit.as_str(), "report refused by quota");
            return Err(quire_core::Error::QuotaExceeded(refusal).into());
        }
        // A correctly signed token whose account is gone (a restored database, a secret
        // shared across environments): the client's credentials are the problem.
        Err(quire_core::Error::UnknownUser(_)) => {
            return Err(ApiError::Unauthorized(
                "the account this token was issued for no longer exists; sign in again".into(),
            ));
        }
        other => other?,
    };
    let (report, replayed) = match inserted {
        Inserted::Created(report) => {
            let report = state.orchestrator().accept(report).await?;
            state.metrics().report_created(report_type, format);
            (report, false)
        }
        Inserted::Existing(report) if report.request_fingerprint == fingerprint => {
            state.orchestrator().ensure(&report).await?;
            (report, true)
        }
        Inserted::Existing(_) => {
            return Err(ApiError::Conflict(
                "this Idempotency-Key was already used with a different request".to_owned(),
            ));
        }
    };
    let location =
        HeaderValue::try_from(format!("/reports/{}", report.id)).map_err(ApiError::internal)?;
    let mut response = (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(view(&state, report).await),
    )
        .into_response();
    if replayed {
        response.headers_mut().insert(
            IDEMPOTENT_REPLAYED.clone(),
            HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// The `Idempotency-Key` header, if any: 1–255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(&IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 255 || !bytes.iter().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadRequest(
            "`Idempotency-Key` must be 1 to 255 visible ASCII characters".to_owned(),
        ));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

#[tracing::instrument(skip_all, fields(user_id = %user.user_id))]
async fn get_report(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<ReportView>, ApiError> {
    let report = owned_report(&state, user, &id).await?;
    Ok(Json(view(&state, report).await))
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /reports`: newest first, `limit` per page, `status` to filter, `cursor` to go on.
#[tracing::instrument(skip_all, fields(user_id = %user.user_id))]
async fn list_reports(
    State(state): State<AppState>,
    user: AuthUser,
    Query(query): Query<ListQuery>,
) -> Result<Json<ReportPage>, ApiError> {
    let status = match query.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(s.parse::<ReportStatus>().map_err(|e| {
            ApiError::BadRequest(format!(
                "unknown status `{}`; expected one of: {}",
                e.value,
                e.expected.join(", ")
            ))
        })?),
    };
    let limit = match query.limit.as_deref() {
        None => DEFAULT_PAGE_SIZE,
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "`limit` must be an integer between 1 and {MAX_PAGE_SIZE}"
                ))
            })?,
    };
    let before = match query.cursor.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(cursor) => Some(decode_cursor(cursor).ok_or_else(|| {
            ApiError::BadRequest("`cursor` is not a cursor this API returned".to_owned())
        })?),
    };
    // One more than asked: whether it exists says whether there is a next page.
    let filter = ReportFilter {
        status,
        before,
        limit: limit + 1,
    };
    let mut reports = state.store().list_reports(user.user_id, &filter).await?;
    let next_cursor = if reports.len() > limit as usize {
        reports.truncate(limit as usize);
        reports.last().map(|last| encode_cursor(last.id))
    } else {
        None
    };
    let items = futures::stream::iter(reports)
        .map(|report| view(&state, report))
        .buffered(CONCURRENT_SIGNINGS)
        .collect()
        .await;
    Ok(Json(ReportPage { items, next_cursor }))
}

fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_cursor(cursor: &str) -> Option<Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    Uuid::from_slice(&bytes).ok()
}

/// `POST /reports/{id}/cancel`: 200 with the cancelled report, 409 if it already finished.
#[tracing::instrument(skip_all, fields(user_id = %user.user_id))]
async fn cancel_report(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<ReportView>, ApiError> {
    let id = parse_id(&id)?;
    match state
        .store()
        .cancel_report(user.user_id, id, Utc::now())
        .await?
    {
        Cancelled::Cancelled(report) => {
            tracing::info!(report_id = %report.id, "report cancelled");
            Ok(Json(view(&state, report).await))
        }
        Cancelled::AlreadyFinished(report) => Err(ApiError::Conflict(format!(
            "the report is already {} and can no longer be cancelled",
            report.status
        ))),
        Cancelled::Missing => Err(ApiError::not_found("report")),
    }
}

/// `GET /reports/{id}/download`: 302 to a fresh download link, 409 until completed.
#[tracing::instrument(skip_all, fields(user_id = %user.user_id))]
async fn download_report(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let report = owned_report(&state, user, &id).await?;
    if report.status != ReportStatus::Completed {
        return Err(ApiError::Conflict(format!(
            "the report is {}; it can be downloaded once completed",
            report.status
        )));
    }
    let (url, _) = download_link(&state, &report).await?.ok_or_else(|| {
        ApiError::internal(anyhow::anyhow!("a completed report has no download link"))
    })?;
    let location = HeaderValue::try_from(url).map_err(ApiError::internal)?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response())
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found("report"))
}

/// The user's report `raw_id`; 404 when the id is malformed, unknown or someone else's.
async fn owned_report(state: &AppState, user: AuthUser, raw_id: &str) -> Result<Report, ApiError> {
    let id = parse_id(raw_id)?;
    state
        .store()
        .user_report(user.user_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("report"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(report_type: &str, format: &str, parameters: Value) -> CreateReport {
        CreateReport {
            report_type: report_type.into(),
            format: format.into(),
            parameters,
        }
    }

    #[test]
    fn equivalent_requests_share_a_fingerprint() {
        let a = request("activity", "csv", Value::Null)
            .into_new_report(Uuid::nil())
            .ok()
            .unwrap();
        let b = request("activity", "csv", json!({"days": 30}))
            .into_new_report(Uuid::nil())
            .ok()
            .unwrap();
        let c = request("activity", "csv", json!({"days": 31}))
            .into_new_report(Uuid::nil())
            .ok()
            .unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(id)), Some(id));
        assert_eq!(decode_cursor("not a cursor"), None);
        assert_eq!(decode_cursor(&URL_SAFE_NO_PAD.encode([1u8; 8])), None);
    }

    #[test]
    fn idempotency_keys_are_visible_ascii() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(IDEMPOTENCY_KEY.clone(), HeaderValue::from_static(v));
            idempotency_key(&h)
        };
        assert_eq!(with("abc-123").ok().flatten().as_deref(), Some("abc-123"));
        assert!(with("").is_err());
        assert!(with("has space").is_err());
        assert!(idempotency_key(&HeaderMap::new()).ok().flatten().is_none());
    }
}
