//! One delivery from receipt to outcome: [`Worker::process`] reads the work message, claims
//! the report it points at under a lease, renders it while a heartbeat keeps the lease (or
//! adopts the output an earlier attempt stored), stores the file and records what became of
//! the delivery as an [`Outcome`].
//!
//! The happy path reads top to bottom: `process` → `claim_and_execute` → `execute` →
//! `render_and_store` → `store_output` → `record`. Every other ending is a method of its
//! own that records its outcome and is returned early: `fail` and `give_up` (the report's
//! fault), `postpone` (an outage of ours), `lease_lost` (cancelled, or taken over),
//! `release` (shutdown), `poison` (a message that can never succeed).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use quire_core::dispatch::GiveUp;
use quire_core::model::{AttemptEnd, Claim, Lease, Report, StoredOutput};
use quire_core::queue::{Delivery, Receipt, WorkQueue};
use quire_core::storage::{output_key, output_meta};
use quire_core::store::RecordStore;
use quire_core::{ReportStatus, WorkMessage};
use quire_render::Progress;
use tokio::task::JoinError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;
use uuid::Uuid;

use crate::metrics::ReportLabels;
use crate::render::{FailureKind, RenderFailure, RenderJob};
use crate::{Worker, WorkerConfig};

/// What became of one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Rendered, stored and recorded `completed`; the message is deleted.
    Completed,
    /// The attempt failed and will be retried after `delay`; the message reappears then.
    Retrying { delay: Duration },
    /// Failed for good; the report is `failed` and the message deleted.
    Failed,
    /// The owner cancelled it; any output was discarded and the message deleted.
    Cancelled,
    /// Already finished (duplicate delivery); acknowledged without side effects.
    AlreadyFinished,
    /// Another worker holds a live lease; the message comes back when that lease would expire.
    Deferred,
    /// This worker lost its lease mid-render (it expired and another worker took over);
    /// the result was dropped and the new holder carries on.
    LeaseLost,
    /// Shutdown: the report was handed back and its message made visible again.
    Released,
    /// The queue, storage or database failed (not the report): it was handed back without
    /// spending an attempt and is retried after `delay`.
    Postponed { delay: Duration },
    /// The message can never succeed (unparseable, unknown report); moved aside.
    Poison { reason: String },
}

/// How long a stopped render may take to notice; renders check between rows and pages, so
/// this is only ever reached by a render stuck in a single long step.
const STOP_WAIT: Duration = Duration::from_secs(5);
/// How often a render with no progress to write checks that its report is still its own.
const LEASE_CHECK: Duration = Duration::from_secs(1);

/// A report this worker claimed for one delivery: what every step after the claim needs
/// to record an outcome under its lease.
struct Attempt<'a> {
    report: Report,
    /// The lease owner the report was claimed as; every conditional update names it.
    owner: String,
    /// An earlier claim may have stored the output: look for it before rendering.
    claimed_before: bool,
    /// When the claim was sent: its lease runs at least `lease` from here.
    claimed_at: Instant,
    delivery: &'a Delivery,
}

impl Attempt<'_> {
    fn receipt(&self) -> &Receipt {
        &self.delivery.receipt
    }
}

/// How a render task ended.
enum Rendered {
    /// It finished and wrote this file.
    File(PathBuf),
    /// It finished without a file (or crashed).
    Failed(RenderFailure),
    /// The heartbeat found the lease gone; the render was stopped.
    LeaseLost,
    /// Shutdown ran out of grace; the render was stopped.
    ShutDown,
}

impl Rendered {
    fn finished(result: Result<Result<PathBuf, RenderFailure>, JoinError>) -> Self {
        match result {
            Ok(Ok(path)) => Self::File(path),
            Ok(Err(failure)) => Self::Failed(failure),
            Err(e) => Self::Failed(RenderFailure {
                message: format!("the renderer crashed: {e}"),
                kind: FailureKind::Permanent,
            }),
        }
    }
}

