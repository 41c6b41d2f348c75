//! `quire dev`: the whole system in one process on embedded defaults.
//!
//! SQLite file + local output directory + database queue, all under `--data-dir`. Ctrl-C
//! stops accepting requests, lets in-flight reports finish for a grace period and hands
//! the rest back to the queue, so the next start picks them up: nothing is lost.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use quire_api::{ApiConfig, AppState};
use quire_core::backends::{Backends, LocalLinks};
use quire_core::dispatch::{QueueDispatcher, RescuePolicy};
use quire_core::orchestrator::{Builtin, Orchestrator, Upkeep};
use quire_core::store::SqliteStore;
use quire_core::{derive_key, keys};
use quire_render::DataSources;
use quire_worker::{Worker, WorkerConfig};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Address the API listens on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where the database, outputs and the generated secret live.
    #[arg(long, default_value = "./quire-data")]
    pub data_dir: PathBuf,
    /// Data sources for `dataset` reports (TOML); default `DATA_DIR/sources.toml` if present.
    #[arg(long, env = "QUIRE_DATA_SOURCES_FILE")]
    pub data_sources: Option<PathBuf>,
    /// Reports in hand at once (claimed, rendering or being stored); renders use the CPU
    /// one per core.
    #[arg(long, default_value_t = quire_worker::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Seconds in-flight reports may finish in after Ctrl-C.
    #[arg(long, default_value_t = 10)]
    pub shutdown_grace: u64,
    /// How long finished outputs and reports are kept (QUIRE_OUTPUT_RETENTION,
    /// QUIRE_RECORD_RETENTION, QUIRE_RETENTION_INTERVAL).
    #[command(flatten)]
    pub retention: quire_core::retention::RetentionArgs,
    /// Unfinished reports a user may have at once (0: no limit).
    #[arg(long, env = "QUIRE_QUOTA_UNFINISHED", default_value_t = 20)]
    pub quota_unfinished: u32,
    /// Reports a user may create per hour (0: no limit).
    #[arg(long, env = "QUIRE_QUOTA_PER_HOUR", default_value_t = 500)]
    pub quota_per_hour: u32,
    /// Longest a request may be held by `Prefer: wait=N` (0 turns waiting off).
    #[arg(long, env = "QUIRE_MAX_WAIT", default_value = "60s",
          value_parser = quire_core::duration::parse)]
    pub max_wait: Duration,
    /// Completion webhooks (QUIRE_WEBHOOK_ALLOW_PRIVATE, QUIRE_WEBHOOK_RETRY_FOR,
    /// QUIRE_WEBHOOK_FIRST_RETRY).
    #[command(flatten)]
    pub webhooks: quire_api::webhooks::WebhookArgs,
}

/// A running `quire dev`: tests start one on port 0 and stop it with [`Dev::stop`].
pub struct Dev {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
}

impl Dev {
    /// Asks everything to stop and waits until it has.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let dev = start(&args).await?;
    println!("Quire is listening on http://{}", dev.addr);
    println!(
        "Data (SQLite database, outputs, secret) is in {}",
        args.data_dir.display()
    );
    println!("Press Ctrl-C to stop.");
    quire_core::telemetry::shutdown_signal().await;
    println!(
        "Stopping: letting in-flight reports finish (up to {} s)…",
        args.shutdown_grace
    );
    dev.stop().await;
    Ok(())
}

