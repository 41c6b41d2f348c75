//! [`WorkQueue`] on an Amazon SQS standard queue.
//!
//! The trait was written with SQS semantics, so the mapping is direct:
//!
//! | trait | SQS |
//! | --- | --- |
//! | `send(body, delay)` | `SendMessageBatch` (with the sends of the moment, see [`super::batch`]), `DelaySeconds` = `delay` rounded up, at most 900 s |
//! | `receive(max, wait, visibility)` | `ReceiveMessage`: at most 10 messages, long poll of `wait` rounded to whole seconds (20 s per request; longer waits poll again until `wait` has passed or a message arrived), `VisibilityTimeout` = `visibility` rounded up, at most 12 h; the client's read and operation timeouts are stretched by the poll's length for this call |
//! | `extend` / `retry_later` | `ChangeMessageVisibilityBatch` (rounded up, at most 12 h) |
//! | `ack` | `DeleteMessageBatch` |
//! | `dead_letter` | `SendMessage` of the body to the dead-letter queue, with the reason in the `quire.dead-letter-reason` message attribute, then `DeleteMessage` |
//! | `ping` | `GetQueueAttributes` |
//!
//! A [`Receipt`] is the SQS receipt handle and `receive_count` is SQS's
//! `ApproximateReceiveCount`.
//!
//! Where SQS differs from [`DatabaseQueue`](super::DatabaseQueue):
//!
//! - **Stale receipts are not reliably refused.** SQS accepts `DeleteMessage` for a message
//!   that is already deleted, and may accept an older receipt handle of a message that was
//!   received again (AWS documents that such a delete "succeeds" without deleting; emulators
//!   delete). Correctness never rests on the queue refusing a stale receipt: the record
//!   store's conditional updates and leases decide who may record an outcome, and a worker
//!   that lost its lease never acknowledges. Receipts SQS does refuse
//!   (`ReceiptHandleIsInvalid`, `MessageNotInflight`, "message does not exist or is not
//!   available for visibility timeout change") fail with an [`Error::Queue`] that says
//!   "stale".
//! - **Delays and timeouts are whole seconds** with SQS's limits: a send is delayed at most
//!   15 minutes (a longer delay is clamped and the message may arrive early, which the
//!   conditional updates make harmless); a message stays hidden at most 12 hours after it
//!   was received.
//! - **Dead-lettering needs the body**, which SQS only hands to the receiver: it is kept, per
//!   receipt, for messages received through this `SqsQueue` (or a clone) until they are
//!   acknowledged, retried or dead-lettered (or 12 hours pass). The dead-letter queue is the
//!   one given with [`SqsQueue::with_dead_letter_queue`], else the one the queue's redrive
//!   policy names (looked up on the first dead-letter, so a start while SQS is down does not
//!   fail); with neither, the message is logged and deleted. Independently, the redrive
//!   policy moves a message SQS has delivered `maxReceiveCount` times, which catches a
//!   message whose worker keeps dying.
//! - Standard queues deliver at least once and in no particular order; duplicates are
//!   handled by the worker like any redelivery.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName, SendMessageBatchRequestEntry,
};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::batch::{ACK_LINGER, Batcher, EntryError, EntryResult, SEND_LINGER};
use super::{Delivery, Receipt, WorkQueue};
use crate::{Error, Result};

/// SQS's longest `DelaySeconds`.
pub const MAX_SEND_DELAY: Duration = Duration::from_secs(900);
/// SQS's longest visibility timeout.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
/// SQS's longest single long poll; longer waits are several polls.
pub const MAX_LONG_POLL: Duration = Duration::from_secs(20);
/// SQS's largest batch for one `ReceiveMessage`.
pub const MAX_MESSAGES_PER_RECEIVE: usize = 10;
/// The message attribute that carries the reason on a dead-lettered message.
pub const DEAD_LETTER_REASON_ATTRIBUTE: &str = "quire.dead-letter-reason";

