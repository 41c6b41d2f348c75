//! [`WorkQueue`] on the `work_queue` table of the record store's database (Postgres or
//! SQLite), for deployments without SQS and for the embedded mode.
//!
//! A message is receivable while `visible_at` has passed and it is not dead-lettered.
//! Receiving one stamps it with a fresh random `receipt` and hides it until
//! `now + visibility`, in one `UPDATE`: on Postgres the candidate rows are locked with
//! `FOR UPDATE SKIP LOCKED`, so concurrent receivers take disjoint messages; SQLite runs one
//! writing statement at a time, which gives the same guarantee.
//!
//! A [`Receipt`] is `<message id>.<receipt>`: every message of one `receive` shares the
//! random receipt, and the id makes each handle unique and lets `ack`/`extend` find the row
//! by primary key. `extend`, `retry_later`, `ack` and `dead_letter` with a receipt that is
//! no longer current (the message was received again, deleted or dead-lettered) fail with
//! [`Error::Queue`] and change nothing; unlike SQS, even `ack` says so, because a worker
//! whose message went to someone else should know its outcome may be processed twice.
//!
//! Statements run on either database the way the record store's do
//! ([`crate::store::pool`]).
//!
//! Receivers long-poll: a `send` through the same [`DatabaseQueue`] (or a clone) wakes them
//! at once; messages sent by other processes are found by polling every `poll_interval`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, SqlitePool};
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use super::{Delivery, Receipt, WorkQueue};
use crate::store::pool::{Pool, on_pool};
use crate::store::timestamp::Timestamp;
use crate::{Error, Result};

/// How often a waiting receiver looks for messages sent by other processes.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);

const PING: &str = "SELECT 1";
const SEND: &str = "INSERT INTO work_queue (id, body, created_at, visible_at, receive_count) \
     VALUES ($1, $2, $3, $4, 0)";
/// `$1` receipt, `$2` hidden until, `$3` now, `$4` max messages.
macro_rules! receive_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE work_queue SET receipt = $1, visible_at = $2, \
             receive_count = receive_count + 1 \
             WHERE id IN (SELECT id FROM work_queue \
             WHERE dead_lettered_at IS NULL AND visible_at <= $3 \
             ORDER BY visible_at LIMIT $4",
            $lock,
            ") RETURNING id, body, receive_count"
        )
    };
}
const RECEIVE_POSTGRES: &str = receive_sql!(" FOR UPDATE SKIP LOCKED");
const RECEIVE_SQLITE: &str = receive_sql!("");
/// Used by both `extend` and `retry_later`: either way the message becomes visible at `$3`.
const SET_VISIBLE_AT: &str = "UPDATE work_queue SET visible_at = $3 \
     WHERE id = $1 AND receipt = $2 AND dead_lettered_at IS NULL";
const DELETE: &str = "DELETE FROM work_queue \
     WHERE id = $1 AND receipt = $2 AND dead_lettered_at IS NULL";
const DEAD_LETTER: &str = "UPDATE work_queue \
     SET dead_lettered_at = $3, dead_letter_reason = $4, receipt = NULL \
     WHERE id = $1 AND receipt = $2 AND dead_lettered_at IS NULL";
/// `$1` now. Sent with a delay and never received yet counts as neither (SQS: "delayed").
const DEPTH: &str = "SELECT \
     COALESCE(SUM(CASE WHEN dead_lettered_at IS NULL AND visible_at <= $1 THEN 1 ELSE 0 END), 0), \
     COALESCE(SUM(CASE WHEN dead_lettered_at IS NULL AND visible_at > $1 \
         AND receipt IS NOT NULL THEN 1 ELSE 0 END), 0), \
     COALESCE(SUM(CASE WHEN dead_lettered_at IS NOT NULL THEN 1 ELSE 0 END), 0) \
     FROM work_queue";
const DEAD_LETTERS: &str = "SELECT body, dead_letter_reason FROM work_queue \
     WHERE dead_lettered_at IS NOT NULL ORDER BY dead_lettered_at, id";

