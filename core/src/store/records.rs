//! The one copy of the [`RecordStore`](super::RecordStore) logic, for every database
//! Quire runs on ([`PgStore`](super::PgStore), [`SqliteStore`](super::SqliteStore)): each
//! method's body runs on whichever pool the store has through [`on_pool!`], the one
//! dialect technique the work queue shares. Statements from `sql.rs`, rows from `rows.rs`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::pool::{Pool, SqlDatabase, on_pool};
use super::timestamp::Timestamp;
use super::{rows, sql};
use crate::ReportStatus;
use crate::model::{
    AttemptEnd, Cancelled, Claim, Inserted, Lease, NewReport, NewUser, Quota, QuotaExceeded,
    QuotaLimit, RefreshToken, Report, ReportCounts, ReportFilter, StoredOutput, Usage, User,
    UserCredentials,
};

/// [`sql::INSERT_REPORT`] with a [`NewReport`]'s values bound, for either database.
macro_rules! insert_report_query {
    ($report:expr) => {
        sqlx::query_as(sql::INSERT_REPORT)
            .bind($report.id)
            .bind($report.user_id)
            .bind($report.report_type.as_str())
            .bind($report.format.as_str())
            .bind(sqlx::types::Json(&$report.parameters))
            .bind($report.idempotency_key.as_deref())
            .bind($report.request_fingerprint.as_deref())
            .bind(rows::ts($report.created_at))
            .bind($report.traceparent.as_deref())
    };
}

/// `outcome`, after telling this process's waiters that report `id` changed when
/// `changed` says the outcome is a change (see [`SqlDatabase::report_changed`]).
fn announced<S: SqlDatabase, T>(
    store: &S,
    id: Uuid,
    outcome: crate::Result<T>,
    changed: impl FnOnce(&T) -> bool,
) -> crate::Result<T> {
    if let Ok(value) = &outcome
        && changed(value)
    {
        store.report_changed(id);
    }
    outcome
}

#[async_trait::async_trait]
impl<S: SqlDatabase> crate::store::RecordStore for S {
    fn change_feed(&self) -> crate::store::changes::ChangeFeed {
        SqlDatabase::change_feed(self)
    }

    #[tracing::instrument(skip_all)]
    async fn ping(&self) -> crate::Result<()> {
        on_pool!(self.sql_pool(), |pool| {
            sqlx::query(sql::PING).execute(pool).await?;
            Ok(())
        })
    }

    // ---- users ----------------------------------------------------------------------

    #[tracing::instrument(skip_all, fields(user_id = %user.id))]
    async fn create_user(&self, user: NewUser) -> crate::Result<User> {
        on_pool!(self.sql_pool(), |pool| {
            let row: rows::UserRow = sqlx::query_as(sql::INSERT_USER)
                .bind(user.id)
                .bind(&user.email)
                .bind(&user.password_hash)
                .bind(rows::ts(user.created_at))
                .fetch_one(pool)
                .await
                .map_err(|e| rows::conflict_on_unique(e, "email already registered"))?;
            Ok(row.into())
        })
    }

    #[tracing::instrument(skip_all, fields(user_id = %id))]
    async fn user(&self, id: Uuid) -> crate::Result<Option<User>> {
        on_pool!(self.sql_read_pool(), |pool| {
            let row: Option<rows::UserRow> = sqlx::query_as(sql::USER_BY_ID)
                .bind(id)
                .fetch_optional(pool)
                .await?;
            Ok(row.map(Into::into))
        })
    }

    #[tracing::instrument(skip_all)]
    async fn credentials(&self, email: &str) -> crate::Result<Option<UserCredentials>> {
        on_pool!(self.sql_read_pool(), |pool| {
            let row: Option<rows::CredentialsRow> = sqlx::query_as(sql::CREDENTIALS_BY_EMAIL)
                .bind(email)
                .fetch_optional(pool)
                .await?;
            Ok(row.map(Into::into))
        })
    }