/// How long a message being moved to the dead-letter queue is hidden while that happens.
const MOVE_GRACE: Duration = Duration::from_secs(60);
/// Longest reason stored on a dead-lettered message (message attributes count towards the
/// 256 KiB message size).
const MAX_REASON_LEN: usize = 4096;
/// Longest body excerpt logged when a message is dropped for want of a dead-letter queue.
const MAX_LOGGED_BODY_LEN: usize = 1024;

/// The client's timeouts stretched for a long poll of `seconds`: the answer's first byte
/// may come that late, so the read and operation timeouts get that much more; the connect
/// timeout stays as it is. Without configured timeouts there is nothing to stretch.
fn long_poll_timeouts(client: &Client, seconds: i32) -> aws_sdk_sqs::config::Builder {
    use aws_sdk_sqs::config::timeout::TimeoutConfig;
    let poll = Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    let configured = client.config().timeout_config().cloned();
    let mut timeouts = TimeoutConfig::builder();
    if let Some(configured) = configured {
        if let Some(connect) = configured.connect_timeout() {
            timeouts = timeouts.connect_timeout(connect);
        }
        if let Some(read) = configured.read_timeout() {
            timeouts = timeouts.read_timeout(read + poll);
        }
        if let Some(attempt) = configured.operation_attempt_timeout() {
            timeouts = timeouts.operation_attempt_timeout(attempt + poll);
        }
        if let Some(operation) = configured.operation_timeout() {
            timeouts = timeouts.operation_timeout(operation + poll);
        }
    }
    aws_sdk_sqs::config::Builder::default().timeout_config(timeouts.build())
}

/// The work queue on an SQS queue; see the module docs. Cloning shares the client and the
/// bodies kept for dead-lettering.
#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    /// Given, or found from the redrive policy on first use (`None`: there is none).
    dead_letters: Arc<OnceCell<Option<String>>>,
    held: Arc<Mutex<HashMap<String, Held>>>,
    /// Started on first use, on the runtime of that call.
    batches: Arc<OnceLock<Batches>>,
}

/// One [`Batcher`] per batchable call.
struct Batches {
    send: Batcher<(String, i32)>,
    delete: Batcher<String>,
    visibility: Batcher<(String, i32)>,
}

/// A message received through this queue and not yet let go.
struct Held {
    body: String,
    received_at: Instant,
}

impl SqsQueue {
    /// The queue at `queue_url` (as `GetQueueUrl`/`CreateQueue` return it). Dead letters go
    /// to the queue its redrive policy names; without one, [`WorkQueue::dead_letter`] logs
    /// and deletes.
    pub fn new(client: Client, queue_url: String) -> Self {
        Self {
            client,
            queue_url,
            dead_letters: Arc::default(),
            held: Arc::default(),
            batches: Arc::default(),
        }
    }

    /// Sends dead-lettered messages to the queue at `url` instead of the one the redrive
    /// policy names.
    pub fn with_dead_letter_queue(mut self, url: String) -> Self {
        self.dead_letters = Arc::new(OnceCell::new_with(Some(Some(url))));
        self
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// The URL of the dead-letter queue named by this queue's redrive policy, if it has one
    /// (`GetQueueAttributes` → `RedrivePolicy.deadLetterTargetArn` → `GetQueueUrl`).
    #[tracing::instrument(skip_all)]
    pub async fn dead_letter_queue_url(&self) -> Result<Option<String>> {
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| queue_error("reading the redrive policy", e))?;
        let Some(policy) = attributes
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
        else {
            return Ok(None);
        };
        let policy: serde_json::Value = serde_json::from_str(policy)
            .map_err(|e| Error::queue_caused(format!("the redrive policy is not JSON: {e}"), e))?;
        let arn = policy
            .get("deadLetterTargetArn")
            .and_then(|arn| arn.as_str())
            .ok_or_else(|| {
                Error::queue("the redrive policy names no deadLetterTargetArn".to_owned())
            })?;
        // arn:PARTITION:sqs:REGION:ACCOUNT:NAME
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [_, _, _, _, account, name] = parts.as_slice() else {
            return Err(Error::queue(format!(
                "malformed dead-letter queue ARN `{arn}`"
            )));
        };
        let found = self
            .client
            .get_queue_url()
            .queue_name(*name)
            .queue_owner_aws_account_id(*account)
            .send()
            .await
            .map_err(|e| queue_error("looking up the dead-letter queue", e))?;
        Ok(found.queue_url().map(str::to_owned))
    }

