//! Quire's worker: receives work messages, claims the report under a lease, renders it,
//! stores the output and records the outcome.
//!
//! The shape follows zero2prod's `try_execute_task`: [`Worker::process`] handles one
//! delivery from start to finish and returns an [`Outcome`], so tests drive it directly;
//! [`Worker::run`] is the loop around it (long poll, bounded concurrency, graceful shutdown).
//!
//! Where things are:
//! - `lib.rs` (this file): [`WorkerConfig`], [`Worker`] and the retry backoff both halves use.
//! - `delivery.rs`: one delivery from receipt to [`Outcome`]: claim, heartbeat, render,
//!   store, and every way of recording how it ended.
//! - `run.rs`: the receive loop and graceful shutdown.
//! - `render.rs`: gathers a report's data and renders it to a file (`RenderJob`).
//! - [`health`]: the worker's `/healthz`, `/readyz` and `/metrics`.
//! - [`metrics`]: what the worker counts and times ([`WorkerMetrics`]).
//!
//! Invariants:
//! - The message is only a pointer: ownership, type, format and parameters come from the
//!   report row, never from the message body.
//! - A message is deleted only after the outcome is committed to the record store (for a
//!   completed report, in the background: the delete shares a batch without holding a slot).
//! - Every state change goes through the store's conditional updates under this worker's
//!   lease, so duplicate deliveries, lease expiry and cancellation race safely.

mod delivery;
pub mod health;
pub mod metrics;
mod render;
mod run;

use std::sync::Arc;
use std::time::Duration;

use quire_core::queue::WorkQueue;
use quire_core::storage::OutputStorage;
use quire_core::store::RecordStore;
use quire_render::{DataSources, FetchClient};

pub use delivery::Outcome;
pub use metrics::WorkerMetrics;

/// Tuning of a worker. Defaults suit production; tests shorten the durations.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Identifies this worker in leases and logs (unique per process).
    pub worker_id: String,
    /// How many reports the worker has in hand at once: claimed, gathering data, rendering
    /// or being stored. Most of a report's time is spent waiting (the database, a data
    /// source, storage), so this is well above the core count; it is also the most
    /// messages one receive takes (SQS: up to 10 per request).
    pub concurrency: usize,
    /// How many renders use the CPU at once (the blocking part of a render): the cores.
    pub render_threads: usize,
    /// How long a claim (report lease and message visibility) lasts without a heartbeat.
    pub lease: Duration,
    /// How often the lease is renewed while rendering (well under `lease`).
    pub heartbeat: Duration,
    /// How often progress is written while rendering, when it changed.
    pub progress_interval: Duration,
    /// Attempts before a report is `failed` for good. Only render and data errors spend
    /// one (and a worker dying mid-render); outages of the queue or storage do not.
    pub max_attempts: u32,
    /// Age past which a report that keeps being postponed by outages fails.
    pub max_age: Duration,
    /// Delay before the first retry; doubles with every further attempt.
    pub backoff_base: Duration,
    /// Ceiling of the retry delay.
    pub backoff_max: Duration,
    /// Long-poll wait of one receive.
    pub poll_wait: Duration,
    /// On shutdown, how long in-flight renders may run on before they are handed back.
    pub shutdown_grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            worker_id: default_worker_id(),
            concurrency: DEFAULT_CONCURRENCY.max(cores()),
            render_threads: cores(),
            lease: Duration::from_secs(60),
            heartbeat: Duration::from_secs(15),
            progress_interval: Duration::from_millis(500),
            max_attempts: 5,
            max_age: Duration::from_secs(24 * 60 * 60),
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            poll_wait: Duration::from_secs(20),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Reports in hand at once unless configured: one full SQS receive.
pub const DEFAULT_CONCURRENCY: usize = 10;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// `host-pid-random`: readable in logs, unique across restarts.
pub fn default_worker_id() -> String {
    let host = quire_core::startup::identity("worker");
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Everything a worker needs; cheap to share between its tasks.
pub struct Worker {
    store: Arc<dyn RecordStore>,
    queue: Arc<dyn WorkQueue>,
    storage: Arc<dyn OutputStorage>,
    sources: Arc<DataSources>,
    /// Fetches data sources: same-origin redirects only, private addresses only for
    /// sources that allow them.
    http: FetchClient,
    config: WorkerConfig,
    /// One permit per render using the CPU (`render_threads`).
    render_slots: Arc<tokio::sync::Semaphore>,
    metrics: WorkerMetrics,
    /// Deletes of completed reports' messages still in flight; awaited at shutdown.
    acks: tokio_util::task::TaskTracker,
}

impl Worker {
    pub fn new(
        store: Arc<dyn RecordStore>,
        queue: Arc<dyn WorkQueue>,
        storage: Arc<dyn OutputStorage>,
        sources: Arc<DataSources>,
        config: WorkerConfig,
    ) -> Self {
        let http = FetchClient::new(concat!("quire-worker/", env!("CARGO_PKG_VERSION")))
            .expect("the HTTP client's TLS backend initialises");
        Self {
            store,
            queue,
            storage,
            sources,
            http,
            render_slots: Arc::new(tokio::sync::Semaphore::new(config.render_threads.max(1))),
            config,
            metrics: WorkerMetrics::default(),
            acks: tokio_util::task::TaskTracker::new(),
        }
    }

    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// This worker's metrics, to register where the process serves `/metrics`.
    pub fn metrics(&self) -> &WorkerMetrics {
        &self.metrics
    }

    /// Delay before retrying after the `attempt`-th failure: exponential, capped, with
    /// up to 20% jitter so retries of many reports do not arrive in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .config
            .backoff_base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.config.backoff_max);
        let jitter = capped.mul_f64(rand::random::<f64>() * 0.2);
        capped.saturating_add(jitter).min(self.config.backoff_max)
    }
}
