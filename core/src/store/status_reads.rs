//! Concurrent status reads on Postgres coalesced into one query.
//!
//! `GET /reports/{id}` is what polling clients send, many at a time. Each read on its own
//! costs Postgres a round trip for the query and another for sqlx's check of the
//! connection it takes back, and the server's time goes to waking backends rather than
//! finding rows. Here reads that arrive together share one primary-key query
//! (`WHERE id = ANY($1)`): a read starts at once while fewer than [`StatusReads`]' limit of
//! queries are in flight; beyond it, reads wait for the next free query and go with
//! everything that queued meanwhile (up to [`MAX_BATCH`]). No read waits for a timer, and
//! every answer comes from a query that started after the read arrived: never staler than a
//! read of its own.
//!
//! A query has a deadline (the pool's acquire timeout and [`QUERY_BUDGET`]), and a failed
//! query fails its reads and every read queued behind it at once: during a database outage,
//! refused or black-holed, every read is answered within that deadline.
//!
//! Ownership is checked per read against the row (`user_id`), as the single-row query
//! does in SQL: a read of someone else's report id finds nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::{FromRow, PgPool};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::rows::ReportAndGenerationRow;
use super::sql;

/// The most reads one query answers.
pub const MAX_BATCH: usize = 128;

/// How long a status query may run once it has a connection. A read by primary key takes
/// well under a millisecond; one that stalls this long is on a dead link (a black-holed
/// network), and its readers are answered rather than held.
const QUERY_BUDGET: Duration = Duration::from_secs(1);

/// What one read gets: the report with its owner's token generation, `None` when there is
/// no such report of this user (the caller then asks for the generation alone).
type Answer = Result<Option<ReportAndGenerationRow>, sqlx::Error>;

struct Waiter {
    user_id: Uuid,
    id: Uuid,
    answer: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiter>,
    /// Queries in flight (each one a task draining `waiting`).
    running: usize,
}

/// The coalescer of one pool's status reads. Cloning shares it.
#[derive(Clone)]
pub struct StatusReads {
    pool: PgPool,
    queue: Arc<Mutex<Queue>>,
    in_flight: usize,
}

impl StatusReads {
    /// Reads on `pool` with at most `in_flight` queries at a time (each holds a connection:
    /// leave the rest of the pool to everything else).
    pub(crate) fn new(pool: PgPool, in_flight: usize) -> Self {
        Self {
            pool,
            queue: Arc::default(),
            in_flight: in_flight.max(1),
        }
    }

    /// Report `id` if `user_id` owns it, with the owner's token generation.
    pub(super) async fn read(&self, user_id: Uuid, id: Uuid) -> Answer {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut queue = self.lock();
            queue.waiting.push(Waiter {
                user_id,
                id,
                answer,
            });
            let start = queue.running < self.in_flight;
            queue.running += usize::from(start);
            start
        };
        if start {
            // A task of its own: a client hanging up must not cancel the others' query.
            tokio::spawn(self.clone().drain());
        }
        answered.await.unwrap_or_else(|_| {
            // The draining task ended without answering: its runtime is shutting down.
            Err(sqlx::Error::PoolClosed)
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs queries until no read is waiting.
    async fn drain(self) {
        /// Gives the query slot back however the task ends.
        struct Slot<'a>(&'a StatusReads);
        impl Drop for Slot<'_> {
            fn drop(&mut self) {
                self.0.lock().running -= 1;
            }
        }
        let _slot = Slot(&self);
        loop {
            let batch: Vec<Waiter> = {
                let mut queue = self.lock();
                let n = queue.waiting.len().min(MAX_BATCH);
                queue.waiting.drain(..n).collect()
            };
            if batch.is_empty() {
                return;
            }
            self.answer(batch).await;
        }
    }

