//! The receive loop, [`Worker::run`]: long-polls the work queue for as many messages as
//! there are free slots (a semaphore of `concurrency` permits; under a backlog it waits up
//! to 50 ms for more slots first, so one receive feeds several), hands each to
//! [`Worker::process`] on a task of its own, and backs off while receiving fails.
//!
//! On shutdown it stops receiving, hands back at once whatever an interrupted receive
//! took, and gives in-flight deliveries `shutdown_grace` before asking them to hand their
//! reports back. What happens to one delivery is `delivery.rs`'s business.

use std::sync::Arc;
use std::time::Duration;

use quire_core::queue::Delivery;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::Worker;

/// Most messages one receive asks for (SQS's batch limit).
const MAX_RECEIVE: usize = 10;
/// Under a backlog, how long a receive waits for more slots to free up before it asks for
/// what it has.
const GATHER: Duration = Duration::from_millis(50);
/// How long a stopping worker waits for its last deletes.
const ACKS_GRACE: Duration = Duration::from_secs(10);

impl Worker {
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
        // The last receive got all it asked for: there is a backlog.
        let mut backlog = false;
        let batch = self.config.concurrency.clamp(1, MAX_RECEIVE);
        loop {
            let mut permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            // With a backlog, wait a moment for more slots to free up, so one receive brings
            // work for several (on SQS every receive is a billed request).
            if backlog && batch > 1 {
                let more = u32::try_from(batch - 1).unwrap_or(u32::MAX);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    extra = tokio::time::timeout(GATHER, slots.clone().acquire_many_owned(more)) => {
                        if let Ok(Ok(extra)) = extra {
                            permit.merge(extra);
                        }
                    }
                }
            }
            // Take as many messages as there are free slots (those we hold included).
            let available = u32::try_from(slots.available_permits()).unwrap_or(u32::MAX);
            if available > 0
                && let Ok(extra) = slots.clone().try_acquire_many_owned(available)
            {
                permit.merge(extra);
            }
            let free = permit.num_permits();
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
                    backlog = !d.is_empty() && d.len() >= free;
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
            // One permit per delivery; those no delivery needed go back with `permit`.
            for delivery in deliveries {
                let permit = permit
                    .split(1)
                    .expect("we received no more than the slots we hold");
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
        // Deletes of completed reports' messages still on their way.
        self.acks.close();
        if tokio::time::timeout(ACKS_GRACE, self.acks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "some deletes did not finish; those messages come back and are acknowledged as duplicates"
            );
        }
        tracing::info!("worker stopped");
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
}
