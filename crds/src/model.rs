//! Records as the rest of the system sees them, independent of the database they live in
//! and of every backend: the renderer, the store and the API all speak these types.

use crate::{ParameterError, ReportFormat, ReportParameters, ReportStatus, ReportType};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// A registered user. The password hash never leaves the store through this type.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub created_at: DateTime<Utc>,
}

/// A user together with the bcrypt hash of their password, for sign-in only.
#[derive(Clone)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

impl std::fmt::Debug for UserCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCredentials")
            .field("user", &self.user)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

/// A user to create. `email` must already be normalised.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

/// A refresh token as stored: only the SHA-256 of the secret is kept.
///
/// Tokens of one sign-in form a family: refreshing spends one token and issues the next
/// of the same family; presenting a spent token revokes the whole family.
#[derive(Clone, Debug, PartialEq)]
pub struct RefreshToken {
    pub id: Uuid,
    pub user_id: Uuid,
    pub family_id: Uuid,
    pub token_hash: Vec<u8>,
    pub created_at: DateTime<Utc>,
    /// When this token expires: at most the refresh-token lifetime after it was issued,
    /// and never after its family does.
    pub expires_at: DateTime<Utc>,
    /// When the family ends, whatever its rotations (`QUIRE_REFRESH_FAMILY_TTL` after the
    /// sign-in that started it).
    pub family_expires_at: DateTime<Utc>,
    pub spent_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A report as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub id: Uuid,
    pub user_id: Uuid,
    pub report_type: ReportType,
    pub format: ReportFormat,
    /// Canonical parameters (defaults filled in), as validated by the API.
    pub parameters: Value,
    pub status: ReportStatus,
    /// 0–100.
    pub progress: i32,
    /// How many times a worker has claimed it.
    pub attempts: i32,
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub queued_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// The worker currently holding the lease, while `running`.
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub idempotency_key: Option<String>,
    /// SHA-256 (hex) of the request body an idempotency key was first used with.
    pub request_fingerprint: Option<String>,
    /// Where the output lives in output storage (derived from the report id).
    pub output_key: Option<String>,
    /// Human-readable location of the output (file path or `s3://` URI).
    pub output_file_path: Option<String>,
    pub output_size: Option<i64>,
    /// SHA-256 (hex) of the output bytes.
    pub output_checksum: Option<String>,
    /// The last download URL handed out, and when it stops working.
    pub download_url: Option<String>,
    pub download_url_expires_at: Option<DateTime<Utc>>,
    /// When the output was deleted (the report's `ReportRequest` was deleted or expired);
    /// the report's record stays, its file is gone.
    pub output_deleted_at: Option<DateTime<Utc>>,
    /// While `queued`: when its work message should be receivable (queued, or retried
    /// after a delay). The rescuer re-dispatches a report still queued long after this.
    pub available_at: Option<DateTime<Utc>>,
    /// The W3C `traceparent` of the request that created it; every dispatch puts it in the
    /// work message, so the worker's spans join that trace.
    pub traceparent: Option<String>,
}

/// A report to create, in `pending` state. Build it with [`NewReport::new`], the one
/// validation every entrance shares (`POST /reports`, a `ReportRequest` made with kubectl).
#[derive(Clone, Debug)]
pub struct NewReport {
    pub id: Uuid,
    pub user_id: Uuid,
    pub report_type: ReportType,
    pub format: ReportFormat,
    /// Canonical form: what [`ReportParameters::to_value`] makes of the request's.
    pub parameters: Value,
    pub idempotency_key: Option<String>,
    pub request_fingerprint: Option<String>,
    pub created_at: DateTime<Utc>,
    /// See [`Report::traceparent`].
    pub traceparent: Option<String>,
}

/// Why a requested report cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum InvalidReport {
    /// The type does not come in this format.
    #[error("{0}")]
    Format(String),
    /// The parameters do not fit the type.
    #[error(transparent)]
    Parameters(#[from] ParameterError),
}

impl NewReport {
    /// Checks that `report_type` comes in `format` and that `parameters` fit it, and keeps
    /// the parameters in canonical form, created now.
    pub fn new(
        id: Uuid,
        user_id: Uuid,
        report_type: ReportType,
        format: ReportFormat,
        parameters: &Value,
    ) -> Result<Self, InvalidReport> {
        report_type
            .check_format(format)
            .map_err(InvalidReport::Format)?;
        let parameters = ReportParameters::parse(report_type, parameters)?.to_value();
        Ok(Self {
            id,
            user_id,
            report_type,
            format,
            parameters,
            idempotency_key: None,
            request_fingerprint: None,
            created_at: Utc::now(),
            traceparent: None,
        })
    }

    /// Remembers the trace context the report was requested in (see [`Report::traceparent`]).
    pub fn with_traceparent(mut self, traceparent: Option<String>) -> Self {
        self.traceparent = traceparent;
        self
    }

