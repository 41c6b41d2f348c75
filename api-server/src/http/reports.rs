//! `/reports`: request a report, follow it, list, cancel and download.
//!
//! Every route requires a signed-in user and only ever shows that user's reports: another
//! user's report answers 404, exactly like one that does not exist.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use futures::StreamExt;
use quire_core::model::{Cancelled, Inserted, NewReport, Report, ReportFilter};
use quire_core::{ReportFormat, ReportStatus, ReportType};
use quire_crds::UnknownVariant;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

mod view;

use view::download_link;
pub use view::{ReportView, view};

use super::auth::{AuthUser, Bearer};
use super::error::{ApiError, ErrorBody, Json, Path, Query};
use super::prefer;
use crate::state::AppState;

/// Page size when the client does not ask for one.
const DEFAULT_PAGE_SIZE: u32 = 20;
/// Largest page a client may ask for.
const MAX_PAGE_SIZE: u32 = 100;
/// How many download URLs a page signs at once when its stored ones are stale.
const CONCURRENT_SIGNINGS: usize = 8;

static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_reports, create_report))
        .routes(routes!(get_report))
        .routes(routes!(cancel_report))
        .routes(routes!(download_report))
}

/// One page of `GET /reports`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReportPage {
    pub items: Vec<ReportView>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A report to make.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateReport {
    /// One of the types `GET /report-types` lists.
    #[schema(value_type = ReportType)]
    report_type: String,
    /// One of the formats `GET /report-types` lists for that type.
    #[schema(value_type = ReportFormat)]
    format: String,
    /// The type's parameters, as its `parameters_schema` in `GET /report-types` describes
    /// (`null` or absent: the defaults).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
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

/// Request a report
///
/// Stores the report and hands it to a worker: 202 once accepted (`queued`, or `pending`
/// while the queue is slow or down: it is sent later), with its `Location`. With
/// `Prefer: wait=N` the request is held until the report is finished (200) or N seconds
/// have passed (202). 503 when it could not be accepted, and then nothing was created.
#[utoipa::path(
    post,
    path = "/reports",
    tag = "reports",
    security(("bearer" = [])),
    request_body = CreateReport,
    params(
        ("Idempotency-Key" = Option<String>, Header,
            description = "1–255 visible ASCII characters. Repeating a request with the same key returns the same report instead of a new one (`Idempotent-Replayed: true`)."),
        ("Prefer" = Option<String>, Header,
            description = "`wait=N` (RFC 7240): hold the request up to N seconds (at most the server's maximum, 60 by default) until the report is finished."),
    ),
    responses(
        (status = 200, description = "Finished within the `Prefer: wait` time", body = ReportView,
            headers(
                ("Location" = String, description = "The report's URL"),
                ("Preference-Applied" = String, description = "`wait=N`, the wait applied"),
                ("Idempotent-Replayed" = String, description = "`true` when an earlier request with this `Idempotency-Key` made the report"),
            )),
        (status = 202, description = "Accepted; follow it at `Location`", body = ReportView,
            headers(
                ("Location" = String, description = "The report's URL"),
                ("Preference-Applied" = String, description = "`wait=N` when a wait was applied"),
                ("Idempotent-Replayed" = String, description = "`true` when an earlier request with this `Idempotency-Key` made the report"),
            )),
        (status = 409, description = "The `Idempotency-Key` was used with a different request", body = ErrorBody),
        (status = 422, description = "Unknown type, format or data source, or parameters that do not fit the type", body = ErrorBody),
        (status = 429, description = "A quota is exhausted (the message names it)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until a report may be requested again"))),
    ),
)]
#[tracing::instrument(skip_all, fields(user_id = %user.user_id))]
async fn create_report(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Json(body): Json<CreateReport>,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&headers)?;
    let wait = prefer::requested_wait(&headers, state.config().max_wait);
    let new_report = body.into_new_report(user.user_id)?;
    check_source(&state, &new_report)?;
    let mut new_report = new_report.with_traceparent(quire_core::telemetry::traceparent());
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
    let report = match wait {
        Some(wait) if !report.status.is_terminal() => {
            prefer::until_finished(&state, user.user_id, report.id, wait).await?
        }
        _ => report,
    };
    let status = if report.status.is_terminal() && wait.is_some() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let mut response = (
        status,
        [(header::LOCATION, location)],
        Json(view(&state, report).await),
    )
        .into_response();
    if let Some(wait) = wait {
        let (name, value) = prefer::applied(wait);
        response.headers_mut().insert(name, value);
    }
    if replayed {
        response.headers_mut().insert(
            IDEMPOTENT_REPLAYED.clone(),
            HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// Refuses a dataset report whose source the operator has not configured: the worker
/// could only fail it later.
fn check_source(state: &AppState, report: &NewReport) -> Result<(), ApiError> {
    if report.report_type != ReportType::Dataset {
        return Ok(());
    }
    let Some(source) = report.parameters.get("source").and_then(Value::as_str) else {
        return Ok(()); // `NewReport::new` already requires it
    };
    let sources = &state.config().data_sources;
    if sources.get(source).is_some() {
        return Ok(());
    }
    let known: Vec<&str> = sources.names().collect();
    Err(ApiError::UnprocessableEntity(if known.is_empty() {
        format!("unknown data source `{source}`: this server has no data sources configured")
    } else {
        format!(
            "unknown data source `{source}`; expected one of: {} (see GET /data-sources)",
            known.join(", ")
        )
    }))
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

/// Show a report
///
/// Its status, progress and, once completed, a download link. With `Prefer: wait=N` the
/// request is held until the report is finished or N seconds have passed.
#[utoipa::path(
    get,
    path = "/reports/{id}",
    tag = "reports",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The report's id"),
        ("Prefer" = Option<String>, Header,
            description = "`wait=N` (RFC 7240): hold the request up to N seconds (at most the server's maximum, 60 by default) until the report is finished."),
    ),
    responses(
        (status = 200, description = "The report", body = ReportView,
            headers(("Preference-Applied" = String, description = "`wait=N` when a wait was applied"))),
    ),
)]
#[tracing::instrument(skip_all, fields(user_id = %bearer.user_id()))]
async fn get_report(
    State(state): State<AppState>,
    bearer: Bearer,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // The hot path: the token's generation and the report in one query.
    let (generation, report) = match parse_id(&id) {
        Ok(id) => {
            state
                .store()
                .user_report_and_generation(bearer.user_id(), id)
                .await?
        }
        Err(not_found) => {
            bearer.check(state.store().token_generation(bearer.user_id()).await?)?;
            return Err(not_found);
        }
    };
    let user = bearer.check(generation)?;
    let mut report = report.ok_or_else(|| ApiError::not_found("report"))?;
    let wait = prefer::requested_wait(&headers, state.config().max_wait);
    if let Some(wait) = wait
        && !report.status.is_terminal()
    {
        report = prefer::until_finished(&state, user.user_id, report.id, wait).await?;
    }
    let Some(wait) = wait else {
        return Ok(Json(view(&state, report).await).into_response());
    };
    Ok(([prefer::applied(wait)], Json(view(&state, report).await)).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only reports in this status.
    #[param(value_type = Option<ReportStatus>)]
    status: Option<String>,
    /// Page size, 1–100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// List your reports
///
/// Newest first, `limit` per page, `status` to filter, `cursor` to go on.
#[utoipa::path(
    get,
    path = "/reports",
    tag = "reports",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "One page of reports", body = ReportPage),
        (status = 400, description = "A malformed `status`, `limit` or `cursor`", body = ErrorBody),
    ),
)]
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

/// Cancel a report
///
/// 200 with the cancelled report; 409 if it already finished.
#[utoipa::path(
    post,
    path = "/reports/{id}/cancel",
    tag = "reports",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The report's id")),
    responses(
        (status = 200, description = "Cancelled", body = ReportView),
        (status = 409, description = "Already finished", body = ErrorBody),
    ),
)]
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

/// Download a report's file
///
/// 302 to a fresh download link (an S3 presigned URL, or a signed local link); 409 until
/// the report is completed, 410 once its file was deleted by retention.
#[utoipa::path(
    get,
    path = "/reports/{id}/download",
    tag = "reports",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The report's id")),
    responses(
        (status = 302, description = "Redirect to the file",
            headers(("Location" = String, description = "A download link, valid for the configured time"))),
        (status = 409, description = "Not completed", body = ErrorBody),
        (status = 410, description = "The file was deleted", body = ErrorBody),
    ),
)]
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
