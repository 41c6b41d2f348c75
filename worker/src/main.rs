//! `worker`: renders reports from the work queue against Postgres (production mode).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use quire_core::queue::DatabaseQueue;
use quire_core::storage::LocalStorage;
use quire_core::store::PgStore;
use quire_render::DataSources;
use quire_worker::{Worker, WorkerConfig};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum QueueKind {
    Database,
    Sqs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StorageKind {
    Local,
    S3,
}

/// Quire worker: claims reports from the work queue, renders and stores them.
#[derive(Debug, Parser)]
#[command(version)]
struct Config {
    /// Postgres connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: SecretString,
    /// Where work comes from.
    #[arg(long, env = "QUIRE_QUEUE", value_enum, default_value = "database")]
    queue: QueueKind,
    /// Where outputs go.
    #[arg(long, env = "QUIRE_STORAGE", value_enum, default_value = "local")]
    storage: StorageKind,
    /// Where `local` storage keeps outputs (under `outputs/`).
    #[arg(long, env = "QUIRE_DATA_DIR", default_value = "./quire-data")]
    data_dir: PathBuf,
    /// Operator-configured data sources for `dataset` reports (TOML).
    #[arg(long, env = "QUIRE_DATA_SOURCES_FILE")]
    data_sources_file: Option<PathBuf>,
    /// Reports rendered at once.
    #[arg(long, env = "QUIRE_WORKER_CONCURRENCY")]
    concurrency: Option<usize>,
    /// Attempts before a report fails for good.
    #[arg(long, env = "QUIRE_MAX_ATTEMPTS", default_value_t = 5)]
    max_attempts: u32,
    /// Seconds a claim lasts without a heartbeat (lease and message visibility timeout).
    #[arg(long, env = "QUIRE_VISIBILITY_TIMEOUT", default_value_t = 60)]
    visibility_timeout: u64,
    /// Seconds in-flight renders may finish in after SIGTERM before they are handed back.
    #[arg(long, env = "QUIRE_SHUTDOWN_GRACE", default_value_t = 30)]
    shutdown_grace: u64,
    /// Largest database connection pool.
    #[arg(long, env = "QUIRE_DB_MAX_CONNECTIONS", default_value_t = 10)]
    db_max_connections: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    quire_core::telemetry::init();
    let config = Config::parse();
    if matches!(config.queue, QueueKind::Sqs) || matches!(config.storage, StorageKind::S3) {
        anyhow::bail!("QUIRE_QUEUE=sqs and QUIRE_STORAGE=s3 are not supported by this build yet");
    }
    let store = PgStore::connect(
        config.database_url.expose_secret(),
        config.db_max_connections,
    )
    .await
    .context("connecting to the database")?;
    let queue = DatabaseQueue::postgres(store.pool().clone());
    // The worker only writes outputs; download links are signed by the API server, so the
    // key here is a throwaway.
    let storage = LocalStorage::new(
        config.data_dir.join("outputs"),
        "http://127.0.0.1/".parse().expect("a valid URL"),
        rand::random::<[u8; 32]>().to_vec(),
    )?;
    let sources = match &config.data_sources_file {
        Some(path) => DataSources::from_file(path)
            .with_context(|| format!("loading data sources from {}", path.display()))?,
        None => DataSources::empty(),
    };

    let defaults = WorkerConfig::default();
    let worker_config = WorkerConfig {
        concurrency: config.concurrency.unwrap_or(defaults.concurrency),
        max_attempts: config.max_attempts,
        lease: Duration::from_secs(config.visibility_timeout.max(5)),
        heartbeat: Duration::from_secs((config.visibility_timeout / 4).max(1)),
        shutdown_grace: Duration::from_secs(config.shutdown_grace),
        ..defaults
    };
    let worker = Arc::new(Worker::new(
        Arc::new(store),
        Arc::new(queue),
        Arc::new(storage),
        Arc::new(sources),
        worker_config,
    ));
    let shutdown = CancellationToken::new();
    tokio::spawn(quire_core::telemetry::cancel_on_signal(shutdown.clone()));
    worker.run(shutdown).await;
    Ok(())
}
