//! `api-server`: Quire's REST API against Postgres, with the work queue (database or SQS)
//! and output storage (local or S3) chosen by [`BackendArgs`](quire_core::backends).
//! `api-server migrate` applies the migrations and exits.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use quire_api::{AppState, app, serve};
use quire_core::backends::{Backends, LocalLinks};
use quire_core::dispatch::QueueDispatcher;
use quire_core::store::{PgStore, RecordStore};
use quire_core::telemetry;
use tokio_util::sync::CancellationToken;

mod config;

use config::{Command, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init();
    match config.command {
        Some(Command::Migrate) => migrate(&config).await,
        None => run(&config).await,
    }
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = connect(config).await?;
    store
        .migrate()
        .await
        .context("applying database migrations")?;
    store.pool().close().await;
    tracing::info!("database migrations applied");
    Ok(())
}

async fn run(config: &Config) -> anyhow::Result<()> {
    // Everything that can be checked without the network first, for a fast, clear failure.
    config.backends.validate()?;
    let api_config = config.api_config()?;
    let signing_key = config.download_signing_key()?;
    let public_url = config.public_url()?;

    let store = connect(config).await?;
    if config.should_migrate() {
        store
            .migrate()
            .await
            .context("applying database migrations")?;
    }
    let records: Arc<dyn RecordStore> = store.clone();
    let links = LocalLinks {
        public_url: public_url.clone(),
        signing_key,
    };
    let Backends {
        queue,
        storage,
        local,
    } = config.backends.build(store.pool(), Some(links)).await?;
    tracing::info!(queue = ?config.backends.queue, storage = ?config.backends.storage, "backends");
    let dispatcher = Arc::new(QueueDispatcher::new(records.clone(), queue.clone()));

    let shutdown = CancellationToken::new();
    tokio::spawn(telemetry::cancel_on_signal(shutdown.clone()));
    let sweep = {
        let (dispatcher, shutdown) = (dispatcher.clone(), shutdown.clone());
        let every = Duration::from_secs(config.pending_sweep_secs);
        tokio::spawn(async move { dispatcher.sweep_pending(every, every, shutdown).await })
    };

    let state = AppState::new(api_config, records, dispatcher, storage, queue, local);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let address = listener
        .local_addr()
        .context("reading the listening address")?;
    tracing::info!(%address, %public_url, "api-server listening");
    println!("api-server listening on http://{address} (public URL {public_url})");

    let stop = shutdown.clone();
    serve(listener, app(state), async move { stop.cancelled().await })
        .await
        .context("serving HTTP")?;
    shutdown.cancel();
    if let Err(e) = sweep.await {
        tracing::warn!(error = %e, "the pending-report sweep ended abnormally");
    }
    store.pool().close().await;
    tracing::info!("api-server stopped");
    Ok(())
}

async fn connect(config: &Config) -> anyhow::Result<Arc<PgStore>> {
    // The URL may contain a password: never part of an error message.
    let store = PgStore::connect(config.database_url()?, config.db_max_connections)
        .await
        .context("connecting to the database at DATABASE_URL")?;
    Ok(Arc::new(store))
}