    /// Where dead letters go: the configured queue, else the redrive policy's, looked up
    /// once (a failed lookup is tried again next time).
    async fn dead_letter_target(&self) -> Result<Option<&str>> {
        let url = self
            .dead_letters
            .get_or_try_init(|| self.dead_letter_queue_url())
            .await?;
        Ok(url.as_deref())
    }

    /// `ChangeMessageVisibility`, in a `ChangeMessageVisibilityBatch` with whatever else
    /// is being changed at the moment.
    async fn change_visibility(
        &self,
        action: &str,
        receipt: &Receipt,
        visibility: Duration,
    ) -> Result<()> {
        self.batches()
            .visibility
            .submit((receipt.0.clone(), visibility_seconds(visibility)))
            .await
            .map_err(|e| entry_error(action, e))
    }

    /// `DeleteMessage`, in a `DeleteMessageBatch` with the other deletes of the moment.
    async fn delete(&self, receipt: &Receipt) -> Result<()> {
        self.batches()
            .delete
            .submit(receipt.0.clone())
            .await
            .map_err(|e| entry_error("deleting a message", e))?;
        self.let_go(receipt);
        Ok(())
    }

    /// The batchers, started on first use (so on a Tokio runtime).
    fn batches(&self) -> &Batches {
        self.batches.get_or_init(|| {
            let (client, url) = (self.client.clone(), self.queue_url.clone());
            let send = Batcher::start(SEND_LINGER, move |entries: Vec<(String, i32)>| {
                send_batch(client.clone(), url.clone(), entries)
            });
            let (client, url) = (self.client.clone(), self.queue_url.clone());
            let delete = Batcher::start(ACK_LINGER, move |entries: Vec<String>| {
                delete_batch(client.clone(), url.clone(), entries)
            });
            let (client, url) = (self.client.clone(), self.queue_url.clone());
            let visibility = Batcher::start(ACK_LINGER, move |entries: Vec<(String, i32)>| {
                visibility_batch(client.clone(), url.clone(), entries)
            });
            Batches {
                send,
                delete,
                visibility,
            }
        })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        // A panic while holding the lock leaves a plain map behind, still usable.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn let_go(&self, receipt: &Receipt) {
        self.held().remove(&receipt.0);
    }
}

