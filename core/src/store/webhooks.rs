//! Webhook endpoints and their deliveries, in the record store's database.
//!
//! Deliveries are *created* by the database itself: a trigger on `reports` (see the
//! `webhooks` migrations) inserts one row per enabled, subscribed endpoint in the
//! transaction that moves a report to `completed`, `failed` or `cancelled`, so no path
//! that finishes a report can forget one. This store lists them, and claims, records and
//! abandons them for the API's dispatcher.
//!
//! Claiming is a lease: it pushes `next_attempt_at` forward, so a dispatcher that dies
//! mid-send leaves the delivery to come due again; on Postgres, `FOR UPDATE SKIP LOCKED`
//! keeps replicas from claiming the same rows at once.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sqlx::types::Json;
use uuid::Uuid;

use super::pool::{Pool, SqlDatabase, on_pool};
use super::rows::{self, parse_column};
use super::timestamp::Timestamp;
use crate::Result;
use crate::webhook::{AttemptOutcome, Delivery, NewWebhook, Webhook};

/// What the dispatcher needs to send to an endpoint.
#[derive(Clone, Debug)]
pub struct DeliveryTarget {
    pub url: String,
    /// `whsec_<base64>`.
    pub secret: SecretString,
    pub disabled: bool,
}

/// Webhook endpoints and deliveries; part of every [`RecordStore`](super::RecordStore).
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Registers an endpoint unless the user already has `max_per_user`; `None` then.
    /// [`Error::UnknownUser`](crate::Error::UnknownUser) if the user does not exist.
    async fn insert_webhook(
        &self,
        webhook: NewWebhook,
        max_per_user: u32,
    ) -> Result<Option<Webhook>>;
    /// An endpoint only if `user_id` owns it.
    async fn user_webhook(&self, user_id: Uuid, id: Uuid) -> Result<Option<Webhook>>;
    /// The user's endpoints, oldest first.
    async fn list_webhooks(&self, user_id: Uuid) -> Result<Vec<Webhook>>;
    /// Deletes the user's endpoint and its deliveries; `false` if there was none.
    async fn delete_webhook(&self, user_id: Uuid, id: Uuid) -> Result<bool>;
    /// An endpoint's deliveries, newest first, at most `limit`.
    async fn webhook_deliveries(&self, webhook_id: Uuid, limit: u32) -> Result<Vec<Delivery>>;
    /// One delivery by id (any endpoint's).
    async fn delivery(&self, id: Uuid) -> Result<Option<Delivery>>;
    /// Up to `limit` pending deliveries due at `now`, oldest due first, leased until
    /// `lease_until` (they come due again then unless recorded).
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>>;
    /// Where and with which secret an endpoint is sent to; `None` if it was deleted.
    async fn delivery_target(&self, webhook_id: Uuid) -> Result<Option<DeliveryTarget>>;
    /// Records an attempt on a pending delivery (a delivered one also stamps its endpoint's
    /// `last_delivered_at`). `false` if it was no longer pending (its endpoint was disabled
    /// meanwhile).
    async fn record_attempt(
        &self,
        id: Uuid,
        outcome: &AttemptOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Gives a pending delivery up without an attempt (its endpoint is disabled).
    async fn abandon_delivery(&self, id: Uuid, reason: &str) -> Result<bool>;
    /// Disables an enabled endpoint with `reason` and fails its pending deliveries, in one
    /// transaction. With `failing_since`, only if it delivered nothing since then (it
    /// failed throughout). `false` if nothing was disabled.
    async fn disable_webhook(
        &self,
        id: Uuid,
        reason: &str,
        failing_since: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool>;
}

// ---- statements ----------------------------------------------------------------------------

macro_rules! webhook_columns {
    () => {
        "id, user_id, url, events, created_at, last_delivered_at, disabled_at, disabled_reason"
    };
}

macro_rules! delivery_columns {
    () => {
        "id, webhook_id, event, report_id, status, attempts, next_attempt_at, \
         last_attempt_at, response_status, last_error, delivered_at, created_at"
    };
}

/// Inserts only while the user is under the cap (`$7`). Concurrent registrations may both
/// pass the count; the cap is a guard against abuse, not a quota to hold exactly.
const INSERT_WEBHOOK: &str = concat!(
    "INSERT INTO webhooks (id, user_id, url, events, secret, created_at) \
     SELECT $1, $2, $3, $4, $5, $6 \
     WHERE (SELECT COUNT(*) FROM webhooks WHERE user_id = $2) < $7 RETURNING ",
    webhook_columns!()
);
const USER_WEBHOOK: &str = concat!(
    "SELECT ",
    webhook_columns!(),
    " FROM webhooks WHERE id = $1 AND user_id = $2"
);
const LIST_WEBHOOKS: &str = concat!(
    "SELECT ",
    webhook_columns!(),
    " FROM webhooks WHERE user_id = $1 ORDER BY created_at, id"
);
const DELETE_WEBHOOK: &str = "DELETE FROM webhooks WHERE id = $1 AND user_id = $2";
const WEBHOOK_DELIVERIES: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
);
const DELIVERY: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM webhook_deliveries WHERE id = $1"
);
/// `$1` now, `$2` lease end, `$3` limit.
const CLAIM_DELIVERIES_POSTGRES: &str = concat!(
    "UPDATE webhook_deliveries SET next_attempt_at = $2 WHERE id IN (\
     SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
     ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) AND status = 'pending' \
     RETURNING ",
    delivery_columns!()
);
/// SQLite serialises writers: one statement cannot be claimed twice.
const CLAIM_DELIVERIES_SQLITE: &str = concat!(
    "UPDATE webhook_deliveries SET next_attempt_at = $2 WHERE id IN (\
     SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
     ORDER BY next_attempt_at LIMIT $3) AND status = 'pending' \
     RETURNING ",
    delivery_columns!()
);
const DELIVERY_TARGET: &str = "SELECT url, secret, disabled_at FROM webhooks WHERE id = $1";
/// `$2` now, `$3` response status.
const RECORD_DELIVERED: &str = "UPDATE webhook_deliveries SET status = 'delivered', \
     attempts = attempts + 1, last_attempt_at = $2, delivered_at = $2, response_status = $3, \
     last_error = NULL, next_attempt_at = NULL WHERE id = $1 AND status = 'pending' \
     RETURNING webhook_id";