/// Starts the API server, the worker and the pending-report sweep.
pub async fn start(args: &DevArgs) -> anyhow::Result<Dev> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    let secret = load_or_create_secret(&args.data_dir.join("secret.key"))?;

    let store = SqliteStore::open(&args.data_dir.join("quire.db"))
        .await
        .context("opening SQLite")?;
    store.migrate().await.context("migrating SQLite")?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let public_url = format!("http://{addr}/")
        .parse()
        .context("the public URL")?;
    // The keys the API server would derive from this JWT secret (see `quire_core::keys`).
    let jwt_secret = hex::encode(derive_key(&secret, keys::JWT));
    let links = LocalLinks {
        public_url,
        signing_key: derive_key(jwt_secret.as_bytes(), keys::DOWNLOAD_LINKS),
    };
    let Backends {
        queue,
        storage,
        local,
    } = Backends::embedded(&args.data_dir, &store, links)?;
    let store = Arc::new(store);

    let sources_file = args.data_sources.clone().or_else(|| {
        let default = args.data_dir.join("sources.toml");
        default.is_file().then_some(default)
    });
    let sources = match &sources_file {
        Some(path) => DataSources::from_file(path)
            .with_context(|| format!("loading data sources from {}", path.display()))?,
        None => DataSources::empty(),
    };

    // The worker is in this process, but a crash of the whole process mid-render still
    // leaves reports `running` under a lease nobody renews: rescued after the next start.
    let orchestrator = Arc::new(Builtin::new(
        Arc::new(QueueDispatcher::new(store.clone(), queue.clone())),
        Upkeep {
            sweep_every: Duration::from_secs(10),
            rescue: RescuePolicy::default(),
            rescue_every: Duration::from_secs(30),
        },
    ));
    let mut config = ApiConfig::new(SecretString::from(jwt_secret));
    (config.quota_unfinished, config.quota_per_hour) = (args.quota_unfinished, args.quota_per_hour);
    config.max_wait = args.max_wait;
    config.data_sources = sources.clone();
    config.webhooks = args.webhooks.settings();
    let state = AppState::new(
        config,
        store.clone(),
        orchestrator.clone(),
        storage.clone(),
        queue.clone(),
        local,
    );
    let worker = Arc::new(Worker::new(
        store,
        queue,
        storage,
        Arc::new(sources),
        WorkerConfig {
            concurrency: args.concurrency.max(1),
            shutdown_grace: Duration::from_secs(args.shutdown_grace),
            // One process: the in-process wake-up makes long polls cheap.
            poll_wait: Duration::from_secs(5),
            ..WorkerConfig::default()
        },
    ));

    // One `/metrics` on the API address for the whole process: the API's and the worker's.
    let mut worker_metrics = prometheus_client::registry::Registry::default();
    worker.metrics().register(&mut worker_metrics);
    state.exposition().add(worker_metrics);

    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let (server_stop, server_state) = (shutdown.clone(), state.clone());
    tasks.spawn(async move {
        if let Err(e) = quire_api::serve(
            listener,
            quire_api::app(server_state),
            server_stop.cancelled_owned(),
        )
        .await
        {
            tracing::error!(error = %e, "the API server stopped");
        }
    });
    tasks.spawn(worker.run(shutdown.clone()));
    let upkeep_stop = shutdown.clone();
    tasks.spawn(async move { orchestrator.run(upkeep_stop).await });
    let mut upkeep = quire_api::upkeep::spawn(&state, args.retention.policy(), &shutdown);
    tasks.spawn(async move { while upkeep.join_next().await.is_some() {} });
    Ok(Dev {
        addr,
        shutdown,
        tasks,
    })
}

/// The 32-byte root secret of this data directory, created on first start (mode 0600), so
/// tokens and download links survive restarts.
fn load_or_create_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = hex::decode(text.trim())
                .with_context(|| format!("{} is not hex", path.display()))?;
            anyhow::ensure!(
                key.len() >= 32,
                "{} is shorter than 32 bytes",
                path.display()
            );
            return Ok(key);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    // Written in full to a temporary file, synced, then renamed: a crash during the first
    // start can never leave a truncated secret behind.
    let key: [u8; 32] = rand::random();
    let tmp = path.with_extension("key.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    std::io::Write::write_all(&mut file, hex::encode(key).as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("creating {}", path.display()))?;
    Ok(key.to_vec())
}