impl fmt::Debug for SqsQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsQueue")
            .field("queue_url", &self.queue_url)
            .field("dead_letter_queue_url", &self.dead_letters.get())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl WorkQueue for SqsQueue {
    #[tracing::instrument(skip_all)]
    async fn send(&self, body: &str, delay: Duration) -> Result<()> {
        if delay > MAX_SEND_DELAY {
            tracing::warn!(
                ?delay,
                "SQS delays a message at most 15 minutes; it may be delivered early"
            );
        }
        self.batches()
            .send
            .submit((body.to_owned(), seconds_up(delay.min(MAX_SEND_DELAY))))
            .await
            .map_err(|e| entry_error("sending a message", e))
    }

    #[tracing::instrument(skip_all, fields(max))]
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = i32::try_from(max.min(MAX_MESSAGES_PER_RECEIVE)).expect("at most 10");
        let visibility = visibility_seconds(visibility);
        let deadline = Instant::now().checked_add(wait);
        loop {
            let remaining = deadline.map_or(MAX_LONG_POLL, |d| {
                d.saturating_duration_since(Instant::now())
            });
            let poll = seconds_rounded(remaining.min(MAX_LONG_POLL));
            let received = self
                .client
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(max)
                .wait_time_seconds(poll)
                .visibility_timeout(visibility)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .customize()
                .config_override(long_poll_timeouts(&self.client, poll))
                .send()
                .await
                .map_err(|e| queue_error("receiving messages", e))?;
            let messages = received.messages.unwrap_or_default();
            let out_of_time = deadline.is_some_and(|d| Instant::now() >= d);
            if messages.is_empty() && poll > 0 && !out_of_time {
                continue;
            }
            let now = Instant::now();
            let mut held = self.held();
            held.retain(|_, h| now.duration_since(h.received_at) < MAX_VISIBILITY);
            return messages
                .into_iter()
                .map(|message| {
                    let receipt = message.receipt_handle.ok_or_else(|| {
                        Error::queue("SQS returned a message without a receipt handle")
                    })?;
                    let body = message.body.unwrap_or_default();
                    let receive_count = message
                        .attributes
                        .as_ref()
                        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                        .and_then(|count| count.parse().ok())
                        .unwrap_or(1);
                    held.insert(
                        receipt.clone(),
                        Held {
                            body: body.clone(),
                            received_at: now,
                        },
                    );
                    Ok(Delivery {
                        body,
                        receipt: Receipt(receipt),
                        receive_count,
                    })
                })
                .collect();
        }
    }

    #[tracing::instrument(skip_all)]
    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<()> {
        self.change_visibility("extending a message's visibility", receipt, visibility)
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn ack(&self, receipt: &Receipt) -> Result<()> {
        self.delete(receipt).await
    }

    #[tracing::instrument(skip_all)]
    async fn retry_later(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        self.change_visibility("making a message visible again", receipt, delay)
            .await?;
        self.let_go(receipt);
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(reason = %reason))]
    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        let body = self.held().get(&receipt.0).map(|h| h.body.clone());
        let Some(dead_letter_queue_url) = self.dead_letter_target().await? else {
            tracing::warn!(
                body = body.as_deref().map(|b| truncate(b, MAX_LOGGED_BODY_LEN)),
                "no dead-letter queue is configured; deleting the message"
            );
            return self.delete(receipt).await;
        };
        let Some(body) = body else {
            return Err(Error::queue(
                "cannot dead-letter a message that was not received through this SqsQueue \
                 (SQS gives its body only to the receiver); it will reappear, and the queue's \
                 redrive policy moves it after maxReceiveCount receives"
                    .to_owned(),
            ));
        };
        // Hide it while it moves. This also fails, before anything is copied, when SQS
        // refuses the receipt (the message was deleted or is no longer in flight).
        self.change_visibility("dead-lettering a message", receipt, MOVE_GRACE)
            .await?;
        let reason = match truncate(reason, MAX_REASON_LEN) {
            "" => "(no reason given)",
            reason => reason,
        };
        let reason = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(reason)
            .build()
            .map_err(|e| Error::queue_caused(format!("dead-letter reason attribute: {e}"), e))?;
        self.client
            .send_message()
            .queue_url(dead_letter_queue_url)
            .message_body(body)
            .message_attributes(DEAD_LETTER_REASON_ATTRIBUTE, reason)
            .send()
            .await
            .map_err(|e| queue_error("sending a message to the dead-letter queue", e))?;
        // Should this fail, the message reappears and is moved again: a duplicate in the
        // dead-letter queue, never a lost message.
        self.delete(receipt).await
    }

    #[tracing::instrument(skip_all)]
    async fn ping(&self) -> Result<()> {
        self.client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| queue_error("reaching the queue", e))?;
        Ok(())
    }

    /// `ApproximateNumberOfMessages` and `…NotVisible` of the queue, and
    /// `ApproximateNumberOfMessages` of its dead-letter queue (0 without one).
    #[tracing::instrument(skip_all)]
    async fn depth(&self) -> Result<super::Depth> {
        let visible = QueueAttributeName::ApproximateNumberOfMessages;
        let in_flight = QueueAttributeName::ApproximateNumberOfMessagesNotVisible;
        let main = self
            .attributes(&self.queue_url, &[visible.clone(), in_flight.clone()])
            .await?;
        let dead_letters = match self.dead_letter_target().await? {
            Some(url) => self.attributes(url, std::slice::from_ref(&visible)).await?[0],
            None => 0,
        };
        Ok(super::Depth {
            visible: main[0],
            in_flight: main[1],
            dead_letters,
        })
    }
}