const STAMP_DELIVERED: &str = "UPDATE webhooks SET last_delivered_at = $2 WHERE id = $1";
/// `$2` now, `$3` response status, `$4` error, `$5` next attempt.
const RECORD_RETRY: &str = "UPDATE webhook_deliveries SET attempts = attempts + 1, \
     last_attempt_at = $2, response_status = $3, last_error = $4, next_attempt_at = $5 \
     WHERE id = $1 AND status = 'pending'";
/// `$2` now, `$3` response status, `$4` error.
const RECORD_FAILED: &str = "UPDATE webhook_deliveries SET status = 'failed', \
     attempts = attempts + 1, last_attempt_at = $2, response_status = $3, last_error = $4, \
     next_attempt_at = NULL WHERE id = $1 AND status = 'pending'";
const ABANDON_DELIVERY: &str = "UPDATE webhook_deliveries SET status = 'failed', \
     last_error = $2, next_attempt_at = NULL WHERE id = $1 AND status = 'pending'";
const DISABLE_WEBHOOK: &str = "UPDATE webhooks SET disabled_at = $2, disabled_reason = $3 \
     WHERE id = $1 AND disabled_at IS NULL";
/// `$4`: the start of the failures; a delivery since then keeps the endpoint enabled.
const DISABLE_FAILING_WEBHOOK: &str = "UPDATE webhooks SET disabled_at = $2, \
     disabled_reason = $3 WHERE id = $1 AND disabled_at IS NULL \
     AND (last_delivered_at IS NULL OR last_delivered_at < $4)";
const FAIL_PENDING_DELIVERIES: &str = "UPDATE webhook_deliveries SET status = 'failed', \
     last_error = $2, next_attempt_at = NULL WHERE webhook_id = $1 AND status = 'pending'";

// ---- rows ----------------------------------------------------------------------------------

#[derive(sqlx::FromRow)]
struct WebhookRow {
    id: Uuid,
    user_id: Uuid,
    url: String,
    events: Json<Vec<String>>,
    created_at: Timestamp,
    last_delivered_at: Option<Timestamp>,
    disabled_at: Option<Timestamp>,
    disabled_reason: Option<String>,
}

impl WebhookRow {
    fn into_webhook(self) -> Result<Webhook> {
        let events = self
            .events
            .0
            .iter()
            .map(|event| parse_column("events", event))
            .collect::<Result<_>>()?;
        Ok(Webhook {
            id: self.id,
            user_id: self.user_id,
            url: self.url,
            events,
            created_at: self.created_at.0,
            last_delivered_at: self.last_delivered_at.map(|t| t.0),
            disabled_at: self.disabled_at.map(|t| t.0),
            disabled_reason: self.disabled_reason,
        })
    }
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: Uuid,
    webhook_id: Uuid,
    event: String,
    report_id: Uuid,
    status: String,
    attempts: i32,
    next_attempt_at: Option<Timestamp>,
    last_attempt_at: Option<Timestamp>,
    response_status: Option<i32>,
    last_error: Option<String>,
    delivered_at: Option<Timestamp>,
    created_at: Timestamp,
}