/// Stops a render and waits until its CPU work has ended, so the slot it frees is really
/// free.
async fn stop(
    progress: &Progress,
    stopping: &CancellationToken,
    mut render: tokio::task::JoinHandle<Result<PathBuf, RenderFailure>>,
) {
    progress.cancel();
    stopping.cancel();
    if tokio::time::timeout(STOP_WAIT, &mut render).await.is_err() {
        tracing::warn!(wait = ?STOP_WAIT, "the render did not stop in time; abandoning it");
        render.abort();
    }
}

impl Worker {
    /// Handles one delivery end to end. `hard_stop` asks an in-flight render to give the
    /// report back (graceful shutdown ran out of time).
    pub async fn process(&self, delivery: &Delivery, hard_stop: &CancellationToken) -> Outcome {
        match self.try_process(delivery, hard_stop).await {
            Ok(outcome) => outcome,
            Err(e) => {
                // The store or the queue failed while recording the outcome. Leave the
                // message alone: it reappears after its visibility timeout and the
                // conditional updates make the retry safe.
                tracing::warn!(error = %e, "could not record the outcome; the message will be redelivered");
                Outcome::Retrying {
                    delay: self.config.lease,
                }
            }
        }
    }

    /// Reads the message and handles the report it points at, in a span naming the report,
    /// and counts the outcome under the report's type and format.
    async fn try_process(
        &self,
        delivery: &Delivery,
        hard_stop: &CancellationToken,
    ) -> quire_core::Result<Outcome> {
        let (labels, outcome) = match WorkMessage::from_body(&delivery.body) {
            Ok(message) => {
                let span = tracing::info_span!("report", report_id = %message.report_id, attempt = tracing::field::Empty);
                // The worker's spans join the trace of the request that created the report.
                quire_core::telemetry::adopt_parent(&span, message.traceparent.as_deref());
                self.claim_and_execute(&message, delivery, hard_stop)
                    .instrument(span)
                    .await?
            }
            Err(reason) => (
                ReportLabels::UNKNOWN,
                self.poison(&delivery.receipt, reason).await?,
            ),
        };
        self.metrics.processed(&labels, &outcome);
        Ok(outcome)
    }

    /// Claims the report under a fresh lease and executes it, unless it is gone, finished,
    /// held by another worker or out of attempts. Returns the outcome with the labels it is
    /// counted under.
    async fn claim_and_execute(
        &self,
        message: &WorkMessage,
        delivery: &Delivery,
        hard_stop: &CancellationToken,
    ) -> quire_core::Result<(ReportLabels, Outcome)> {
        let receipt = &delivery.receipt;
        let claimed_at = Instant::now();
        let now = Utc::now();
        let lease = Lease {
            owner: self.lease_owner(),
            expires_at: now + self.lease_chrono(),
        };
        let (report, claimed_before) = match self
            .store
            .claim_report(message.report_id, &lease, now)
            .await?
        {
            Claim::Claimed {
                report,
                claimed_before,
            } => (report, claimed_before),
            Claim::Missing => {
                let reason = format!("report {} does not exist", message.report_id);
                return Ok((ReportLabels::UNKNOWN, self.poison(receipt, reason).await?));
            }
            Claim::Finished(report) => {
                let outcome = self.acknowledge_duplicate(&report, receipt).await?;
                return Ok((ReportLabels::of(&report), outcome));
            }
            Claim::Leased(report) => {
                let outcome = self.defer(&report, receipt, now).await?;
                return Ok((ReportLabels::of(&report), outcome));
            }
        };
        self.metrics.attempt_started(&report);
        let labels = ReportLabels::of(&report);
        tracing::Span::current().record("attempt", report.attempts);
        let attempt = Attempt {
            report,
            owner: lease.owner,
            claimed_before,
            claimed_at,
            delivery,
        };
        if attempt.report.attempts > self.config.max_attempts as i32 {
            let error = GiveUp::Attempts(self.config.max_attempts)
                .message(attempt.report.error_message.as_deref());
            return Ok((labels, self.give_up(&attempt, &error, true).await?));
        }
        let _in_flight = self.metrics.in_flight();
        Ok((labels, self.execute(attempt, hard_stop).await?))
    }

