//! Dispatch: handing a stored report to the work queue.
//!
//! The built-in dispatcher sends the work message right after the API stores the report
//! and then marks the row `queued`; a periodic sweep re-dispatches reports left `pending`
//! (the queue was down, the process died between the two steps). Sending before marking
//! means a crash can only cause a duplicate message, never a lost one, and duplicates are
//! harmless: the worker's claim is conditional.
//!
//! In cluster mode (next issue) the Kubernetes controller takes this role.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use quire_crds::WorkMessage;
use tokio_util::sync::CancellationToken;

use crate::Result;
use crate::model::Report;
use crate::queue::WorkQueue;
use crate::store::RecordStore;

/// Hands a stored `pending` report to whatever runs the work.
#[async_trait]
pub trait Dispatcher: Send + Sync + 'static {
    /// Dispatches one report. Idempotent: dispatching a report that is already queued,
    /// running or finished does no harm.
    async fn dispatch(&self, report: &Report) -> Result<()>;
}

/// Dispatch straight to a [`WorkQueue`], recording it on the report row.
pub struct QueueDispatcher {
    store: Arc<dyn RecordStore>,
    queue: Arc<dyn WorkQueue>,
}

impl QueueDispatcher {
    pub fn new(store: Arc<dyn RecordStore>, queue: Arc<dyn WorkQueue>) -> Self {
        Self { store, queue }
    }

    /// Re-dispatches reports that have stayed `pending` for longer than `grace`, every
    /// `every`, until `shutdown` fires.
    pub async fn sweep_pending(
        &self,
        grace: Duration,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            match self.sweep_once(grace).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(dispatched = n, "re-dispatched pending reports"),
                Err(e) => tracing::warn!(error = %e, "pending-report sweep failed; will retry"),
            }
        }
    }

    /// One sweep: dispatches every report pending for longer than `grace`. Returns how many.
    pub async fn sweep_once(&self, grace: Duration) -> Result<usize> {
        let cutoff = Utc::now() - chrono::Duration::from_std(grace).unwrap_or_default();
        let mut dispatched = 0;
        loop {
            let batch = self.store.pending_reports(cutoff, 100).await?;
            if batch.is_empty() {
                return Ok(dispatched);
            }
            for report in &batch {
                self.dispatch(report).await?;
                dispatched += 1;
            }
        }
    }
}

#[async_trait]
impl Dispatcher for QueueDispatcher {
    #[tracing::instrument(skip_all, fields(report_id = %report.id))]
    async fn dispatch(&self, report: &Report) -> Result<()> {
        let message = WorkMessage::new(
            report.id,
            report.user_id,
            report.report_type,
            u32::try_from(report.attempts).unwrap_or(0) + 1,
        );
        self.queue.send(&message.to_body(), Duration::ZERO).await?;
        // `false` means a worker already claimed it (or it was cancelled): nothing to record.
        self.store.mark_queued(report.id, Utc::now()).await?;
        Ok(())
    }
}
