//! `worker`: renders reports from the work queue (database or SQS) against Postgres and
//! stores them (local directory or S3), as [`BackendArgs`] configures.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use clap::builder::TypedValueParser as _;
use prometheus_client::registry::Registry;
use quire_core::backends::{BackendArgs, Backends};
use quire_core::dispatch::AttemptArgs;
use quire_core::metrics::Exposition;
use quire_core::startup::{DatabaseArgs, ProbeArgs, WORKER_PROBE_PORT};
use quire_render::DataSources;
use quire_worker::{Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

/// mimalloc, faster than glibc's malloc at the many small allocations of requests,
/// reconciles and renders (see the workspace `Cargo.toml`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Quire worker: claims reports from the work queue, renders and stores them.
#[derive(Debug, Parser)]
#[command(version)]
struct Config {
    /// Postgres (DATABASE_URL, QUIRE_DB_MAX_CONNECTIONS, QUIRE_DB_ACQUIRE_TIMEOUT).
    #[command(flatten)]
    database: DatabaseArgs,
    /// Work queue and output storage (QUIRE_QUEUE, QUIRE_STORAGE, …).
    #[command(flatten)]
    backends: BackendArgs,
    /// Operator-configured data sources for `dataset` reports (TOML).
    #[arg(long, env = "QUIRE_DATA_SOURCES_FILE")]
    data_sources_file: Option<PathBuf>,
    /// Reports in hand at once (claimed, rendering or being stored; default 10, or the
    /// CPU count if higher).
    #[arg(long, env = "QUIRE_WORKER_CONCURRENCY",
          value_parser = clap::value_parser!(u64).range(1..=1024).try_map(usize::try_from))]
    concurrency: Option<usize>,
    /// Renders using the CPU at once (default: the CPU count).
    #[arg(long, env = "QUIRE_WORKER_RENDER_THREADS",
          value_parser = clap::value_parser!(u64).range(1..=1024).try_map(usize::try_from))]
    render_threads: Option<usize>,
    /// Attempts before a report fails for good, and the oldest a report may get.
    #[command(flatten)]
    attempts: AttemptArgs,
    /// Seconds a claim lasts without a heartbeat (lease and message visibility timeout;
    /// 5 to 43200, SQS's longest).
    #[arg(long, env = "QUIRE_VISIBILITY_TIMEOUT", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(5..=43_200))]
    visibility_timeout: u64,
    /// Seconds in-flight renders may finish in after SIGTERM before they are handed back.
    #[arg(long, env = "QUIRE_SHUTDOWN_GRACE", default_value_t = 30)]
    shutdown_grace: u64,
    /// Probes (QUIRE_HEALTH_LISTEN, default 0.0.0.0:8081).
    #[command(flatten)]
    probes: ProbeArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = quire_core::telemetry::init("quire-worker");
    let outcome = run_main().await;
    telemetry.shutdown();
    outcome
}

async fn run_main() -> anyhow::Result<()> {
    let config = Config::parse();
    config.backends.validate()?;
    config.database.url()?;
    let store = config
        .database
        .connect()
        .await
        .context("connecting to the database at DATABASE_URL")?;
    // The worker only writes outputs; download links are signed by the API server.
    let Backends { queue, storage, .. } = config.backends.build(store.pool(), None).await?;
    tracing::info!(queue = ?config.backends.queue, storage = ?config.backends.storage, "backends");
    let sources = match &config.data_sources_file {
        Some(path) => DataSources::from_file(path)
            .with_context(|| format!("loading data sources from {}", path.display()))?,
        None => DataSources::empty(),
    };

    let defaults = WorkerConfig::default();
    let worker_config = WorkerConfig {
        concurrency: config.concurrency.unwrap_or(defaults.concurrency),
        render_threads: config.render_threads.unwrap_or(defaults.render_threads),
        max_attempts: config.attempts.max_attempts,
        max_age: config.attempts.max_report_age,
        lease: Duration::from_secs(config.visibility_timeout),
        heartbeat: Duration::from_secs((config.visibility_timeout / 4).max(1)),
        shutdown_grace: Duration::from_secs(config.shutdown_grace),
        ..defaults
    };
    let store = Arc::new(store);
    let worker = Arc::new(Worker::new(
        store.clone(),
        queue.clone(),
        storage.clone(),
        Arc::new(sources),
        worker_config,
    ));
    let mut registry = Registry::default();
    worker.metrics().register(&mut registry);
    let probes = quire_worker::health::router(store, queue, storage)
        .merge(Exposition::new(registry).router());
    // Served until the worker has drained, so the kubelet sees it alive while it finishes.
    let drained = CancellationToken::new();
    let probes = config
        .probes
        .serve(WORKER_PROBE_PORT, probes, drained.clone())
        .await
        .with_context(|| {
            let address = config.probes.address(WORKER_PROBE_PORT);
            format!("binding {address} (QUIRE_HEALTH_LISTEN)")
        })?;

    let shutdown = CancellationToken::new();
    tokio::spawn(quire_core::telemetry::cancel_on_signal(shutdown.clone()));
    worker.run(shutdown).await;
    drained.cancel();
    probes.stopped().await.context("serving the probes")?;
    Ok(())
}
