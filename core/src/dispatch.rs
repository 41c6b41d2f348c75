//! Dispatch: handing a stored report to the work queue.
//!
//! The built-in dispatcher sends the work message right after the API stores the report
//! and then marks the row `queued`; a periodic sweep re-dispatches reports left `pending`
//! (the queue was down, the process died between the two steps). Sending before marking
//! means a crash can only cause a duplicate message, never a lost one, and duplicates are
//! harmless: the worker's claim is conditional.
//!
//! Nothing rests on the queue alone to remember a report: the *rescuer*
//! ([`QueueDispatcher::rescue_once`], after River's rescuer and Oban's Lifeline) finds
//! reports whose message may be gone — `running` under a lease that expired long ago, or
//! `queued` long after their message should have been receivable (dead-lettered by the
//! queue's redrive policy after workers died holding it, say) — and dispatches them again,
//! or fails them when their attempts or their time are spent. It runs wherever dispatch
//! runs: the API server (built-in orchestrator), `quire dev`, and the controller's Lease
//! holder in cluster mode.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use quire_crds::WorkMessage;
use tokio_util::sync::CancellationToken;

use crate::ReportStatus;
use crate::Result;
use crate::model::Report;
use crate::queue::WorkQueue;
use crate::store::RecordStore;

/// Hands a stored `pending` report to whatever runs the work.
#[async_trait]
pub trait Dispatcher: Send + Sync + 'static {
    /// Dispatches one report and returns it as it now is (`queued`, or as it was if it was
    /// no longer pending). Idempotent: dispatching a report that is already queued, running
    /// or finished does no harm.
    async fn dispatch(&self, report: &Report) -> Result<Report>;
}

/// When the rescuer steps in, and when it gives up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RescuePolicy {
    /// How long a report may stay `running` past its lease, or `queued` past the time its
    /// message should have been receivable, before it counts as stranded. Well above the
    /// visibility timeout, so an ordinary redelivery always comes first.
    pub after: Duration,
    /// Attempts before a report fails for good (`QUIRE_MAX_ATTEMPTS`, as the worker has it).
    pub max_attempts: u32,
    /// Age past which a stranded report fails instead of being dispatched again
    /// (`QUIRE_MAX_REPORT_AGE`).
    pub max_age: Duration,
}

/// The defaults of [`RescueArgs`] (a test holds them equal), for `quire dev`, which takes
/// no settings.
impl Default for RescuePolicy {
    fn default() -> Self {
        Self {
            after: Duration::from_secs(5 * 60),
            max_attempts: 5,
            max_age: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// How many attempts a report gets and how long it may take: shared by the worker (which
/// counts attempts) and the rescuer (which fails what a dead worker left stranded).
#[derive(Clone, Debug, clap::Args)]
pub struct AttemptArgs {
    /// Attempts before a report fails for good. Keep the SQS queue's `maxReceiveCount`
    /// well above it (the chart's default: 10 × 2), so a redrive never comes first.
    #[arg(long, env = "QUIRE_MAX_ATTEMPTS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,

    /// Age past which an unfinished report fails instead of waiting on (an outage of the
    /// queue or storage does not spend attempts, so this is what ends it), e.g. `24h`.
    #[arg(long, env = "QUIRE_MAX_REPORT_AGE", default_value = "24h",
          value_parser = crate::duration::parse)]
    pub max_report_age: Duration,
}

/// The rescuer's settings, for the processes that dispatch.
#[derive(Clone, Debug, clap::Args)]
pub struct RescueArgs {
    #[command(flatten)]
    pub attempts: AttemptArgs,

    /// How long a report may stay `running` past its lease, or `queued` past the time its
    /// message should have been receivable, before it is dispatched again. Keep it above
    /// the visibility timeout (`QUIRE_VISIBILITY_TIMEOUT`), so ordinary redelivery comes first.
    #[arg(long, env = "QUIRE_RESCUE_AFTER", default_value = "5m",
          value_parser = crate::duration::parse)]
    pub rescue_after: Duration,

    /// How often the rescuer looks for stranded reports.
    #[arg(long, env = "QUIRE_RESCUE_INTERVAL", default_value = "30s",
          value_parser = crate::duration::parse)]
    pub rescue_interval: Duration,
}

impl RescueArgs {
    pub fn policy(&self) -> RescuePolicy {
        RescuePolicy {
            after: self.rescue_after,
            max_attempts: self.attempts.max_attempts,
            max_age: self.attempts.max_report_age,
        }
    }
}

/// Why an unfinished report is failed for good, by the worker or by the rescuer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// This many attempts are spent.
    Attempts(u32),
    /// It is older than this (`QUIRE_MAX_REPORT_AGE`).
    Age(Duration),
}

