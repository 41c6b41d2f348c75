//! `/webhooks`: register, list, show and delete completion webhooks, and see their
//! deliveries.
//!
//! Every route requires a signed-in user and only ever shows that user's endpoints:
//! another user's endpoint answers 404, exactly like one that does not exist. The signing
//! secret is shown once, in the answer to `POST /webhooks`, and never again.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use quire_core::webhook::{Delivery, DeliveryStatus, NewWebhook, Webhook, WebhookEvent};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::AuthUser;
use super::error::{ApiError, ErrorBody, Json, Path, Query};
use crate::state::AppState;
use crate::webhooks::{check_destination, new_secret};

/// Deliveries listed when the client does not ask for a number.
const DEFAULT_DELIVERIES: u32 = 20;
/// Most deliveries one listing shows.
const MAX_DELIVERIES: u32 = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(get_webhook, delete_webhook))
        .routes(routes!(list_deliveries))
}

/// `POST /webhooks`: where to send which events.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// An `https` URL on a public address (plain `http` and private addresses only where
    /// the server allows them, for development).
    #[schema(example = "https://hooks.example.com/quire")]
    pub url: String,
    /// At least one of `report.completed`, `report.failed`, `report.cancelled`.
    #[schema(value_type = Vec<WebhookEvent>)]
    pub events: Vec<String>,
}

/// A registered endpoint with its signing secret: only the answer to `POST /webhooks`
/// carries the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<WebhookEvent>,
    /// `whsec_…`: verify each delivery's `webhook-signature` with it (Standard Webhooks).
    /// Store it now; it is never shown again.
    pub secret: String,
    pub created_at: DateTime<Utc>,
}

/// A registered endpoint as the API shows it (never with its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<WebhookEvent>,
    pub created_at: DateTime<Utc>,
    /// When the endpoint was disabled (it answered 410, or kept failing); a disabled
    /// endpoint gets no deliveries. Delete it and register it again to resume.
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
}

impl From<Webhook> for WebhookView {
    fn from(webhook: Webhook) -> Self {
        Self {
            id: webhook.id,
            url: webhook.url,
            events: webhook.events,
            created_at: webhook.created_at,
            disabled_at: webhook.disabled_at,
            disabled_reason: webhook.disabled_reason,
        }
    }
}

/// `GET /webhooks`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub items: Vec<WebhookView>,
}

/// One event for one endpoint and how sending it went.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// The `webhook-id` header of every attempt: receivers deduplicate on it.
    pub id: Uuid,
    pub event: WebhookEvent,
    pub report_id: Uuid,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i32,
    /// When a pending delivery is tried (again).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The endpoint's status code on the last attempt, if it answered.
    pub response_status: Option<i32>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// When the event happened.
    pub created_at: DateTime<Utc>,
}

impl From<Delivery> for DeliveryView {
    fn from(delivery: Delivery) -> Self {
        Self {
            id: delivery.id,
            event: delivery.event,
            report_id: delivery.report_id,
            status: delivery.status,
            attempts: delivery.attempts,
            next_attempt_at: delivery.next_attempt_at,
            last_attempt_at: delivery.last_attempt_at,
            response_status: delivery.response_status,
            last_error: delivery.last_error,
            delivered_at: delivery.delivered_at,
            created_at: delivery.created_at,
        }
    }
}

/// `GET /webhooks/{id}/deliveries`, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub items: Vec<DeliveryView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// How many deliveries, 1–100 (20).
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
}

/// The event names of a request: at least one, each known; duplicates collapse.
fn parse_events(names: &[String]) -> Result<Vec<WebhookEvent>, ApiError> {
    let allowed = || {
        WebhookEvent::ALL
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if names.is_empty() {
        return Err(ApiError::UnprocessableEntity(format!(
            "`events` must name at least one of: {}",
            allowed()
        )));
    }
    let mut events = Vec::new();
    for name in names {
        let event: WebhookEvent = name.parse().map_err(|_| {
            ApiError::UnprocessableEntity(format!(
                "unknown event `{name}` in `events`; expected any of: {}",
                allowed()
            ))
        })?;
        if !events.contains(&event) {
            events.push(event);
        }
    }
    Ok(events)
}

/// Registers an endpoint for the caller's report events.
///
/// Answers 201 with the endpoint and its signing secret, the only time the secret is
/// shown. Every delivery is signed per Standard Webhooks (`webhook-id`,
/// `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`).
#[utoipa::path(
    post,
    path = "/webhooks",
    tag = "webhooks",
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "Registered; the only answer that shows the secret",
         body = CreatedWebhook,
         headers(("Location" = String, description = "`/webhooks/{id}`"))),
        (status = 401, description = "No valid access token", body = ErrorBody),
        (status = 409, description = "The caller already has the most endpoints allowed", body = ErrorBody),
        (status = 422, description = "A refused URL or unknown event names", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user_id = %user.user_id))]
