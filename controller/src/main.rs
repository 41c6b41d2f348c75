//! `controller`: Quire's Kubernetes operator. Reconciles the `ReportRequest`s of one
//! namespace against Postgres, the work queue and output storage (the same `DATABASE_URL`
//! and [`BackendArgs`] as the other binaries), with the standard kubeconfig or in-cluster
//! configuration.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use clap::builder::BoolishValueParser;
use kube::runtime::events::{Recorder, Reporter};
use quire_controller::{Context, LeaderElection, Metrics, Rescue, Settings, probes, run};
use quire_core::backends::{BackendArgs, Backends};
use quire_core::dispatch::{QueueDispatcher, RescueArgs};
use quire_core::health::Dependencies;
use quire_core::startup::{CONTROLLER_PROBE_PORT, DatabaseArgs, ProbeArgs};
use quire_core::store::RecordStore;
use tokio_util::sync::CancellationToken;

/// mimalloc, faster than glibc's malloc at the many small allocations of requests,
/// reconciles and renders (see the workspace `Cargo.toml`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Quire's Kubernetes operator: reconciles ReportRequests.
#[derive(Debug, Parser)]
#[command(name = "controller", version)]
struct Config {
    /// Postgres (DATABASE_URL, QUIRE_DB_MAX_CONNECTIONS, QUIRE_DB_ACQUIRE_TIMEOUT); one
    /// more connection listens for changes.
    #[command(flatten)]
    database: DatabaseArgs,
    /// Work queue and output storage (QUIRE_QUEUE, QUIRE_STORAGE, …).
    #[command(flatten)]
    backends: BackendArgs,
    /// Namespace of the ReportRequests (and the Lease) [default: the kubeconfig's or the
    /// pod's namespace, else `default`].
    #[arg(long, env = "QUIRE_NAMESPACE")]
    namespace: Option<String>,
    /// `/healthz`, `/readyz` and `/metrics` (QUIRE_HEALTH_LISTEN, default 0.0.0.0:8082).
    #[command(flatten)]
    probes: ProbeArgs,
    /// Compete for a Lease so only one replica reconciles.
    #[arg(long, env = "QUIRE_LEADER_ELECTION", default_value_t = true,
          action = clap::ArgAction::Set, value_parser = BoolishValueParser::new())]
    leader_election: bool,
    /// Name of the Lease.
    #[arg(long, env = "QUIRE_LEASE_NAME", default_value = "quire-controller")]
    lease_name: String,
    /// Seconds the Lease lasts without renewal (5–300).
    #[arg(long, env = "QUIRE_LEASE_DURATION", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(5..=300))]
    lease_duration: u64,
    /// This replica's identity in the Lease [default: the host name].
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// ReportRequests reconciled at once.
    #[arg(long, env = "QUIRE_CONTROLLER_CONCURRENCY", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: u16,
    /// Seconds between passes over an unfinished request when no change wakes it.
    #[arg(long, env = "QUIRE_RESYNC_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    resync_secs: u64,
    /// Attempts, report age and the rescue of stranded reports (run by the Lease holder).
    #[command(flatten)]
    rescue: RescueArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = quire_core::telemetry::init("quire-controller");
    let outcome = run_main().await;
    telemetry.shutdown();
    outcome
}

async fn run_main() -> anyhow::Result<()> {
    let config = Config::parse();
    config.backends.validate()?;

    let client = kube::Client::try_default()
        .await
        .context("configuring the Kubernetes client (kubeconfig or in-cluster)")?;
    let namespace = config
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    config.database.url()?;
    let store = config
        .database
        .connect()
        .await
        .context("connecting to the database at DATABASE_URL")?;
    let pool = store.pool().clone();
    let Backends { queue, storage, .. } = config.backends.build(&pool, None).await?;
    let store: Arc<dyn RecordStore> = Arc::new(store);
    let identity = config
        .identity
        .clone()
        .unwrap_or_else(|| quire_core::startup::identity("controller"));
    tracing::info!(%namespace, %identity, queue = ?config.backends.queue, storage = ?config.backends.storage, "controller starting");

    let metrics = Arc::new(Metrics::default());
    let dependencies = Dependencies {
        store: store.clone(),
        queue: queue.clone(),
        storage: storage.clone(),
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(quire_core::telemetry::cancel_on_signal(shutdown.clone()));
    let server = config
        .probes
        .serve(
            CONTROLLER_PROBE_PORT,
            probes(dependencies, metrics.clone()),
            shutdown.clone(),
        )
        .await
        .with_context(|| {
            let address = config.probes.address(CONTROLLER_PROBE_PORT);
            format!("binding {address} (QUIRE_HEALTH_LISTEN)")
        })?;

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "quire-controller".to_owned(),
            instance: Some(identity.clone()),
        },
    );
    let dispatcher = Arc::new(QueueDispatcher::new(store.clone(), queue));
    let rescue = Rescue {
        dispatcher: dispatcher.clone(),
        policy: config.rescue.policy(),
        every: config.rescue.rescue_interval,
    };
    let ctx = Arc::new(Context::new(
        client,
        store,
        dispatcher,
        storage,
        recorder,
        metrics,
        Duration::from_secs(config.resync_secs),
    ));
    let settings = Settings {
        namespace,
        concurrency: config.concurrency,
        leader_election: config.leader_election.then(|| LeaderElection {
            lease_name: config.lease_name.clone(),
            identity,
            lease_duration: config.lease_duration,
            renew_grace: (config.lease_duration / 3).max(1),
        }),
        rescue: Some(rescue),
    };
    let outcome = run(ctx, pool.clone(), settings, shutdown.clone()).await;
    shutdown.cancel();
    if let Err(e) = server.stopped().await {
        tracing::warn!(error = %e, "the probe server failed");
    }
    pool.close().await;
    tracing::info!("controller stopped");
    Ok(outcome?)
}
