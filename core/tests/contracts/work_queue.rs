//! The [`WorkQueue`] contract, run against `DatabaseQueue` on Postgres and on SQLite, and
//! `SqsQueue` on a fresh queue of each AWS API emulator (moto and LocalStack in the test
//! command).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use quire_core::queue::sqs::DEAD_LETTER_REASON_ATTRIBUTE;
use quire_core::queue::{DatabaseQueue, Delivery, Depth, Receipt, SqsQueue, WorkQueue};
use quire_core::{Error, Result};
use quire_testing::aws::Emulator;
use tokio::time::Instant;

/// A queue under test, plus what the contract needs beyond [`WorkQueue`] to observe it.
#[async_trait]
trait QueueUnderTest: WorkQueue {
    /// Dead-lettered messages as (body, reason).
    async fn dead_letters(&self) -> Result<Vec<(String, String)>>;
    /// Another handle on the same queue that shares nothing in-process with this one, as a
    /// second process would have; it finds new messages by polling.
    fn detached(&self) -> Arc<dyn QueueUnderTest>;
    /// Whether every operation with a receipt that is no longer current (the message was
    /// received again, deleted or dead-lettered) fails as stale. SQS gives no such promise;
    /// see [`assert_stale_or_tolerated`].
    fn rejects_stale_receipts(&self) -> bool {
        true
    }
}

type Queue = Arc<dyn QueueUnderTest>;

/// The suite's handles never poll (an hour), so a long poll can only end early by being
/// woken; detached handles poll every 100 ms.
const NEVER: Duration = Duration::from_secs(3600);
const DETACHED_POLL: Duration = Duration::from_millis(100);

struct Database {
    queue: DatabaseQueue,
    /// Builds a new `DatabaseQueue` on the same pool: same table, its own wake-ups.
    fresh: Arc<dyn Fn() -> DatabaseQueue + Send + Sync>,
}

impl Database {
    fn queue(fresh: impl Fn() -> DatabaseQueue + Send + Sync + 'static) -> Queue {
        Arc::new(Database {
            queue: fresh().with_poll_interval(NEVER),
            fresh: Arc::new(fresh),
        })
    }
}

#[async_trait]
impl WorkQueue for Database {
    async fn send(&self, body: &str, delay: Duration) -> Result<()> {
        self.queue.send(body, delay).await
    }
    async fn receive(&self, max: usize, wait: Duration, vis: Duration) -> Result<Vec<Delivery>> {
        self.queue.receive(max, wait, vis).await
    }
    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<()> {
        self.queue.extend(receipt, visibility).await
    }
    async fn ack(&self, receipt: &Receipt) -> Result<()> {
        self.queue.ack(receipt).await
    }
    async fn retry_later(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        self.queue.retry_later(receipt, delay).await
    }
    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        self.queue.dead_letter(receipt, reason).await
    }
    async fn ping(&self) -> Result<()> {
        self.queue.ping().await
    }
    async fn depth(&self) -> Result<Depth> {
        self.queue.depth().await
    }
}

#[async_trait]
impl QueueUnderTest for Database {
    async fn dead_letters(&self) -> Result<Vec<(String, String)>> {
        self.queue.dead_letters().await
    }
    fn detached(&self) -> Arc<dyn QueueUnderTest> {
        let queue = (self.fresh)().with_poll_interval(DETACHED_POLL);
        Arc::new(Database {
            queue,
            fresh: self.fresh.clone(),
        })
    }
}

/// `SqsQueue` on a fresh queue with a dead-letter queue; dead letters are read back from
/// that queue.
struct Sqs {
    queue: SqsQueue,
    client: aws_sdk_sqs::Client,
    queue_url: String,
    dead_letter_url: String,
}

impl Sqs {
    async fn queue(emulator: Emulator) -> Queue {
        let (queue, queue_url) = quire_testing::aws::fresh_queue(emulator).await;
        let dead_letter_url = queue
            .dead_letter_queue_url()
            .await
            .expect("read the redrive policy")
            .expect("the test queue has a dead-letter queue");
        let client = quire_core::aws::sqs_client(&quire_testing::aws::sdk_config(emulator).await);
        Arc::new(Sqs {
            queue,
            client,
            queue_url,
            dead_letter_url,
        })
    }
}

