//! One delivery from receipt to outcome ([`Worker::process`]) and the loop around it
//! ([`Worker::run`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use quire_core::dispatch::GiveUp;
use quire_core::model::{AttemptEnd, Claim, Lease, Report, StoredOutput};
use quire_core::queue::{Delivery, Receipt};
use quire_core::storage::{output_key, output_meta};
use quire_core::{ReportStatus, WorkMessage};
use quire_render::Progress;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;
use uuid::Uuid;

use crate::Worker;
use crate::render::{FailureKind, RenderFailure, RenderJob};

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

    async fn try_process(
        &self,
        delivery: &Delivery,
        hard_stop: &CancellationToken,
    ) -> quire_core::Result<Outcome> {
        let receipt = &delivery.receipt;
        let message = match WorkMessage::from_body(&delivery.body) {
            Ok(m) => m,
            Err(reason) => return self.poison(receipt, reason).await,
        };
        let span = tracing::info_span!("report", report_id = %message.report_id, attempt = tracing::field::Empty);
        async move {
            let now = Utc::now();
            let lease = Lease { owner: self.lease_owner(), expires_at: now + self.lease_chrono() };
            let report = match self.store.claim_report(message.report_id, &lease, now).await? {
                Claim::Claimed(report) => report,
                Claim::Missing => {
                    return self
                        .poison(receipt, format!("report {} does not exist", message.report_id))
                        .await;
                }
                Claim::Finished(report) => {
                    tracing::info!(status = %report.status, "already finished; acknowledging duplicate delivery");
                    self.queue.ack(receipt).await?;
                    return Ok(Outcome::AlreadyFinished);
                }
                Claim::Leased(report) => {
                    let remaining = report
                        .lease_expires_at
                        .and_then(|t| (t - now).to_std().ok())
                        .unwrap_or(self.config.lease);
                    tracing::info!(?remaining, "another worker holds the lease; deferring");
                    self.queue.retry_later(receipt, remaining + Duration::from_secs(1)).await?;
                    return Ok(Outcome::Deferred);
                }
            };
            tracing::Span::current().record("attempt", report.attempts);
            if report.attempts > self.config.max_attempts as i32 {
                let error = GiveUp::Attempts(self.config.max_attempts)
                    .message(report.error_message.as_deref());
                return self.give_up(&report, &lease.owner, receipt, &error, true).await;
            }
            self.execute(report, lease, delivery, hard_stop).await
        }
        .instrument(span)
        .await
    }

    /// Renders a claimed report while a heartbeat keeps the lease, stores it and records
    /// the outcome. An output an earlier attempt stored (it died before recording it) is
    /// adopted instead of rendered and stored again, so a report is written once.
    async fn execute(
        &self,
        report: Report,
        lease: Lease,
        delivery: &Delivery,
        hard_stop: &CancellationToken,
    ) -> quire_core::Result<Outcome> {
        let owner = lease.owner.clone();
        let progress = Progress::new();
        let lost = CancellationToken::new();
        let heartbeat = self.heartbeat(
            report.id,
            owner.clone(),
            delivery.receipt.clone(),
            progress.clone(),
            lost.clone(),
        );
        // Aborted when this function returns by any path (`?` included): an orphaned
        // heartbeat would keep the lease alive and the report `running` forever.
        let _heartbeat = AbortOnDropHandle::new(tokio::spawn(heartbeat.in_current_span()));

        let key = output_key(&report);
        match self.storage.stored(&key).await {
            Ok(Some(stored)) => {
                tracing::info!(
                    size = stored.size,
                    "adopting the output an earlier attempt stored"
                );
                self.record(&report, &owner, &delivery.receipt, stored)
                    .await
            }
            Ok(None) => {
                self.render_and_store(&report, &owner, &key, delivery, &progress, &lost, hard_stop)
                    .await
            }
            Err(e) => {
                let error = format!("looking for an earlier output failed: {e}");
                self.postpone(&report, &owner, delivery, &error).await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn render_and_store(
        &self,
        report: &Report,
        owner: &str,
        key: &str,
        delivery: &Delivery,
        progress: &Progress,
        lost: &CancellationToken,
        hard_stop: &CancellationToken,
    ) -> quire_core::Result<Outcome> {
        let receipt = &delivery.receipt;
        let workdir = tempfile::tempdir()?;
        let stopping = CancellationToken::new();
        let job = RenderJob {
            store: self.store.clone(),
            http: self.http.clone(),
            sources: self.sources.clone(),
            report: report.clone(),
            dir: workdir.path().to_owned(),
            progress: progress.clone(),
            stop: stopping.clone(),
        };
        let mut render = tokio::spawn(job.run().in_current_span());
        let rendered = tokio::select! {
            result = &mut render => result.unwrap_or_else(|e| Err(RenderFailure {
                message: format!("the renderer crashed: {e}"),
                kind: FailureKind::Permanent,
            })),
            _ = lost.cancelled() => {
                stop(progress, &stopping, render).await;
                return self.lease_lost(report, receipt).await;
            }
            _ = hard_stop.cancelled() => {
                stop(progress, &stopping, render).await;
                return self.release(report, owner, receipt).await;
            }
        };
        let path = match rendered {
            Ok(path) => path,
            Err(RenderFailure { message, kind }) => {
                return match kind {
                    FailureKind::Permanent => {
                        self.fail(report, owner, delivery, &message, false).await
                    }
                    FailureKind::Retryable => {
                        self.fail(report, owner, delivery, &message, true).await
                    }
                    FailureKind::Unavailable => {
                        self.postpone(report, owner, delivery, &message).await
                    }
                    FailureKind::Stopped => self.lease_lost(report, receipt).await,
                };
            }
        };

        // Checked right before writing, so a worker that lost the report does not
        // overwrite the output of the one that took over.
        let renewed = Lease {
            owner: owner.to_owned(),
            expires_at: Utc::now() + self.lease_chrono(),
        };
        if !self.store.renew_lease(report.id, &renewed).await? {
            return self.lease_lost(report, receipt).await;
        }
        match self
            .storage
            .put_file(key, &path, &output_meta(report))
            .await
        {
            Ok(stored) => self.record(report, owner, receipt, stored).await,
            Err(e) => {
                let error = format!("storing the output failed: {e}");
                self.postpone(report, owner, delivery, &error).await
            }
        }
    }

    /// Records a stored output as the report's completion, then deletes the message.
    async fn record(
        &self,
        report: &Report,
        owner: &str,
        receipt: &Receipt,
        stored: StoredOutput,
    ) -> quire_core::Result<Outcome> {
        if !self
            .store
            .complete_report(report.id, owner, &stored, Utc::now())
            .await?
        {
            return self.lease_lost(report, receipt).await;
        }
        self.queue.ack(receipt).await?;
        tracing::info!(size = stored.size, "report completed");
        Ok(Outcome::Completed)
    }

    /// One of Quire's own dependencies (storage, the database, the queue) failed, not the
    /// report: hands the report back without spending an attempt and tries again after a
    /// backoff that grows with every delivery. Only a report older than the configured
    /// maximum age fails, so an outage ends every report eventually, one way or the other.
    async fn postpone(
        &self,
        report: &Report,
        owner: &str,
        delivery: &Delivery,
        error: &str,
    ) -> quire_core::Result<Outcome> {
        let now = Utc::now();
        let age = (now - report.created_at).to_std().unwrap_or_default();
        if age > self.config.max_age {
            let error = GiveUp::Age(self.config.max_age).message(Some(error));
            return self
                .give_up(report, owner, &delivery.receipt, &error, false)
                .await;
        }
        let delay = self.backoff(delivery.receive_count.max(1));
        let retry_at = now + chrono::Duration::from_std(delay).unwrap_or_default();
        if !self
            .store
            .release_report(report.id, owner, now, retry_at)
            .await?
        {
            return self.lease_lost(report, &delivery.receipt).await;
        }
        tracing::warn!(
            error,
            ?delay,
            "a dependency is unavailable; the report is handed back without spending an attempt"
        );
        // If the queue is down too, the message comes back after its visibility timeout.
        if let Err(e) = self.queue.retry_later(&delivery.receipt, delay).await {
            tracing::warn!(error = %e, "could not delay the message; it returns after its visibility timeout");
        }
        Ok(Outcome::Postponed { delay })
    }

    /// The report slipped out of this worker's hands mid-render: cancelled by its owner
    /// (discard the output, delete the message) or taken over after the lease expired.
    async fn lease_lost(&self, report: &Report, receipt: &Receipt) -> quire_core::Result<Outcome> {
        let current = self.store.report(report.id).await?;
        match current {
            Some(r) if r.status == ReportStatus::Cancelled => {
                tracing::info!("cancelled while rendering; discarding the output");
                // Another holder never writes a cancelled report's output, so the key is ours.
                if let Err(e) = self.storage.delete(&output_key(report)).await {
                    tracing::warn!(error = %e, "could not delete a cancelled report's output");
                }
                // The receipt may be stale if the lease had lapsed; the message then comes
                // back once and is acknowledged as finished.
                if let Err(e) = self.queue.ack(receipt).await {
                    tracing::debug!(error = %e, "could not delete a cancelled report's message");
                }
                Ok(Outcome::Cancelled)
            }
            _ => {
                tracing::warn!("lease lost to another worker; dropping this attempt");
                Ok(Outcome::LeaseLost)
            }
        }
    }

    async fn fail(
        &self,
        report: &Report,
        owner: &str,
        delivery: &Delivery,
        error: &str,
        retryable: bool,
    ) -> quire_core::Result<Outcome> {
        let receipt = &delivery.receipt;
        let attempts = u32::try_from(report.attempts).unwrap_or(u32::MAX);
        if !retryable {
            return self.give_up(report, owner, receipt, error, false).await;
        }
        if attempts >= self.config.max_attempts {
            return self.give_up(report, owner, receipt, error, true).await;
        }
        let delay = self.backoff(attempts);
        let now = Utc::now();
        let retry_at = now + chrono::Duration::from_std(delay).unwrap_or_default();
        if !self
            .store
            .fail_attempt(report.id, owner, error, AttemptEnd::RetryAt(retry_at), now)
            .await?
        {
            return self.lease_lost(report, receipt).await;
        }
        tracing::warn!(error, ?delay, "attempt failed; will retry");
        self.queue.retry_later(receipt, delay).await?;
        Ok(Outcome::Retrying { delay })
    }

    /// Records the report as failed for good. A message whose attempts ran out is moved to
    /// the dead-letter queue (where an operator can look at it, or redrive it once the cause
    /// is fixed: the redriven message finds the report finished and is dropped); one that
    /// failed for a reason retrying cannot fix is deleted.
    async fn give_up(
        &self,
        report: &Report,
        owner: &str,
        receipt: &Receipt,
        error: &str,
        attempts_exhausted: bool,
    ) -> quire_core::Result<Outcome> {
        if !self
            .store
            .fail_attempt(report.id, owner, error, AttemptEnd::GiveUp, Utc::now())
            .await?
        {
            return self.lease_lost(report, receipt).await;
        }
        tracing::warn!(error, "report failed");
        if attempts_exhausted {
            let reason = format!(
                "report {} failed after {} attempts: {error}",
                report.id, report.attempts
            );
            self.queue.dead_letter(receipt, &reason).await?;
        } else {
            self.queue.ack(receipt).await?;
        }
        Ok(Outcome::Failed)
    }

    async fn release(
        &self,
        report: &Report,
        owner: &str,
        receipt: &Receipt,
    ) -> quire_core::Result<Outcome> {
        let now = Utc::now();
        self.store
            .release_report(report.id, owner, now, now)
            .await?;
        self.queue.retry_later(receipt, Duration::ZERO).await?;
        tracing::info!("shutting down; report handed back to the queue");
        Ok(Outcome::Released)
    }

    async fn poison(&self, receipt: &Receipt, reason: String) -> quire_core::Result<Outcome> {
        tracing::error!(reason, "unprocessable work message; moving it aside");
        self.queue.dead_letter(receipt, &reason).await?;
        Ok(Outcome::Poison { reason })
    }

    /// Renews the lease and the message's visibility every `heartbeat`, and writes progress
    /// when it changes. Cancels `lost` when the store says the lease is gone.
    fn heartbeat(
        &self,
        report_id: Uuid,
        owner: String,
        receipt: Receipt,
        progress: Progress,
        lost: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let store = self.store.clone();
        let queue = self.queue.clone();
        let config = self.config.clone();
        let lease = self.lease_chrono();
        async move {
            let mut written = 0u8;
            let mut ticker = tokio::time::interval(config.progress_interval);
            let mut last_renewal = tokio::time::Instant::now();
            let mut last_check = last_renewal;
            let renewal = || Lease {
                owner: owner.clone(),
                expires_at: Utc::now() + lease,
            };
            loop {
                ticker.tick().await;
                let now = progress.get();
                let held = if last_renewal.elapsed() >= config.heartbeat {
                    last_renewal = tokio::time::Instant::now();
                    last_check = last_renewal;
                    if let Err(e) = queue.extend(&receipt, config.lease).await {
                        tracing::warn!(error = %e, "could not extend the message's visibility");
                    }
                    store.renew_lease(report_id, &renewal()).await
                } else if now != written {
                    written = now;
                    last_check = tokio::time::Instant::now();
                    store
                        .set_progress(report_id, &owner, i32::from(written))
                        .await
                } else if last_check.elapsed() >= LEASE_CHECK {
                    // No progress to write: still ask whether the report is ours (a cancel
                    // clears the lease), so a cancel stops the render within about a second.
                    last_check = tokio::time::Instant::now();
                    store.renew_lease(report_id, &renewal()).await
                } else {
                    continue;
                };
                match held {
                    Ok(true) => {}
                    Ok(false) => {
                        lost.cancel();
                        return;
                    }
                    // A blip: keep rendering; the next tick tries again, and the lease has slack.
                    Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                }
            }
        }
    }

    fn lease_owner(&self) -> String {
        format!("{}/{}", self.config.worker_id, Uuid::new_v4().simple())
    }

    fn lease_chrono(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.config.lease).expect("the lease duration fits in chrono")
    }

    /// Shutdown came during a receive: lets it finish (its long poll is bounded) and makes
    /// whatever it took visible again at once, for another worker to start now rather than
    /// after the visibility timeout.
    async fn hand_back(
        self: Arc<Self>,
        receive: tokio::task::JoinHandle<quire_core::Result<Vec<Delivery>>>,
    ) {
        let Ok(Ok(deliveries)) = receive.await else {
            return;
        };
        for delivery in deliveries {
            match self
                .queue
                .retry_later(&delivery.receipt, Duration::ZERO)
                .await
            {
                Ok(()) => tracing::info!(
                    "shutting down; a message received but not started was handed back"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "could not hand a received message back; it returns after its visibility timeout")
                }
            }
        }
    }

    /// Receives and processes messages until `shutdown` fires, at most `concurrency` at once.
    ///
    /// On shutdown it stops receiving and gives in-flight renders `shutdown_grace` to finish;
    /// those still running then hand their report back, so nothing is lost: the next worker
    /// (or the next start of this one) picks it up.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let hard_stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tracing::info!(worker_id = %self.config.worker_id, concurrency = self.config.concurrency, "worker started");
        let mut failures = 0u32;
        let mut interrupted = None;
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            // Take as many messages as there are free slots (the one we hold included).
            let free = 1 + slots.available_permits();
            // Its own task: dropped mid-poll at shutdown, a receive could take messages that
            // nobody starts and that stay hidden for a whole visibility timeout.
            let mut receive = {
                let (queue, wait, lease) =
                    (self.queue.clone(), self.config.poll_wait, self.config.lease);
                tokio::spawn(async move { queue.receive(free, wait, lease).await })
            };
            let received = tokio::select! {
                _ = shutdown.cancelled() => {
                    interrupted = Some(receive);
                    break;
                }
                r = &mut receive => r.unwrap_or_else(|e| Err(quire_core::Error::queue(format!("the receive task failed: {e}")))),
            };
            let deliveries = match received {
                Ok(d) => {
                    failures = 0;
                    d
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let delay = self.backoff(failures).min(Duration::from_secs(30));
                    tracing::warn!(error = %e, ?delay, "receiving work failed; backing off");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            let mut permit = Some(permit);
            for delivery in deliveries {
                let permit = match permit.take() {
                    Some(p) => p,
                    None => slots
                        .clone()
                        .try_acquire_owned()
                        .expect("we received no more than the free slots"),
                };
                let worker = self.clone();
                let hard_stop = hard_stop.clone();
                tasks.spawn(async move {
                    let outcome = worker.process(&delivery, &hard_stop).await;
                    tracing::debug!(?outcome, "delivery processed");
                    drop(permit);
                });
            }
            // Reap finished tasks so the set does not grow without bound.
            while tasks.try_join_next().is_some() {}
        }

        if let Some(receive) = interrupted {
            tasks.spawn(self.clone().hand_back(receive));
        }
        while tasks.try_join_next().is_some() {}
        tracing::info!(in_flight = tasks.len(), grace = ?self.config.shutdown_grace, "worker stopping");
        let drained = tokio::time::timeout(self.config.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                in_flight = tasks.len(),
                "grace period over; handing in-flight reports back"
            );
            hard_stop.cancel();
            while tasks.join_next().await.is_some() {}
        }
        tracing::info!("worker stopped");
    }
}
