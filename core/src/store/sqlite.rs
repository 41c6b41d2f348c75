//! [`RecordStore`](super::RecordStore) on a SQLite file, for the embedded single-process mode.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use super::changes::ChangeFeed;
use super::pool;
use crate::Result;

/// Connections in the pool. SQLite runs one writer at a time anyway; a few connections let
/// reads proceed beside it (WAL) without queueing behind each other.
const MAX_CONNECTIONS: u32 = 4;

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The record store on a SQLite database file. Cloning shares the pool.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Every writer of the file is in this process: changes are announced here.
    changes: ChangeFeed,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path`, in WAL mode with foreign
    /// keys enforced.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            // A connection to a file in this process cannot break while idle: no ping (a
            // round trip to the connection's thread) before each statement.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Ok(Self::from_pool(pool))
    }

    /// Wraps an existing pool (which must point at a migrated database).
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self {
            pool,
            changes: ChangeFeed::local(),
        }
    }

    /// Applies the embedded migrations (`migrations/sqlite`) that have not run yet.
    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("../migrations/sqlite")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    /// The connection pool, e.g. for a [`DatabaseQueue`](crate::queue::DatabaseQueue) on
    /// the same database.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.pool.connect_options().get_filename())
            .field("connections", &self.pool.size())
            .finish()
    }
}

impl pool::sealed::Sealed for SqliteStore {}

impl pool::SqlDatabase for SqliteStore {
    fn sql_pool(&self) -> pool::Pool<'_> {
        pool::Pool::Sqlite(&self.pool)
    }

    fn report_changed(&self, id: uuid::Uuid) {
        self.changes.publish(id);
    }

    fn change_feed(&self) -> ChangeFeed {
        self.changes.clone()
    }
}