#[async_trait]
impl WorkQueue for Sqs {
    async fn send(&self, body: &str, delay: Duration) -> Result<()> {
        self.queue.send(body, delay).await
    }
    async fn receive(&self, max: usize, wait: Duration, vis: Duration) -> Result<Vec<Delivery>> {
        self.queue.receive(max, wait, vis).await
    }
    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<()> {
        self.queue.extend(receipt, visibility).await
    }
    async fn ack(&self, receipt: &Receipt) -> Result<()> {
        self.queue.ack(receipt).await
    }
    async fn retry_later(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        self.queue.retry_later(receipt, delay).await
    }
    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        self.queue.dead_letter(receipt, reason).await
    }
    async fn ping(&self) -> Result<()> {
        self.queue.ping().await
    }
    async fn depth(&self) -> Result<Depth> {
        self.queue.depth().await
    }
}

#[async_trait]
impl QueueUnderTest for Sqs {
    async fn dead_letters(&self) -> Result<Vec<(String, String)>> {
        let mut letters = Vec::new();
        loop {
            let received = self
                .client
                .receive_message()
                .queue_url(&self.dead_letter_url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .visibility_timeout(60)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|e| {
                    Error::queue(format!(
                        "reading dead letters: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(&e)
                    ))
                })?;
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                return Ok(letters);
            }
            for message in messages {
                let reason = message
                    .message_attributes()
                    .and_then(|a| a.get(DEAD_LETTER_REASON_ATTRIBUTE))
                    .and_then(|a| a.string_value())
                    .unwrap_or_default()
                    .to_owned();
                letters.push((message.body.unwrap_or_default(), reason));
            }
        }
    }
    fn detached(&self) -> Arc<dyn QueueUnderTest> {
        Arc::new(Sqs {
            queue: SqsQueue::new(self.client.clone(), self.queue_url.clone())
                .with_dead_letter_queue(self.dead_letter_url.clone()),
            client: self.client.clone(),
            queue_url: self.queue_url.clone(),
            dead_letter_url: self.dead_letter_url.clone(),
        })
    }
    fn rejects_stale_receipts(&self) -> bool {
        false
    }
}

crate::contract_suite! {
    backends: {
    postgres: async {
        let store = quire_testing::fresh_postgres().await;
        let pool = store.pool().clone();
        (Database::queue(move || DatabaseQueue::postgres(pool.clone())), store)
    },
    sqlite: async {
        let (store, dir) = quire_testing::fresh_sqlite().await;
        let pool = store.pool().clone();
        (Database::queue(move || DatabaseQueue::sqlite(pool.clone())), (store, dir))
    },
    sqs: async { (Sqs::queue(Emulator::Moto).await, ()) },
    sqs_localstack: async { (Sqs::queue(Emulator::LocalStack).await, ()) },
    },
    cases: [
        the_queue_answers_a_ping,
        a_sent_message_is_received_once_and_acked,
        a_received_message_is_invisible_while_held,
        an_unacked_message_reappears_after_its_visibility_timeout_with_a_new_receipt,
        extending_keeps_a_message_hidden_past_its_first_timeout,
        retry_later_makes_a_message_visible_again_after_the_delay,
        a_delayed_send_is_hidden_until_the_delay_passes,
        a_dead_lettered_message_is_never_redelivered_and_is_listed,
        a_malformed_receipt_is_an_error,
        a_long_poll_wakes_when_a_message_is_sent,
        a_long_poll_finds_messages_sent_by_another_process,
        receive_takes_at_most_max_messages,
        concurrent_receivers_never_get_the_same_message,
        depth_counts_visible_in_flight_and_dead_lettered_messages,
    ],
}

// ---- helpers -------------------------------------------------------------------------------