#[derive(Clone)]
enum Backend {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Backend {
    fn pool(&self) -> Pool<'_> {
        match self {
            Self::Postgres(pool) => Pool::Postgres(pool),
            Self::Sqlite(pool) => Pool::Sqlite(pool),
        }
    }
}

/// The work queue on the `work_queue` table. Cloning shares the pool and the wake-ups.
#[derive(Clone)]
pub struct DatabaseQueue {
    backend: Backend,
    /// Signalled by `send` so receivers in this process pick new messages up at once.
    sent: Arc<Notify>,
    poll_interval: Duration,
}

#[derive(sqlx::FromRow)]
struct ReceivedRow {
    id: Uuid,
    body: String,
    receive_count: i32,
}

impl DatabaseQueue {
    /// A queue on a (migrated) Postgres database.
    pub fn postgres(pool: PgPool) -> Self {
        Self::new(Backend::Postgres(pool))
    }

    /// A queue on a (migrated) SQLite database.
    pub fn sqlite(pool: SqlitePool) -> Self {
        Self::new(Backend::Sqlite(pool))
    }

    fn new(backend: Backend) -> Self {
        Self {
            backend,
            sent: Arc::new(Notify::new()),
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }

    /// How often a long-polling receiver checks for messages sent by other processes
    /// (default [`DEFAULT_POLL_INTERVAL`]).
    pub fn with_poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval.max(Duration::from_millis(1));
        self
    }

    /// Every dead-lettered message as (body, reason), oldest first, for inspection.
    #[tracing::instrument(skip_all)]
    pub async fn dead_letters(&self) -> Result<Vec<(String, String)>> {
        let rows: Vec<(String, Option<String>)> = on_pool!(self.backend.pool(), |pool| {
            sqlx::query_as(DEAD_LETTERS).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|(body, reason)| (body, reason.unwrap_or_default()))
            .collect())
    }

    /// One attempt to take up to `max` visible messages, without waiting.
    async fn take(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>> {
        let now = Utc::now();
        let receipt = Uuid::new_v4();
        let hidden_until = Timestamp(after(now, visibility)?);
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        // The one dialect difference: Postgres locks the candidates (`SKIP LOCKED`).
        let mut rows: Vec<ReceivedRow> = match self.backend.pool() {
            Pool::Postgres(pool) => {
                sqlx::query_as(RECEIVE_POSTGRES)
                    .bind(receipt)
                    .bind(hidden_until)
                    .bind(Timestamp(now))
                    .bind(max)
                    .fetch_all(pool)
                    .await?
            }
            Pool::Sqlite(pool) => {
                sqlx::query_as(RECEIVE_SQLITE)
                    .bind(receipt)
                    .bind(hidden_until)
                    .bind(Timestamp(now))
                    .bind(max)
                    .fetch_all(pool)
                    .await?
            }
        };
        // RETURNING has no order; ids are UUIDv7, so this is send order.
        rows.sort_by_key(|row| row.id);
        Ok(rows
            .into_iter()
            .map(|row| Delivery {
                body: row.body,
                receipt: encode_receipt(row.id, receipt),
                receive_count: u32::try_from(row.receive_count).unwrap_or(0),
            })
            .collect())
    }

    /// Moves the message held under `receipt` to be visible at `visible_at`.
    async fn set_visible_at(&self, receipt: &Receipt, visible_at: DateTime<Utc>) -> Result<()> {
        let (id, token) = decode_receipt(receipt)?;
        let done = on_pool!(self.backend.pool(), |pool| {
            sqlx::query(SET_VISIBLE_AT)
                .bind(id)
                .bind(token)
                .bind(Timestamp(visible_at))
                .execute(pool)
                .await?
                .rows_affected()
        });
        require_current(done, receipt)
    }
}

impl fmt::Debug for DatabaseQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match self.backend {
            Backend::Postgres(_) => "postgres",
            Backend::Sqlite(_) => "sqlite",
        };
        f.debug_struct("DatabaseQueue")
            .field("backend", &backend)
            .field("poll_interval", &self.poll_interval)
            .finish()
    }
}