    /// The report is already finished: a duplicate delivery, acknowledged and dropped.
    async fn acknowledge_duplicate(
        &self,
        report: &Report,
        receipt: &Receipt,
    ) -> quire_core::Result<Outcome> {
        tracing::info!(status = %report.status, "already finished; acknowledging duplicate delivery");
        self.queue.ack(receipt).await?;
        Ok(Outcome::AlreadyFinished)
    }

    /// Another worker holds a live lease: the message comes back just after that lease
    /// would expire.
    async fn defer(
        &self,
        report: &Report,
        receipt: &Receipt,
        now: DateTime<Utc>,
    ) -> quire_core::Result<Outcome> {
        let remaining = report
            .lease_expires_at
            .and_then(|t| (t - now).to_std().ok())
            .unwrap_or(self.config.lease);
        tracing::info!(?remaining, "another worker holds the lease; deferring");
        self.queue
            .retry_later(receipt, remaining + Duration::from_secs(1))
            .await?;
        Ok(Outcome::Deferred)
    }

    /// Renders a claimed report while a heartbeat keeps the lease, stores it and records
    /// the outcome. An output an earlier attempt stored (it died before recording it) is
    /// adopted instead of rendered and stored again, so a report is written once.
    async fn execute(
        &self,
        attempt: Attempt<'_>,
        hard_stop: &CancellationToken,
    ) -> quire_core::Result<Outcome> {
        let progress = Progress::new();
        let lost = CancellationToken::new();
        let heartbeat = self.heartbeat(&attempt, progress.clone()).run(lost.clone());
        // Aborted when this function returns by any path (`?` included): an orphaned
        // heartbeat would keep the lease alive and the report `running` forever.
        let _heartbeat = AbortOnDropHandle::new(tokio::spawn(heartbeat.in_current_span()));

        let key = output_key(&attempt.report);
        // Only an earlier claim can have stored one (on S3 the look is a HEAD request).
        let earlier = if attempt.claimed_before {
            match self.storage.stored(&key).await {
                Ok(earlier) => earlier,
                Err(e) => {
                    let error = format!("looking for an earlier output failed: {e}");
                    return self.postpone(&attempt, &error).await;
                }
            }
        } else {
            None
        };
        if let Some(stored) = earlier {
            tracing::info!(
                size = stored.size,
                "adopting the output an earlier attempt stored"
            );
            return self.record(&attempt, stored).await;
        }
        self.render_and_store(&attempt, &key, &progress, &lost, hard_stop)
            .await
    }

    /// Renders the report into a scratch directory and stores the file under `key`. A
    /// render that fails, loses the lease or is stopped by shutdown ends the attempt instead.
    async fn render_and_store(
        &self,
        attempt: &Attempt<'_>,
        key: &str,
        progress: &Progress,
        lost: &CancellationToken,
        hard_stop: &CancellationToken,
    ) -> quire_core::Result<Outcome> {
        // Lives until the file is stored and recorded.
        let workdir = tempfile::tempdir()?;
        let rendered = self
            .render(&attempt.report, workdir.path(), progress, lost, hard_stop)
            .await;
        let path = match rendered {
            Rendered::File(path) => path,
            Rendered::Failed(failure) => return self.render_failed(attempt, failure).await,
            Rendered::LeaseLost => return self.lease_lost(attempt).await,
            Rendered::ShutDown => return self.release(attempt).await,
        };
        self.store_output(attempt, key, &path).await
    }