const NOW: Duration = Duration::ZERO;
const HOLD: Duration = Duration::from_secs(60);
/// Short visibility timeouts for cases that wait for one to run out.
const SHORT: Duration = Duration::from_secs(1);
/// How long a case long-polls for a message whose visibility timeout has run out.
/// LocalStack makes such a message visible again only at its next check, about once a
/// second (a 1 s timeout ran out after 1.4 to 1.9 s; moto and the database queue are on
/// time). AWS promises no exact moment either, so the cases wait for it instead of
/// expecting it the instant the timeout ends.
const REAPPEAR: Duration = Duration::from_secs(5);

async fn receive_one(queue: &Queue, wait: Duration, visibility: Duration) -> Result<Delivery> {
    let mut got = queue.receive(10, wait, visibility).await?;
    assert_eq!(got.len(), 1, "expected exactly one message, got {got:?}");
    Ok(got.remove(0))
}

async fn assert_empty(queue: &Queue) -> Result<()> {
    let got = queue.receive(10, NOW, HOLD).await?;
    assert!(got.is_empty(), "expected no visible message, got {got:?}");
    Ok(())
}

fn assert_stale(result: Result<()>) {
    assert!(
        matches!(&result, Err(Error::Queue { message, .. }) if message.contains("stale")),
        "{result:?}"
    );
}

/// An operation with a receipt that is no longer current. A queue that rejects stale
/// receipts must say so; SQS may instead accept it (a repeated `DeleteMessage` succeeds, and
/// an older receipt handle of a message may still be honoured), but must not fail any other
/// way. The worker never relies on the refusal (the record store's leases decide who
/// records an outcome); the cases check what it does rely on afterwards: the current
/// holder's receipt still works, and a deleted message stays deleted.
fn assert_stale_or_tolerated(queue: &Queue, result: Result<()>) {
    if queue.rejects_stale_receipts() {
        assert_stale(result);
    } else {
        match &result {
            Ok(()) => {}
            Err(Error::Queue { message, .. }) if message.contains("stale") => {}
            Err(e) => panic!("neither accepted nor refused as stale: {e:?}"),
        }
    }
}

// ---- cases ---------------------------------------------------------------------------------

async fn the_queue_answers_a_ping(queue: Queue) -> Result<()> {
    queue.ping().await
}

