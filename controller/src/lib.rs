//! Quire's Kubernetes operator: a kube-runtime `Controller` over `ReportRequest`s.
//!
//! - [`reconciler`]: [`reconcile`](reconciler::reconcile) and
//!   [`error_policy`](reconciler::error_policy) — dispatch once, reflect the database's
//!   view into status, adopt kubectl-created requests, clean up on delete, expire by TTL.
//! - [`status`]: the status and conditions a report row implies (pure).
//! - [`wake`]: Postgres `LISTEN`/`NOTIFY` turned into reconcile triggers.
//! - [`metrics`]: Prometheus metrics; [`probes`] serves them with `/healthz` and `/readyz`.
//! - [`run`]: leader election through a `coordination.k8s.io` Lease
//!   (kube-lease-manager) around the controller, so two replicas never both act; it fails
//!   with a [`RunError`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use futures::StreamExt;
use kube::Api;
use kube::runtime::controller::{self, Controller};
use kube::runtime::watcher;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use quire_core::dispatch::{QueueDispatcher, RescuePolicy};
use quire_core::health::Dependencies;
use quire_crds::ReportRequest;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

pub mod metrics;
pub mod reconciler;
pub mod status;
pub mod wake;

pub use metrics::Metrics;
pub use reconciler::{Context, Error, error_policy, reconcile};

/// Why [`run`] stopped before it was told to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("setting up leader election")]
    LeaderElection(#[source] LeaseManagerError),
    #[error("leader election stopped unexpectedly")]
    LeaderElectionStopped,
    #[error("listening for report changes in Postgres")]
    Listen(#[source] sqlx::Error),
}

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The namespace whose `ReportRequest`s it reconciles (and where its Lease lives).
    pub namespace: String,
    /// Requests reconciled at once.
    pub concurrency: u16,
    /// `None` runs without leader election (one replica only).
    pub leader_election: Option<LeaderElection>,
    /// The rescue of stranded reports, run while this replica leads (`None`: not here).
    pub rescue: Option<Rescue>,
}

/// The rescuer the Lease holder runs beside the controller: in cluster mode the controller
/// dispatches, so it also re-dispatches what a lost message left stranded.
#[derive(Clone)]
pub struct Rescue {
    pub dispatcher: Arc<QueueDispatcher>,
    pub policy: RescuePolicy,
    pub every: Duration,
}

impl std::fmt::Debug for Rescue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rescue")
            .field("policy", &self.policy)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

/// The Lease replicas compete for.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub lease_name: String,
    /// This replica's identity in the Lease (the pod name).
    pub identity: String,
    /// Seconds a lease lasts without renewal; a standby takes over this long after the
    /// leader vanished without releasing it.
    pub lease_duration: u64,
    /// Seconds before expiry the holder renews.
    pub renew_grace: u64,
}

/// Reconciles until `shutdown` fires: at once without leader election, else whenever this
/// replica holds the Lease. Losing the Lease stops reconciling (in-flight passes finish)
/// and this replica stands by again; at shutdown the Lease is released so a standby takes
/// over at once instead of after the lease duration.
pub async fn run(
    ctx: Arc<Context>,
    pool: PgPool,
    settings: Settings,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let Some(election) = settings.leader_election.clone() else {
        ctx.metrics.set_leader(true);
        reconcile_until(&ctx, &pool, &settings, shutdown.clone()).await?;
        ctx.metrics.set_leader(false);
        return Ok(());
    };
    let manager = LeaseManagerBuilder::new(ctx.client.clone(), &election.lease_name)
        .with_namespace(&settings.namespace)
        .with_identity(&election.identity)
        .with_duration(election.lease_duration)
        .with_grace(election.renew_grace)
        .build()
        .await
        .map_err(RunError::LeaderElection)?;
    let (mut leading, lease_task) = manager.watch().await;
    tracing::info!(lease = %election.lease_name, identity = %election.identity, "standing by for the lease");
    let outcome = loop {
        tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            changed = leading.wait_for(|leader| *leader) => {
                if changed.is_err() {
                    break Err(RunError::LeaderElectionStopped);
                }
            }
        }
        tracing::info!(lease = %election.lease_name, "acquired the lease; reconciling");
        ctx.metrics.set_leader(true);
        let term = shutdown.child_token();
        let lost = {
            let (mut leading, term) = (leading.clone(), term.clone());
            tokio::spawn(async move {
                let _ = leading.wait_for(|leader| !*leader).await;
                term.cancel();
            })
        };
        let result = reconcile_until(&ctx, &pool, &settings, term).await;
        lost.abort();
        ctx.metrics.set_leader(false);
        if let Err(e) = result {
            break Err(e);
        }
        if shutdown.is_cancelled() {
            break Ok(());
        }
        tracing::warn!(lease = %election.lease_name, "lost the lease; standing by");
    };
    // Closing the channel makes the lease task release the Lease and end.
    drop(leading);
    match lease_task.await {
        Ok(Ok(_)) => tracing::info!(lease = %election.lease_name, "released the lease"),
        Ok(Err(LeaseManagerError::ControlChannelError(_))) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not release the lease"),
        Err(e) => tracing::warn!(error = %e, "the leader election task failed"),
    }
    outcome
}

/// Runs the kube-runtime controller until `stop` fires, then lets in-flight passes finish.
async fn reconcile_until(
    ctx: &Arc<Context>,
    pool: &PgPool,
    settings: &Settings,
    stop: CancellationToken,
) -> Result<(), RunError> {
    let api: Api<ReportRequest> = Api::namespaced(ctx.client.clone(), &settings.namespace);
    let listener = wake::listen(pool).await.map_err(RunError::Listen)?;
    let controller = Controller::new(api, watcher::Config::default().any_semantic()).with_config(
        controller::Config::default()
            .concurrency(settings.concurrency)
            // Coalesces a burst of progress notifications into one pass.
            .debounce(Duration::from_millis(200)),
    );
    let changes = wake::changes(listener, controller.store(), settings.namespace.clone());
    let _rescue = settings.rescue.clone().map(|rescue| {
        let stop = stop.clone();
        AbortOnDropHandle::new(tokio::spawn(async move {
            rescue
                .dispatcher
                .rescue_stranded(rescue.policy, rescue.every, stop)
                .await;
        }))
    });
    controller
        .reconcile_on(changes)
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|outcome| async move {
            match outcome {
                Ok((object, _)) => tracing::debug!(name = %object.name, "reconciled"),
                // Already logged by the error policy.
                Err(controller::Error::ReconcilerFailed(..)) => {}
                Err(e) => tracing::warn!(error = %e, "controller error"),
            }
        })
        .await;
    Ok(())
}

/// The controller's HTTP endpoints on `QUIRE_HEALTH_LISTEN`: `/healthz`, `/readyz` (the
/// database, the work queue and output storage answer; a standby replica is ready too) and
/// `/metrics`.
pub fn probes(dependencies: Dependencies, metrics: Arc<Metrics>) -> Router {
    quire_core::health::probes(dependencies).route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }
        }),
    )
}
