//! The app every API benchmark runs: the real routes on SQLite (or Postgres: `serve_on`),
//! the database queue and local storage in a temporary directory, no external services.

// Each benchmark uses part of this module.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use quire_api::{ApiConfig, AppState, app, serve};
use quire_core::dispatch::QueueDispatcher;
use quire_core::orchestrator::Builtin;
use quire_core::queue::DatabaseQueue;
use quire_core::storage::LocalStorage;
use quire_core::store::{RecordStore, SqliteStore};
use secrecy::SecretString;

/// The allocator the binaries use (see the workspace `Cargo.toml`), so the figures are theirs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The benchmark configuration: bcrypt at `bcrypt_cost`, every auth rate limit off (a
/// benchmark's burst comes from one address; it measures the hasher, not the limits).
pub fn config(bcrypt_cost: u32) -> ApiConfig {
    let mut config = ApiConfig::new(SecretString::from("bench-secret-bench-secret-bench-secret"));
    config.bcrypt_cost = bcrypt_cost;
    config.signin_per_account_per_minute = 0;
    config.signin_per_address_per_minute = 0;
    config.signup_per_address_per_hour = 0;
    config
}

/// Serves the app with `config` on a loopback port; returns its base URL and the directory
/// it keeps its data in (removed when dropped).
pub async fn start(config: ApiConfig) -> anyhow::Result<(String, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("bench.db")).await?;
    store.migrate().await?;
    let queue = Arc::new(DatabaseQueue::sqlite(store.pool().clone()));
    let base = serve_on(config, Arc::new(store), queue, dir.path()).await?;
    Ok((base, dir))
}

/// Serves the app with `config` on `store` and `queue`, keeping outputs under `dir`;
/// returns its base URL.
pub async fn serve_on(
    config: ApiConfig,
    store: Arc<dyn RecordStore>,
    queue: Arc<DatabaseQueue>,
    dir: &std::path::Path,
) -> anyhow::Result<String> {
    Ok(serve_with_state(config, store, queue, dir).await?.0)
}

/// [`serve_on`], also returning the running app's state, to look inside it.
pub async fn serve_with_state(
    config: ApiConfig,
    store: Arc<dyn RecordStore>,
    queue: Arc<DatabaseQueue>,
    dir: &std::path::Path,
) -> anyhow::Result<(String, AppState)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let local = Arc::new(LocalStorage::new(
        dir.join("out"),
        format!("{base}/").parse()?,
        vec![1; 32],
    )?);
    let dispatcher = Arc::new(QueueDispatcher::new(store.clone(), queue.clone()));
    let state = AppState::new(
        config,
        store,
        Arc::new(Builtin::dispatch_only(dispatcher)),
        local.clone(),
        queue,
        Some(local),
    );
    tokio::spawn(serve(listener, app(state.clone()), std::future::pending()));
    Ok((base, state))
}

/// Signs up `email` and signs it in; returns the access token.
pub async fn access_token(
    http: &reqwest::Client,
    base: &str,
    email: &str,
) -> anyhow::Result<String> {
    let credentials = serde_json::json!({"email": email, "password": "correct horse battery"});
    http.post(format!("{base}/auth/signup"))
        .json(&credentials)
        .send()
        .await?
        .error_for_status()?;
    let tokens: serde_json::Value = http
        .post(format!("{base}/auth/signin"))
        .json(&credentials)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    tokens["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("sign-in answered no access token"))
}

/// Requests a profile PDF as the holder of `token`; returns the new report's id.
pub async fn profile_report(
    http: &reqwest::Client,
    base: &str,
    token: &str,
) -> anyhow::Result<uuid::Uuid> {
    let report: serde_json::Value = http
        .post(format!("{base}/reports"))
        .bearer_auth(token)
        .json(&serde_json::json!({"report_type": "profile", "format": "pdf"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    report["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the new report has no id: {report}"))?
        .parse()
        .map_err(Into::into)
}

/// The p50 and p99 of `v` (zero when empty).
pub fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    if v.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}

/// `d` in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `a / b`, safe for a zero `b`.
pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}