impl SqsQueue {
    /// Numeric attributes of the queue at `url`, in the order asked (0 when absent).
    async fn attributes(&self, url: &str, names: &[QueueAttributeName]) -> Result<Vec<u64>> {
        let answer = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .set_attribute_names(Some(names.to_vec()))
            .send()
            .await
            .map_err(|e| queue_error("reading the queue's attributes", e))?;
        let attributes = answer.attributes();
        Ok(names
            .iter()
            .map(|name| {
                attributes
                    .and_then(|a| a.get(name))
                    .and_then(|value| value.parse().ok())
                    .unwrap_or(0)
            })
            .collect())
    }
}

/// Whether SQS's error `code` (and `message`) says a receipt handle was refused.
fn refuses_receipt(code: Option<&str>, message: Option<&str>) -> bool {
    match code {
        Some("ReceiptHandleIsInvalid" | "MessageNotInflight") => true,
        Some(code) if code.ends_with("MessageNotInflight") => true,
        // The single calls say `InvalidParameterValue`; batch entries (LocalStack) say
        // `InvalidParameterValueException`.
        Some(code) if code.starts_with("InvalidParameterValue") => {
            message.is_some_and(|m| m.contains("ReceiptHandle"))
        }
        _ => false,
    }
}

/// The message of a refused receipt: the text the worker and the contract look for.
fn stale_message(action: &str, text: &str) -> String {
    format!(
        "{action}: the receipt is stale or invalid (the message was deleted or received \
         again, or the handle is malformed): {text}"
    )
}

/// An [`Error::Queue`] that names what failed and shows the SDK error with its causes
/// (which never include credentials). Receipts SQS refuses say "stale".
fn queue_error<E, R>(action: &str, error: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    let stale = refuses_receipt(error.code(), error.message());
    let text = DisplayErrorContext(&error).to_string();
    let message = if stale {
        stale_message(action, &text)
    } else {
        format!("{action}: {text}")
    };
    Error::queue_caused(message, error)
}

/// The [`Error::Queue`] of one batch entry that failed.
fn entry_error(action: &str, error: EntryError) -> Error {
    if error.stale {
        Error::queue(stale_message(action, &error.text))
    } else {
        Error::queue(format!("{action}: {}", error.text))
    }
}

/// The result of each of `count` entries (ids `0`…) from a batch answer's failed entries.
fn entry_results<'a>(
    count: usize,
    failed: impl IntoIterator<Item = &'a BatchResultErrorEntry>,
) -> Vec<EntryResult> {
    let mut results: Vec<EntryResult> = vec![Ok(()); count];
    for failure in failed {
        if let Some(slot) = failure
            .id()
            .parse::<usize>()
            .ok()
            .and_then(|i| results.get_mut(i))
        {
            *slot = Err(EntryError {
                stale: refuses_receipt(Some(failure.code()), failure.message()),
                text: format!(
                    "{}: {}",
                    failure.code(),
                    failure.message().unwrap_or("no message")
                ),
            });
        }
    }
    results
}

/// Every entry fails the same way: the whole request did.
fn all_failed<E, R>(count: usize, action: &str, error: SdkError<E, R>) -> Vec<EntryResult>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    let stale = refuses_receipt(error.code(), error.message());
    let text = format!("{action}: {}", DisplayErrorContext(&error));
    vec![Err(EntryError { stale, text }); count]
}

