//! [`RecordStore`](super::RecordStore) on Postgres, for production.

use std::fmt;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::pool;
use super::status_reads::StatusReads;
use crate::Result;

/// How the connection pool behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// Largest number of connections (`QUIRE_DB_MAX_CONNECTIONS`).
    pub max_connections: u32,
    /// Longest a query waits for a connection (`QUIRE_DB_ACQUIRE_TIMEOUT`). During a
    /// database outage every query fails after this long, so the API answers 503 within
    /// it instead of hanging.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(2),
        }
    }
}

/// A pooled connection idle for this long is pinged before use (a server restart or a
/// dropped link is found then, not by the query that would have used it).
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Status-read queries in flight at once (see `status_reads.rs`). Two keep reads flowing
/// while one query is on the wire; more only shrink the batches, and on the status
/// benchmark (64 connections) two gave 13.5–15.2k reads/s and p99 under 9 ms where half
/// the pool (5) gave 10.5–11.4k and 12–13 ms: Postgres's time goes to the round trips.
const STATUS_READ_QUERIES: usize = 2;

/// The record store on a Postgres connection pool. Cloning shares the pool.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    reads: StatusReads,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host/db`).
    pub async fn connect(url: &str, settings: PoolSettings) -> Result<Self> {
        let options: PgConnectOptions = url.parse()?;
        Self::connect_pool(options, settings).await
    }

    /// Connects with explicit options and the default acquire timeout; fails fast if the
    /// server cannot be reached.
    pub async fn connect_with(options: PgConnectOptions, max_connections: u32) -> Result<Self> {
        let settings = PoolSettings {
            max_connections,
            ..PoolSettings::default()
        };
        Self::connect_pool(options, settings).await
    }

    /// Connects with explicit options and pool settings; fails fast if the server cannot be
    /// reached.
    pub async fn connect_pool(options: PgConnectOptions, settings: PoolSettings) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            // sqlx pings every connection it hands out, a round trip before each query
            // (it also pings each one it takes back). Under load a connection is back in
            // use within microseconds of its last answer, so only one that sat idle is
            // checked: one that broke while busy failed its query, and sqlx drops it then.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= CHECK_IDLE_AFTER {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self::from_pool(pool))
    }

    /// Wraps an existing pool (which must point at a migrated database).
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            reads: StatusReads::new(pool.clone(), STATUS_READ_QUERIES),
            pool,
        }
    }

    /// Applies the embedded migrations (`migrations/postgres`) that have not run yet.
    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("../migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    /// The connection pool, e.g. for a [`DatabaseQueue`](crate::queue::DatabaseQueue) on
    /// the same database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Names the server and database, never the credentials.
impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options = self.pool.connect_options();
        f.debug_struct("PgStore")
            .field("host", &options.get_host())
            .field("port", &options.get_port())
            .field("database", &options.get_database())
            .field("connections", &self.pool.size())
            .finish()
    }
}

impl pool::sealed::Sealed for PgStore {}

impl pool::SqlDatabase for PgStore {
    fn sql_pool(&self) -> pool::Pool<'_> {
        pool::Pool::Postgres(&self.pool)
    }

    fn change_feed(&self) -> super::changes::ChangeFeed {
        super::changes::ChangeFeed::Postgres(self.pool.clone())
    }

    fn status_reads(&self) -> Option<&StatusReads> {
        Some(&self.reads)
    }
}