    /// Runs the render as a task of its own until it finishes, the lease is lost or
    /// shutdown runs out of grace; in the last two cases the render is stopped first.
    async fn render(
        &self,
        report: &Report,
        dir: &Path,
        progress: &Progress,
        lost: &CancellationToken,
        hard_stop: &CancellationToken,
    ) -> Rendered {
        let stopping = CancellationToken::new();
        let job = RenderJob {
            store: self.store.clone(),
            http: self.http.clone(),
            sources: self.sources.clone(),
            report: report.clone(),
            dir: dir.to_owned(),
            progress: progress.clone(),
            stop: stopping.clone(),
            render_slots: self.render_slots.clone(),
        };
        let started = Instant::now();
        let mut render = tokio::spawn(job.run().in_current_span());
        let interrupted = tokio::select! {
            result = &mut render => {
                let rendered = Rendered::finished(result);
                if let Rendered::File(_) = rendered {
                    self.metrics.rendered(report, started.elapsed().as_secs_f64());
                }
                return rendered;
            }
            _ = lost.cancelled() => Rendered::LeaseLost,
            _ = hard_stop.cancelled() => Rendered::ShutDown,
        };
        stop(progress, &stopping, render).await;
        interrupted
    }

    /// Ends an attempt whose render produced no file, as the kind of failure asks.
    async fn render_failed(
        &self,
        attempt: &Attempt<'_>,
        failure: RenderFailure,
    ) -> quire_core::Result<Outcome> {
        let RenderFailure { message, kind } = failure;
        match kind {
            FailureKind::Permanent => self.fail(attempt, &message, false).await,
            FailureKind::Retryable => self.fail(attempt, &message, true).await,
            FailureKind::Unavailable => self.postpone(attempt, &message).await,
            FailureKind::Stopped => self.lease_lost(attempt).await,
        }
    }

    /// Stores the rendered file under `key` and records it, if the report is still this
    /// worker's.
    async fn store_output(
        &self,
        attempt: &Attempt<'_>,
        key: &str,
        path: &Path,
    ) -> quire_core::Result<Outcome> {
        let report = &attempt.report;
        // A worker that lost the report must not overwrite the output of the one that took
        // over. Another worker takes a report over only once its lease has expired, so a
        // claim less than half a lease old needs no check (a fast render, the common case:
        // one write fewer per report); an older one renews the lease right before writing.
        // A cancel clears the lease without waiting for it to expire: the completion below
        // names the lease, fails, and the cancelled report's output is deleted.
        if attempt.claimed_at.elapsed() >= self.config.lease / 2 {
            let renewed = Lease {
                owner: attempt.owner.clone(),
                expires_at: Utc::now() + self.lease_chrono(),
            };
            if !self.store.renew_lease(report.id, &renewed).await? {
                return self.lease_lost(attempt).await;
            }
        }
        let started = Instant::now();
        let stored = match self.storage.put_file(key, path, &output_meta(report)).await {
            Ok(stored) => {
                self.metrics
                    .stored(report, started.elapsed().as_secs_f64(), stored.size);
                stored
            }
            Err(e) => {
                let error = format!("storing the output failed: {e}");
                return self.postpone(attempt, &error).await;
            }
        };
        self.record(attempt, stored).await
    }

    /// Records a stored output as the report's completion, then deletes the message.
    async fn record(
        &self,
        attempt: &Attempt<'_>,
        stored: StoredOutput,
    ) -> quire_core::Result<Outcome> {
        if !self
            .store
            .complete_report(attempt.report.id, &attempt.owner, &stored, Utc::now())
            .await?
        {
            return self.lease_lost(attempt).await;
        }
        // The outcome is committed: the delete may wait to share a batch with other
        // deletes without holding this render slot. If it fails, the message reappears
        // after its visibility timeout and is acknowledged as a duplicate.
        let (queue, receipt) = (self.queue.clone(), attempt.receipt().clone());
        self.acks.spawn(
            async move {
                if let Err(e) = queue.ack(&receipt).await {
                    tracing::warn!(error = %e, "deleting the message of a completed report failed; it will be acknowledged when it comes back");
                }
            }
            .in_current_span(),
        );
        tracing::info!(size = stored.size, "report completed");
        Ok(Outcome::Completed)
    }

