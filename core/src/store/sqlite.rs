//! [`RecordStore`](super::RecordStore) on a SQLite file, for the embedded single-process mode.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use super::changes::ChangeFeed;
use super::pool;
use crate::Result;

/// Connections for plain reads, which run beside the writer (WAL) and each other.
const READ_CONNECTIONS: u32 = 4;

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The record store on a SQLite database file. Cloning shares the pools.
///
/// Every write goes through one connection. SQLite runs one writer at a time anyway, and
/// writers on several connections collide: the loser's busy handler sleeps (1 ms, then 2,
/// 5, …) and the lock sits idle meanwhile. Queued for the one connection, the next write
/// starts as soon as the last commits. Plain reads have connections of their own,
/// `query_only`, so a write sent to them by mistake fails instead of colliding.
#[derive(Clone)]
pub struct SqliteStore {
    /// The writer: one connection.
    pool: SqlitePool,
    /// Plain reads ([`SqlDatabase::sql_read_pool`](pool::SqlDatabase::sql_read_pool)).
    reads: SqlitePool,
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
        // A connection to a file in this process cannot break while idle: no ping (a round
        // trip to the connection's thread) before each statement.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        let reads = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .test_before_acquire(false)
            .connect_lazy_with(options.pragma("query_only", "ON"));
        Ok(Self {
            pool,
            reads,
            changes: ChangeFeed::local(),
        })
    }

    /// Wraps an existing pool (which must point at a migrated database) for reads and
    /// writes alike.
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self {
            reads: pool.clone(),
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

    /// The writer's pool, e.g. for a [`DatabaseQueue`](crate::queue::DatabaseQueue) on the
    /// same database (its statements write).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.pool.connect_options().get_filename())
            .field("read_connections", &self.reads.size())
            .finish()
    }
}

impl pool::sealed::Sealed for SqliteStore {}

impl pool::SqlDatabase for SqliteStore {
    fn sql_pool(&self) -> pool::Pool<'_> {
        pool::Pool::Sqlite(&self.pool)
    }

    fn sql_read_pool(&self) -> pool::Pool<'_> {
        pool::Pool::Sqlite(&self.reads)
    }

    fn report_changed(&self, id: uuid::Uuid) {
        self.changes.publish(id);
    }

    fn change_feed(&self) -> ChangeFeed {
        self.changes.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn reads_run_beside_the_one_writer_and_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("quire.db"))
            .await
            .unwrap();
        assert_eq!(store.pool.options().get_max_connections(), 1);
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&store.pool)
            .await
            .unwrap();

        // The writer holds the write lock with a change not yet committed.
        let mut write = store.pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut *write)
            .await
            .unwrap();
        // A read answers at once, with what is committed.
        let (rows,): (i64,) = tokio::time::timeout(
            Duration::from_secs(1),
            sqlx::query_as("SELECT count(*) FROM t").fetch_one(&store.reads),
        )
        .await
        .expect("a read does not wait for the writer")
        .unwrap();
        assert_eq!(rows, 0);
        // A write sent to the read connections fails at once instead of waiting its turn.
        let refused = tokio::time::timeout(
            Duration::from_secs(1),
            sqlx::query("INSERT INTO t VALUES (2)").execute(&store.reads),
        )
        .await
        .expect("refused without waiting for the lock")
        .unwrap_err();
        assert!(refused.to_string().contains("readonly"), "{refused}");
        write.commit().await.unwrap();

        let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM t")
            .fetch_one(&store.reads)
            .await
            .unwrap();
        assert_eq!(rows, 1);
    }
}
