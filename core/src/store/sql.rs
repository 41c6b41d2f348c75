//! The SQL both stores run, and the one copy of the [`RecordStore`](super::RecordStore)
//! logic, expanded for each concrete store by [`impl_record_store!`].
//!
//! Both databases accept `$N` parameters (sqlx-sqlite binds them by position), so every
//! statement is a single `&'static str`. Times are always bound as [`Timestamp`], never as
//! `DateTime<Utc>`: SQLite compares them as text (see `timestamp.rs`). Every report state
//! change is one conditional `UPDATE`; whoever loses a race matches no row.

use chrono::{DateTime, Utc};
use quire_crds::{ReportFormat, ReportStatus, ReportType};
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::timestamp::Timestamp;
use crate::Error;
use crate::model::{RefreshToken, Report, User, UserCredentials};

/// Every column of `reports`, in [`ReportRow`] order.
macro_rules! report_columns {
    () => {
        "id, user_id, report_type, format, parameters, status, progress, attempts, \
         error_message, created_at, queued_at, started_at, completed_at, failed_at, \
         cancelled_at, updated_at, lease_owner, lease_expires_at, idempotency_key, \
         request_fingerprint, output_key, output_file_path, output_size, output_checksum, \
         download_url, download_url_expires_at, output_deleted_at, available_at"
    };
}

/// `SELECT <every report column> FROM reports <rest>`.
macro_rules! select_reports {
    ($($rest:literal),*) => {
        concat!("SELECT ", report_columns!(), " FROM reports ", $($rest),*)
    };
}

pub(super) const PING: &str = "SELECT 1";

// ---- users -------------------------------------------------------------------------------

pub(super) const INSERT_USER: &str = "INSERT INTO users (id, email, password_hash, created_at) \
     VALUES ($1, $2, $3, $4) RETURNING id, email, created_at";
pub(super) const USER_BY_ID: &str = "SELECT id, email, created_at FROM users WHERE id = $1";
pub(super) const CREDENTIALS_BY_EMAIL: &str =
    "SELECT id, email, created_at, password_hash FROM users WHERE email = $1";

// ---- refresh tokens ----------------------------------------------------------------------

pub(super) const INSERT_REFRESH_TOKEN: &str = "INSERT INTO refresh_tokens \
     (id, user_id, family_id, token_hash, created_at, expires_at, spent_at, revoked_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
pub(super) const REFRESH_TOKEN_BY_HASH: &str = "SELECT id, user_id, family_id, token_hash, \
     created_at, expires_at, spent_at, revoked_at FROM refresh_tokens WHERE token_hash = $1";
pub(super) const SPEND_REFRESH_TOKEN: &str = "UPDATE refresh_tokens SET spent_at = $2 \
     WHERE id = $1 AND spent_at IS NULL AND revoked_at IS NULL";
pub(super) const REVOKE_TOKEN_FAMILY: &str =
    "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL";

// ---- reports: reads ----------------------------------------------------------------------

pub(super) const REPORT_BY_ID: &str = select_reports!("WHERE id = $1");
pub(super) const USER_REPORT: &str = select_reports!("WHERE id = $1 AND user_id = $2");
pub(super) const REPORT_BY_IDEMPOTENCY_KEY: &str =
    select_reports!("WHERE user_id = $1 AND idempotency_key = $2");
// Four shapes of one listing, so each filter combination is a plain indexed range scan on
// `reports_user_idx` / `reports_user_status_idx` (no `$2 IS NULL OR …` generic plans).
pub(super) const LIST_REPORTS: &str =
    select_reports!("WHERE user_id = $1 ORDER BY id DESC LIMIT $2");
pub(super) const LIST_REPORTS_BY_STATUS: &str =
    select_reports!("WHERE user_id = $1 AND status = $2 ORDER BY id DESC LIMIT $3");
pub(super) const LIST_REPORTS_BEFORE: &str =
    select_reports!("WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3");
pub(super) const LIST_REPORTS_BY_STATUS_BEFORE: &str =
    select_reports!("WHERE user_id = $1 AND status = $2 AND id < $3 ORDER BY id DESC LIMIT $4");
pub(super) const REPORT_COUNTS: &str = "SELECT report_type, status, COUNT(*) AS n FROM reports \
     WHERE user_id = $1 GROUP BY report_type, status ORDER BY report_type, status";
