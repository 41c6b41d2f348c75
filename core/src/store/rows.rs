//! Rows as the statements in `sql.rs` return them, and their conversion into the domain
//! model; the helpers that bind times and map constraint violations to domain errors.

use chrono::{DateTime, Utc};
use quire_crds::{ReportFormat, ReportStatus, ReportType};
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::timestamp::Timestamp;
use crate::Error;
use crate::model::{RefreshToken, Report, User, UserCredentials};

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
    family_expires_at: Timestamp,
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
            family_expires_at: row.family_expires_at.0,
            spent_at: row.spent_at.map(|t| t.0),
            revoked_at: row.revoked_at.map(|t| t.0),
        }
    }
}

/// A `reports` row as both databases decode it; [`ReportRow::into_report`] parses the
/// string-backed enums.
#[derive(Clone, sqlx::FromRow)]
pub(super) struct ReportRow {
    pub(super) id: Uuid,
    pub(super) user_id: Uuid,
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
    traceparent: Option<String>,
}

/// A claimed [`ReportRow`] with its `claims`, the claim that returned it included.
#[derive(sqlx::FromRow)]
pub(super) struct ClaimedRow {
    #[sqlx(flatten)]
    pub(super) report: ReportRow,
    pub(super) claims: i32,
}

/// A [`ReportRow`] with its owner's token generation.
#[derive(Clone, sqlx::FromRow)]
pub(super) struct ReportAndGenerationRow {
    #[sqlx(flatten)]
    pub(super) report: ReportRow,
    pub(super) token_generation: i64,
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
            traceparent: self.traceparent,
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

pub(super) fn parse_column<T>(column: &str, text: &str) -> Result<T, Error>
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
