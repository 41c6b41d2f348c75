//! Every accepted report finishes exactly once, and the API tells the truth, while workers
//! die and Postgres, SQS or S3 go away.
//!
//! Postgres, SQS and S3 are real: the test command's Postgres and both AWS emulators (each
//! AWS test runs on moto and on LocalStack, `moto::…` and `localstack::…`), with a fresh
//! database, queue (with its dead-letter queue) and versioned bucket per test. Outages are
//! staged by a [`FaultProxy`] between the code under test and the service (a stopped server:
//! `Refuse`; a black-holed network: `BlackHole`); a worker "killed" mid-step is its task
//! aborted at that point, so it records nothing more, as a SIGKILL would leave it.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: a panic is the failure report

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use chrono::Utc;
use quire_api::{ApiConfig, AppState, app, serve};
use quire_core::aws::AwsTimeouts;
use quire_core::dispatch::{Dispatcher, QueueDispatcher, RescuePolicy, Rescued};
use quire_core::model::{Claim, Lease, Report};
use quire_core::orchestrator::Builtin;
use quire_core::queue::{DatabaseQueue, Delivery, SqsQueue, WorkQueue};
use quire_core::storage::{LocalStorage, OutputStorage, S3Storage};
use quire_core::store::{PgStore, PoolSettings, RecordStore};
use quire_core::{ReportFormat, ReportStatus, ReportType};
use quire_render::DataSources;
use quire_testing::aws::Emulator;
use quire_testing::proxy::{FaultProxy, Mode};
use quire_testing::records::{new_report, new_user};
use quire_testing::storage::AroundPut;
use quire_worker::{Outcome, Worker, WorkerConfig};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Longest any API answer may take during an outage.
const OUTAGE_ANSWER_BOUND: Duration = Duration::from_secs(3);

// ---- the world of one test ---------------------------------------------------------------

struct Aws {
    emulator: Emulator,
    queue: Arc<SqsQueue>,
    dead_letter_url: String,
    storage: Arc<S3Storage>,
    bucket: String,
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
}

/// A fresh queue (with its dead-letter queue) and a fresh, versioned bucket, so that every
/// upload of an object leaves a version to count.
async fn aws(emulator: Emulator) -> Aws {
    let (queue, _) = quire_testing::aws::fresh_queue(emulator).await;
    let dead_letter_url = queue.dead_letter_queue_url().await.unwrap().unwrap();
    let storage = quire_testing::aws::fresh_bucket(emulator).await;
    let bucket = storage.bucket().to_owned();
    let config = quire_testing::aws::sdk_config(emulator).await;
    let s3 = quire_core::aws::s3_client(&config, true);
    s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    Aws {
        emulator,
        queue: Arc::new(queue),
        dead_letter_url,
        storage: Arc::new(storage),
        bucket,
        sqs: quire_core::aws::sqs_client(&config),
        s3,
    }
}

impl Aws {
    /// Every stored version of every object in the bucket.
    async fn object_versions(&self) -> Vec<String> {
        let listed = self
            .s3
            .list_object_versions()
            .bucket(&self.bucket)
            .send()
            .await
            .unwrap();
        listed
            .versions()
            .iter()
            .map(|v| format!("{}@{}", v.key().unwrap_or(""), v.version_id().unwrap_or("")))
            .collect()
    }

    async fn dead_letters(&self) -> usize {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.dead_letter_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        received.messages().len()
    }

    /// A proxy in front of the emulator, and this test's SQS queue and S3 bucket through it
    /// with the given timeouts.
    async fn via_proxy(
        &self,
        timeouts: AwsTimeouts,
    ) -> (FaultProxy, Arc<SqsQueue>, Arc<S3Storage>) {
        let (proxy, endpoint) = FaultProxy::to_url(&self.emulator.endpoint()).await;
        let config = quire_testing::aws::sdk_config_via(self.emulator, &endpoint)
            .await
            .to_builder()
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(timeouts.connect)
                    .read_timeout(timeouts.read)
                    .operation_timeout(timeouts.operation)
                    .build(),
            )
            .build();
        let queue = SqsQueue::new(
            quire_core::aws::sqs_client(&config),
            self.queue.queue_url().to_owned(),
        )
        .with_dead_letter_queue(self.dead_letter_url.clone());
        let storage = S3Storage::new(
            quire_core::aws::s3_client(&config, true),
            self.bucket.clone(),
            Some("outputs".to_owned()),
        );
        (proxy, Arc::new(queue), Arc::new(storage))
    }
}