pub(super) const REPORTS_SINCE: &str =
    select_reports!("WHERE user_id = $1 AND created_at >= $2 ORDER BY created_at, id LIMIT $3");
pub(super) const PENDING_REPORTS: &str = select_reports!(
    "WHERE status = 'pending' AND created_at < $1 ORDER BY created_at, id LIMIT $2"
);

// ---- reports: writes ---------------------------------------------------------------------

/// Writes nothing (and returns no row) when the user already used the idempotency key.
pub(super) const INSERT_REPORT: &str = concat!(
    "INSERT INTO reports (id, user_id, report_type, format, parameters, status, progress, \
     attempts, idempotency_key, request_fingerprint, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, 'pending', 0, 0, $6, $7, $8, $8) \
     ON CONFLICT DO NOTHING RETURNING ",
    report_columns!()
);
pub(super) const DELETE_REPORT: &str = "DELETE FROM reports WHERE id = $1";
pub(super) const MARK_OUTPUT_DELETED: &str = "UPDATE reports SET output_deleted_at = $2, \
     download_url = NULL, download_url_expires_at = NULL, updated_at = $2 \
     WHERE id = $1 AND output_deleted_at IS NULL";
pub(super) const SET_DOWNLOAD_URL: &str = "UPDATE reports \
     SET download_url = $2, download_url_expires_at = $3, updated_at = $4 WHERE id = $1";
pub(super) const CANCEL_REPORT: &str = concat!(
    "UPDATE reports SET status = 'cancelled', cancelled_at = $3, updated_at = $3, \
     lease_owner = NULL, lease_expires_at = NULL \
     WHERE id = $1 AND user_id = $2 AND status IN ('pending', 'queued', 'running') \
     RETURNING ",
    report_columns!()
);
pub(super) const MARK_QUEUED: &str = concat!(
    "UPDATE reports SET status = 'queued', queued_at = $2, available_at = $2, updated_at = $2 \
     WHERE id = $1 AND status = 'pending' RETURNING ",
    report_columns!()
);
/// The rescuer's condition (`$S`: the stranded-before time): `running` under a lease that
/// expired before it, or `queued` with a message that should have been receivable before it.
macro_rules! stranded {
    ($s:literal) => {
        concat!(
            "((status = 'running' AND lease_expires_at < ",
            $s,
            ") OR (status = 'queued' AND available_at < ",
            $s,
            "))"
        )
    };
}
/// `$1` stranded-before, `$2` limit. Two index range scans (see the rescue migration).
pub(super) const STRANDED_REPORTS: &str = concat!(
    "SELECT ",
    report_columns!(),
    " FROM reports WHERE status = 'running' AND lease_expires_at < $1 \
     UNION ALL SELECT ",
    report_columns!(),
    " FROM reports WHERE status = 'queued' AND available_at < $1 ORDER BY id LIMIT $2"
);
/// `$1` id, `$2` now, `$3` stranded-before: back to `queued`, receivable now.
pub(super) const RESCUE_REQUEUE: &str = concat!(
    "UPDATE reports SET status = 'queued', progress = 0, lease_owner = NULL, \
     lease_expires_at = NULL, queued_at = $2, available_at = $2, updated_at = $2 \
     WHERE id = $1 AND ",
    stranded!("$3"),
    " RETURNING ",
    report_columns!()
);
/// `$1` id, `$2` now, `$3` stranded-before, `$4` error: `failed` for good.
pub(super) const RESCUE_FAIL: &str = concat!(
    "UPDATE reports SET status = 'failed', error_message = $4, failed_at = $2, \
     updated_at = $2, lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND ",
    stranded!("$3"),
    " RETURNING ",
    report_columns!()
);
/// `$1` id, `$2` owner, `$3` lease expiry, `$4` now. `started_at` is the latest attempt's
/// start; `error_message` keeps the previous attempt's error until this one ends.
pub(super) const CLAIM_REPORT: &str = concat!(
    "UPDATE reports SET status = 'running', lease_owner = $2, lease_expires_at = $3, \
     attempts = attempts + 1, started_at = $4, progress = 0, updated_at = $4 \
     WHERE id = $1 AND (status IN ('pending', 'queued') \
     OR (status = 'running' AND lease_expires_at < $4)) \
     RETURNING ",
    report_columns!()
);
pub(super) const RENEW_LEASE: &str = "UPDATE reports SET lease_expires_at = $3, updated_at = $4 \
     WHERE id = $1 AND status = 'running' AND lease_owner = $2";