async fn a_sent_message_is_received_once_and_acked(queue: Queue) -> Result<()> {
    queue.send(r#"{"hello":"world"}"#, NOW).await?;
    let delivery = receive_one(&queue, NOW, HOLD).await?;
    assert_eq!(delivery.body, r#"{"hello":"world"}"#);
    assert_eq!(delivery.receive_count, 1);
    queue.ack(&delivery.receipt).await?;
    assert_stale_or_tolerated(&queue, queue.ack(&delivery.receipt).await);
    assert_empty(&queue).await
}

async fn a_received_message_is_invisible_while_held(queue: Queue) -> Result<()> {
    queue.send("a", NOW).await?;
    let held = receive_one(&queue, NOW, HOLD).await?;
    assert_empty(&queue).await?;
    assert_empty(&queue.detached()).await?;
    queue.send("b", NOW).await?;
    let next = receive_one(&queue, NOW, HOLD).await?;
    assert_eq!(next.body, "b");
    assert_ne!(next.receipt, held.receipt);
    Ok(())
}

async fn an_unacked_message_reappears_after_its_visibility_timeout_with_a_new_receipt(
    queue: Queue,
) -> Result<()> {
    queue.send("a", NOW).await?;
    let first = receive_one(&queue, NOW, SHORT).await?;
    tokio::time::sleep(SHORT + Duration::from_millis(500)).await;
    let second = receive_one(&queue, REAPPEAR, HOLD).await?;
    assert_eq!(second.body, "a");
    assert_eq!(second.receive_count, 2);
    assert_ne!(second.receipt, first.receipt);

    if queue.rejects_stale_receipts() {
        // The first holder can no longer touch it.
        assert_stale(queue.extend(&first.receipt, HOLD).await);
        assert_stale(queue.retry_later(&first.receipt, NOW).await);
        assert_stale(queue.dead_letter(&first.receipt, "stale").await);
        assert_stale(queue.ack(&first.receipt).await);
    } else {
        // SQS may still honour the first receipt. The only use a worker makes of a receipt
        // it no longer holds is its heartbeat's extend (before the record store tells it
        // the lease is gone; with the lease gone it never acks, retries or dead-letters),
        // and that must not get in the new holder's way.
        assert_stale_or_tolerated(&queue, queue.extend(&first.receipt, HOLD).await);
        queue.extend(&second.receipt, HOLD).await?;
    }
    queue.ack(&second.receipt).await?;
    assert_empty(&queue).await
}

async fn extending_keeps_a_message_hidden_past_its_first_timeout(queue: Queue) -> Result<()> {
    queue.send("a", NOW).await?;
    let held = receive_one(&queue, NOW, SHORT).await?;
    queue.extend(&held.receipt, HOLD).await?;
    tokio::time::sleep(SHORT + Duration::from_millis(500)).await;
    assert_empty(&queue).await?;
    // Extending kept the receipt.
    queue.ack(&held.receipt).await
}

async fn retry_later_makes_a_message_visible_again_after_the_delay(queue: Queue) -> Result<()> {
    queue.send("a", NOW).await?;
    let held = receive_one(&queue, NOW, HOLD).await?;
    queue
        .retry_later(&held.receipt, Duration::from_secs(2))
        .await?;
    assert_empty(&queue).await?;
    let started = Instant::now();
    let again = receive_one(&queue.detached(), Duration::from_secs(10), HOLD).await?;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "not before the delay"
    );
    assert_eq!((again.body.as_str(), again.receive_count), ("a", 2));

    // Without a delay it is visible at once.
    queue.retry_later(&again.receipt, NOW).await?;
    let third = receive_one(&queue, NOW, HOLD).await?;
    assert_eq!(third.receive_count, 3);
    Ok(())
}

async fn a_delayed_send_is_hidden_until_the_delay_passes(queue: Queue) -> Result<()> {
    queue.send("later", Duration::from_secs(2)).await?;
    assert_empty(&queue).await?;
    let started = Instant::now();
    let delivery = receive_one(&queue.detached(), Duration::from_secs(10), HOLD).await?;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "not before the delay"
    );
    assert_eq!(
        (delivery.body.as_str(), delivery.receive_count),
        ("later", 1)
    );
    Ok(())
}

async fn a_dead_lettered_message_is_never_redelivered_and_is_listed(queue: Queue) -> Result<()> {
    queue.send("poison", NOW).await?;
    queue.send("fine", NOW).await?;
    let mut got = queue.receive(10, NOW, SHORT).await?;
    got.sort_by(|a, b| a.body.cmp(&b.body));
    let [fine, poison] = got.as_slice() else {
        panic!("expected both messages, got {got:?}")
    };
    queue
        .dead_letter(&poison.receipt, "unparseable body")
        .await?;
    assert_stale_or_tolerated(&queue, queue.ack(&poison.receipt).await);
    assert_stale_or_tolerated(&queue, queue.extend(&poison.receipt, HOLD).await);

    // After the visibility timeout only the other message comes back.
    tokio::time::sleep(SHORT + Duration::from_millis(500)).await;
    let back = receive_one(&queue, REAPPEAR, HOLD).await?;
    assert_eq!(back.body, fine.body);
    assert_empty(&queue).await?;
    assert_eq!(
        queue.dead_letters().await?,
        [("poison".to_owned(), "unparseable body".to_owned())]
    );
    Ok(())
}

async fn a_malformed_receipt_is_an_error(queue: Queue) -> Result<()> {
    let bogus = Receipt("not-a-receipt".to_owned());
    assert!(matches!(queue.ack(&bogus).await, Err(Error::Queue { .. })));
    assert!(matches!(
        queue.extend(&bogus, HOLD).await,
        Err(Error::Queue { .. })
    ));
    Ok(())
}

async fn a_long_poll_wakes_when_a_message_is_sent(queue: Queue) -> Result<()> {
    let receiver = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let got = queue.receive(10, Duration::from_secs(60), HOLD).await;
            (got, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    queue.send("wake up", NOW).await?;
    let (got, waited) = receiver.await.expect("the receiver did not panic");
    let got = got?;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "wake up");
    // The suite's handles never poll and the wait is 60 s: only the send can have woken it.
    assert!(waited < Duration::from_secs(30), "woke after {waited:?}");
    Ok(())
}