/// A fresh database holding one user's `pending` report, and a fresh queue and versioned
/// bucket on `emulator`.
async fn world(emulator: Emulator) -> (Arc<dyn RecordStore>, Aws, Report) {
    let records: Arc<dyn RecordStore> = quire_testing::fresh_postgres().await;
    let aws = aws(emulator).await;
    let user = new_user(&*records).await;
    let report = new_report(
        &*records,
        user,
        ReportType::Profile,
        ReportFormat::Pdf,
        json!({}),
    )
    .await;
    (records, aws, report)
}

fn short_timeouts() -> AwsTimeouts {
    AwsTimeouts {
        connect: Duration::from_millis(500),
        read: Duration::from_secs(1),
        operation: Duration::from_secs(2),
    }
}

fn worker(
    store: Arc<dyn RecordStore>,
    queue: Arc<dyn WorkQueue>,
    storage: Arc<dyn OutputStorage>,
    lease: Duration,
) -> Arc<Worker> {
    Arc::new(Worker::new(
        store,
        queue,
        storage,
        Arc::new(DataSources::empty()),
        WorkerConfig {
            concurrency: 2,
            lease,
            heartbeat: lease / 4,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(1),
            poll_wait: Duration::from_secs(1),
            ..WorkerConfig::default()
        },
    ))
}

/// Receives the next message, waiting up to `within`.
async fn next_delivery(queue: &dyn WorkQueue, visibility: Duration, within: Duration) -> Delivery {
    let deadline = Instant::now() + within;
    loop {
        let mut received = queue
            .receive(1, Duration::from_secs(1), visibility)
            .await
            .unwrap();
        if let Some(delivery) = received.pop() {
            return delivery;
        }
        assert!(
            Instant::now() < deadline,
            "no message arrived within {within:?}"
        );
    }
}

/// Receives the next message (waiting up to 10 s) and processes it, as a worker's loop does.
async fn process_next(worker: &Worker, queue: &dyn WorkQueue) -> Outcome {
    let delivery = next_delivery(queue, Duration::from_secs(30), Duration::from_secs(10)).await;
    worker.process(&delivery, &CancellationToken::new()).await
}

async fn status(store: &dyn RecordStore, id: Uuid) -> Report {
    store.report(id).await.unwrap().unwrap()
}

quire_testing::on_each_emulator!(
    a_worker_killed_between_upload_and_record_leaves_one_object_version_and_one_completion,
    a_report_whose_message_was_dead_lettered_while_it_ran_is_rescued_and_completes,
    an_s3_outage_postpones_a_report_without_spending_an_attempt,
    a_message_received_as_the_worker_stops_is_visible_again_at_once,
    while_sqs_is_black_holed_a_new_report_is_accepted_quickly_and_completes_after,
    a_long_poll_into_a_black_hole_gives_up_within_its_bounds,
);

// ---- a worker killed between upload and record --------------------------------------------