impl GiveUp {
    /// The report's `error_message`: the reason, then the last error (a worker that died
    /// left none).
    pub fn message(self, last_error: Option<&str>) -> String {
        let last = last_error.unwrap_or("the worker stopped responding");
        match self {
            Self::Attempts(attempts) => {
                format!("gave up after {attempts} attempts; last error: {last}")
            }
            Self::Age(age) => format!(
                "gave up: not finished within {}; last error: {last}",
                crate::duration::display(age)
            ),
        }
    }
}

/// What one rescue pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rescued {
    /// Stranded reports dispatched again.
    pub requeued: usize,
    /// Stranded reports whose attempts or time were spent: now `failed`.
    pub failed: usize,
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
        periodically(every, shutdown, || async {
            match self.sweep_once(grace).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(dispatched = n, "re-dispatched pending reports"),
                Err(e) => tracing::warn!(error = %e, "pending-report sweep failed; will retry"),
            }
        })
        .await;
    }

    /// Runs [`QueueDispatcher::rescue_once`] every `every` until `shutdown` fires.
    pub async fn rescue_stranded(
        &self,
        policy: RescuePolicy,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        periodically(every, shutdown, || async {
            match self.rescue_once(&policy).await {
                Ok(Rescued {
                    requeued: 0,
                    failed: 0,
                }) => {}
                Ok(rescued) => tracing::warn!(
                    requeued = rescued.requeued,
                    failed = rescued.failed,
                    "rescued stranded reports"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "the rescue of stranded reports failed; will retry")
                }
            }
        })
        .await;
    }

    /// One rescue pass (see the module docs). Each report is taken out of its limbo by one
    /// conditional update, so concurrent rescuers, a late worker and a cancel race safely;
    /// the message of a requeued report is sent after the update, and if that send fails
    /// the report is stranded again and the next pass tries again.
    pub async fn rescue_once(&self, policy: &RescuePolicy) -> Result<Rescued> {
        let now = Utc::now();
        let stranded_before = now - chrono::Duration::from_std(policy.after).unwrap_or_default();
        let too_old = now - chrono::Duration::from_std(policy.max_age).unwrap_or_default();
        let mut rescued = Rescued::default();
        loop {
            let batch = self.store.stranded_reports(stranded_before, 100).await?;
            if batch.is_empty() {
                return Ok(rescued);
            }
            for report in &batch {
                let give_up = give_up_reason(report, policy, too_old);
                let Some(current) = self
                    .store
                    .rescue_report(report.id, stranded_before, give_up.as_deref(), now)
                    .await?
                else {
                    continue; // it moved on meanwhile
                };
                if current.status == ReportStatus::Failed {
                    tracing::warn!(report_id = %report.id, error = give_up.as_deref(), "stranded report failed for good");
                    rescued.failed += 1;
                    continue;
                }
                tracing::warn!(report_id = %report.id, was = %report.status, attempts = report.attempts, "stranded report dispatched again");
                self.send(&current).await?;
                rescued.requeued += 1;
            }
        }
    }

    async fn send(&self, report: &Report) -> Result<()> {
        let message = WorkMessage::new(
            report.id,
            report.user_id,
            report.report_type,
            u32::try_from(report.attempts).unwrap_or(0) + 1,
        )
        .with_traceparent(report.traceparent.clone());
        self.queue.send(&message.to_body(), Duration::ZERO).await
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
    async fn dispatch(&self, report: &Report) -> Result<Report> {
        self.send(report).await?;
        // `None`: a worker already claimed it (or it was cancelled): nothing to record.
        Ok(self
            .store
            .mark_queued(report.id, Utc::now())
            .await?
            .unwrap_or_else(|| report.clone()))
    }
}

/// Runs `pass` every `every` (the first at once; a slow pass delays the next rather than
/// bunching them) until `shutdown` fires.
async fn periodically<F, Fut>(every: Duration, shutdown: CancellationToken, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        pass().await;
    }
}

/// Why a stranded report fails instead of being dispatched again, if it should.
fn give_up_reason(
    report: &Report,
    policy: &RescuePolicy,
    too_old: chrono::DateTime<Utc>,
) -> Option<String> {
    let attempts = u32::try_from(report.attempts).unwrap_or(0);
    let reason = if attempts >= policy.max_attempts {
        GiveUp::Attempts(attempts)
    } else if report.created_at < too_old {
        GiveUp::Age(policy.max_age)
    } else {
        return None;
    };
    Some(reason.message(report.error_message.as_deref()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        rescue: RescueArgs,
    }

    #[test]
    fn the_default_policy_is_the_one_the_settings_default_to() {
        let cli = Cli::try_parse_from(["test"]).expect("the defaults parse");
        assert_eq!(cli.rescue.policy(), RescuePolicy::default());
    }

    #[test]
    fn giving_up_says_why_and_what_failed_last() {
        assert_eq!(
            GiveUp::Attempts(5).message(Some("boom")),
            "gave up after 5 attempts; last error: boom"
        );
        assert_eq!(
            GiveUp::Age(Duration::from_secs(86_400)).message(None),
            "gave up: not finished within 1d; last error: the worker stopped responding"
        );
    }
}