async fn a_long_poll_finds_messages_sent_by_another_process(queue: Queue) -> Result<()> {
    let elsewhere = queue.detached();
    let receiver = tokio::spawn(async move {
        let started = Instant::now();
        let got = elsewhere.receive(10, Duration::from_secs(60), HOLD).await;
        (got, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    queue.send("from afar", NOW).await?;
    let (got, waited) = receiver.await.expect("the receiver did not panic");
    let got = got?;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "from afar");
    assert!(waited < Duration::from_secs(30), "found after {waited:?}");
    Ok(())
}

async fn receive_takes_at_most_max_messages(queue: Queue) -> Result<()> {
    for i in 0..5 {
        queue.send(&format!("m{i}"), NOW).await?;
    }
    let first = queue.receive(3, NOW, HOLD).await?;
    assert_eq!(first.len(), 3);
    let rest = queue.receive(3, NOW, HOLD).await?;
    assert_eq!(rest.len(), 2);
    let bodies: HashSet<_> = first.iter().chain(&rest).map(|d| d.body.clone()).collect();
    assert_eq!(bodies.len(), 5);
    assert!(queue.receive(0, NOW, HOLD).await?.is_empty());
    Ok(())
}

async fn concurrent_receivers_never_get_the_same_message(queue: Queue) -> Result<()> {
    for i in 0..20 {
        queue.send(&format!("m{i}"), NOW).await?;
    }
    let receivers = (0..4).map(|_| {
        let queue = queue.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = queue.receive(2, NOW, HOLD).await?;
                if got.is_empty() {
                    return Ok::<_, Error>(mine);
                }
                mine.extend(got);
            }
        })
    });
    let mut bodies = Vec::new();
    let mut receipts = HashSet::new();
    for received in futures::future::join_all(receivers).await {
        for delivery in received.expect("the receiver did not panic")? {
            assert_eq!(delivery.receive_count, 1, "{delivery:?} was received twice");
            receipts.insert(delivery.receipt);
            bodies.push(delivery.body);
        }
    }
    assert_eq!(
        bodies.len(),
        20,
        "every message received exactly once: {bodies:?}"
    );
    assert_eq!(bodies.iter().collect::<HashSet<_>>().len(), 20);
    assert_eq!(receipts.len(), 20);
    Ok(())
}

/// What `SqsQueue` does beyond the contract: dead-lettering without a dead-letter queue or
/// without the body, and long polls beyond SQS's 20 s; on each emulator.
mod sqs_only {
    use super::*;

    crate::contract_suite! {
        backends: {
            moto: async { (Emulator::Moto, ()) },
            localstack: async { (Emulator::LocalStack, ()) },
        },
        cases: [
            dead_letters_go_to_the_queue_the_redrive_policy_names,
            without_any_dead_letter_queue_dead_lettering_deletes_the_message,
            dead_lettering_a_message_received_through_another_handle_fails_and_keeps_it,
            a_long_poll_beyond_twenty_seconds_polls_again,
        ],
    }

    async fn dead_letters_go_to_the_queue_the_redrive_policy_names(
        emulator: Emulator,
    ) -> Result<()> {
        let (queue, queue_url) = quire_testing::aws::fresh_queue(emulator).await;
        let client = quire_core::aws::sqs_client(&quire_testing::aws::sdk_config(emulator).await);
        // No dead-letter queue given: it is looked up from the redrive policy.
        let plain = SqsQueue::new(client.clone(), queue_url.clone());
        plain.send("poison", NOW).await?;
        let poison = plain
            .receive(10, NOW, SHORT)
            .await?
            .pop()
            .expect("the message");
        plain.dead_letter(&poison.receipt, "unparseable").await?;
        tokio::time::sleep(SHORT + Duration::from_millis(500)).await;
        assert!(plain.receive(10, NOW, HOLD).await?.is_empty());
        let dead_letters = Sqs {
            client,
            queue_url,
            dead_letter_url: queue
                .dead_letter_queue_url()
                .await?
                .expect("a dead-letter queue"),
            queue,
        };
        assert_eq!(
            dead_letters.dead_letters().await?,
            [("poison".to_owned(), "unparseable".to_owned())]
        );
        Ok(())
    }