async fn a_worker_killed_between_upload_and_record_leaves_one_object_version_and_one_completion(
    emulator: Emulator,
) {
    let (records, aws, report) = world(emulator).await;
    QueueDispatcher::new(records.clone(), aws.queue.clone())
        .dispatch(&report)
        .await
        .unwrap();

    // Worker A renders and uploads, and dies before recording the completion.
    let lease = Duration::from_secs(2);
    // Its storage as a worker killed right after its upload saw it: the upload happens,
    // then the worker is gone (its `put_file` never returns, and the test aborts the task).
    let (uploaded, died) = tokio::sync::oneshot::channel();
    let uploaded = Arc::new(Mutex::new(Some(uploaded)));
    let doomed = Arc::new(AroundPut::new(aws.storage.clone()).after_put(move || {
        if let Some(uploaded) = uploaded.lock().unwrap().take() {
            let _ = uploaded.send(());
        }
        std::future::pending()
    }));
    let a = worker(records.clone(), aws.queue.clone(), doomed, lease);
    let delivery = next_delivery(&*aws.queue, lease, Duration::from_secs(10)).await;
    let killed = tokio::spawn(async move { a.process(&delivery, &CancellationToken::new()).await });
    tokio::time::timeout(Duration::from_secs(30), died)
        .await
        .expect("worker A uploads")
        .unwrap();
    killed.abort();
    let left = status(&*records, report.id).await;
    assert_eq!(left.status, ReportStatus::Running, "A recorded nothing");
    assert_eq!(aws.object_versions().await.len(), 1, "A's upload is stored");

    // Its message comes back after the visibility timeout; worker B takes over once A's
    // lease has expired, finds the output stored and records it instead of rendering and
    // uploading it again.
    let b = worker(
        records.clone(),
        aws.queue.clone(),
        aws.storage.clone(),
        Duration::from_secs(30),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let outcome = loop {
        match process_next(&b, &*aws.queue).await {
            Outcome::Deferred => assert!(Instant::now() < deadline, "A's lease never expired"),
            outcome => break outcome,
        }
    };
    assert_eq!(outcome, Outcome::Completed);
    let done = status(&*records, report.id).await;
    assert_eq!(done.status, ReportStatus::Completed);
    assert_eq!(done.attempts, 2);
    let versions = aws.object_versions().await;
    assert_eq!(
        versions.len(),
        1,
        "the output was written once: {versions:?}"
    );
    let stored = aws
        .storage
        .stored(done.output_key.as_deref().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        done.output_checksum.as_deref(),
        Some(stored.sha256.as_str())
    );
    assert_eq!(done.output_size, Some(i64::try_from(stored.size).unwrap()));
}

// ---- a message dead-lettered while its report runs ---------------------------------------

async fn a_report_whose_message_was_dead_lettered_while_it_ran_is_rescued_and_completes(
    emulator: Emulator,
) {
    let (records, aws, report) = world(emulator).await;
    let dispatcher = QueueDispatcher::new(records.clone(), aws.queue.clone());
    dispatcher.dispatch(&report).await.unwrap();

    // A worker takes the message, claims the report and dies; after enough such receives
    // the redrive policy moves the message to the dead-letter queue, as done here.
    let delivery = next_delivery(
        &*aws.queue,
        Duration::from_secs(30),
        Duration::from_secs(10),
    )
    .await;
    let lease = Lease {
        owner: "killed-worker".into(),
        expires_at: Utc::now() + chrono::Duration::seconds(1),
    };
    assert!(matches!(
        records
            .claim_report(report.id, &lease, Utc::now())
            .await
            .unwrap(),
        Claim::Claimed { .. }
    ));
    aws.queue
        .dead_letter(&delivery.receipt, "maxReceiveCount exceeded")
        .await
        .unwrap();
    assert!(
        aws.queue
            .receive(10, Duration::from_secs(1), Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty(),
        "nothing will ever deliver this report again"
    );

    // The rescuer finds it once its lease is long enough expired and dispatches it again.
    let policy = RescuePolicy {
        after: Duration::from_secs(1),
        ..RescuePolicy::default()
    };
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        dispatcher.rescue_once(&policy).await.unwrap(),
        Rescued {
            requeued: 1,
            failed: 0
        }
    );
    let w = worker(
        records.clone(),
        aws.queue.clone(),
        aws.storage.clone(),
        Duration::from_secs(30),
    );
    assert_eq!(process_next(&w, &*aws.queue).await, Outcome::Completed);
    let done = status(&*records, report.id).await;
    assert_eq!(done.status, ReportStatus::Completed);
    assert_eq!(done.attempts, 2, "the dead worker's attempt counts");
    assert_eq!(
        aws.dead_letters().await,
        1,
        "the old message stays where it was put"
    );
}

// ---- outages don't spend attempts --------------------------------------------------------

async fn an_s3_outage_postpones_a_report_without_spending_an_attempt(emulator: Emulator) {
    let (records, aws, report) = world(emulator).await;
    let (proxy, _, storage) = aws.via_proxy(short_timeouts()).await;
    QueueDispatcher::new(records.clone(), aws.queue.clone())
        .dispatch(&report)
        .await
        .unwrap();
    let w = worker(
        records.clone(),
        aws.queue.clone(),
        storage,
        Duration::from_secs(30),
    );

    for mode in [Mode::Refuse, Mode::BlackHole] {
        proxy.set(mode);
        let started = Instant::now();
        let outcome = process_next(&w, &*aws.queue).await;
        assert!(
            matches!(outcome, Outcome::Postponed { .. }),
            "{mode:?}: {outcome:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{mode:?}: the outage held the worker for {:?}",
            started.elapsed()
        );
        let postponed = status(&*records, report.id).await;
        assert_eq!(postponed.status, ReportStatus::Queued, "{mode:?}");
        assert_eq!(
            postponed.attempts, 0,
            "{mode:?}: an outage spends no attempt"
        );
    }

    proxy.set(Mode::Pass);
    assert_eq!(process_next(&w, &*aws.queue).await, Outcome::Completed);
    let done = status(&*records, report.id).await;
    assert_eq!(done.status, ReportStatus::Completed);
    assert_eq!(done.attempts, 1);
}

async fn a_long_poll_into_a_black_hole_gives_up_within_its_bounds(emulator: Emulator) {
    let aws = aws(emulator).await;
    let (proxy, queue, _) = aws.via_proxy(short_timeouts()).await;
    proxy.set(Mode::BlackHole);
    let wait = Duration::from_secs(2);
    let started = Instant::now();
    // The poll's own 2 s on top of the 1 s read and 2 s operation timeouts, then an error.
    let received = tokio::time::timeout(
        Duration::from_secs(30),
        queue.receive(1, wait, Duration::from_secs(30)),
    )
    .await
    .expect("a black-holed long poll must not hang");
    assert!(received.is_err(), "{received:?}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "gave up after {took:?}");
}

// ---- clean shutdown of receives ------------------------------------------------------------

async fn a_message_received_as_the_worker_stops_is_visible_again_at_once(emulator: Emulator) {
    let (records, aws, report) = world(emulator).await;
    // A long visibility timeout: a message the worker took and dropped would stay hidden.
    let w = Arc::new(Worker::new(
        records.clone(),
        aws.queue.clone(),
        aws.storage.clone(),
        Arc::new(DataSources::empty()),
        WorkerConfig {
            lease: Duration::from_secs(300),
            poll_wait: Duration::from_secs(5),
            ..WorkerConfig::default()
        },
    ));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(w.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await; // in its long poll now

    shutdown.cancel();
    QueueDispatcher::new(records.clone(), aws.queue.clone())
        .dispatch(&report)
        .await
        .unwrap(); // arrives while the interrupted poll is still open
    tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the worker stops")
        .unwrap();

    let delivery =
        next_delivery(&*aws.queue, Duration::from_secs(30), Duration::from_secs(3)).await;
    assert!(delivery.body.contains(&report.id.to_string()));
    assert_eq!(
        status(&*records, report.id).await.status,
        ReportStatus::Queued,
        "never started"
    );
}

// ---- the API during outages ----------------------------------------------------------------

/// An API server on `store`, dispatching to `queue`, storing locally; with the sweep of
/// pending reports every 300 ms. Returns its base URL.
async fn api(
    store: Arc<dyn RecordStore>,
    queue: Arc<dyn WorkQueue>,
    shutdown: CancellationToken,
) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let local = Arc::new(
        LocalStorage::new(
            dir.path().join("outputs"),
            format!("{base}/").parse().unwrap(),
            vec![7; 32],
        )
        .unwrap(),
    );
    let dispatcher = Arc::new(QueueDispatcher::new(store.clone(), queue.clone()));
    {
        let (dispatcher, shutdown) = (dispatcher.clone(), shutdown.clone());
        let every = Duration::from_millis(300);
        tokio::spawn(async move { dispatcher.sweep_pending(every, every, shutdown).await });
    }
    let mut config = ApiConfig::new(SecretString::from("reliability-secret-reliability-secret"));
    config.bcrypt_cost = 4;
    let state = AppState::new(
        config,
        store,
        Arc::new(Builtin::dispatch_only(dispatcher)),
        local.clone(),
        queue,
        Some(local),
    );
    tokio::spawn(serve(listener, app(state), async move {
        shutdown.cancelled().await
    }));
    (base, dir)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn access_token(http: &reqwest::Client, base: &str) -> String {
    let credentials = json!({
        "email": format!("{}@example.com", Uuid::new_v4().simple()),
        "password": "correct horse battery staple",
    });
    let created = http
        .post(format!("{base}/auth/signup"))
        .json(&credentials)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let tokens: Value = http
        .post(format!("{base}/auth/signin"))
        .json(&credentials)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// Sends a request, returning its status, JSON body, `Retry-After` and how long it took.
async fn timed(request: reqwest::RequestBuilder) -> (StatusCode, Value, Option<String>, Duration) {
    let started = Instant::now();
    let response = request.send().await.unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, retry_after, started.elapsed())
}

#[tokio::test]
async fn during_a_database_outage_the_api_answers_503_quickly_and_then_recovers() {
    let direct = quire_testing::fresh_postgres().await;
    let (proxy, options) = FaultProxy::to_postgres(&direct.pool().connect_options()).await;
    let store = Arc::new(
        PgStore::connect_pool(
            options,
            PoolSettings {
                max_connections: 5,
                acquire_timeout: Duration::from_secs(2),
            },
        )
        .await
        .unwrap(),
    );
    let queue = Arc::new(DatabaseQueue::postgres(store.pool().clone()));
    let shutdown = CancellationToken::new();
    let (base, _dir) = api(store, queue, shutdown.clone()).await;
    let http = http();
    let token = access_token(&http, &base).await;
    let (status, created, _, _) = timed(
        http.post(format!("{base}/reports"))
            .bearer_auth(&token)
            .json(&json!({"report_type": "profile", "format": "pdf"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = created["id"].as_str().unwrap().to_owned();

    for mode in [Mode::Refuse, Mode::BlackHole] {
        proxy.set(mode);
        for (what, request) in [
            (
                "GET",
                http.get(format!("{base}/reports/{id}")).bearer_auth(&token),
            ),
            (
                "POST",
                http.post(format!("{base}/reports"))
                    .bearer_auth(&token)
                    .json(&json!({"report_type": "profile", "format": "pdf"})),
            ),
        ] {
            let (status, body, retry_after, took) = timed(request).await;
            assert_eq!(
                status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{mode:?} {what}: {body}"
            );
            assert!(took < OUTAGE_ANSWER_BOUND, "{mode:?} {what} took {took:?}");
            assert_eq!(
                body["error"], "service_unavailable",
                "{mode:?} {what}: {body}"
            );
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
            assert!(retry_after.is_some(), "{mode:?} {what}: Retry-After");
        }

        // Back: the same report, unchanged, within a few seconds and without a restart.
        proxy.set(Mode::Pass);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, body, _, _) =
                timed(http.get(format!("{base}/reports/{id}")).bearer_auth(&token)).await;
            if status == StatusCode::OK {
                assert_eq!(body["id"], json!(id));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{mode:?}: still {status} after the outage"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    shutdown.cancel();
}

async fn while_sqs_is_black_holed_a_new_report_is_accepted_quickly_and_completes_after(
    emulator: Emulator,
) {
    let store = quire_testing::fresh_postgres().await;
    let aws = aws(emulator).await;
    let records: Arc<dyn RecordStore> = store.clone();
    // Timeouts well past the bound: only the API's own dispatch budget keeps it quick.
    let patient = AwsTimeouts {
        connect: Duration::from_secs(1),
        read: Duration::from_secs(10),
        operation: Duration::from_secs(10),
    };
    let (proxy, queue_via_proxy, _) = aws.via_proxy(patient).await;
    let shutdown = CancellationToken::new();
    let (base, _dir) = api(records.clone(), queue_via_proxy, shutdown.clone()).await;
    let http = http();
    let token = access_token(&http, &base).await;

    proxy.set(Mode::BlackHole);
    let (status, body, _, took) = timed(
        http.post(format!("{base}/reports"))
            .bearer_auth(&token)
            .json(&json!({"report_type": "profile", "format": "pdf"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(took < OUTAGE_ANSWER_BOUND, "POST took {took:?}");
    assert_eq!(body["status"], "pending", "truthful: not sent yet");
    let id: Uuid = body["id"].as_str().unwrap().parse().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await; // the sweep keeps failing meanwhile
    assert_eq!(status_of(&*records, id).await, ReportStatus::Pending);

    proxy.set(Mode::Pass);
    let w = worker(
        records.clone(),
        aws.queue.clone(),
        aws.storage.clone(),
        Duration::from_secs(30),
    );
    let running = tokio::spawn(w.run(shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while status_of(&*records, id).await != ReportStatus::Completed {
        assert!(
            Instant::now() < deadline,
            "the accepted report never completed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    running.await.unwrap();
}

async fn status_of(store: &dyn RecordStore, id: Uuid) -> ReportStatus {
    status(store, id).await.status
}