    /// One of Quire's own dependencies (storage, the database, the queue) failed, not the
    /// report: hands the report back without spending an attempt and tries again after a
    /// backoff that grows with every delivery. Only a report older than the configured
    /// maximum age fails, so an outage ends every report eventually, one way or the other.
    async fn postpone(&self, attempt: &Attempt<'_>, error: &str) -> quire_core::Result<Outcome> {
        let report = &attempt.report;
        let now = Utc::now();
        let age = (now - report.created_at).to_std().unwrap_or_default();
        if age > self.config.max_age {
            let error = GiveUp::Age(self.config.max_age).message(Some(error));
            return self.give_up(attempt, &error, false).await;
        }
        let delay = self.backoff(attempt.delivery.receive_count.max(1));
        let retry_at = now + chrono::Duration::from_std(delay).unwrap_or_default();
        if !self
            .store
            .release_report(report.id, &attempt.owner, now, retry_at)
            .await?
        {
            return self.lease_lost(attempt).await;
        }
        tracing::warn!(
            error,
            ?delay,
            "a dependency is unavailable; the report is handed back without spending an attempt"
        );
        // If the queue is down too, the message comes back after its visibility timeout.
        if let Err(e) = self.queue.retry_later(attempt.receipt(), delay).await {
            tracing::warn!(error = %e, "could not delay the message; it returns after its visibility timeout");
        }
        Ok(Outcome::Postponed { delay })
    }

    /// The report slipped out of this worker's hands mid-render: cancelled by its owner
    /// (discard the output, delete the message) or taken over after the lease expired.
    async fn lease_lost(&self, attempt: &Attempt<'_>) -> quire_core::Result<Outcome> {
        let current = self.store.report(attempt.report.id).await?;
        let cancelled = current.is_some_and(|r| r.status == ReportStatus::Cancelled);
        if !cancelled {
            tracing::warn!("lease lost to another worker; dropping this attempt");
            return Ok(Outcome::LeaseLost);
        }
        tracing::info!("cancelled while rendering; discarding the output");
        // Another holder never writes a cancelled report's output, so the key is ours.
        if let Err(e) = self.storage.delete(&output_key(&attempt.report)).await {
            tracing::warn!(error = %e, "could not delete a cancelled report's output");
        }
        // The receipt may be stale if the lease had lapsed; the message then comes
        // back once and is acknowledged as finished.
        if let Err(e) = self.queue.ack(attempt.receipt()).await {
            tracing::debug!(error = %e, "could not delete a cancelled report's message");
        }
        Ok(Outcome::Cancelled)
    }

    /// The render failed: fails the report for good if retrying cannot help or its
    /// attempts are spent, else records the failed attempt and retries after a backoff.
    async fn fail(
        &self,
        attempt: &Attempt<'_>,
        error: &str,
        retryable: bool,
    ) -> quire_core::Result<Outcome> {
        let report = &attempt.report;
        let attempts = u32::try_from(report.attempts).unwrap_or(u32::MAX);
        if !retryable {
            return self.give_up(attempt, error, false).await;
        }
        if attempts >= self.config.max_attempts {
            return self.give_up(attempt, error, true).await;
        }
        let delay = self.backoff(attempts);
        let now = Utc::now();
        let retry_at = now + chrono::Duration::from_std(delay).unwrap_or_default();
        let end = AttemptEnd::RetryAt(retry_at);
        if !self
            .store
            .fail_attempt(report.id, &attempt.owner, error, end, now)
            .await?
        {
            return self.lease_lost(attempt).await;
        }
        tracing::warn!(error, ?delay, "attempt failed; will retry");
        self.queue.retry_later(attempt.receipt(), delay).await?;
        Ok(Outcome::Retrying { delay })
    }

