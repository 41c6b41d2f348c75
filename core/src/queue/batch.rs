//! Coalescing concurrent single-message calls into SQS batch calls.
//!
//! `SendMessage`, `DeleteMessage` and `ChangeMessageVisibility` each have a batch form that
//! takes up to ten entries in one request, and on SQS every request is billed. A
//! [`Batcher`] collects the calls that arrive together (concurrent `POST /reports`
//! dispatching, workers acknowledging, heartbeats) and sends them as one request: a batch
//! is flushed when it holds ten entries or a linger after its first entry ([`SEND_LINGER`]
//! for sends, [`ACK_LINGER`] for deletes and visibility changes), whichever comes first, and the next batch starts collecting while the previous one is in flight.
//! Every caller still gets the answer for its own entry: SQS reports success or failure per
//! entry, and a failure of the whole request fails every entry in it.
//!
//! The semantics of the single calls are unchanged, so the [`WorkQueue`](super::WorkQueue)
//! contract holds as before: a send returns once SQS stored the message, an ack once it
//! deleted it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// SQS's largest batch.
pub const MAX_BATCH: usize = 10;
/// How long the first send of a batch waits for companions: a client waits for it.
pub const SEND_LINGER: Duration = Duration::from_millis(5);
/// How long the first delete or visibility change of a batch waits: the outcome is
/// committed already, so only the message's invisibility lasts that much longer.
pub const ACK_LINGER: Duration = Duration::from_millis(50);

/// Why one entry failed.
#[derive(Clone, Debug)]
pub struct EntryError {
    /// SQS refused the entry's receipt handle (deleted, received again, malformed).
    pub stale: bool,
    /// What SQS said, with the error code.
    pub text: String,
}

pub type EntryResult = Result<(), EntryError>;

struct Pending<T> {
    entry: T,
    done: oneshot::Sender<EntryResult>,
}

/// Collects entries of one kind and flushes them in batches through `flush`, which gets
/// up to [`MAX_BATCH`] entries and answers one result per entry, in order.
pub struct Batcher<T> {
    entries: mpsc::UnboundedSender<Pending<T>>,
}

impl<T: Send + 'static> Batcher<T> {
    /// Starts the collecting task on the current Tokio runtime; it ends when the batcher
    /// is dropped.
    pub fn start<F, Fut>(linger: Duration, flush: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<EntryResult>> + Send + 'static,
    {
        let (entries, mut incoming) = mpsc::unbounded_channel::<Pending<T>>();
        let flush = Arc::new(flush);
        tokio::spawn(async move {
            while let Some(first) = incoming.recv().await {
                let mut batch = vec![first];
                let linger = tokio::time::sleep(linger);
                tokio::pin!(linger);
                while batch.len() < MAX_BATCH {
                    tokio::select! {
                        biased;
                        next = incoming.recv() => match next {
                            Some(pending) => batch.push(pending),
                            None => break,
                        },
                        () = &mut linger => break,
                    }
                }
                // In flight on its own, so the next batch collects meanwhile.
                let flush = flush.clone();
                tokio::spawn(async move {
                    let (entries, waiting): (Vec<T>, Vec<oneshot::Sender<EntryResult>>) = batch
                        .into_iter()
                        .map(|pending| (pending.entry, pending.done))
                        .unzip();
                    let mut results = flush(entries).await.into_iter();
                    for done in waiting {
                        let result = results.next().unwrap_or_else(|| {
                            Err(EntryError {
                                stale: false,
                                text: "the batch answered no result for this entry".to_owned(),
                            })
                        });
                        // The caller may have stopped waiting (dropped): nothing to tell.
                        let _ = done.send(result);
                    }
                });
            }
        });
        Self { entries }
    }

    /// Adds `entry` to the next batch and waits for its own result.
    pub async fn submit(&self, entry: T) -> EntryResult {
        let (done, answer) = oneshot::channel();
        let gone = || EntryError {
            stale: false,
            text: "the batching task stopped".to_owned(),
        };
        self.entries
            .send(Pending { entry, done })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn concurrent_entries_share_batches_of_at_most_ten_and_get_their_own_results() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Arc::new(Batcher::start(SEND_LINGER, move |entries: Vec<u32>| {
            seen.lock().unwrap().push(entries.len());
            async move {
                entries
                    .into_iter()
                    .map(|n| {
                        if n % 7 == 0 {
                            Err(EntryError {
                                stale: true,
                                text: format!("no {n}"),
                            })
                        } else {
                            Ok(())
                        }
                    })
                    .collect()
            }
        }));
        let results = futures::future::join_all((1..=25).map(|n| {
            let batcher = batcher.clone();
            async move { (n, batcher.submit(n).await) }
        }))
        .await;
        for (n, result) in results {
            match result {
                Ok(()) => assert_ne!(n % 7, 0),
                Err(e) => assert_eq!(e.text, format!("no {n}")),
            }
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 25);
        assert!(sizes.iter().all(|&n| n <= MAX_BATCH), "{sizes:?}");
        assert_eq!(
            sizes.len(),
            3,
            "25 concurrent entries in three requests: {sizes:?}"
        );
    }

    #[tokio::test]
    async fn a_lone_entry_is_flushed_after_the_linger() {
        let batcher = Batcher::start(ACK_LINGER, |entries: Vec<()>| async move {
            entries.into_iter().map(|()| Ok(())).collect()
        });
        let started = tokio::time::Instant::now();
        batcher.submit(()).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