#[async_trait]
impl WorkQueue for DatabaseQueue {
    #[tracing::instrument(skip_all)]
    async fn send(&self, body: &str, delay: Duration) -> Result<()> {
        let now = Utc::now();
        let visible_at = Timestamp(after(now, delay)?);
        on_pool!(self.backend.pool(), |pool| {
            sqlx::query(SEND)
                .bind(Uuid::now_v7())
                .bind(body)
                .bind(Timestamp(now))
                .bind(visible_at)
                .execute(pool)
                .await?;
        });
        if delay.is_zero() {
            self.sent.notify_waiters();
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(max))]
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        loop {
            // Registered before looking, so a send between the look and the wait still
            // wakes us.
            let sent = self.sent.notified();
            tokio::pin!(sent);
            sent.as_mut().enable();

            let deliveries = self.take(max, visibility).await?;
            let now = Instant::now();
            if !deliveries.is_empty() || now >= deadline {
                return Ok(deliveries);
            }
            let nap = (deadline - now).min(self.poll_interval);
            tokio::select! {
                () = &mut sent => {}
                () = tokio::time::sleep(nap) => {}
            }
        }
    }

    #[tracing::instrument(skip_all)]
    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<()> {
        self.set_visible_at(receipt, after(Utc::now(), visibility)?)
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn ack(&self, receipt: &Receipt) -> Result<()> {
        let (id, token) = decode_receipt(receipt)?;
        let done = on_pool!(self.backend.pool(), |pool| {
            sqlx::query(DELETE)
                .bind(id)
                .bind(token)
                .execute(pool)
                .await?
                .rows_affected()
        });
        require_current(done, receipt)
    }

    #[tracing::instrument(skip_all)]
    async fn retry_later(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        self.set_visible_at(receipt, after(Utc::now(), delay)?)
            .await?;
        if delay.is_zero() {
            self.sent.notify_waiters();
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(reason = %reason))]
    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        let (id, token) = decode_receipt(receipt)?;
        let done = on_pool!(self.backend.pool(), |pool| {
            sqlx::query(DEAD_LETTER)
                .bind(id)
                .bind(token)
                .bind(Timestamp(Utc::now()))
                .bind(reason)
                .execute(pool)
                .await?
                .rows_affected()
        });
        require_current(done, receipt)
    }

    #[tracing::instrument(skip_all)]
    async fn ping(&self) -> Result<()> {
        on_pool!(self.backend.pool(), |pool| {
            sqlx::query(PING).execute(pool).await?;
        });
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn depth(&self) -> Result<super::Depth> {
        let (visible, in_flight, dead_letters): (i64, i64, i64) =
            on_pool!(self.backend.pool(), |pool| {
                sqlx::query_as(DEPTH)
                    .bind(Timestamp(Utc::now()))
                    .fetch_one(pool)
                    .await?
            });
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(super::Depth {
            visible: count(visible),
            in_flight: count(in_flight),
            dead_letters: count(dead_letters),
        })
    }
}

/// `now + duration`, or [`Error::Invalid`] for a duration beyond chrono's range.
fn after(now: DateTime<Utc>, duration: Duration) -> Result<DateTime<Utc>> {
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .ok_or_else(|| Error::Invalid(format!("duration {duration:?} is out of range")))
}

fn encode_receipt(id: Uuid, token: Uuid) -> Receipt {
    Receipt(format!("{}.{}", id.simple(), token.simple()))
}

fn decode_receipt(receipt: &Receipt) -> Result<(Uuid, Uuid)> {
    receipt
        .0
        .split_once('.')
        .and_then(|(id, token)| Some((Uuid::parse_str(id).ok()?, Uuid::parse_str(token).ok()?)))
        .ok_or_else(|| Error::queue(format!("malformed receipt `{}`", receipt.0)))
}

fn require_current(rows_affected: u64, receipt: &Receipt) -> Result<()> {
    if rows_affected == 0 {
        return Err(Error::queue(format!(
            "receipt is stale (the message was received again, deleted or dead-lettered): {}",
            receipt.0
        )));
    }
    Ok(())
}