impl DeliveryRow {
    fn into_delivery(self) -> Result<Delivery> {
        let time = |t: Option<Timestamp>| t.map(|t| t.0);
        Ok(Delivery {
            id: self.id,
            webhook_id: self.webhook_id,
            event: parse_column("event", &self.event)?,
            report_id: self.report_id,
            status: parse_column("status", &self.status)?,
            attempts: self.attempts,
            next_attempt_at: time(self.next_attempt_at),
            last_attempt_at: time(self.last_attempt_at),
            response_status: self.response_status,
            last_error: self.last_error,
            delivered_at: time(self.delivered_at),
            created_at: self.created_at.0,
        })
    }
}

fn into_deliveries(rows: Vec<DeliveryRow>) -> Result<Vec<Delivery>> {
    rows.into_iter().map(DeliveryRow::into_delivery).collect()
}

#[derive(sqlx::FromRow)]
struct TargetRow {
    url: String,
    secret: String,
    disabled_at: Option<Timestamp>,
}

// ---- the implementation --------------------------------------------------------------------

#[async_trait]
impl<S: SqlDatabase> WebhookStore for S {
    #[tracing::instrument(skip_all, fields(user_id = %webhook.user_id, webhook_id = %webhook.id))]
    async fn insert_webhook(
        &self,
        webhook: NewWebhook,
        max_per_user: u32,
    ) -> Result<Option<Webhook>> {
        let events: Vec<&str> = webhook.events.iter().map(|e| e.as_str()).collect();
        on_pool!(self.sql_pool(), |pool| {
            let row: Option<WebhookRow> = sqlx::query_as(INSERT_WEBHOOK)
                .bind(webhook.id)
                .bind(webhook.user_id)
                .bind(&webhook.url)
                .bind(Json(&events))
                .bind(&webhook.secret)
                .bind(rows::ts(webhook.created_at))
                .bind(i64::from(max_per_user))
                .fetch_optional(pool)
                .await
                .map_err(|e| rows::unknown_user_on_foreign_key(e, webhook.user_id))?;
            row.map(WebhookRow::into_webhook).transpose()
        })
    }

    #[tracing::instrument(skip_all, fields(user_id = %user_id, webhook_id = %id))]
    async fn user_webhook(&self, user_id: Uuid, id: Uuid) -> Result<Option<Webhook>> {
        on_pool!(self.sql_read_pool(), |pool| {
            let row: Option<WebhookRow> = sqlx::query_as(USER_WEBHOOK)
                .bind(id)
                .bind(user_id)
                .fetch_optional(pool)
                .await?;
            row.map(WebhookRow::into_webhook).transpose()
        })
    }

    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    async fn list_webhooks(&self, user_id: Uuid) -> Result<Vec<Webhook>> {
        on_pool!(self.sql_read_pool(), |pool| {
            let rows: Vec<WebhookRow> = sqlx::query_as(LIST_WEBHOOKS)
                .bind(user_id)
                .fetch_all(pool)
                .await?;
            rows.into_iter().map(WebhookRow::into_webhook).collect()
        })
    }

