//! Test support shared by the workspace's integration tests: real backends, fresh per test.
//!
//! Postgres comes from `DATABASE_URL` (the README's test command, `scripts/test.sh`,
//! starts a throwaway server and sets it). Each call to [`fresh_postgres`] creates a new,
//! migrated database on it, so tests never see each other's rows.

pub mod aws;
pub mod kube_api;
pub mod metrics;
pub mod proxy;
pub mod records;
pub mod storage;

use std::sync::Arc;

use quire_core::store::{PgStore, SqliteStore};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use uuid::Uuid;

/// The server tests run against. Panics with instructions when it is not configured:
/// a test that needs Postgres must not pass without one.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL must point at a Postgres server the tests may create databases on; \
         run `scripts/test.sh`, which starts a throwaway one",
    )
}

/// Connect options for a new, empty, uniquely named database on the test server.
pub async fn fresh_postgres_options() -> PgConnectOptions {
    let base: PgConnectOptions = database_url()
        .parse()
        .expect("DATABASE_URL is a postgres URL");
    let name = format!("quire_test_{}", Uuid::new_v4().simple());
    let mut admin = base
        .clone()
        .connect()
        .await
        .expect("connect to the test Postgres server");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    admin.close().await.ok();
    base.database(&name)
}

/// A migrated [`PgStore`] on a fresh database.
pub async fn fresh_postgres() -> Arc<PgStore> {
    let store = PgStore::connect_with(fresh_postgres_options().await, 5)
        .await
        .expect("connect to the fresh test database");
    store
        .migrate()
        .await
        .expect("migrate the fresh test database");
    Arc::new(store)
}

/// A migrated [`SqliteStore`] on a fresh file in a temporary directory (kept alive by the
/// returned guard).
pub async fn fresh_sqlite() -> (Arc<SqliteStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let store = SqliteStore::open(&dir.path().join("quire.db"))
        .await
        .expect("open SQLite");
    store.migrate().await.expect("migrate SQLite");
    (Arc::new(store), dir)
}