pub(super) const SET_PROGRESS: &str = "UPDATE reports SET progress = $3, updated_at = $4 \
     WHERE id = $1 AND status = 'running' AND lease_owner = $2";
pub(super) const COMPLETE_REPORT: &str = "UPDATE reports SET status = 'completed', \
     progress = 100, completed_at = $3, updated_at = $3, output_key = $4, \
     output_file_path = $5, output_size = $6, output_checksum = $7, error_message = NULL, \
     lease_owner = NULL, lease_expires_at = NULL \
     WHERE id = $1 AND status = 'running' AND lease_owner = $2";
/// `$5`: when the retry's message becomes receivable.
pub(super) const RETRY_ATTEMPT: &str = "UPDATE reports SET status = 'queued', \
     error_message = $3, progress = 0, updated_at = $4, lease_owner = NULL, \
     lease_expires_at = NULL, available_at = $5 \
     WHERE id = $1 AND status = 'running' AND lease_owner = $2";
pub(super) const GIVE_UP_ATTEMPT: &str = "UPDATE reports SET status = 'failed', \
     error_message = $3, failed_at = $4, updated_at = $4, lease_owner = NULL, \
     lease_expires_at = NULL WHERE id = $1 AND status = 'running' AND lease_owner = $2";
/// `$4`: when the handed-back report's message becomes receivable again.
pub(super) const RELEASE_REPORT: &str = "UPDATE reports SET status = 'queued', progress = 0, \
     attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, updated_at = $3, \
     lease_owner = NULL, lease_expires_at = NULL, available_at = $4 \
     WHERE id = $1 AND status = 'running' AND lease_owner = $2";

// ---- rows --------------------------------------------------------------------------------