    #[tracing::instrument(skip_all, fields(user_id = %user_id, webhook_id = %id))]
    async fn delete_webhook(&self, user_id: Uuid, id: Uuid) -> Result<bool> {
        on_pool!(self.sql_pool(), |pool| {
            let done = sqlx::query(DELETE_WEBHOOK)
                .bind(id)
                .bind(user_id)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    #[tracing::instrument(skip_all, fields(webhook_id = %webhook_id))]
    async fn webhook_deliveries(&self, webhook_id: Uuid, limit: u32) -> Result<Vec<Delivery>> {
        on_pool!(self.sql_read_pool(), |pool| {
            let rows: Vec<DeliveryRow> = sqlx::query_as(WEBHOOK_DELIVERIES)
                .bind(webhook_id)
                .bind(rows::limit(limit))
                .fetch_all(pool)
                .await?;
            into_deliveries(rows)
        })
    }

    #[tracing::instrument(skip_all, fields(delivery_id = %id))]
    async fn delivery(&self, id: Uuid) -> Result<Option<Delivery>> {
        on_pool!(self.sql_read_pool(), |pool| {
            let row: Option<DeliveryRow> = sqlx::query_as(DELIVERY)
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.map(DeliveryRow::into_delivery).transpose()
        })
    }

    #[tracing::instrument(skip_all)]
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let pool = self.sql_pool();
        let statement = match pool {
            Pool::Postgres(_) => CLAIM_DELIVERIES_POSTGRES,
            Pool::Sqlite(_) => CLAIM_DELIVERIES_SQLITE,
        };
        on_pool!(pool, |pool| {
            let rows: Vec<DeliveryRow> = sqlx::query_as(statement)
                .bind(rows::ts(now))
                .bind(rows::ts(lease_until))
                .bind(rows::limit(limit))
                .fetch_all(pool)
                .await?;
            into_deliveries(rows)
        })
    }

    #[tracing::instrument(skip_all, fields(webhook_id = %webhook_id))]
    async fn delivery_target(&self, webhook_id: Uuid) -> Result<Option<DeliveryTarget>> {
        on_pool!(self.sql_read_pool(), |pool| {
            let row: Option<TargetRow> = sqlx::query_as(DELIVERY_TARGET)
                .bind(webhook_id)
                .fetch_optional(pool)
                .await?;
            Ok(row.map(|row| DeliveryTarget {
                url: row.url,
                secret: SecretString::from(row.secret),
                disabled: row.disabled_at.is_some(),
            }))
        })
    }

    #[tracing::instrument(skip_all, fields(delivery_id = %id))]
    async fn record_attempt(
        &self,
        id: Uuid,
        outcome: &AttemptOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        on_pool!(self.sql_pool(), |pool| {
            let recorded = match outcome {
                AttemptOutcome::Delivered { response_status } => {
                    let mut tx = pool.begin().await?;
                    let webhook_id: Option<Uuid> = sqlx::query_scalar(RECORD_DELIVERED)
                        .bind(id)
                        .bind(rows::ts(now))
                        .bind(*response_status)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if let Some(webhook_id) = webhook_id {
                        sqlx::query(STAMP_DELIVERED)
                            .bind(webhook_id)
                            .bind(rows::ts(now))
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    webhook_id.is_some()
                }
                AttemptOutcome::Retry {
                    response_status,
                    error,
                    next_attempt_at,
                } => {
                    sqlx::query(RECORD_RETRY)
                        .bind(id)
                        .bind(rows::ts(now))
                        .bind(*response_status)
                        .bind(error)
                        .bind(rows::ts(*next_attempt_at))
                        .execute(pool)
                        .await?
                        .rows_affected()
                        == 1
                }
                AttemptOutcome::Failed {
                    response_status,
                    error,
                } => {
                    sqlx::query(RECORD_FAILED)
                        .bind(id)
                        .bind(rows::ts(now))
                        .bind(*response_status)
                        .bind(error)
                        .execute(pool)
                        .await?
                        .rows_affected()
                        == 1
                }
            };
            Ok(recorded)
        })
    }

    #[tracing::instrument(skip_all, fields(delivery_id = %id))]
    async fn abandon_delivery(&self, id: Uuid, reason: &str) -> Result<bool> {
        on_pool!(self.sql_pool(), |pool| {
            let done = sqlx::query(ABANDON_DELIVERY)
                .bind(id)
                .bind(reason)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    #[tracing::instrument(skip_all, fields(webhook_id = %id))]
    async fn disable_webhook(
        &self,
        id: Uuid,
        reason: &str,
        failing_since: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let abandoned = format!("not sent: the endpoint was disabled ({reason})");
        on_pool!(self.sql_pool(), |pool| {
            let mut tx = pool.begin().await?;
            let disabled = match failing_since {
                None => {
                    sqlx::query(DISABLE_WEBHOOK)
                        .bind(id)
                        .bind(rows::ts(now))
                        .bind(reason)
                        .execute(&mut *tx)
                        .await?
                }
                Some(since) => {
                    sqlx::query(DISABLE_FAILING_WEBHOOK)
                        .bind(id)
                        .bind(rows::ts(now))
                        .bind(reason)
                        .bind(rows::ts(since))
                        .execute(&mut *tx)
                        .await?
                }
            }
            .rows_affected()
                == 1;
            if disabled {
                sqlx::query(FAIL_PENDING_DELIVERIES)
                    .bind(id)
                    .bind(&abandoned)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(disabled)
        })
    }
}
