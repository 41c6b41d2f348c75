//! Orchestration: how an accepted report reaches a worker. One seam, two implementations,
//! chosen once at start (`QUIRE_ORCHESTRATOR`):
//!
//! - [`Builtin`]: the process that accepted the report dispatches it to the work queue at
//!   once, and keeps up a sweep (reports left `pending`) and the rescuer (reports whose
//!   message was lost) in the background.
//! - Kubernetes (`quire_api::cluster::Kubernetes`): every report becomes a `ReportRequest`
//!   custom resource, and the controller dispatches it; nothing runs in the background here.
//!
//! The contract both keep (tested against both in `api-server/tests/api/orchestrator.rs`):
//! once [`Orchestrator::accept`] returns `Ok`, the report will reach a worker without any
//! further call; when it returns `Err`, its row is gone and nothing ever processes it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::Result;
use crate::dispatch::{Dispatcher, QueueDispatcher, RescuePolicy};
use crate::model::Report;

/// Who takes a stored `pending` report to a worker.
#[async_trait]
pub trait Orchestrator: Send + Sync + 'static {
    /// Takes charge of a report just stored `pending` and returns it as it now stands.
    ///
    /// `Ok`: the report will be processed, whatever happens next. `Err`: it could not be
    /// taken ([`crate::Error::Unavailable`]: a dependency was unreachable); the report's
    /// row was deleted again, so the caller may answer that nothing was created.
    async fn accept(&self, report: Report) -> Result<Report>;

    /// An idempotent replay found `report` stored already: makes sure it is in hand, as a
    /// crash between storing it and [`accept`](Orchestrator::accept) may have left it.
    async fn ensure(&self, report: &Report) -> Result<()>;

    /// Runs this orchestrator's background work until `shutdown` fires (at once if it has
    /// none).
    async fn run(&self, shutdown: CancellationToken);
}

/// How long [`Builtin::accept`] waits for a new report's work message to be sent before it
/// answers `pending` anyway: the send goes on in the background, and if it fails the
/// sweep sends it later. A slow or black-holed queue never holds the client.
pub const DISPATCH_BUDGET: Duration = Duration::from_secs(1);

/// The background work of [`Builtin`].
#[derive(Clone, Debug)]
pub struct Upkeep {
    /// Reports `pending` for longer than this are dispatched again, checked as often.
    pub sweep_every: Duration,
    /// When a stranded report is dispatched again or failed.
    pub rescue: RescuePolicy,
    /// How often the rescuer looks.
    pub rescue_every: Duration,
}

/// Dispatch by the process that accepted the report, with the sweep and the rescuer.
pub struct Builtin {
    dispatcher: Arc<dyn Dispatcher>,
    upkeep: Option<(Arc<QueueDispatcher>, Upkeep)>,
}

impl Builtin {
    /// Dispatches through `dispatcher` and runs `upkeep` with it in the background.
    pub fn new(dispatcher: Arc<QueueDispatcher>, upkeep: Upkeep) -> Self {
        Self {
            dispatcher: dispatcher.clone(),
            upkeep: Some((dispatcher, upkeep)),
        }
    }

    /// Dispatches through `dispatcher` with no background work: for tests that sweep
    /// themselves, or that put a failing dispatcher in the way.
    pub fn dispatch_only(dispatcher: Arc<dyn Dispatcher>) -> Self {
        Self {
            dispatcher,
            upkeep: None,
        }
    }
}

#[async_trait]
impl Orchestrator for Builtin {
    /// Never fails: the row is committed, so the report is processed either way. It comes
    /// back `queued` when the message was sent within [`DISPATCH_BUDGET`], else `pending`
    /// for the sweep (or the send still under way) to finish.
    async fn accept(&self, report: Report) -> Result<Report> {
        let dispatcher = self.dispatcher.clone();
        let pending = report.clone();
        // Its own task, so neither the budget nor a client hanging up cuts a send short.
        let send = tokio::spawn(async move { dispatcher.dispatch(&pending).await });
        Ok(match tokio::time::timeout(DISPATCH_BUDGET, send).await {
            Ok(Ok(Ok(current))) => current,
            Ok(Ok(Err(e))) => {
                tracing::warn!(report_id = %report.id, error = %e, "dispatch failed; the report stays pending for the sweep");
                report
            }
            Ok(Err(e)) => {
                tracing::error!(report_id = %report.id, error = %e, "the dispatch task failed; the report stays pending for the sweep");
                report
            }
            Err(_) => {
                tracing::warn!(report_id = %report.id, budget = ?DISPATCH_BUDGET, "the queue is slow; answering pending while the send goes on");
                report
            }
        })
    }

    /// Nothing to do: a replayed report still `pending` is the sweep's.
    async fn ensure(&self, _report: &Report) -> Result<()> {
        Ok(())
    }

    async fn run(&self, shutdown: CancellationToken) {
        let Some((dispatcher, upkeep)) = &self.upkeep else {
            return;
        };
        tokio::join!(
            dispatcher.sweep_pending(upkeep.sweep_every, upkeep.sweep_every, shutdown.clone()),
            dispatcher.rescue_stranded(upkeep.rescue.clone(), upkeep.rescue_every, shutdown),
        );
    }
}