    async fn answer(&self, batch: Vec<Waiter>) {
        let ids: Vec<Uuid> = batch.iter().map(|w| w.id).collect();
        let query = sqlx::query(sql::REPORTS_AND_GENERATIONS)
            .bind(&ids)
            .fetch_all(&self.pool);
        let deadline = self.pool.options().get_acquire_timeout() + QUERY_BUDGET;
        let answered = tokio::time::timeout(deadline, query)
            .await
            .unwrap_or_else(|_| {
                Err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the database did not answer a status read within {deadline:?}"),
                )))
            });
        let rows = match answered {
            Ok(rows) => rows,
            Err(e) => {
                // Reads that queued while this query failed get its answer now rather than
                // a wait of their own (during an outage, another acquire timeout).
                let queued: Vec<Waiter> = std::mem::take(&mut self.lock().waiting);
                for waiter in batch.into_iter().chain(queued) {
                    let _ = waiter.answer.send(Err(copy_error(&e)));
                }
                return;
            }
        };
        let found: HashMap<Uuid, Result<ReportAndGenerationRow, sqlx::Error>> = rows
            .iter()
            .map(|row| {
                let id = sqlx::Row::try_get::<Uuid, _>(row, "id").unwrap_or_default();
                (id, ReportAndGenerationRow::from_row(row))
            })
            .collect();
        for waiter in batch {
            let answer = match found.get(&waiter.id) {
                None => Ok(None),
                Some(Ok(row)) if row.report.user_id == waiter.user_id => Ok(Some(row.clone())),
                // Someone else's report: as if it did not exist.
                Some(Ok(_)) => Ok(None),
                Some(Err(e)) => Err(copy_error(e)),
            };
            let _ = waiter.answer.send(answer);
        }
    }
}

/// The same failure for each read of a failed query, kept as precise as callers look at
/// it: the API answers 503 for an unreachable database (pool timeout, broken connection,
/// a Postgres connection-class code) and 500 otherwise.
fn copy_error(error: &sqlx::Error) -> sqlx::Error {
    use sqlx::Error as E;
    match error {
        E::PoolTimedOut => E::PoolTimedOut,
        E::PoolClosed => E::PoolClosed,
        E::WorkerCrashed => E::WorkerCrashed,
        E::Io(e) => E::Io(std::io::Error::new(e.kind(), e.to_string())),
        E::Tls(e) => E::Tls(e.to_string().into()),
        E::Database(e) => E::Database(Box::new(CopiedDatabaseError {
            message: e.message().to_owned(),
            code: e.code().map(|c| c.into_owned()),
            kind: e.kind(),
        })),
        other => E::Protocol(other.to_string()),
    }
}

/// A database's error, copied for another reader of the same failed query.
#[derive(Debug)]
struct CopiedDatabaseError {
    message: String,
    code: Option<String>,
    kind: ErrorKind,
}

impl std::fmt::Display for CopiedDatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CopiedDatabaseError {}

impl DatabaseError for CopiedDatabaseError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.code.as_deref().map(std::borrow::Cow::Borrowed)
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        match self.kind {
            ErrorKind::UniqueViolation => ErrorKind::UniqueViolation,
            ErrorKind::ForeignKeyViolation => ErrorKind::ForeignKeyViolation,
            ErrorKind::NotNullViolation => ErrorKind::NotNullViolation,
            ErrorKind::CheckViolation => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copied_errors_keep_what_the_api_classifies_by() {
        let io = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        ));
        assert!(
            matches!(copy_error(&io), sqlx::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
        );
        assert!(matches!(
            copy_error(&sqlx::Error::PoolTimedOut),
            sqlx::Error::PoolTimedOut
        ));
        let db = sqlx::Error::Database(Box::new(CopiedDatabaseError {
            message: "the database system is shutting down".into(),
            code: Some("57P03".into()),
            kind: ErrorKind::Other,
        }));
        let copied = copy_error(&db);
        let sqlx::Error::Database(e) = &copied else {
            panic!("{copied:?}")
        };
        assert_eq!(e.code().as_deref(), Some("57P03"));
        assert_eq!(e.message(), "the database system is shutting down");
        assert!(matches!(
            copy_error(&sqlx::Error::RowNotFound),
            sqlx::Error::Protocol(_)
        ));
    }
}