    /// Records the report as failed for good. A message whose attempts ran out is moved to
    /// the dead-letter queue (where an operator can look at it, or redrive it once the cause
    /// is fixed: the redriven message finds the report finished and is dropped); one that
    /// failed for a reason retrying cannot fix is deleted.
    async fn give_up(
        &self,
        attempt: &Attempt<'_>,
        error: &str,
        attempts_exhausted: bool,
    ) -> quire_core::Result<Outcome> {
        let report = &attempt.report;
        if !self
            .store
            .fail_attempt(
                report.id,
                &attempt.owner,
                error,
                AttemptEnd::GiveUp,
                Utc::now(),
            )
            .await?
        {
            return self.lease_lost(attempt).await;
        }
        tracing::warn!(error, "report failed");
        if attempts_exhausted {
            let reason = format!(
                "report {} failed after {} attempts: {error}",
                report.id, report.attempts
            );
            self.queue.dead_letter(attempt.receipt(), &reason).await?;
        } else {
            self.queue.ack(attempt.receipt()).await?;
        }
        Ok(Outcome::Failed)
    }

    /// Shutdown: hands the report back, due now, and makes its message visible at once.
    async fn release(&self, attempt: &Attempt<'_>) -> quire_core::Result<Outcome> {
        let now = Utc::now();
        self.store
            .release_report(attempt.report.id, &attempt.owner, now, now)
            .await?;
        self.queue
            .retry_later(attempt.receipt(), Duration::ZERO)
            .await?;
        tracing::info!("shutting down; report handed back to the queue");
        Ok(Outcome::Released)
    }

    /// Moves a message that can never succeed to the dead-letter queue.
    async fn poison(&self, receipt: &Receipt, reason: String) -> quire_core::Result<Outcome> {
        tracing::error!(reason, "unprocessable work message; moving it aside");
        self.queue.dead_letter(receipt, &reason).await?;
        Ok(Outcome::Poison { reason })
    }

    /// The heartbeat of a claimed report, reporting `progress`; see [`Heartbeat::run`].
    fn heartbeat(&self, attempt: &Attempt<'_>, progress: Progress) -> Heartbeat {
        Heartbeat {
            store: self.store.clone(),
            queue: self.queue.clone(),
            config: self.config.clone(),
            lease: self.lease_chrono(),
            report_id: attempt.report.id,
            owner: attempt.owner.clone(),
            receipt: attempt.receipt().clone(),
            progress,
        }
    }

    /// A lease owner unique to this claim: the worker's id and a fresh suffix.
    fn lease_owner(&self) -> String {
        format!("{}/{}", self.config.worker_id, Uuid::new_v4().simple())
    }

    fn lease_chrono(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.config.lease).expect("the lease duration fits in chrono")
    }
}

/// Keeps a claimed report this worker's while it renders. Owns everything it needs, so it
/// runs as a task of its own.
struct Heartbeat {
    store: Arc<dyn RecordStore>,
    queue: Arc<dyn WorkQueue>,
    config: WorkerConfig,
    /// How far ahead each renewal moves the lease.
    lease: chrono::Duration,
    report_id: Uuid,
    owner: String,
    receipt: Receipt,
    progress: Progress,
}