#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    id: Uuid,
    email: String,
    created_at: Timestamp,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        User {
            id: row.id,
            email: row.email,
            created_at: row.created_at.0,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct CredentialsRow {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: String,
}

impl From<CredentialsRow> for UserCredentials {
    fn from(row: CredentialsRow) -> Self {
        UserCredentials {
            user: row.user.into(),
            password_hash: row.password_hash,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct RefreshTokenRow {
    id: Uuid,
    user_id: Uuid,
    family_id: Uuid,
    token_hash: Vec<u8>,
    created_at: Timestamp,
    expires_at: Timestamp,
    spent_at: Option<Timestamp>,
    revoked_at: Option<Timestamp>,
}

impl From<RefreshTokenRow> for RefreshToken {
    fn from(row: RefreshTokenRow) -> Self {
        RefreshToken {
            id: row.id,
            user_id: row.user_id,
            family_id: row.family_id,
            token_hash: row.token_hash,
            created_at: row.created_at.0,
            expires_at: row.expires_at.0,
            spent_at: row.spent_at.map(|t| t.0),
            revoked_at: row.revoked_at.map(|t| t.0),
        }
    }
}

/// A `reports` row as both databases decode it; [`ReportRow::into_report`] parses the
/// string-backed enums.
#[derive(sqlx::FromRow)]
pub(super) struct ReportRow {
    id: Uuid,
    user_id: Uuid,
    report_type: String,
    format: String,
    parameters: Json<Value>,
    status: String,
    progress: i32,
    attempts: i32,
    error_message: Option<String>,
    created_at: Timestamp,
    queued_at: Option<Timestamp>,
    started_at: Option<Timestamp>,
    completed_at: Option<Timestamp>,
    failed_at: Option<Timestamp>,
    cancelled_at: Option<Timestamp>,
    updated_at: Timestamp,
    lease_owner: Option<String>,
    lease_expires_at: Option<Timestamp>,
    idempotency_key: Option<String>,
    request_fingerprint: Option<String>,
    output_key: Option<String>,
    output_file_path: Option<String>,
    output_size: Option<i64>,
    output_checksum: Option<String>,
    download_url: Option<String>,
    download_url_expires_at: Option<Timestamp>,
    output_deleted_at: Option<Timestamp>,
    available_at: Option<Timestamp>,
}

impl ReportRow {
    /// A column holding a spelling no enum variant has is a decode error, not a panic.
    pub(super) fn into_report(self) -> Result<Report, Error> {
        let time = |t: Option<Timestamp>| t.map(|t| t.0);
        Ok(Report {
            id: self.id,
            user_id: self.user_id,
            report_type: parse_column::<ReportType>("report_type", &self.report_type)?,
            format: parse_column::<ReportFormat>("format", &self.format)?,
            parameters: self.parameters.0,
            status: parse_column::<ReportStatus>("status", &self.status)?,
            progress: self.progress,
            attempts: self.attempts,
            error_message: self.error_message,
            created_at: self.created_at.0,
            queued_at: time(self.queued_at),
            started_at: time(self.started_at),
            completed_at: time(self.completed_at),
            failed_at: time(self.failed_at),
            cancelled_at: time(self.cancelled_at),
            updated_at: self.updated_at.0,
            lease_owner: self.lease_owner,
            lease_expires_at: time(self.lease_expires_at),
            idempotency_key: self.idempotency_key,
            request_fingerprint: self.request_fingerprint,
            output_key: self.output_key,
            output_file_path: self.output_file_path,
            output_size: self.output_size,
            output_checksum: self.output_checksum,
            download_url: self.download_url,
            download_url_expires_at: time(self.download_url_expires_at),
            output_deleted_at: time(self.output_deleted_at),
            available_at: time(self.available_at),
        })
    }
}

pub(super) fn into_reports(rows: Vec<ReportRow>) -> Result<Vec<Report>, Error> {
    rows.into_iter().map(ReportRow::into_report).collect()
}

/// One `report_counts` group.
#[derive(sqlx::FromRow)]
pub(super) struct CountRow {
    report_type: String,
    status: String,
    n: i64,
}

impl CountRow {
    pub(super) fn parse(self) -> Result<(ReportType, ReportStatus, i64), Error> {
        Ok((
            parse_column("report_type", &self.report_type)?,
            parse_column("status", &self.status)?,
            self.n,
        ))
    }
}

fn parse_column<T>(column: &str, text: &str) -> Result<T, Error>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    text.parse().map_err(|e: T::Err| {
        Error::Database(sqlx::Error::ColumnDecode {
            index: column.to_owned(),
            source: Box::new(e),
        })
    })
}

// ---- helpers -----------------------------------------------------------------------------

/// Turns a unique-constraint violation into [`Error::Conflict`] with `message`.
pub(super) fn conflict_on_unique(e: sqlx::Error, message: &str) -> Error {
    match e.as_database_error() {
        Some(db) if db.is_unique_violation() => Error::Conflict(message.to_owned()),
        _ => Error::Database(e),
    }
}

/// Turns a foreign-key violation (the only one a report insert can hit: its user) into
/// [`Error::UnknownUser`].
pub(super) fn unknown_user_on_foreign_key(e: sqlx::Error, user_id: Uuid) -> Error {
    match e.as_database_error() {
        Some(db) if db.is_foreign_key_violation() => Error::UnknownUser(user_id),
        _ => Error::Database(e),
    }
}

pub(super) fn ts(t: DateTime<Utc>) -> Timestamp {
    Timestamp(t)
}

pub(super) fn limit(n: u32) -> i64 {
    i64::from(n)
}

/// Expands the [`RecordStore`](super::RecordStore) implementation for a store type with a
/// `pool` field (a `sqlx::Pool` of any database the statements above run on). A macro rather
/// than generic code: sqlx's `Database`-generic bounds for this many types are unreadable,
/// and the expansion is checked concretely for each database.
macro_rules! impl_record_store {
    ($store:ty) => {
        // Scopes the imports below to this expansion.
        const _: () = {
            use chrono::{DateTime, Utc};
            use uuid::Uuid;

            use $crate::ReportStatus;
            use $crate::model::{
                AttemptEnd, Cancelled, Claim, Inserted, Lease, NewReport, NewUser, RefreshToken,
                Report, ReportCounts, ReportFilter, StoredOutput, User, UserCredentials,
            };
            use $crate::store::sql;

            #[async_trait::async_trait]
            impl $crate::store::RecordStore for $store {
                #[tracing::instrument(skip_all)]
                async fn ping(&self) -> $crate::Result<()> {
                    sqlx::query(sql::PING).execute(&self.pool).await?;
                    Ok(())
                }

                // ---- users ----------------------------------------------------------------------

                #[tracing::instrument(skip_all, fields(user_id = %user.id))]
                async fn create_user(&self, user: NewUser) -> $crate::Result<User> {
                    let row: sql::UserRow = sqlx::query_as(sql::INSERT_USER)
                        .bind(user.id)
                        .bind(&user.email)
                        .bind(&user.password_hash)
                        .bind(sql::ts(user.created_at))
                        .fetch_one(&self.pool)
                        .await
                        .map_err(|e| sql::conflict_on_unique(e, "email already registered"))?;
                    Ok(row.into())
                }

                #[tracing::instrument(skip_all, fields(user_id = %id))]
                async fn user(&self, id: Uuid) -> $crate::Result<Option<User>> {
                    let row: Option<sql::UserRow> = sqlx::query_as(sql::USER_BY_ID)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(row.map(Into::into))
                }

                #[tracing::instrument(skip_all)]
                async fn credentials(
                    &self,
                    email: &str,
                ) -> $crate::Result<Option<UserCredentials>> {
                    let row: Option<sql::CredentialsRow> =
                        sqlx::query_as(sql::CREDENTIALS_BY_EMAIL)
                            .bind(email)
                            .fetch_optional(&self.pool)
                            .await?;
                    Ok(row.map(Into::into))
                }

                // ---- refresh tokens -------------------------------------------------------------

                #[tracing::instrument(skip_all, fields(family_id = %token.family_id))]
                async fn insert_refresh_token(&self, token: RefreshToken) -> $crate::Result<()> {
                    sqlx::query(sql::INSERT_REFRESH_TOKEN)
                        .bind(token.id)
                        .bind(token.user_id)
                        .bind(token.family_id)
                        .bind(&token.token_hash)
                        .bind(sql::ts(token.created_at))
                        .bind(sql::ts(token.expires_at))
                        .bind(token.spent_at.map(sql::ts))
                        .bind(token.revoked_at.map(sql::ts))
                        .execute(&self.pool)
                        .await
                        .map_err(|e| sql::conflict_on_unique(e, "refresh token already exists"))?;
                    Ok(())
                }

                #[tracing::instrument(skip_all)]
                async fn refresh_token(
                    &self,
                    token_hash: &[u8],
                ) -> $crate::Result<Option<RefreshToken>> {
                    let row: Option<sql::RefreshTokenRow> =
                        sqlx::query_as(sql::REFRESH_TOKEN_BY_HASH)
                            .bind(token_hash)
                            .fetch_optional(&self.pool)
                            .await?;
                    Ok(row.map(Into::into))
                }

                #[tracing::instrument(skip_all, fields(token_id = %id))]
                async fn spend_refresh_token(
                    &self,
                    id: Uuid,
                    now: DateTime<Utc>,
                ) -> $crate::Result<bool> {
                    let done = sqlx::query(sql::SPEND_REFRESH_TOKEN)
                        .bind(id)
                        .bind(sql::ts(now))
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() == 1)
                }

                #[tracing::instrument(skip_all, fields(family_id = %family_id))]
                async fn revoke_token_family(
                    &self,
                    family_id: Uuid,
                    now: DateTime<Utc>,
                ) -> $crate::Result<u64> {
                    let done = sqlx::query(sql::REVOKE_TOKEN_FAMILY)
                        .bind(family_id)
                        .bind(sql::ts(now))
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected())
                }

                // ---- reports: API side ----------------------------------------------------------

                #[tracing::instrument(skip_all, fields(report_id = %report.id))]
                async fn insert_report(&self, report: NewReport) -> $crate::Result<Inserted> {
                    let row: Option<sql::ReportRow> = sqlx::query_as(sql::INSERT_REPORT)
                        .bind(report.id)
                        .bind(report.user_id)
                        .bind(report.report_type.as_str())
                        .bind(report.format.as_str())
                        .bind(sqlx::types::Json(&report.parameters))
                        .bind(report.idempotency_key.as_deref())
                        .bind(report.request_fingerprint.as_deref())
                        .bind(sql::ts(report.created_at))
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| sql::unknown_user_on_foreign_key(e, report.user_id))?;
                    if let Some(row) = row {
                        return Ok(Inserted::Created(row.into_report()?));
                    }
                    // Nothing written: a unique index said no. With a key, that is the user's
                    // earlier request (its insert has committed, or ours would have waited).
                    if let Some(key) = report.idempotency_key.as_deref() {
                        let existing: Option<sql::ReportRow> =
                            sqlx::query_as(sql::REPORT_BY_IDEMPOTENCY_KEY)
                                .bind(report.user_id)
                                .bind(key)
                                .fetch_optional(&self.pool)
                                .await?;
                        if let Some(row) = existing {
                            return Ok(Inserted::Existing(row.into_report()?));
                        }
                    }
                    Err($crate::Error::Conflict(format!(
                        "report {} already exists",
                        report.id
                    )))
                }

                #[tracing::instrument(skip_all, fields(report_id = %id))]
                async fn report(&self, id: Uuid) -> $crate::Result<Option<Report>> {
                    let row: Option<sql::ReportRow> = sqlx::query_as(sql::REPORT_BY_ID)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                    row.map(sql::ReportRow::into_report).transpose()
                }

                #[tracing::instrument(skip_all, fields(report_id = %id, user_id = %user_id))]
                async fn user_report(
                    &self,
                    user_id: Uuid,
                    id: Uuid,
                ) -> $crate::Result<Option<Report>> {
                    let row: Option<sql::ReportRow> = sqlx::query_as(sql::USER_REPORT)
                        .bind(id)
                        .bind(user_id)
                        .fetch_optional(&self.pool)
                        .await?;
                    row.map(sql::ReportRow::into_report).transpose()
                }

                #[tracing::instrument(skip_all, fields(user_id = %user_id))]
                async fn list_reports(
                    &self,
                    user_id: Uuid,
                    filter: &ReportFilter,
                ) -> $crate::Result<Vec<Report>> {
                    let limit = sql::limit(filter.limit);
                    let query = match (filter.status, filter.before) {
                        (None, None) => sqlx::query_as(sql::LIST_REPORTS).bind(user_id).bind(limit),
                        (Some(status), None) => sqlx::query_as(sql::LIST_REPORTS_BY_STATUS)
                            .bind(user_id)
                            .bind(status.as_str())
                            .bind(limit),
                        (None, Some(before)) => sqlx::query_as(sql::LIST_REPORTS_BEFORE)
                            .bind(user_id)
                            .bind(before)
                            .bind(limit),
                        (Some(status), Some(before)) => {
                            sqlx::query_as(sql::LIST_REPORTS_BY_STATUS_BEFORE)
                                .bind(user_id)
                                .bind(status.as_str())
                                .bind(before)
                                .bind(limit)
                        }
                    };
                    let rows: Vec<sql::ReportRow> = query.fetch_all(&self.pool).await?;
                    sql::into_reports(rows)
                }

                #[tracing::instrument(skip_all, fields(user_id = %user_id))]
                async fn report_counts(&self, user_id: Uuid) -> $crate::Result<ReportCounts> {
                    let rows: Vec<sql::CountRow> = sqlx::query_as(sql::REPORT_COUNTS)
                        .bind(user_id)
                        .fetch_all(&self.pool)
                        .await?;
                    let by_type_and_status = rows
                        .into_iter()
                        .map(sql::CountRow::parse)
                        .collect::<$crate::Result<_>>()?;
                    Ok(ReportCounts { by_type_and_status })
                }

                #[tracing::instrument(skip_all, fields(user_id = %user_id))]
                async fn reports_since(
                    &self,
                    user_id: Uuid,
                    since: DateTime<Utc>,
                    limit: u32,
                ) -> $crate::Result<Vec<Report>> {
                    let rows: Vec<sql::ReportRow> = sqlx::query_as(sql::REPORTS_SINCE)
                        .bind(user_id)
                        .bind(sql::ts(since))
                        .bind(sql::limit(limit))
                        .fetch_all(&self.pool)
                        .await?;
                    sql::into_reports(rows)
                }

                #[tracing::instrument(skip_all, fields(report_id = %id, user_id = %user_id))]
                async fn cancel_report(
                    &self,
                    user_id: Uuid,
                    id: Uuid,
                    now: DateTime<Utc>,
                ) -> $crate::Result<Cancelled> {
                    let row: Option<sql::ReportRow> = sqlx::query_as(sql::CANCEL_REPORT)
                        .bind(id)
                        .bind(user_id)
                        .bind(sql::ts(now))
                        .fetch_optional(&self.pool)
                        .await?;
                    if let Some(row) = row {
                        return Ok(Cancelled::Cancelled(row.into_report()?));
                    }
                    // The user's report can only have been finished (finished is final);
                    // another user's report reads exactly like a missing one.
                    Ok(match self.user_report(user_id, id).await? {
                        Some(report) => Cancelled::AlreadyFinished(report),
                        None => Cancelled::Missing,
                    })
                }

                #[tracing::instrument(skip_all, fields(report_id = %id))]
                async fn delete_report(&self, id: Uuid) -> $crate::Result<bool> {
                    let done = sqlx::query(sql::DELETE_REPORT)
                        .bind(id)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() == 1)
                }

                #[tracing::instrument(skip_all, fields(report_id = %id))]
                async fn mark_output_deleted(
                    &self,
                    id: Uuid,
                    now: DateTime<Utc>,
                ) -> $crate::Result<bool> {
                    let done = sqlx::query(sql::MARK_OUTPUT_DELETED)
                        .bind(id)
                        .bind(sql::ts(now))
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() == 1)
                }

                /// Stamps `updated_at` with the current time: the trait passes no `now` here.
                #[tracing::instrument(skip_all, fields(report_id = %id))]
                async fn set_download_url(
                    &self,
                    id: Uuid,
                    url: &str,
                    expires_at: DateTime<Utc>,
                ) -> $crate::Result<()> {
                    let done = sqlx::query(sql::SET_DOWNLOAD_URL)
                        .bind(id)
                        .bind(url)
                        .bind(sql::ts(expires_at))
                        .bind(sql::ts(Utc::now()))
                        .execute(&self.pool)
                        .await?;
                    if done.rows_affected() == 0 {
                        return Err($crate::Error::NotFound(format!("report {id}")));
                    }
                    Ok(())
                }

                // ---- reports: dispatch side -----------------------------------------------------

                #[tracing::instrument(skip_all, fields(report_id = %id))]
                async fn mark_queued(
                    &self,
                    id: Uuid,
                    now: DateTime<Utc>,
                ) -> $crate::Result<Option<Report>> {
                    let row: Option<sql::ReportRow> = sqlx::query_as(sql::MARK_QUEUED)
                        .bind(id)
                        .bind(sql::ts(now))
                        .fetch_optional(&self.pool)
                        .await?;
                    row.map(sql::ReportRow::into_report).transpose()
                }

                #[tracing::instrument(skip_all)]
                async fn stranded_reports(
                    &self,
                    stranded_before: DateTime<Utc>,
                    limit: u32,
                ) -> $crate::Result<Vec<Report>> {
                    let rows: Vec<sql::ReportRow> = sqlx::query_as(sql::STRANDED_REPORTS)
                        .bind(sql::ts(stranded_before))
                        .bind(sql::limit(limit))
                        .fetch_all(&self.pool)
                        .await?;
                    sql::into_reports(rows)
                }

                #[tracing::instrument(skip_all, fields(report_id = %id))]
                async fn rescue_report(
                    &self,
                    id: Uuid,
                    stranded_before: DateTime<Utc>,
                    give_up: Option<&str>,
                    now: DateTime<Utc>,
                ) -> $crate::Result<Option<Report>> {
                    let query = match give_up {
                        None => sqlx::query_as(sql::RESCUE_REQUEUE),
                        Some(_) => sqlx::query_as(sql::RESCUE_FAIL),
                    }
                    .bind(id)
                    .bind(sql::ts(now))
                    .bind(sql::ts(stranded_before));
                    let query = match give_up {
                        Some(error) => query.bind(error),
                        None => query,
                    };
                    let row: Option<sql::ReportRow> = query.fetch_optional(&self.pool).await?;
                    row.map(sql::ReportRow::into_report).transpose()
                }

                #[tracing::instrument(skip_all)]
                async fn pending_reports(
                    &self,
                    created_before: DateTime<Utc>,
                    limit: u32,
                ) -> $crate::Result<Vec<Report>> {
                    let rows: Vec<sql::ReportRow> = sqlx::query_as(sql::PENDING_REPORTS)
                        .bind(sql::ts(created_before))
                        .bind(sql::limit(limit))
                        .fetch_all(&self.pool)
                        .await?;
                    sql::into_reports(rows)
                }

                // ---- reports: worker side -------------------------------------------------------

                #[tracing::instrument(skip_all, fields(report_id = %id, owner = %lease.owner))]
                async fn claim_report(
                    &self,
                    id: Uuid,
                    lease: &Lease,
                    now: DateTime<Utc>,
                ) -> $crate::Result<Claim> {
                    // Retried only if the report became claimable between the update and the
                    // read back (its holder released it in between).
                    for _ in 0..3 {
                        let row: Option<sql::ReportRow> = sqlx::query_as(sql::CLAIM_REPORT)
                            .bind(id)
                            .bind(&lease.owner)
                            .bind(sql::ts(lease.expires_at))
                            .bind(sql::ts(now))
                            .fetch_optional(&self.pool)
                            .await?;
                        if let Some(row) = row {
                            return Ok(Claim::Claimed(row.into_report()?));
                        }
                        let Some(report) = self.report(id).await? else {
                            return Ok(Claim::Missing);
                        };
                        if report.status.is_terminal() {
                            return Ok(Claim::Finished(report));
                        }
                        let live_lease = report.lease_expires_at.is_none_or(|at| at >= now);
                        if report.status == ReportStatus::Running && live_lease {
                            return Ok(Claim::Leased(report));
                        }
                    }
                    // Still claimable after three lost races: someone else is busy with it.
                    match self.report(id).await? {
                        Some(report) => Ok(Claim::Leased(report)),
                        None => Ok(Claim::Missing),
                    }
                }

                /// Stamps `updated_at` with the current time: the trait passes no `now` here.
                #[tracing::instrument(skip_all, fields(report_id = %id, owner = %lease.owner))]
                async fn renew_lease(&self, id: Uuid, lease: &Lease) -> $crate::Result<bool> {
                    let done = sqlx::query(sql::RENEW_LEASE)
                        .bind(id)
                        .bind(&lease.owner)
                        .bind(sql::ts(lease.expires_at))
                        .bind(sql::ts(Utc::now()))
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() == 1)
                }

                /// Stamps `updated_at` with the current time: the trait passes no `now` here.
                #[tracing::instrument(skip_all, fields(report_id = %id, owner = %owner))]
                async fn set_progress(
                    &self,
                    id: Uuid,
                    owner: &str,
                    progress: i32,
                ) -> $crate::Result<bool> {
                    if !(0..=100).contains(&progress) {
                        return Err($crate::Error::Invalid(format!(
                            "progress must be 0–100, got {progress}"
                        )));
                    }
                    let done = sqlx::query(sql::SET_PROGRESS)
                        .bind(id)
                        .bind(owner)
                        .bind(progress)
                        .bind(sql::ts(Utc::now()))
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() == 1)
                }

                #[tracing::instrument(skip_all, fields(report_id = %id, owner = %owner))]
                async fn complete_report(
                    &self,
                    id: Uuid,
                    owner: &str,
                    output: &StoredOutput,
                    now: DateTime<Utc>,
                ) -> $crate::Result<bool> {
                    let size = i64::try_from(output.size).map_err(|_| {
                        $crate::Error::Invalid(format!("output size {} is too large", output.size))
                    })?;
                    let done = sqlx::query(sql::COMPLETE_REPORT)
                        .bind(id)
                        .bind(owner)
                        .bind(sql::ts(now))
                        .bind(&output.key)
                        .bind(&output.location)
                        .bind(size)
                        .bind(&output.sha256)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() == 1)
                }

                #[tracing::instrument(skip_all, fields(report_id = %id, next = ?next))]
                async fn fail_attempt(
                    &self,
                    id: Uuid,
                    owner: &str,
                    error: &str,
                    next: AttemptEnd,
                    now: DateTime<Utc>,
                ) -> $crate::Result<bool> {
                    let query = match next {
                        AttemptEnd::GiveUp => sqlx::query(sql::GIVE_UP_ATTEMPT),
                        AttemptEnd::RetryAt(_) => sqlx::query(sql::RETRY_ATTEMPT),
                    }
                    .bind(id)
                    .bind(owner)
                    .bind(error)
                    .bind(sql::ts(now));
                    let query = match next {
                        AttemptEnd::RetryAt(at) => query.bind(sql::ts(at)),
                        AttemptEnd::GiveUp => query,
                    };
                    let done = query.execute(&self.pool).await?;
                    Ok(done.rows_affected() == 1)
                }

                #[tracing::instrument(skip_all, fields(report_id = %id, owner = %owner))]
                async fn release_report(
                    &self,
                    id: Uuid,
                    owner: &str,
                    now: DateTime<Utc>,
                    available_at: DateTime<Utc>,
                ) -> $crate::Result<bool> {
                    let done = sqlx::query(sql::RELEASE_REPORT)
                        .bind(id)
                        .bind(owner)
                        .bind(sql::ts(now))
                        .bind(sql::ts(available_at))
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() == 1)
                }
            }
        };
    };
}

pub(super) use impl_record_store;
