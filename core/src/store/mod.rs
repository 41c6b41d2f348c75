//! The record store: users, refresh tokens and reports.
//!
//! One trait, two implementations sharing their SQL ([`postgres::PgStore`] for production,
//! [`sqlite::SqliteStore`] for the embedded mode). Every state change of a report is a
//! single conditional `UPDATE`, so two workers, a retry and a cancel can race safely: the
//! loser's update matches no row and it learns so from the `bool`/enum it gets back.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::Result;
use crate::model::{
    AttemptEnd, Cancelled, Claim, Inserted, Lease, NewReport, NewUser, Quota, RefreshToken, Report,
    ReportCounts, ReportFilter, StoredOutput, Usage, User, UserCredentials,
};

pub mod changes;
pub mod pool;
pub mod postgres;
mod records;
mod rows;
mod sql;
pub mod sqlite;
pub mod status_reads;
pub(crate) mod timestamp;
pub mod webhooks;

pub use postgres::{PgStore, PoolSettings};
pub use sqlite::SqliteStore;
pub use webhooks::{DeliveryTarget, WebhookStore};

/// Users, refresh tokens and reports (and, through [`WebhookStore`], webhook endpoints and
/// their deliveries). See the module docs for the concurrency contract.
#[async_trait]
pub trait RecordStore: WebhookStore + Send + Sync + 'static {
    /// Succeeds when the database answers a trivial query.
    async fn ping(&self) -> Result<()>;

    /// Where changes to reports are announced (see [`changes`]).
    fn change_feed(&self) -> changes::ChangeFeed;

    // ---- users -------------------------------------------------------------------------

    /// Creates a user; [`Error::Conflict`](crate::Error::Conflict) if the email is taken.
    async fn create_user(&self, user: NewUser) -> Result<User>;
    async fn user(&self, id: Uuid) -> Result<Option<User>>;
    /// Looks a user up by normalised email, with the password hash, for sign-in.
    async fn credentials(&self, email: &str) -> Result<Option<UserCredentials>>;

    // ---- refresh tokens ----------------------------------------------------------------

    async fn insert_refresh_token(&self, token: RefreshToken) -> Result<()>;
    async fn refresh_token(&self, token_hash: &[u8]) -> Result<Option<RefreshToken>>;
    /// Marks an unspent, unrevoked token spent. `false` if it already was (a reuse race).
    async fn spend_refresh_token(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool>;
    /// Revokes every token of a family; returns how many were newly revoked.
    async fn revoke_token_family(&self, family_id: Uuid, now: DateTime<Utc>) -> Result<u64>;
    /// Signs the user out everywhere, in one transaction: revokes every refresh token and
    /// bumps the user's token generation, so access tokens issued before fail. Returns the
    /// new generation, `None` for an unknown user.
    async fn sign_out_everywhere(&self, user_id: Uuid, now: DateTime<Utc>) -> Result<Option<i64>>;
    /// The generation access tokens must carry (see [`RecordStore::sign_out_everywhere`]);
    /// `None` for an unknown user.
    async fn token_generation(&self, user_id: Uuid) -> Result<Option<i64>>;
    /// Deletes refresh tokens that expired before `expired_before` or were revoked before
    /// `revoked_before`; returns how many.
    async fn purge_refresh_tokens(
        &self,
        expired_before: DateTime<Utc>,
        revoked_before: DateTime<Utc>,
    ) -> Result<u64>;

    // ---- reports: API side -------------------------------------------------------------

    /// Stores a `pending` report. With an idempotency key the user already used, returns
    /// the existing report instead and writes nothing. [`Error::UnknownUser`](crate::Error::UnknownUser)
    /// if the user does not exist.
    async fn insert_report(&self, report: NewReport) -> Result<Inserted>;
    /// [`insert_report`](Self::insert_report) within the user's `quota`, counted at the
    /// report's `created_at`: over either limit, [`Error::QuotaExceeded`](crate::Error::QuotaExceeded)
    /// and nothing is written. Concurrent requests of one user are counted in turn, so
    /// the limits hold exactly. A replay of an idempotency key is answered whatever the
    /// quota.
    async fn insert_report_within(&self, report: NewReport, quota: Quota) -> Result<Inserted>;
    /// What the user holds against their quota at `now`.
    async fn usage(&self, user_id: Uuid, now: DateTime<Utc>) -> Result<Usage>;
    /// Any report by id, whoever owns it (worker, dispatcher, controller).
    async fn report(&self, id: Uuid) -> Result<Option<Report>>;
    /// A report only if `user_id` owns it.
    async fn user_report(&self, user_id: Uuid, id: Uuid) -> Result<Option<Report>>;
    /// [`user_report`](Self::user_report) together with the user's token generation
    /// (`None`: no such user), in one query when the report exists: what an authenticated
    /// status read needs.
    async fn user_report_and_generation(
        &self,
        user_id: Uuid,
        id: Uuid,
    ) -> Result<(Option<i64>, Option<Report>)>;
    /// One page of the user's reports, newest first.
    async fn list_reports(&self, user_id: Uuid, filter: &ReportFilter) -> Result<Vec<Report>>;
    /// Counts of the user's reports by type and status.
    async fn report_counts(&self, user_id: Uuid) -> Result<ReportCounts>;
    /// The user's reports created at or after `since`, oldest first, at most `limit`.
    async fn reports_since(
        &self,
        user_id: Uuid,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Report>>;
    /// Cancels a report of the user's that has not finished.
    async fn cancel_report(&self, user_id: Uuid, id: Uuid, now: DateTime<Utc>)
    -> Result<Cancelled>;
    /// Deletes a report row (only used to undo an insert whose dispatch could not be recorded).
    async fn delete_report(&self, id: Uuid) -> Result<bool>;
    /// Records that the report's output was deleted (its `ReportRequest` was deleted or its
    /// TTL ran out) and forgets its download link. `false` if it already was.
    async fn mark_output_deleted(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool>;
    /// Up to `limit` completed reports (id, output key) whose output is stored and that
    /// completed before `completed_before`, oldest first: the retention pass deletes these
    /// outputs, then [`mark_output_deleted`](Self::mark_output_deleted)s them.
    async fn expired_outputs(
        &self,
        completed_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(Uuid, String)>>;
    /// Deletes up to `limit` finished reports that finished before `finished_before` and
    /// hold no stored output, oldest first; returns how many.
    async fn delete_expired_reports(
        &self,
        finished_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64>;
    /// Remembers the download URL handed out for a completed report.
    async fn set_download_url(&self, id: Uuid, url: &str, expires_at: DateTime<Utc>) -> Result<()>;

    // ---- reports: dispatch side --------------------------------------------------------

    /// `pending` → `queued`, receivable from `now`. The report as it now is, or `None` if it
    /// was no longer pending (already claimed, cancelled).
    async fn mark_queued(&self, id: Uuid, now: DateTime<Utc>) -> Result<Option<Report>>;
    /// Reports still `pending` that were created before `created_before`, oldest first.
    async fn pending_reports(
        &self,
        created_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Report>>;

    // ---- reports: rescue ----------------------------------------------------------------

    /// Reports whose work message may be lost, oldest first: `running` under a lease that
    /// expired before `stranded_before`, or `queued` with a message that should have been
    /// receivable before it (see [`Report::available_at`]).
    async fn stranded_reports(
        &self,
        stranded_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Report>>;
    /// Takes a report that is still stranded (as [`RecordStore::stranded_reports`] means
    /// it) out of its limbo: back to `queued`, receivable at once, or `failed` with
    /// `give_up` as its error. The report as it now is, or `None` if it moved on meanwhile
    /// (a worker claimed or finished it, another rescuer got there first).
    async fn rescue_report(
        &self,
        id: Uuid,
        stranded_before: DateTime<Utc>,
        give_up: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<Report>>;

    // ---- reports: worker side ----------------------------------------------------------

    /// Takes the report for `lease.owner` if it is `pending`/`queued`, or `running` under an
    /// expired lease; increments `attempts` and sets `started_at` on success.
    async fn claim_report(&self, id: Uuid, lease: &Lease, now: DateTime<Utc>) -> Result<Claim>;
    /// Extends the lease. `false` if the caller no longer holds it (expired and taken, or
    /// the report was cancelled): the caller must stop working on it.
    async fn renew_lease(&self, id: Uuid, lease: &Lease) -> Result<bool>;
    /// Records progress (0–100) under the caller's lease. `false` as for `renew_lease`.
    async fn set_progress(&self, id: Uuid, owner: &str, progress: i32) -> Result<bool>;
    /// `running` → `completed` under the caller's lease, recording the output.
    /// `false` if the lease was lost or the report cancelled: the caller discards the output.
    async fn complete_report(
        &self,
        id: Uuid,
        owner: &str,
        output: &StoredOutput,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Records a failed attempt under the caller's lease: back to `queued` for a retry
    /// whose message is receivable at the given time, or `failed` for good. `false` if the
    /// lease was lost or it was cancelled.
    async fn fail_attempt(
        &self,
        id: Uuid,
        owner: &str,
        error: &str,
        next: AttemptEnd,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Hands a running report back (`queued`, lease cleared, the claim's attempt given back)
    /// without counting a failure, e.g. on graceful shutdown, so rolling restarts never use
    /// up a report's attempts, nor do outages of the queue or storage. Its message is
    /// receivable again at `available_at`. `false` if the caller did not hold it.
    async fn release_report(
        &self,
        id: Uuid,
        owner: &str,
        now: DateTime<Utc>,
        available_at: DateTime<Utc>,
    ) -> Result<bool>;
}
