//! The one way Quire runs the same SQL on Postgres and SQLite, in the record store and the
//! database work queue alike: every statement is one `&'static str` with `$N` parameters
//! (sqlx-sqlite binds them by position), times are bound as
//! [`Timestamp`](super::timestamp::Timestamp), and [`on_pool!`] runs one body of code on
//! whichever pool is at hand, compiled concretely for each database. Where the dialects
//! really differ (the queue's `FOR UPDATE SKIP LOCKED`), the code matches on [`Pool`].

use sqlx::{PgPool, SqlitePool};

/// A pool of one of the databases Quire runs on.
#[derive(Clone, Copy, Debug)]
pub enum Pool<'a> {
    Postgres(&'a PgPool),
    Sqlite(&'a SqlitePool),
}

/// A store on one of the databases Quire runs on: what the one
/// [`RecordStore`](super::RecordStore) implementation runs its statements on. Sealed:
/// implemented by [`PgStore`](super::PgStore) and [`SqliteStore`](super::SqliteStore).
pub trait SqlDatabase: sealed::Sealed + Send + Sync + 'static {
    /// Where writes (and whatever is not marked a plain read) run.
    fn sql_pool(&self) -> Pool<'_>;

    /// Where a plain read (one statement, no write) runs: on Postgres the same pool; on
    /// SQLite connections of their own, so reads never queue behind the one writer.
    fn sql_read_pool(&self) -> Pool<'_> {
        self.sql_pool()
    }

    /// Called after the store changed report `id` in a way its `ReportRequest` or a waiting
    /// client sees (status, progress, attempts, output): Postgres needs nothing (its
    /// `reports_changed` trigger notifies), SQLite tells the waiters in this process.
    fn report_changed(&self, _id: uuid::Uuid) {}

    /// Where this store's report changes can be heard.
    fn change_feed(&self) -> super::changes::ChangeFeed;

    /// The coalescer of concurrent status reads, where one query for many is cheaper than
    /// many (Postgres, over the network); `None` runs each read on its own.
    fn status_reads(&self) -> Option<&super::status_reads::StatusReads> {
        None
    }
}

pub(super) mod sealed {
    pub trait Sealed {}
}

/// `on_pool!(pool, |p| body)`: runs `body` with `p` bound to the concrete pool behind a
/// [`Pool`]; the body is compiled once per database.
macro_rules! on_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            $crate::store::pool::Pool::Postgres($p) => $body,
            $crate::store::pool::Pool::Sqlite($p) => $body,
        }
    };
}

pub(crate) use on_pool;