impl Heartbeat {
    /// Renews the lease and the message's visibility every `heartbeat`, and writes progress
    /// when it changes. Cancels `lost` when the store says the lease is gone.
    async fn run(self, lost: CancellationToken) {
        let mut written = 0u8;
        // The first look is one interval in, not at once: a report that finishes sooner
        // (most do) writes no progress at all, its completion says 100.
        let period = self.config.progress_interval;
        let started = tokio::time::Instant::now();
        let mut ticker = tokio::time::interval_at(started + period, period);
        let mut last_renewal = started;
        let mut last_check = started;
        loop {
            ticker.tick().await;
            let now = self.progress.get();
            let held = if last_renewal.elapsed() >= self.config.heartbeat {
                last_renewal = tokio::time::Instant::now();
                last_check = last_renewal;
                self.renew().await
            } else if now != written {
                written = now;
                last_check = tokio::time::Instant::now();
                self.store
                    .set_progress(self.report_id, &self.owner, i32::from(written))
                    .await
            } else if last_check.elapsed() >= LEASE_CHECK {
                // No progress to write: still ask whether the report is ours (a cancel
                // clears the lease), so a cancel stops the render within about a second.
                last_check = tokio::time::Instant::now();
                self.store
                    .renew_lease(self.report_id, &self.renewal())
                    .await
            } else {
                continue;
            };
            match held {
                Ok(true) => {}
                Ok(false) => break,
                // A blip: keep rendering; the next tick tries again, and the lease has slack.
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
        lost.cancel();
    }

    /// Extends the message's visibility and renews the lease; `Ok(false)` if it is gone.
    async fn renew(&self) -> quire_core::Result<bool> {
        if let Err(e) = self.queue.extend(&self.receipt, self.config.lease).await {
            tracing::warn!(error = %e, "could not extend the message's visibility");
        }
        self.store
            .renew_lease(self.report_id, &self.renewal())
            .await
    }

    fn renewal(&self) -> Lease {
        Lease {
            owner: self.owner.clone(),
            expires_at: Utc::now() + self.lease,
        }
    }
}

#[cfg(test)]
mod tests {
    use quire_core::queue::DatabaseQueue;
    use quire_core::{ReportFormat, ReportType};
    use quire_testing::records::{new_report, new_user};

    use super::*;
    use crate::WorkerConfig;

    #[tokio::test]
    async fn a_heartbeat_writes_progress_only_once_its_first_interval_has_passed() {
        let (sqlite, _dir) = quire_testing::fresh_sqlite().await;
        let queue = Arc::new(DatabaseQueue::sqlite(sqlite.pool().clone()));
        let store: Arc<dyn RecordStore> = sqlite;
        let user_id = new_user(&*store).await;
        let report = new_report(
            &*store,
            user_id,
            ReportType::Profile,
            ReportFormat::Pdf,
            serde_json::json!({}),
        )
        .await;
        let lease = chrono::Duration::seconds(60);
        let owner = "worker-test/1".to_owned();
        let claim = store
            .claim_report(
                report.id,
                &Lease {
                    owner: owner.clone(),
                    expires_at: Utc::now() + lease,
                },
                Utc::now(),
            )
            .await
            .unwrap();
        assert!(matches!(claim, Claim::Claimed { .. }), "{claim:?}");

        // The render is already at 60 % when the heartbeat starts, as a fast one is.
        let progress = Progress::new();
        progress.set(60);
        let interval = Duration::from_secs(2);
        let heartbeat = Heartbeat {
            store: store.clone(),
            queue,
            config: WorkerConfig {
                progress_interval: interval,
                heartbeat: Duration::from_secs(60),
                ..WorkerConfig::default()
            },
            lease,
            report_id: report.id,
            owner,
            receipt: Receipt("unused.unused".to_owned()),
            progress,
        };
        let started = tokio::time::Instant::now();
        let beating = AbortOnDropHandle::new(tokio::spawn(heartbeat.run(CancellationToken::new())));
        let stored = || async { store.report(report.id).await.unwrap().unwrap().progress };

        // A report that finishes within the interval (most do) writes no progress at all.
        tokio::time::sleep(Duration::from_millis(300)).await;
        if started.elapsed() < interval {
            assert_eq!(
                stored().await,
                0,
                "nothing written before the first interval"
            );
        }
        // A longer render has its progress written after the interval.
        let deadline = started + interval + Duration::from_secs(10);
        while stored().await != 60 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the progress is written once the interval has passed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(started.elapsed() >= interval);
        drop(beating);
    }
}