    // ---- refresh tokens -------------------------------------------------------------

    #[tracing::instrument(skip_all, fields(family_id = %token.family_id))]
    async fn insert_refresh_token(&self, token: RefreshToken) -> crate::Result<()> {
        on_pool!(self.sql_pool(), |pool| {
            sqlx::query(sql::INSERT_REFRESH_TOKEN)
                .bind(token.id)
                .bind(token.user_id)
                .bind(token.family_id)
                .bind(&token.token_hash)
                .bind(rows::ts(token.created_at))
                .bind(rows::ts(token.expires_at))
                .bind(token.spent_at.map(rows::ts))
                .bind(token.revoked_at.map(rows::ts))
                .bind(rows::ts(token.family_expires_at))
                .execute(pool)
                .await
                .map_err(|e| rows::conflict_on_unique(e, "refresh token already exists"))?;
            Ok(())
        })
    }

    #[tracing::instrument(skip_all)]
    async fn refresh_token(&self, token_hash: &[u8]) -> crate::Result<Option<RefreshToken>> {
        on_pool!(self.sql_read_pool(), |pool| {
            let row: Option<rows::RefreshTokenRow> = sqlx::query_as(sql::REFRESH_TOKEN_BY_HASH)
                .bind(token_hash)
                .fetch_optional(pool)
                .await?;
            Ok(row.map(Into::into))
        })
    }

