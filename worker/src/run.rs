//! One delivery from receipt to outcome ([`Worker::process`]) and the loop around it
//! ([`Worker::run`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use quire_core::model::{Claim, Lease, Report};
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
use crate::render::{RenderFailure, render_report};

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
    /// The message can never succeed (unparseable, unknown report); moved aside.
    Poison { reason: String },
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
                let error = format!(
                    "gave up after {} attempts; last error: {}",
                    self.config.max_attempts,
                    report.error_message.as_deref().unwrap_or("the worker stopped responding")
                );
                return self.give_up(&report, &lease.owner, receipt, &error, true).await;
            }
            self.execute(report, lease, receipt, hard_stop).await
        }
        .instrument(span)
        .await
    }

    /// Renders a claimed report while a heartbeat keeps the lease, then records the outcome.
    async fn execute(
        &self,
        report: Report,
        lease: Lease,
        receipt: &Receipt,
        hard_stop: &CancellationToken,
    ) -> quire_core::Result<Outcome> {
        let owner = lease.owner.clone();
        let progress = Progress::new();
        let lost = CancellationToken::new();
        let workdir = tempfile::tempdir()?;
        let heartbeat = self.heartbeat(
            report.id,
            owner.clone(),
            receipt.clone(),
            progress.clone(),
            lost.clone(),
        );
        // Aborted when this function returns by any path (`?` included): an orphaned
        // heartbeat would keep the lease alive and the report `running` forever.
        let heartbeat = AbortOnDropHandle::new(tokio::spawn(heartbeat.in_current_span()));

        let rendered = tokio::select! {
            result = render_report(self, &report, workdir.path(), &progress) => Some(result),
            _ = lost.cancelled() => None,
            _ = hard_stop.cancelled() => {
                heartbeat.abort();
                return self.release(&report, &owner, receipt).await;
            }
        };

        let outcome = match rendered {
            None => self.lease_lost(&report, receipt).await,
            Some(Ok(path)) => {
                let key = output_key(&report);
                // Checked right before writing, so a worker that lost the report does not
                // overwrite the output of the one that took over.
                let renewed = Lease {
                    owner: owner.clone(),
                    expires_at: Utc::now() + self.lease_chrono(),
                };
                if !self.store.renew_lease(report.id, &renewed).await? {
                    self.lease_lost(&report, receipt).await
                } else {
                    let stored = self
                        .storage
                        .put_file(&key, &path, &output_meta(&report))
                        .await;
                    match stored {
                        Ok(stored) => {
                            if self
                                .store
                                .complete_report(report.id, &owner, &stored, Utc::now())
                                .await?
                            {
                                self.queue.ack(receipt).await?;
                                tracing::info!(size = stored.size, "report completed");
                                Ok(Outcome::Completed)
                            } else {
                                self.lease_lost(&report, receipt).await
                            }
                        }
                        Err(e) => {
                            self.fail(
                                &report,
                                &owner,
                                receipt,
                                &format!("storing the output failed: {e}"),
                                true,
                            )
                            .await
                        }
                    }
                }
            }
            Some(Err(RenderFailure { message, retryable })) => {
                self.fail(&report, &owner, receipt, &message, retryable)
                    .await
            }
        };
        heartbeat.abort();
        outcome
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
        receipt: &Receipt,
        error: &str,
        retryable: bool,
    ) -> quire_core::Result<Outcome> {
        let attempts = u32::try_from(report.attempts).unwrap_or(u32::MAX);
        if !retryable {
            return self.give_up(report, owner, receipt, error, false).await;
        }
        if attempts >= self.config.max_attempts {
            return self.give_up(report, owner, receipt, error, true).await;
        }
        if !self
            .store
            .fail_attempt(report.id, owner, error, false, Utc::now())
            .await?
        {
            return self.lease_lost(report, receipt).await;
        }
        let delay = self.backoff(attempts);
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
            .fail_attempt(report.id, owner, error, true, Utc::now())
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
        self.store
            .release_report(report.id, owner, Utc::now())
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
            loop {
                ticker.tick().await;
                let held = if last_renewal.elapsed() >= config.heartbeat {
                    last_renewal = tokio::time::Instant::now();
                    let renewed = Lease {
                        owner: owner.clone(),
                        expires_at: Utc::now() + lease,
                    };
                    if let Err(e) = queue.extend(&receipt, config.lease).await {
                        tracing::warn!(error = %e, "could not extend the message's visibility");
                    }
                    store.renew_lease(report_id, &renewed).await
                } else {
                    let now = progress.get();
                    if now == written {
                        continue;
                    }
                    written = now;
                    store.set_progress(report_id, &owner, i32::from(now)).await
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
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            // Take as many messages as there are free slots (the one we hold included).
            let free = 1 + slots.available_permits();
            let received = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.queue.receive(free, self.config.poll_wait, self.config.lease) => r,
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