    /// Makes the report idempotent under `key`: a second request with the same key finds
    /// this report again, provided it asked for the same thing ([`NewReport::fingerprint`]).
    pub fn with_idempotency_key(mut self, key: String) -> Self {
        self.request_fingerprint = Some(self.fingerprint());
        self.idempotency_key = Some(key);
        self
    }

    /// SHA-256 (hex) of the canonical request: the same report asked for twice, however
    /// its JSON was spelled, has the same fingerprint.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        for field in [
            self.report_type.as_str(),
            self.format.as_str(),
            &self.parameters.to_string(),
        ] {
            hasher.update((field.len() as u64).to_be_bytes());
            hasher.update(field.as_bytes());
        }
        hex::encode(hasher.finalize())
    }
}

/// What `insert_report` did.
#[derive(Clone, Debug, PartialEq)]
pub enum Inserted {
    /// A new report row was written.
    Created(Report),
    /// The user already has a report with this idempotency key; here it is, unchanged.
    Existing(Report),
}

/// Which page of a user's reports to list. Reports are ordered newest first by id
/// (UUIDv7, so by creation time).
#[derive(Clone, Debug, Default)]
pub struct ReportFilter {
    pub status: Option<ReportStatus>,
    /// Only reports created before the report with this id (exclusive): the cursor.
    pub before: Option<Uuid>,
    pub limit: u32,
}

/// A worker's hold on a running report. The lease is renewed while the worker works; a
/// report whose lease expired may be claimed by another worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub expires_at: DateTime<Utc>,
}

/// What `claim_report` did.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// The report is now `running` under the caller's lease, `attempts` incremented.
    Claimed {
        report: Report,
        /// A worker claimed it before (and may have stored its output before dying or
        /// handing it back). `false` only for a report's first claim: then there is no
        /// earlier output to look for.
        claimed_before: bool,
    },
    /// Another worker holds a live lease on it.
    Leased(Report),
    /// It is `completed`, `failed` or `cancelled`: nothing to do.
    Finished(Report),
    /// No such report.
    Missing,
}

/// Where a finished output was stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredOutput {
    pub key: String,
    /// Human-readable location (file path or `s3://bucket/key`).
    pub location: String,
    pub size: u64,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
}

/// How a failed attempt ends (see [`RecordStore::fail_attempt`](crate::store::RecordStore::fail_attempt)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptEnd {
    /// Back to `queued`; the retry's message becomes receivable at this time.
    RetryAt(DateTime<Utc>),
    /// `failed` for good.
    GiveUp,
}

/// What `cancel_report` did.
#[derive(Clone, Debug, PartialEq)]
pub enum Cancelled {
    /// The report is now `cancelled`.
    Cancelled(Report),
    /// It had already finished (`completed`, `failed` or `cancelled`).
    AlreadyFinished(Report),
    /// The user has no such report.
    Missing,
}

/// Counts for the profile report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportCounts {
    /// (type, status, count), only non-zero combinations.
    pub by_type_and_status: Vec<(ReportType, ReportStatus, i64)>,
}

impl ReportCounts {
    pub fn total(&self) -> i64 {
        self.by_type_and_status.iter().map(|(_, _, n)| n).sum()
    }

    pub fn with_status(&self, status: ReportStatus) -> i64 {
        self.by_type_and_status
            .iter()
            .filter(|(_, s, _)| *s == status)
            .map(|(_, _, n)| n)
            .sum()
    }

    pub fn with_type(&self, report_type: ReportType) -> i64 {
        self.by_type_and_status
            .iter()
            .filter(|(t, _, _)| *t == report_type)
            .map(|(_, _, n)| n)
            .sum()
    }
}

/// Per-user limits on new reports; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    /// Reports `pending`, `queued` or `running` at once.
    pub unfinished: Option<u32>,
    /// Reports created in the last hour.
    pub per_hour: Option<u32>,
}

/// What a user holds against their [`Quota`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Usage {
    /// Reports `pending`, `queued` or `running` now.
    pub unfinished: u64,
    /// Reports created in the last hour.
    pub last_hour: u64,
}

/// Which limit of a [`Quota`] a request ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaLimit {
    Unfinished,
    PerHour,
}

impl QuotaLimit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unfinished => "unfinished",
            Self::PerHour => "per_hour",
        }
    }
}

/// A new report refused by a [`Quota`]: nothing was written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct QuotaExceeded {
    pub limit: QuotaLimit,
    /// The limit's value.
    pub allowed: u32,
    /// When a request could succeed again, as far as the store can tell: the oldest report
    /// of the last hour leaving the window, or (unfinished) a short wait.
    pub retry_after: std::time::Duration,
}

impl QuotaExceeded {
    fn describe(&self) -> String {
        match self.limit {
            QuotaLimit::Unfinished => format!(
                "quota exceeded: at most {} unfinished reports at once (QUIRE_QUOTA_UNFINISHED); \
                 wait for some to finish or cancel them",
                self.allowed
            ),
            QuotaLimit::PerHour => format!(
                "quota exceeded: at most {} reports per hour (QUIRE_QUOTA_PER_HOUR)",
                self.allowed
            ),
        }
    }
}
