//! [`RecordStore`](super::RecordStore) on Postgres, for production.

use std::fmt;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::sql;
use crate::Result;

/// The record store on a Postgres connection pool. Cloning shares the pool.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host/db`).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let options: PgConnectOptions = url.parse()?;
        Self::connect_with(options, max_connections).await
    }

    /// Connects with explicit options; fails fast if the server cannot be reached.
    pub async fn connect_with(options: PgConnectOptions, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// Wraps an existing pool (which must point at a migrated database).
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
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

sql::impl_record_store!(PgStore);