async fn create_webhook(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<CreateWebhook>,
) -> Result<Response, ApiError> {
    let settings = &state.config().webhooks;
    let url = check_destination(body.url.trim(), settings)
        .map_err(|e| ApiError::UnprocessableEntity(e.to_string()))?;
    let events = parse_events(&body.events)?;
    let secret = new_secret();
    let new_webhook = NewWebhook {
        id: Uuid::now_v7(),
        user_id: user.user_id,
        url: url.to_string(),
        events,
        secret: secret.clone(),
        created_at: Utc::now(),
    };
    let webhook = match state
        .store()
        .insert_webhook(new_webhook, settings.max_per_user)
        .await
    {
        Ok(Some(webhook)) => webhook,
        Ok(None) => {
            return Err(ApiError::Conflict(format!(
                "you already have {} webhooks, the most allowed; delete one first",
                settings.max_per_user
            )));
        }
        Err(quire_core::Error::UnknownUser(_)) => {
            return Err(ApiError::Unauthorized(
                "the account this token was issued for no longer exists; sign in again".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(webhook_id = %webhook.id, "webhook registered");
    let location =
        HeaderValue::try_from(format!("/webhooks/{}", webhook.id)).map_err(ApiError::internal)?;
    let created = CreatedWebhook {
        id: webhook.id,
        url: webhook.url,
        events: webhook.events,
        secret,
        created_at: webhook.created_at,
    };
    Ok((
        StatusCode::CREATED,
        [
            (header::LOCATION, location),
            // The secret is in this answer: no cache may keep it.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Json(created),
    )
        .into_response())
}

/// The caller's endpoints, oldest first.
#[utoipa::path(
    get,
    path = "/webhooks",
    tag = "webhooks",
    responses(
        (status = 200, description = "The caller's endpoints", body = WebhookList),
        (status = 401, description = "No valid access token", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user_id = %user.user_id))]
async fn list_webhooks(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<WebhookList>, ApiError> {
    let webhooks = state.store().list_webhooks(user.user_id).await?;
    Ok(Json(WebhookList {
        items: webhooks.into_iter().map(WebhookView::from).collect(),
    }))
}

/// One of the caller's endpoints.
#[utoipa::path(
    get,
    path = "/webhooks/{id}",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "The endpoint", body = WebhookView),
        (status = 401, description = "No valid access token", body = ErrorBody),
        (status = 404, description = "No such endpoint of the caller's", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user_id = %user.user_id))]
async fn get_webhook(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    Ok(Json(owned_webhook(&state, &user, &id).await?.into()))
}

/// Deletes one of the caller's endpoints with its deliveries; nothing more is sent to it.
#[utoipa::path(
    delete,
    path = "/webhooks/{id}",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid access token", body = ErrorBody),
        (status = 404, description = "No such endpoint of the caller's", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user_id = %user.user_id))]
async fn delete_webhook(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    if state.store().delete_webhook(user.user_id, id).await? {
        tracing::info!(webhook_id = %id, "webhook deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("webhook"))
    }
}

/// An endpoint's deliveries, newest first: status, attempts, the last answer or error.
#[utoipa::path(
    get,
    path = "/webhooks/{id}/deliveries",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id"), DeliveriesQuery),
    responses(
        (status = 200, description = "The endpoint's deliveries, newest first", body = DeliveryList),
        (status = 400, description = "`limit` out of range", body = ErrorBody),
        (status = 401, description = "No valid access token", body = ErrorBody),
        (status = 404, description = "No such endpoint of the caller's", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user_id = %user.user_id))]
async fn list_deliveries(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Json<DeliveryList>, ApiError> {
    let limit = match query.limit.as_deref() {
        None => DEFAULT_DELIVERIES,
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_DELIVERIES).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "`limit` must be an integer between 1 and {MAX_DELIVERIES}"
                ))
            })?,
    };
    let webhook = owned_webhook(&state, &user, &id).await?;
    let deliveries = state.store().webhook_deliveries(webhook.id, limit).await?;
    Ok(Json(DeliveryList {
        items: deliveries.into_iter().map(DeliveryView::from).collect(),
    }))
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found("webhook"))
}

/// The user's endpoint `raw_id`; 404 when the id is malformed, unknown or someone else's.
async fn owned_webhook(
    state: &AppState,
    user: &AuthUser,
    raw_id: &str,
) -> Result<Webhook, ApiError> {
    let id = parse_id(raw_id)?;
    state
        .store()
        .user_webhook(user.user_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_must_be_known_and_at_least_one() {
        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            parse_events(&names(&[
                "report.failed",
                "report.completed",
                "report.failed"
            ]))
            .ok()
            .unwrap(),
            [WebhookEvent::ReportFailed, WebhookEvent::ReportCompleted]
        );
        assert!(parse_events(&[]).is_err());
        let Err(ApiError::UnprocessableEntity(message)) = parse_events(&names(&["report.started"]))
        else {
            panic!("an unknown event was accepted");
        };
        assert!(
            message.contains("report.completed, report.failed, report.cancelled"),
            "{message}"
        );
    }
}
