//! The worker against real backends: Postgres (fresh database per test), the database
//! queue, local output storage, and a local HTTP server for dataset fixtures.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: a panic is the failure report

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use chrono::Utc;
use quire_core::dispatch::{Dispatcher, QueueDispatcher};
use quire_core::model::{Cancelled, Claim, Lease, NewUser, Report};
use quire_core::queue::{DatabaseQueue, WorkQueue};
use quire_core::storage::{LocalStorage, OutputStorage, output_key};
use quire_core::store::RecordStore;
use quire_core::{ReportFormat, ReportStatus, ReportType, WorkMessage};
use quire_render::DataSources;
use quire_testing::records::new_report;
use quire_testing::storage::AroundPut;
use quire_worker::{Outcome, Worker, WorkerConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct TestWorld {
    store: Arc<dyn RecordStore>,
    queue: Arc<DatabaseQueue>,
    storage: Arc<LocalStorage>,
    user_id: Uuid,
    fixtures: SocketAddr,
    _dir: tempfile::TempDir,
}

fn fast_config() -> WorkerConfig {
    WorkerConfig {
        concurrency: 2,
        lease: Duration::from_secs(2),
        heartbeat: Duration::from_millis(300),
        progress_interval: Duration::from_millis(50),
        max_attempts: 3,
        backoff_base: Duration::from_millis(200),
        backoff_max: Duration::from_secs(1),
        poll_wait: Duration::from_millis(500),
        shutdown_grace: Duration::from_millis(300),
        ..WorkerConfig::default()
    }
}

/// Serves dataset fixtures: `/rows` (3 rows), `/broken` (500), `/slow` (answers after 5 s).
async fn spawn_fixtures() -> SocketAddr {
    let app = Router::new()
        .route(
            "/rows",
            // Raw text, so the column order is the body's (json! would sort the keys).
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    r#"{"results": [
                        {"name": "bulbasaur", "height": 7},
                        {"name": "ivysaur", "height": 10},
                        {"name": "venusaur", "height": 20}
                    ]}"#,
                )
            }),
        )
        .route(
            "/broken",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                axum::Json(json!({"results": []}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

impl TestWorld {
    async fn new() -> Self {
        let store = quire_testing::fresh_postgres().await;
        let queue = Arc::new(
            DatabaseQueue::postgres(store.pool().clone())
                .with_poll_interval(Duration::from_millis(50)),
        );
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(
            LocalStorage::new(
                dir.path().join("outputs"),
                "http://127.0.0.1:1/".parse().unwrap(),
                vec![7; 32],
            )
            .unwrap(),
        );
        let user_id = Uuid::now_v7();
        store
            .create_user(NewUser {
                id: user_id,
                email: "ada@example.com".into(),
                password_hash: "not-a-real-hash".into(),
                created_at: Utc::now() - chrono::Duration::days(40),
            })
            .await
            .unwrap();
        let fixtures = spawn_fixtures().await;
        Self {
            store,
            queue,
            storage,
            user_id,
            fixtures,
            _dir: dir,
        }
    }

    fn worker(&self, config: WorkerConfig) -> Arc<Worker> {
        self.worker_storing_in(self.storage.clone(), config)
    }

    /// A worker storing its outputs in `storage` instead of the world's.
    fn worker_storing_in(
        &self,
        storage: Arc<dyn OutputStorage>,
        config: WorkerConfig,
    ) -> Arc<Worker> {
        let sources = DataSources::from_toml_str(&format!(
            r#"
            [sources.pokemon]
            url = "http://{0}/rows"
            allow_private = true
            rows_pointer = "/results"
            [sources.broken]
            url = "http://{0}/broken"
            allow_private = true
            [sources.slow]
            url = "http://{0}/slow"
            allow_private = true
            timeout_secs = 30
            [sources.unmarked]
            url = "http://{0}/rows"
            rows_pointer = "/results"
            "#,
            self.fixtures
        ))
        .unwrap();
        Arc::new(Worker::new(
            self.store.clone(),
            self.queue.clone(),
            storage,
            Arc::new(sources),
            config,
        ))
    }

    /// Stores a report and dispatches it, as `POST /reports` does.
    async fn request(
        &self,
        report_type: ReportType,
        format: ReportFormat,
        parameters: Value,
    ) -> Report {
        let report = new_report(&*self.store, self.user_id, report_type, format, parameters).await;
        QueueDispatcher::new(self.store.clone(), self.queue.clone())
            .dispatch(&report)
            .await
            .unwrap();
        report
    }

    async fn receive_one(&self, visibility: Duration) -> quire_core::queue::Delivery {
        let mut got = self
            .queue
            .receive(1, Duration::from_secs(5), visibility)
            .await
            .unwrap();
        assert_eq!(got.len(), 1, "expected one message on the queue");
        got.pop().unwrap()
    }

    /// Receives the next message and lets a worker with `config` process it.
    async fn process_next(&self, config: WorkerConfig) -> Outcome {
        let delivery = self.receive_one(Duration::from_secs(30)).await;
        self.worker(config)
            .process(&delivery, &CancellationToken::new())
            .await
    }

    /// True when no message becomes receivable within `wait`.
    async fn queue_is_empty(&self, wait: Duration) -> bool {
        self.queue
            .receive(1, wait, Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty()
    }

    async fn report(&self, id: Uuid) -> Report {
        self.store
            .report(id)
            .await
            .unwrap()
            .expect("the report exists")
    }

    fn output_path(&self, report: &Report) -> std::path::PathBuf {
        self.storage.root().join(output_key(report))
    }
}

fn pdf_text(path: &Path) -> String {
    let doc = lopdf::Document::load(path).expect("a parseable PDF");
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    doc.extract_text(&pages).expect("extractable text")
}

#[tokio::test]
async fn a_profile_report_is_rendered_stored_and_completed() {
    let world = TestWorld::new().await;
    let report = world
        .request(ReportType::Profile, ReportFormat::Pdf, json!({}))
        .await;

    let outcome = world.process_next(fast_config()).await;

    assert_eq!(outcome, Outcome::Completed);
    let done = world.report(report.id).await;
    assert_eq!(done.status, ReportStatus::Completed);
    assert_eq!(done.progress, 100);
    assert_eq!(done.attempts, 1);
    assert_eq!(
        done.output_key.as_deref(),
        Some(output_key(&report).as_str())
    );
    let path = world.output_path(&report);
    assert_eq!(
        done.output_size,
        Some(std::fs::metadata(&path).unwrap().len() as i64)
    );
    assert!(pdf_text(&path).contains("ada@example.com"));
    // The message is gone once the outcome is committed.
    assert!(world.queue_is_empty(Duration::ZERO).await);
}

#[tokio::test]
async fn a_dataset_csv_holds_the_sources_rows() {
    let world = TestWorld::new().await;
    let report = world
        .request(
            ReportType::Dataset,
            ReportFormat::Csv,
            json!({"source": "pokemon"}),
        )
        .await;

    let outcome = world.process_next(fast_config()).await;

    assert_eq!(outcome, Outcome::Completed);
    let csv = std::fs::read_to_string(world.output_path(&report)).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines,
        ["name,height", "bulbasaur,7", "ivysaur,10", "venusaur,20"]
    );
}

#[tokio::test]
async fn a_second_delivery_of_the_same_work_has_no_side_effects() {
    let world = TestWorld::new().await;
    let report = world
        .request(ReportType::Profile, ReportFormat::Pdf, json!({}))
        .await;
    // A duplicate message, as a retried dispatch or an at-least-once queue would produce.
    let duplicate = WorkMessage::new(report.id, report.user_id, report.report_type, 1);
    world
        .queue
        .send(&duplicate.to_body(), Duration::ZERO)
        .await
        .unwrap();
    let worker = world.worker(fast_config());

    let first = world.receive_one(Duration::from_secs(30)).await;
    assert_eq!(
        worker.process(&first, &CancellationToken::new()).await,
        Outcome::Completed
    );
    let completed = world.report(report.id).await;
    let second = world.receive_one(Duration::from_secs(30)).await;
    assert_eq!(
        worker.process(&second, &CancellationToken::new()).await,
        Outcome::AlreadyFinished
    );

    let after = world.report(report.id).await;
    assert_eq!(after, completed, "the duplicate changed nothing");
    let files: Vec<_> = std::fs::read_dir(world.output_path(&report).parent().unwrap())
        .unwrap()
        .collect();
    assert_eq!(files.len(), 1, "exactly one output");
}

#[tokio::test]
async fn a_report_whose_worker_crashed_is_picked_up_after_the_lease_expires() {
    let world = TestWorld::new().await;
    let report = world
        .request(ReportType::Profile, ReportFormat::Pdf, json!({}))
        .await;

    // Worker A receives the message and claims the report, then dies: no heartbeat, no ack.
    let lease = Duration::from_secs(1);
    let crashed = world.receive_one(lease).await;
    let claim = world
        .store
        .claim_report(
            report.id,
            &Lease {
                owner: "crashed".into(),
                expires_at: Utc::now() + lease,
            },
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(matches!(claim, Claim::Claimed { .. }));

    // While the lease lives, nobody else gets the message.
    assert!(
        world
            .queue
            .receive(1, Duration::ZERO, lease)
            .await
            .unwrap()
            .is_empty()
    );

    // After it expires, worker B gets the same message and finishes the report.
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    let redelivered = world.receive_one(Duration::from_secs(30)).await;
    assert_eq!(redelivered.receive_count, 2);
    assert_ne!(redelivered.receipt, crashed.receipt);
    let outcome = world
        .worker(fast_config())
        .process(&redelivered, &CancellationToken::new())
        .await;

    assert_eq!(outcome, Outcome::Completed);
    let done = world.report(report.id).await;
    assert_eq!(done.status, ReportStatus::Completed);
    assert_eq!(done.attempts, 2, "the crashed attempt counts");
    // The crashed worker's stale receipt can no longer touch the message.
    assert!(world.queue.ack(&crashed.receipt).await.is_err());
}

#[tokio::test]
async fn a_failing_source_is_retried_with_backoff_and_then_fails_for_good() {
    let world = TestWorld::new().await;
    let report = world
        .request(
            ReportType::Dataset,
            ReportFormat::Csv,
            json!({"source": "broken"}),
        )
        .await;
    let worker = world.worker(WorkerConfig {
        max_attempts: 2,
        ..fast_config()
    });

    let first = world.receive_one(Duration::from_secs(30)).await;
    let Outcome::Retrying { delay } = worker.process(&first, &CancellationToken::new()).await
    else {
        panic!("the first failure should be retried");
    };
    assert!(
        delay >= Duration::from_millis(200),
        "backoff starts at the base delay, got {delay:?}"
    );
    let retrying = world.report(report.id).await;
    assert_eq!(retrying.status, ReportStatus::Queued);
    assert_eq!(retrying.attempts, 1);
    assert!(
        retrying
            .error_message
            .as_deref()
            .unwrap_or_default()
            .contains("500"),
        "{retrying:?}"
    );

    // The message comes back only after the backoff delay.
    assert!(
        world
            .queue
            .receive(1, Duration::ZERO, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
    let second = world.receive_one(Duration::from_secs(30)).await;
    assert_eq!(
        worker.process(&second, &CancellationToken::new()).await,
        Outcome::Failed
    );

    let failed = world.report(report.id).await;
    assert_eq!(failed.status, ReportStatus::Failed);
    assert_eq!(failed.attempts, 2);
    assert!(failed.failed_at.is_some());
    assert!(failed.error_message.unwrap().contains("500"));
    assert!(world.queue_is_empty(Duration::from_millis(1500)).await);
    // The message whose attempts ran out was moved to the dead letters, with the reason.
    let dead = world.queue.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].1.contains("failed after 2 attempts"), "{dead:?}");
    assert!(dead[0].0.contains(&report.id.to_string()), "{dead:?}");
}

#[tokio::test]
async fn an_unknown_source_fails_at_once_without_retrying() {
    let world = TestWorld::new().await;
    let report = world
        .request(
            ReportType::Dataset,
            ReportFormat::Csv,
            json!({"source": "nowhere"}),
        )
        .await;

    let outcome = world.process_next(fast_config()).await;

    assert_eq!(outcome, Outcome::Failed);
    let failed = world.report(report.id).await;
    assert_eq!(failed.attempts, 1);
    let message = failed.error_message.unwrap();
    assert!(message.contains("nowhere"), "{message}");
    assert!(
        !message.contains("pokemon") && !message.contains("broken"),
        "names no configured source: {message}"
    );
    // Retrying cannot fix it: the message is deleted, not kept as a dead letter.
    assert!(world.queue_is_empty(Duration::ZERO).await);
    assert_eq!(world.queue.dead_letters().await.unwrap(), []);
}

#[tokio::test]
async fn a_source_on_a_private_address_that_does_not_allow_it_fails_at_once() {
    let world = TestWorld::new().await;
    let report = world
        .request(
            ReportType::Dataset,
            ReportFormat::Csv,
            json!({"source": "unmarked"}),
        )
        .await;

    let outcome = world.process_next(fast_config()).await;

    assert_eq!(outcome, Outcome::Failed);
    let failed = world.report(report.id).await;
    assert_eq!(failed.attempts, 1);
    let message = failed.error_message.unwrap();
    assert_eq!(
        message,
        "data source `unmarked` resolves to a private address; set allow_private = true in its definition if it is internal"
    );
    assert!(world.queue_is_empty(Duration::ZERO).await);
}

#[tokio::test]
async fn a_report_cancelled_while_rendering_leaves_no_output() {
    let world = TestWorld::new().await;
    let report = world
        .request(
            ReportType::Dataset,
            ReportFormat::Csv,
            json!({"source": "slow"}),
        )
        .await;
    let delivery = world.receive_one(Duration::from_secs(30)).await;
    let worker = world.worker(fast_config());

    let processing = tokio::spawn({
        let worker = worker.clone();
        async move { worker.process(&delivery, &CancellationToken::new()).await }
    });
    // Wait until it runs, then cancel as the owner would.
    for _ in 0..100 {
        if world.report(report.id).await.status == ReportStatus::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled = world
        .store
        .cancel_report(world.user_id, report.id, Utc::now())
        .await
        .unwrap();
    assert!(matches!(
        cancelled,
        quire_core::model::Cancelled::Cancelled(_)
    ));

    let outcome = tokio::time::timeout(Duration::from_secs(4), processing)
        .await
        .expect("stops well before the slow source answers");
    assert_eq!(outcome.unwrap(), Outcome::Cancelled);
    assert_eq!(
        world.report(report.id).await.status,
        ReportStatus::Cancelled
    );
    assert!(!world.storage.exists(&output_key(&report)).await.unwrap());
    assert!(
        world.queue_is_empty(Duration::ZERO).await,
        "the message is deleted"
    );
}

#[tokio::test]
async fn a_report_cancelled_between_render_and_upload_leaves_no_output() {
    let world = TestWorld::new().await;
    let report = world
        .request(ReportType::Profile, ReportFormat::Pdf, json!({}))
        .await;
    let delivery = world.receive_one(Duration::from_secs(30)).await;
    // The owner cancels the report just before its output is stored: after the render,
    // with the claim's lease fresh (the worker does not ask the database again).
    let (store, user_id) = (world.store.clone(), world.user_id);
    let storage = Arc::new(AroundPut::new(world.storage.clone()).before_put(move || {
        let store = store.clone();
        async move {
            let cancelled = store
                .cancel_report(user_id, report.id, Utc::now())
                .await
                .unwrap();
            assert!(
                matches!(cancelled, Cancelled::Cancelled(_)),
                "{cancelled:?}"
            );
        }
    }));
    let worker = world.worker_storing_in(storage, fast_config());

    let outcome = worker.process(&delivery, &CancellationToken::new()).await;

    assert_eq!(outcome, Outcome::Cancelled);
    assert_eq!(
        world.report(report.id).await.status,
        ReportStatus::Cancelled
    );
    assert!(
        !world.storage.exists(&output_key(&report)).await.unwrap(),
        "the uploaded output is deleted"
    );
    assert!(
        world.queue_is_empty(Duration::ZERO).await,
        "the message is deleted"
    );
}

#[tokio::test]
async fn unparseable_and_orphan_messages_are_moved_aside() {
    let world = TestWorld::new().await;
    let worker = world.worker(fast_config());
    world.queue.send("{not json", Duration::ZERO).await.unwrap();
    let garbage = world.receive_one(Duration::from_secs(30)).await;
    assert!(matches!(
        worker.process(&garbage, &CancellationToken::new()).await,
        Outcome::Poison { .. }
    ));

    let orphan = WorkMessage::new(Uuid::now_v7(), world.user_id, ReportType::Profile, 1);
    world
        .queue
        .send(&orphan.to_body(), Duration::ZERO)
        .await
        .unwrap();
    let delivery = world.receive_one(Duration::from_secs(30)).await;
    let Outcome::Poison { reason } = worker.process(&delivery, &CancellationToken::new()).await
    else {
        panic!("an orphan message is poison");
    };
    assert!(reason.contains("does not exist"));

    let dead = world.queue.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 2);
    // Never delivered again.
    assert!(world.queue_is_empty(Duration::ZERO).await);
}

#[tokio::test]
async fn shutdown_hands_an_unfinished_report_back_to_the_queue() {
    let world = TestWorld::new().await;
    let report = world
        .request(
            ReportType::Dataset,
            ReportFormat::Csv,
            json!({"source": "slow"}),
        )
        .await;
    let delivery = world.receive_one(Duration::from_secs(30)).await;
    let worker = world.worker(fast_config());
    let hard_stop = CancellationToken::new();

    let processing = tokio::spawn({
        let (worker, hard_stop) = (worker.clone(), hard_stop.clone());
        async move { worker.process(&delivery, &hard_stop).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    hard_stop.cancel();

    assert_eq!(processing.await.unwrap(), Outcome::Released);
    let released = world.report(report.id).await;
    assert_eq!(released.status, ReportStatus::Queued);
    assert_eq!(released.lease_owner, None);
    assert_eq!(
        released.attempts, 0,
        "a shutdown does not use up an attempt"
    );
    // Immediately receivable again: the next start picks it up.
    let again = world.receive_one(Duration::from_secs(30)).await;
    assert_eq!(
        WorkMessage::from_body(&again.body).unwrap().report_id,
        report.id
    );
}

#[tokio::test]
async fn the_run_loop_completes_every_queued_report_and_stops_on_request() {
    let world = TestWorld::new().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            world
                .request(ReportType::Profile, ReportFormat::Pdf, json!({}))
                .await
                .id,
        );
    }
    ids.push(
        world
            .request(ReportType::Activity, ReportFormat::Csv, json!({"days": 7}))
            .await
            .id,
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(world.worker(fast_config()).run(shutdown.clone()));

    let mut pending = ids.clone();
    for _ in 0..200 {
        let mut still = Vec::new();
        for id in pending {
            if world.report(id).await.status != ReportStatus::Completed {
                still.push(id);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pending.is_empty(), "reports left unfinished: {pending:?}");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the loop stops")
        .unwrap();
}

#[tokio::test]
async fn reports_waiting_on_their_data_do_not_hold_the_render_threads() {
    let world = TestWorld::new().await;
    // Three reports whose source answers after 5 s, then a profile report behind them.
    let mut slow = Vec::new();
    for _ in 0..3 {
        slow.push(
            world
                .request(
                    ReportType::Dataset,
                    ReportFormat::Csv,
                    json!({"source": "slow"}),
                )
                .await
                .id,
        );
    }
    let profile = world
        .request(ReportType::Profile, ReportFormat::Pdf, json!({}))
        .await
        .id;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(
        world
            .worker(WorkerConfig {
                concurrency: 4,
                render_threads: 1,
                ..fast_config()
            })
            .run(shutdown.clone()),
    );

    // All four are in hand at once; the one render thread is free for the profile while
    // the others wait on their source.
    let mut completed = false;
    for _ in 0..40 {
        if world.report(profile).await.status == ReportStatus::Completed {
            completed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(completed, "the profile report waited behind the slow ones");
    for id in &slow {
        assert_eq!(
            world.report(*id).await.status,
            ReportStatus::Running,
            "every slow report is in hand, waiting on its source"
        );
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the loop stops")
        .unwrap();
}
