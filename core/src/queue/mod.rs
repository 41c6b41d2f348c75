//! Work delivery: an at-least-once queue of [`WorkMessage`](crate::WorkMessage) bodies with
//! SQS semantics, so the worker is written once for every implementation.
//!
//! A received message is invisible to other receivers for a visibility timeout; its holder
//! extends that while it works (heartbeat), deletes it ([`WorkQueue::ack`]) once the outcome
//! is committed, or makes it visible again after a delay ([`WorkQueue::retry_later`]) to
//! retry. A message whose holder dies simply reappears when the timeout runs out.

use std::time::Duration;

use async_trait::async_trait;

use crate::Result;

pub mod batch;
pub mod database;
pub mod sqs;

pub use database::DatabaseQueue;
pub use sqs::SqsQueue;

/// Identifies one receipt of a message. It changes on every receive, so a holder whose
/// visibility timeout ran out cannot delete or extend the message another worker now holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Receipt(pub String);

/// One received message.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The raw body; the worker parses it (and moves it aside if it cannot).
    pub body: String,
    pub receipt: Receipt,
    /// How many times this message has been received, this time included.
    pub receive_count: u32,
}

/// An at-least-once work queue. See the module docs.
#[async_trait]
pub trait WorkQueue: Send + Sync + 'static {
    /// Enqueues a body, receivable after `delay`.
    async fn send(&self, body: &str, delay: Duration) -> Result<()>;
    /// Receives up to `max` messages, waiting up to `wait` for the first one (long poll).
    /// Each is hidden from other receivers for `visibility`.
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>>;
    /// Keeps a received message hidden for `visibility` from now (heartbeat).
    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<()>;
    /// Deletes a message whose work is durably done.
    async fn ack(&self, receipt: &Receipt) -> Result<()>;
    /// Makes a received message visible again after `delay` (retry with backoff).
    async fn retry_later(&self, receipt: &Receipt, delay: Duration) -> Result<()>;
    /// Moves a message that can never succeed (unparseable, unknown report) out of the way,
    /// keeping it for inspection where the backend can.
    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()>;
    /// Succeeds when the queue is reachable.
    async fn ping(&self) -> Result<()>;
    /// How many messages wait, are held and were dead-lettered (approximate on SQS).
    async fn depth(&self) -> Result<Depth>;
}

/// A queue's size, as [`WorkQueue::depth`] reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Depth {
    /// Receivable now.
    pub visible: u64,
    /// Received and not deleted, hidden until their visibility timeout or retry delay ends.
    pub in_flight: u64,
    /// In the dead-letter queue (the table's dead-lettered rows).
    pub dead_letters: u64,
}