    async fn without_any_dead_letter_queue_dead_lettering_deletes_the_message(
        emulator: Emulator,
    ) -> Result<()> {
        let client = quire_core::aws::sqs_client(&quire_testing::aws::sdk_config(emulator).await);
        let queue_url = client
            .create_queue()
            .queue_name(format!("quire-test-{}", uuid::Uuid::new_v4().simple()))
            .send()
            .await
            .expect("create a queue without a redrive policy")
            .queue_url()
            .expect("CreateQueue returns the queue URL")
            .to_owned();
        let plain = SqsQueue::new(client, queue_url);
        assert_eq!(plain.dead_letter_queue_url().await?, None);
        plain.send("poison", NOW).await?;
        let poison = plain
            .receive(10, NOW, SHORT)
            .await?
            .pop()
            .expect("the message");
        plain.dead_letter(&poison.receipt, "unparseable").await?;
        tokio::time::sleep(SHORT + Duration::from_millis(500)).await;
        assert!(plain.receive(10, NOW, HOLD).await?.is_empty());
        Ok(())
    }

    async fn dead_lettering_a_message_received_through_another_handle_fails_and_keeps_it(
        emulator: Emulator,
    ) -> Result<()> {
        let queue = Sqs::queue(emulator).await;
        let elsewhere = queue.detached();
        queue.send("poison", NOW).await?;
        let held = receive_one(&elsewhere, NOW, SHORT).await?;
        // This handle never saw the body, so it cannot forward it.
        let refused = queue.dead_letter(&held.receipt, "unparseable").await;
        assert!(matches!(refused, Err(Error::Queue { .. })), "{refused:?}");
        tokio::time::sleep(SHORT + Duration::from_millis(500)).await;
        let again = receive_one(&queue, REAPPEAR, HOLD).await?;
        assert_eq!((again.body.as_str(), again.receive_count), ("poison", 2));
        assert_eq!(queue.dead_letters().await?, []);
        Ok(())
    }

    async fn a_long_poll_beyond_twenty_seconds_polls_again(emulator: Emulator) -> Result<()> {
        let queue = Sqs::queue(emulator).await;
        let receiver = {
            let queue = queue.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let got = queue.receive(10, Duration::from_secs(25), HOLD).await;
                (got, started.elapsed())
            })
        };
        // After SQS's first 20 s poll has ended empty (it ends within a second of that).
        tokio::time::sleep(Duration::from_secs(22)).await;
        queue.send("late", NOW).await?;
        let (got, waited) = receiver.await.expect("the receiver did not panic");
        let got = got?;
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].body, "late");
        assert!(
            waited >= Duration::from_secs(22),
            "returned after {waited:?}"
        );
        Ok(())
    }
}

async fn depth_counts_visible_in_flight_and_dead_lettered_messages(queue: Queue) -> Result<()> {
    assert_eq!(queue.depth().await?, Depth::default());
    for body in ["a", "b", "c", "d"] {
        queue.send(body, NOW).await?;
    }
    // SQS's counts are approximate and settle within moments; the table's are exact.
    let settled = |want: Depth| {
        let queue = queue.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let depth = queue.depth().await?;
                if depth == want || Instant::now() >= deadline {
                    assert_eq!(depth, want);
                    return Ok::<_, Error>(());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    settled(Depth {
        visible: 4,
        in_flight: 0,
        dead_letters: 0,
    })
    .await?;
    let mut held = queue.receive(2, NOW, HOLD).await?;
    while held.len() < 2 {
        held.extend(queue.receive(2 - held.len(), NOW, HOLD).await?);
    }
    settled(Depth {
        visible: 2,
        in_flight: 2,
        dead_letters: 0,
    })
    .await?;
    queue.dead_letter(&held[0].receipt, "cannot parse").await?;
    queue.ack(&held[1].receipt).await?;
    settled(Depth {
        visible: 2,
        in_flight: 0,
        dead_letters: 1,
    })
    .await
}
