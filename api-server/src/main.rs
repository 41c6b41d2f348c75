//! `api-server`: Quire's REST API against Postgres, with the work queue (database or SQS)
//! and output storage (local or S3) chosen by [`BackendArgs`](quire_core::backends).
//! `api-server migrate` applies the migrations and exits. With `QUIRE_ORCHESTRATOR=kubernetes`
//! it registers reports as ReportRequests and leaves dispatch to the controller.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use quire_api::cluster::Kubernetes;
use quire_api::{AppState, ReportRequests, app, serve};
use quire_core::backends::{Backends, LocalLinks};
use quire_core::dispatch::QueueDispatcher;
use quire_core::orchestrator::{Builtin, Upkeep};
use quire_core::store::{PgStore, RecordStore};
use quire_core::telemetry;
use tokio_util::sync::CancellationToken;

mod config;

use config::{Command, Config, Orchestrator};

/// mimalloc, faster than glibc's malloc at the many small allocations of requests,
/// reconciles and renders (see the workspace `Cargo.toml`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let telemetry = telemetry::init("quire-api-server");
    let outcome = match config.command {
        Some(Command::Migrate) => migrate(&config).await,
        Some(Command::Openapi) => {
            println!("{}", quire_api::http::openapi_document().to_pretty_json()?);
            Ok(())
        }
        None => run(&config).await,
    };
    telemetry.shutdown();
    outcome
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
    let namespace = config.namespace()?;

    let report_requests = match config.orchestrator {
        Orchestrator::Builtin => None,
        Orchestrator::Kubernetes => {
            let ttl = Some(config.report_request_ttl).filter(|ttl| !ttl.is_zero());
            Some(
                report_requests(namespace)
                    .await?
                    .with_ttl_after_finished(ttl),
            )
        }
    };
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
    // In cluster mode the controller owns dispatch, pending and stranded reports included.
    let orchestrator: Arc<dyn quire_core::orchestrator::Orchestrator> = match report_requests {
        Some(requests) => Arc::new(Kubernetes::new(records.clone(), requests)),
        None => Arc::new(Builtin::new(
            Arc::new(QueueDispatcher::new(records.clone(), queue.clone())),
            Upkeep {
                sweep_every: Duration::from_secs(config.pending_sweep_secs),
                rescue: config.rescue.policy(),
                rescue_every: config.rescue.rescue_interval,
            },
        )),
    };

    let shutdown = CancellationToken::new();
    tokio::spawn(telemetry::cancel_on_signal(shutdown.clone()));
    let background = {
        let (orchestrator, shutdown) = (orchestrator.clone(), shutdown.clone());
        tokio::spawn(async move { orchestrator.run(shutdown).await })
    };

    let state = AppState::new(api_config, records, orchestrator, storage, queue, local);
    let mut upkeep = quire_api::upkeep::spawn(&state, config.retention.policy(), &shutdown);
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
    while upkeep.join_next().await.is_some() {}
    if let Err(e) = background.await {
        tracing::warn!(error = %e, "the pending-report sweep or the rescuer ended abnormally");
    }
    store.pool().close().await;
    tracing::info!("api-server stopped");
    Ok(())
}

/// Cluster mode's ReportRequests, with the client from the in-cluster service account or
/// the kubeconfig.
async fn report_requests(namespace: Option<&str>) -> anyhow::Result<ReportRequests> {
    let client = kube::Client::try_default().await.context(
        "QUIRE_ORCHESTRATOR=kubernetes needs a Kubernetes API: found no in-cluster service \
         account and no usable kubeconfig",
    )?;
    let report_requests = ReportRequests::new(client, namespace);
    tracing::info!(
        namespace = report_requests.namespace(),
        "cluster mode: reports become ReportRequests, the controller dispatches them"
    );
    Ok(report_requests)
}

async fn connect(config: &Config) -> anyhow::Result<Arc<PgStore>> {
    // The URL may contain a password: never part of an error message.
    config.database.url()?;
    let store = config
        .database
        .connect()
        .await
        .context("connecting to the database at DATABASE_URL")?;
    Ok(Arc::new(store))
}