/// `SendMessageBatch` of `(body, delay seconds)` entries.
async fn send_batch(client: Client, url: String, entries: Vec<(String, i32)>) -> Vec<EntryResult> {
    let count = entries.len();
    let built: std::result::Result<Vec<_>, _> = entries
        .into_iter()
        .enumerate()
        .map(|(i, (body, delay))| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body)
                .delay_seconds(delay)
                .build()
        })
        .collect();
    let request = match built {
        Ok(entries) => client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries)),
        Err(e) => {
            return vec![
                Err(EntryError {
                    stale: false,
                    text: e.to_string()
                });
                count
            ];
        }
    };
    match request.send().await {
        Ok(answer) => entry_results(count, answer.failed()),
        Err(e) => all_failed(count, "SendMessageBatch", e),
    }
}

/// `DeleteMessageBatch` of receipt handles.
async fn delete_batch(client: Client, url: String, receipts: Vec<String>) -> Vec<EntryResult> {
    let count = receipts.len();
    let built: std::result::Result<Vec<_>, _> = receipts
        .into_iter()
        .enumerate()
        .map(|(i, receipt)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(receipt)
                .build()
        })
        .collect();
    let request = match built {
        Ok(entries) => client
            .delete_message_batch()
            .queue_url(url)
            .set_entries(Some(entries)),
        Err(e) => {
            return vec![
                Err(EntryError {
                    stale: false,
                    text: e.to_string()
                });
                count
            ];
        }
    };
    match request.send().await {
        Ok(answer) => entry_results(count, answer.failed()),
        Err(e) => all_failed(count, "DeleteMessageBatch", e),
    }
}

/// `ChangeMessageVisibilityBatch` of `(receipt handle, visibility seconds)` entries.
async fn visibility_batch(
    client: Client,
    url: String,
    entries: Vec<(String, i32)>,
) -> Vec<EntryResult> {
    let count = entries.len();
    let built: std::result::Result<Vec<_>, _> = entries
        .into_iter()
        .enumerate()
        .map(|(i, (receipt, visibility))| {
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(receipt)
                .visibility_timeout(visibility)
                .build()
        })
        .collect();
    let request = match built {
        Ok(entries) => client
            .change_message_visibility_batch()
            .queue_url(url)
            .set_entries(Some(entries)),
        Err(e) => {
            return vec![
                Err(EntryError {
                    stale: false,
                    text: e.to_string()
                });
                count
            ];
        }
    };
    match request.send().await {
        Ok(answer) => entry_results(count, answer.failed()),
        Err(e) => all_failed(count, "ChangeMessageVisibilityBatch", e),
    }
}

/// Whole seconds, rounded up, as SQS takes them.
fn seconds_up(duration: Duration) -> i32 {
    let seconds = duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() > 0));
    i32::try_from(seconds).unwrap_or(i32::MAX)
}

/// A visibility timeout in whole seconds, rounded up (never shorter than asked) and capped
/// at SQS's 12 hours.
fn visibility_seconds(visibility: Duration) -> i32 {
    seconds_up(visibility.min(MAX_VISIBILITY))
}

/// Whole seconds, rounded to the nearest.
fn seconds_rounded(duration: Duration) -> i32 {
    let seconds = duration
        .saturating_add(Duration::from_millis(500))
        .as_secs();
    i32::try_from(seconds).unwrap_or(i32::MAX)
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_become_whole_seconds_within_sqs_limits() {
        assert_eq!(seconds_up(Duration::ZERO), 0);
        assert_eq!(seconds_up(Duration::from_millis(1)), 1);
        assert_eq!(seconds_up(Duration::from_secs(2)), 2);
        assert_eq!(visibility_seconds(Duration::from_secs(86_400)), 43_200);
        assert_eq!(seconds_rounded(Duration::from_millis(499)), 0);
        assert_eq!(seconds_rounded(Duration::from_millis(1500)), 2);
        assert_eq!(seconds_up(Duration::MAX), i32::MAX);
        assert_eq!(seconds_rounded(Duration::MAX), i32::MAX);
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