    #[tracing::instrument(skip_all, fields(token_id = %id))]
    async fn spend_refresh_token(&self, id: Uuid, now: DateTime<Utc>) -> crate::Result<bool> {
        on_pool!(self.sql_pool(), |pool| {
            let done = sqlx::query(sql::SPEND_REFRESH_TOKEN)
                .bind(id)
                .bind(rows::ts(now))
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    #[tracing::instrument(skip_all, fields(family_id = %family_id))]
    async fn revoke_token_family(&self, family_id: Uuid, now: DateTime<Utc>) -> crate::Result<u64> {
        on_pool!(self.sql_pool(), |pool| {
            let done = sqlx::query(sql::REVOKE_TOKEN_FAMILY)
                .bind(family_id)
                .bind(rows::ts(now))
                .execute(pool)
                .await?;
            Ok(done.rows_affected())
        })
    }

    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    async fn sign_out_everywhere(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> crate::Result<Option<i64>> {
        on_pool!(self.sql_pool(), |pool| {
            let mut tx = pool.begin().await?;
            let generation: Option<i64> = sqlx::query_scalar(sql::BUMP_TOKEN_GENERATION)
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
            sqlx::query(sql::REVOKE_USER_TOKENS)
                .bind(user_id)
                .bind(rows::ts(now))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(generation)
        })
    }

    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    async fn token_generation(&self, user_id: Uuid) -> crate::Result<Option<i64>> {
        on_pool!(self.sql_read_pool(), |pool| {
            Ok(sqlx::query_scalar(sql::TOKEN_GENERATION)
                .bind(user_id)
                .fetch_optional(pool)
                .await?)
        })
    }

    #[tracing::instrument(skip_all)]
    async fn purge_refresh_tokens(
        &self,
        expired_before: DateTime<Utc>,
        revoked_before: DateTime<Utc>,
    ) -> crate::Result<u64> {
        on_pool!(self.sql_pool(), |pool| {
            let done = sqlx::query(sql::PURGE_REFRESH_TOKENS)
                .bind(rows::ts(expired_before))
                .bind(rows::ts(revoked_before))
                .execute(pool)
                .await?;
            Ok(done.rows_affected())
        })
    }

    // ---- reports: API side ----------------------------------------------------------

    #[tracing::instrument(skip_all, fields(report_id = %report.id))]
    async fn insert_report(&self, report: NewReport) -> crate::Result<Inserted> {
        on_pool!(self.sql_pool(), |pool| {
            let row: Option<rows::ReportRow> = insert_report_query!(report)
                .fetch_optional(pool)
                .await
                .map_err(|e| rows::unknown_user_on_foreign_key(e, report.user_id))?;
            if let Some(row) = row {
                return Ok(Inserted::Created(row.into_report()?));
            }
            // Nothing written: a unique index said no. With a key, that is the user's
            // earlier request (its insert has committed, or ours would have waited).
            if let Some(key) = report.idempotency_key.as_deref() {
                let existing: Option<rows::ReportRow> =
                    sqlx::query_as(sql::REPORT_BY_IDEMPOTENCY_KEY)
                        .bind(report.user_id)
                        .bind(key)
                        .fetch_optional(pool)
                        .await?;
                if let Some(row) = existing {
                    return Ok(Inserted::Existing(row.into_report()?));
                }
            }
            Err(crate::Error::Conflict(format!(
                "report {} already exists",
                report.id
            )))
        })
    }

    #[tracing::instrument(skip_all, fields(user_id = %report.user_id))]
    async fn insert_report_within(
        &self,
        report: NewReport,
        quota: Quota,
    ) -> crate::Result<Inserted> {
        if let Some(key) = report.idempotency_key.as_deref() {
            let existing = on_pool!(self.sql_pool(), |pool| {
                sqlx::query_as::<_, rows::ReportRow>(sql::REPORT_BY_IDEMPOTENCY_KEY)
                    .bind(report.user_id)
                    .bind(key)
                    .fetch_optional(pool)
                    .await?
            });
            if let Some(row) = existing {
                return Ok(Inserted::Existing(row.into_report()?));
            }
        }
        if quota == Quota::default() {
            return self.insert_report(report).await;
        }
        let hour_ago = rows::ts(report.created_at - chrono::Duration::hours(1));
        // In one transaction holding the user: lock, count, insert. An early return rolls
        // back (the transaction is dropped).
        macro_rules! within_quota {
            ($tx:ident, $lock:expr) => {{
                let user = sqlx::query($lock)
                    .bind(report.user_id)
                    .fetch_optional(&mut *$tx)
                    .await?;
                if user.is_none() {
                    return Err(crate::Error::UnknownUser(report.user_id));
                }
                let counts: UsageRow = sqlx::query_as(sql::USAGE)
                    .bind(report.user_id)
                    .bind(hour_ago)
                    .fetch_one(&mut *$tx)
                    .await?;
                check_quota(quota, counts, report.created_at)?;
                let row: Option<rows::ReportRow> = insert_report_query!(report)
                    .fetch_optional(&mut *$tx)
                    .await?;
                $tx.commit().await?;
                row
            }};
        }
        let row = match self.sql_pool() {
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                within_quota!(tx, sql::LOCK_USER_POSTGRES)
            }
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                within_quota!(tx, sql::LOCK_USER_SQLITE)
            }
        };
        match row {
            Some(row) => Ok(Inserted::Created(row.into_report()?)),
            // A concurrent request with the same idempotency key committed first: the
            // plain insert finds and returns it.
            None => self.insert_report(report).await,
        }
    }

    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    async fn usage(&self, user_id: Uuid, now: DateTime<Utc>) -> crate::Result<Usage> {
        let counts: UsageRow = on_pool!(self.sql_read_pool(), |pool| {
            sqlx::query_as(sql::USAGE)
                .bind(user_id)
                .bind(rows::ts(now - chrono::Duration::hours(1)))
                .fetch_one(pool)
                .await?
        });
        Ok(usage_of(&counts))
    }

    #[tracing::instrument(skip_all)]
    async fn expired_outputs(
        &self,
        completed_before: DateTime<Utc>,
        limit: u32,
    ) -> crate::Result<Vec<(Uuid, String)>> {
        on_pool!(self.sql_read_pool(), |pool| {
            Ok(sqlx::query_as(sql::EXPIRED_OUTPUTS)
                .bind(rows::ts(completed_before))
                .bind(rows::limit(limit))
                .fetch_all(pool)
                .await?)
        })
    }

    #[tracing::instrument(skip_all)]
    async fn delete_expired_reports(
        &self,
        finished_before: DateTime<Utc>,
        limit: u32,
    ) -> crate::Result<u64> {
        on_pool!(self.sql_pool(), |pool| {
            Ok(sqlx::query(sql::DELETE_EXPIRED_REPORTS)
                .bind(rows::ts(finished_before))
                .bind(rows::limit(limit))
                .execute(pool)
                .await?
                .rows_affected())
        })
    }

    #[tracing::instrument(skip_all, fields(report_id = %id))]
    async fn report(&self, id: Uuid) -> crate::Result<Option<Report>> {
        on_pool!(self.sql_read_pool(), |pool| {
            let row: Option<rows::ReportRow> = sqlx::query_as(sql::REPORT_BY_ID)
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.map(rows::ReportRow::into_report).transpose()
        })
    }

    #[tracing::instrument(skip_all, fields(report_id = %id, user_id = %user_id))]
    async fn user_report(&self, user_id: Uuid, id: Uuid) -> crate::Result<Option<Report>> {
        on_pool!(self.sql_read_pool(), |pool| {
            let row: Option<rows::ReportRow> = sqlx::query_as(sql::USER_REPORT)
                .bind(id)
                .bind(user_id)
                .fetch_optional(pool)
                .await?;
            row.map(rows::ReportRow::into_report).transpose()
        })
    }

    #[tracing::instrument(skip_all, fields(report_id = %id, user_id = %user_id))]
    async fn user_report_and_generation(
        &self,
        user_id: Uuid,
        id: Uuid,
    ) -> crate::Result<(Option<i64>, Option<Report>)> {
        let row: Option<rows::ReportAndGenerationRow> = match self.status_reads() {
            Some(reads) => reads.read(user_id, id).await?,
            None => on_pool!(self.sql_read_pool(), |pool| {
                sqlx::query_as(sql::USER_REPORT_AND_GENERATION)
                    .bind(id)
                    .bind(user_id)
                    .fetch_optional(pool)
                    .await
            })?,
        };
        match row {
            Some(row) => Ok((Some(row.token_generation), Some(row.report.into_report()?))),
            // No such report of theirs: the generation alone (a second query, off the
            // common path).
            None => Ok((self.token_generation(user_id).await?, None)),
        }
    }

    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    async fn list_reports(
        &self,
        user_id: Uuid,
        filter: &ReportFilter,
    ) -> crate::Result<Vec<Report>> {
        on_pool!(self.sql_read_pool(), |pool| {
            let limit = rows::limit(filter.limit);
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
                (Some(status), Some(before)) => sqlx::query_as(sql::LIST_REPORTS_BY_STATUS_BEFORE)
                    .bind(user_id)
                    .bind(status.as_str())
                    .bind(before)
                    .bind(limit),
            };
            let rows: Vec<rows::ReportRow> = query.fetch_all(pool).await?;
            rows::into_reports(rows)
        })
    }

    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    async fn report_counts(&self, user_id: Uuid) -> crate::Result<ReportCounts> {
        on_pool!(self.sql_read_pool(), |pool| {
            let rows: Vec<rows::CountRow> = sqlx::query_as(sql::REPORT_COUNTS)
                .bind(user_id)
                .fetch_all(pool)
                .await?;
            let by_type_and_status = rows
                .into_iter()
                .map(rows::CountRow::parse)
                .collect::<crate::Result<_>>()?;
            Ok(ReportCounts { by_type_and_status })
        })
    }

    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    async fn reports_since(
        &self,
        user_id: Uuid,
        since: DateTime<Utc>,
        limit: u32,
    ) -> crate::Result<Vec<Report>> {
        on_pool!(self.sql_read_pool(), |pool| {
            let rows: Vec<rows::ReportRow> = sqlx::query_as(sql::REPORTS_SINCE)
                .bind(user_id)
                .bind(rows::ts(since))
                .bind(rows::limit(limit))
                .fetch_all(pool)
                .await?;
            rows::into_reports(rows)
        })
    }

    #[tracing::instrument(skip_all, fields(report_id = %id, user_id = %user_id))]
    async fn cancel_report(
        &self,
        user_id: Uuid,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> crate::Result<Cancelled> {
        let outcome = async {
            on_pool!(self.sql_pool(), |pool| {
                let row: Option<rows::ReportRow> = sqlx::query_as(sql::CANCEL_REPORT)
                    .bind(id)
                    .bind(user_id)
                    .bind(rows::ts(now))
                    .fetch_optional(pool)
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
            })
        }
        .await;
        announced(self, id, outcome, |outcome| {
            matches!(outcome, Cancelled::Cancelled(_))
        })
    }

    #[tracing::instrument(skip_all, fields(report_id = %id))]
    async fn delete_report(&self, id: Uuid) -> crate::Result<bool> {
        on_pool!(self.sql_pool(), |pool| {
            let done = sqlx::query(sql::DELETE_REPORT)
                .bind(id)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    #[tracing::instrument(skip_all, fields(report_id = %id))]
    async fn mark_output_deleted(&self, id: Uuid, now: DateTime<Utc>) -> crate::Result<bool> {
        let outcome = async {
            on_pool!(self.sql_pool(), |pool| {
                let done = sqlx::query(sql::MARK_OUTPUT_DELETED)
                    .bind(id)
                    .bind(rows::ts(now))
                    .execute(pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            })
        }
        .await;
        announced(self, id, outcome, |&changed| changed)
    }

    /// Stamps `updated_at` with the current time: the trait passes no `now` here.
    #[tracing::instrument(skip_all, fields(report_id = %id))]
    async fn set_download_url(
        &self,
        id: Uuid,
        url: &str,
        expires_at: DateTime<Utc>,
    ) -> crate::Result<()> {
        on_pool!(self.sql_pool(), |pool| {
            let done = sqlx::query(sql::SET_DOWNLOAD_URL)
                .bind(id)
                .bind(url)
                .bind(rows::ts(expires_at))
                .bind(rows::ts(Utc::now()))
                .execute(pool)
                .await?;
            if done.rows_affected() == 0 {
                return Err(crate::Error::NotFound(format!("report {id}")));
            }
            Ok(())
        })
    }

    // ---- reports: dispatch side -----------------------------------------------------

    #[tracing::instrument(skip_all, fields(report_id = %id))]
    async fn mark_queued(&self, id: Uuid, now: DateTime<Utc>) -> crate::Result<Option<Report>> {
        let outcome = async {
            on_pool!(self.sql_pool(), |pool| {
                let row: Option<rows::ReportRow> = sqlx::query_as(sql::MARK_QUEUED)
                    .bind(id)
                    .bind(rows::ts(now))
                    .fetch_optional(pool)
                    .await?;
                row.map(rows::ReportRow::into_report).transpose()
            })
        }
        .await;
        announced(self, id, outcome, Option::is_some)
    }

    #[tracing::instrument(skip_all)]
    async fn stranded_reports(
        &self,
        stranded_before: DateTime<Utc>,
        limit: u32,
    ) -> crate::Result<Vec<Report>> {
        on_pool!(self.sql_read_pool(), |pool| {
            let rows: Vec<rows::ReportRow> = sqlx::query_as(sql::STRANDED_REPORTS)
                .bind(rows::ts(stranded_before))
                .bind(rows::limit(limit))
                .fetch_all(pool)
                .await?;
            rows::into_reports(rows)
        })
    }

    #[tracing::instrument(skip_all, fields(report_id = %id))]
    async fn rescue_report(
        &self,
        id: Uuid,
        stranded_before: DateTime<Utc>,
        give_up: Option<&str>,
        now: DateTime<Utc>,
    ) -> crate::Result<Option<Report>> {
        let outcome = async {
            on_pool!(self.sql_pool(), |pool| {
                let query = match give_up {
                    None => sqlx::query_as(sql::RESCUE_REQUEUE),
                    Some(_) => sqlx::query_as(sql::RESCUE_FAIL),
                }
                .bind(id)
                .bind(rows::ts(now))
                .bind(rows::ts(stranded_before));
                let query = match give_up {
                    Some(error) => query.bind(error),
                    None => query,
                };
                let row: Option<rows::ReportRow> = query.fetch_optional(pool).await?;
                row.map(rows::ReportRow::into_report).transpose()
            })
        }
        .await;
        announced(self, id, outcome, Option::is_some)
    }

    #[tracing::instrument(skip_all)]
    async fn pending_reports(
        &self,
        created_before: DateTime<Utc>,
        limit: u32,
    ) -> crate::Result<Vec<Report>> {
        on_pool!(self.sql_read_pool(), |pool| {
            let rows: Vec<rows::ReportRow> = sqlx::query_as(sql::PENDING_REPORTS)
                .bind(rows::ts(created_before))
                .bind(rows::limit(limit))
                .fetch_all(pool)
                .await?;
            rows::into_reports(rows)
        })
    }

    // ---- reports: worker side -------------------------------------------------------

    #[tracing::instrument(skip_all, fields(report_id = %id, owner = %lease.owner))]
    async fn claim_report(
        &self,
        id: Uuid,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> crate::Result<Claim> {
        let outcome = async {
            on_pool!(self.sql_pool(), |pool| {
                // Retried only if the report became claimable between the update and the
                // read back (its holder released it in between).
                for _ in 0..3 {
                    let row: Option<rows::ClaimedRow> = sqlx::query_as(sql::CLAIM_REPORT)
                        .bind(id)
                        .bind(&lease.owner)
                        .bind(rows::ts(lease.expires_at))
                        .bind(rows::ts(now))
                        .fetch_optional(pool)
                        .await?;
                    if let Some(row) = row {
                        return Ok(Claim::Claimed {
                            report: row.report.into_report()?,
                            claimed_before: row.claims > 1,
                        });
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
            })
        }
        .await;
        announced(self, id, outcome, |outcome| {
            matches!(outcome, Claim::Claimed { .. })
        })
    }

    /// Stamps `updated_at` with the current time: the trait passes no `now` here.
    #[tracing::instrument(skip_all, fields(report_id = %id, owner = %lease.owner))]
    async fn renew_lease(&self, id: Uuid, lease: &Lease) -> crate::Result<bool> {
        on_pool!(self.sql_pool(), |pool| {
            let done = sqlx::query(sql::RENEW_LEASE)
                .bind(id)
                .bind(&lease.owner)
                .bind(rows::ts(lease.expires_at))
                .bind(rows::ts(Utc::now()))
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Stamps `updated_at` with the current time: the trait passes no `now` here.
    #[tracing::instrument(skip_all, fields(report_id = %id, owner = %owner))]
    async fn set_progress(&self, id: Uuid, owner: &str, progress: i32) -> crate::Result<bool> {
        let outcome = async {
            on_pool!(self.sql_pool(), |pool| {
                if !(0..=100).contains(&progress) {
                    return Err(crate::Error::Invalid(format!(
                        "progress must be 0–100, got {progress}"
                    )));
                }
                let done = sqlx::query(sql::SET_PROGRESS)
                    .bind(id)
                    .bind(owner)
                    .bind(progress)
                    .bind(rows::ts(Utc::now()))
                    .execute(pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            })
        }
        .await;
        announced(self, id, outcome, |&changed| changed)
    }

    #[tracing::instrument(skip_all, fields(report_id = %id, owner = %owner))]
    async fn complete_report(
        &self,
        id: Uuid,
        owner: &str,
        output: &StoredOutput,
        now: DateTime<Utc>,
    ) -> crate::Result<bool> {
        let outcome = async {
            on_pool!(self.sql_pool(), |pool| {
                let size = i64::try_from(output.size).map_err(|_| {
                    crate::Error::Invalid(format!("output size {} is too large", output.size))
                })?;
                let done = sqlx::query(sql::COMPLETE_REPORT)
                    .bind(id)
                    .bind(owner)
                    .bind(rows::ts(now))
                    .bind(&output.key)
                    .bind(&output.location)
                    .bind(size)
                    .bind(&output.sha256)
                    .execute(pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            })
        }
        .await;
        announced(self, id, outcome, |&changed| changed)
    }

    #[tracing::instrument(skip_all, fields(report_id = %id, next = ?next))]
    async fn fail_attempt(
        &self,
        id: Uuid,
        owner: &str,
        error: &str,
        next: AttemptEnd,
        now: DateTime<Utc>,
    ) -> crate::Result<bool> {
        let outcome = async {
            on_pool!(self.sql_pool(), |pool| {
                let query = match next {
                    AttemptEnd::GiveUp => sqlx::query(sql::GIVE_UP_ATTEMPT),
                    AttemptEnd::RetryAt(_) => sqlx::query(sql::RETRY_ATTEMPT),
                }
                .bind(id)
                .bind(owner)
                .bind(error)
                .bind(rows::ts(now));
                let query = match next {
                    AttemptEnd::RetryAt(at) => query.bind(rows::ts(at)),
                    AttemptEnd::GiveUp => query,
                };
                let done = query.execute(pool).await?;
                Ok(done.rows_affected() == 1)
            })
        }
        .await;
        announced(self, id, outcome, |&changed| changed)
    }

    #[tracing::instrument(skip_all, fields(report_id = %id, owner = %owner))]
    async fn release_report(
        &self,
        id: Uuid,
        owner: &str,
        now: DateTime<Utc>,
        available_at: DateTime<Utc>,
    ) -> crate::Result<bool> {
        let outcome = async {
            on_pool!(self.sql_pool(), |pool| {
                let done = sqlx::query(sql::RELEASE_REPORT)
                    .bind(id)
                    .bind(owner)
                    .bind(rows::ts(now))
                    .bind(rows::ts(available_at))
                    .execute(pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            })
        }
        .await;
        announced(self, id, outcome, |&changed| changed)
    }
}

/// The counts of [`sql::USAGE`]: unfinished, last hour, the oldest of the last hour.
type UsageRow = (i64, i64, Option<Timestamp>);

/// The usage [`sql::USAGE`]'s counts give.
fn usage_of(counts: &UsageRow) -> Usage {
    Usage {
        unfinished: u64::try_from(counts.0).unwrap_or(0),
        last_hour: u64::try_from(counts.1).unwrap_or(0),
    }
}

/// How long a client over the unfinished-reports limit is asked to wait: reports
/// typically finish within seconds.
const UNFINISHED_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// `Err` when `counts` leave no room in `quota` at `now`.
fn check_quota(quota: Quota, counts: UsageRow, now: DateTime<Utc>) -> crate::Result<()> {
    let usage = usage_of(&counts);
    if let Some(allowed) = quota.unfinished
        && usage.unfinished >= u64::from(allowed)
    {
        return Err(QuotaExceeded {
            limit: QuotaLimit::Unfinished,
            allowed,
            retry_after: UNFINISHED_RETRY_AFTER,
        }
        .into());
    }
    if let Some(allowed) = quota.per_hour
        && usage.last_hour >= u64::from(allowed)
    {
        // The oldest report of the window leaves it an hour after its creation.
        let frees_at = counts
            .2
            .map_or(now, |oldest| oldest.0 + chrono::Duration::hours(1));
        let retry_after = (frees_at - now)
            .to_std()
            .unwrap_or_default()
            .max(std::time::Duration::from_secs(1));
        return Err(QuotaExceeded {
            limit: QuotaLimit::PerHour,
            allowed,
            retry_after,
        }
        .into());
    }
    Ok(())
}
