//! The SQL both stores run. Row types are in `rows.rs`; the one copy of the
//! [`RecordStore`](super::RecordStore) logic that runs them, expanded for each concrete
//! store, is `impl_record_store!` in `records.rs`.
//!
//! Both databases accept `$N` parameters (sqlx-sqlite binds them by position), so every
//! statement is a single `&'static str`. Times are always bound as [`Timestamp`], never as
//! `DateTime<Utc>`: SQLite compares them as text (see `timestamp.rs`). Every report state
//! change is one conditional `UPDATE`; whoever loses a race matches no row.

/// Every column of `reports`, in [`ReportRow`] order.
macro_rules! report_columns {
    () => {
        "id, user_id, report_type, format, parameters, status, progress, attempts, \
         error_message, created_at, queued_at, started_at, completed_at, failed_at, \
         cancelled_at, updated_at, lease_owner, lease_expires_at, idempotency_key, \
         request_fingerprint, output_key, output_file_path, output_size, output_checksum, \
         download_url, download_url_expires_at, output_deleted_at, available_at, traceparent"
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
     (id, user_id, family_id, token_hash, created_at, expires_at, spent_at, revoked_at, \
     family_expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
pub(super) const REFRESH_TOKEN_BY_HASH: &str = "SELECT id, user_id, family_id, token_hash, \
     created_at, expires_at, family_expires_at, spent_at, revoked_at FROM refresh_tokens \
     WHERE token_hash = $1";
pub(super) const SPEND_REFRESH_TOKEN: &str = "UPDATE refresh_tokens SET spent_at = $2 \
     WHERE id = $1 AND spent_at IS NULL AND revoked_at IS NULL";
pub(super) const REVOKE_TOKEN_FAMILY: &str =
    "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL";
pub(super) const REVOKE_USER_TOKENS: &str =
    "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL";
pub(super) const BUMP_TOKEN_GENERATION: &str = "UPDATE users \
     SET token_generation = token_generation + 1 WHERE id = $1 RETURNING token_generation";
pub(super) const TOKEN_GENERATION: &str = "SELECT token_generation FROM users WHERE id = $1";
pub(super) const PURGE_REFRESH_TOKENS: &str =
    "DELETE FROM refresh_tokens WHERE expires_at < $1 OR revoked_at < $2";

// ---- reports: reads ----------------------------------------------------------------------

pub(super) const REPORT_BY_ID: &str = select_reports!("WHERE id = $1");
pub(super) const USER_REPORT: &str = select_reports!("WHERE id = $1 AND user_id = $2");
/// [`USER_REPORT`] with the owner's token generation (a primary-key subquery), so an
/// authenticated status read is one round trip.
pub(super) const USER_REPORT_AND_GENERATION: &str = concat!(
    "SELECT ",
    report_columns!(),
    ", (SELECT token_generation FROM users WHERE users.id = reports.user_id) \
     AS token_generation FROM reports WHERE id = $1 AND user_id = $2"
);
/// [`USER_REPORT_AND_GENERATION`] for many reports at once, by primary key (Postgres; the
/// owner is checked per read, see `status_reads.rs`).
pub(super) const REPORTS_AND_GENERATIONS: &str = concat!(
    "SELECT ",
    report_columns!(),
    ", (SELECT token_generation FROM users WHERE users.id = reports.user_id) \
     AS token_generation FROM reports WHERE id = ANY($1)"
);
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
     attempts, idempotency_key, request_fingerprint, created_at, updated_at, traceparent) \
     VALUES ($1, $2, $3, $4, $5, 'pending', 0, 0, $6, $7, $8, $8, $9) \
     ON CONFLICT DO NOTHING RETURNING ",
    report_columns!()
);
/// `$1` user, `$2` an hour ago: unfinished reports, reports of the last hour and the
/// oldest of those (when the per-hour window frees a place).
pub(super) const USAGE: &str = "SELECT \
     (SELECT COUNT(*) FROM reports WHERE user_id = $1 \
         AND status IN ('pending', 'queued', 'running')), \
     (SELECT COUNT(*) FROM reports WHERE user_id = $1 AND created_at > $2), \
     (SELECT MIN(created_at) FROM reports WHERE user_id = $1 AND created_at > $2)";
/// Holds the user's row while a quota is checked and a report inserted, so concurrent
/// requests of one user are counted one after the other (Postgres; SQLite's `BEGIN
/// IMMEDIATE` serialises writers anyway).
pub(super) const LOCK_USER_POSTGRES: &str = "SELECT id FROM users WHERE id = $1 FOR UPDATE";
pub(super) const LOCK_USER_SQLITE: &str = "SELECT id FROM users WHERE id = $1";
/// `$1` completed before, `$2` batch size: outputs the retention pass deletes.
pub(super) const EXPIRED_OUTPUTS: &str = "SELECT id, output_key FROM reports \
     WHERE output_key IS NOT NULL AND output_deleted_at IS NULL AND completed_at < $1 \
     ORDER BY completed_at LIMIT $2";
/// `$1` finished before, `$2` batch size: finished reports whose output is gone (or never
/// was), oldest first. A report with a live output waits until the pass deleted it.
pub(super) const DELETE_EXPIRED_REPORTS: &str = "DELETE FROM reports WHERE id IN (\
     SELECT id FROM reports \
     WHERE status IN ('completed', 'failed', 'cancelled') \
     AND COALESCE(completed_at, failed_at, cancelled_at) < $1 \
     AND (output_key IS NULL OR output_deleted_at IS NOT NULL) \
     ORDER BY COALESCE(completed_at, failed_at, cancelled_at) LIMIT $2)";
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
/// start; `error_message` keeps the previous attempt's error until this one ends. Returns
/// the report and its `claims`, this one included.
pub(super) const CLAIM_REPORT: &str = concat!(
    "UPDATE reports SET status = 'running', lease_owner = $2, lease_expires_at = $3, \
     attempts = attempts + 1, claims = claims + 1, started_at = $4, progress = 0, \
     updated_at = $4 \
     WHERE id = $1 AND (status IN ('pending', 'queued') \
     OR (status = 'running' AND lease_expires_at < $4)) \
     RETURNING ",
    report_columns!(),
    ", claims"
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
