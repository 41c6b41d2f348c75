//! The production pipeline against each AWS API emulator (moto and LocalStack in the test
//! command): the API server stores a report in Postgres and sends its message to SQS, the
//! `worker` renders it and uploads it to S3, and the API hands out a presigned link to it.
//!
//! Every test runs once per emulator (`moto::…`, `localstack::…`, see `quire_testing::on_each_emulator!`).
//! Each has its own database, queue (with a dead-letter queue named by its redrive
//! policy) and bucket. The AWS clients reach the emulator through [`Switch`]es, TCP proxies
//! that a test turns off to stage an SQS or S3 outage. Where a test needs the worker as
//! production runs it, it starts the `worker` binary with the production settings
//! (`QUIRE_QUEUE=sqs`, `QUIRE_STORAGE=s3`, …), and kills it where a crash is the point.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: a panic is the failure report

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use axum::Router;
use axum::routing::get;
use quire_api::{ApiConfig, AppState, app, serve};
use quire_core::dispatch::QueueDispatcher;
use quire_core::orchestrator::Builtin;
use quire_core::queue::{SqsQueue, WorkQueue};
use quire_core::storage::S3Storage;
use quire_core::store::{PgStore, RecordStore};
use quire_core::{ReportStatus, WorkMessage};
use quire_render::DataSources;
use quire_testing::aws::Emulator;
use quire_worker::{Outcome, Worker, WorkerConfig};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const PREFIX: &str = "outputs";
/// Rows of the `big` fixture: a CSV of about 11 MiB, above the 8 MiB multipart threshold.
const BIG_ROWS: usize = 150_000;

// ---- an outage switch -------------------------------------------------------------------

/// A TCP proxy to the emulator. While off it closes every connection it accepts and cuts
/// the open ones, as a network outage does.
struct Switch {
    url: String,
    on: watch::Sender<bool>,
}

impl Switch {
    async fn to(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (on, _) = watch::channel(true);
        let state = on.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*state.borrow() {
                    continue; // dropped: the connection is closed at once
                }
                let mut off = state.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = off.wait_for(|on| !on) => {}
                    }
                });
            }
        });
        Self { url, on }
    }

    fn set(&self, on: bool) {
        self.on.send_replace(on);
    }
}

// ---- the world of one test ---------------------------------------------------------------

struct Pipeline {
    emulator: Emulator,
    store: Arc<PgStore>,
    /// The test database's URL, for `worker` processes.
    database_url: String,
    queue_url: String,
    dead_letter_url: String,
    bucket: String,
    sqs: Switch,
    s3: Switch,
    queue: Arc<SqsQueue>,
    storage: Arc<S3Storage>,
    /// The emulator directly, to look at queues and buckets behind the switches.
    sqs_client: aws_sdk_sqs::Client,
    s3_client: aws_sdk_s3::Client,
    /// `http://127.0.0.1:<port>` of the API server.
    api: String,
    http: reqwest::Client,
    sources_file: PathBuf,
    shutdown: CancellationToken,
    dir: tempfile::TempDir,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Serves dataset fixtures: `/rows` (3 rows), `/slow` (3 rows after 3 s), `/big`.
async fn spawn_fixtures() -> SocketAddr {
    let rows = || {
        json!({"results": [
            {"name": "bulbasaur", "height": 7},
            {"name": "ivysaur", "height": 10},
            {"name": "venusaur", "height": 20}
        ]})
    };
    let app = Router::new()
        .route("/rows", get(move || async move { axum::Json(rows()) }))
        .route(
            "/slow",
            get(move || async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                axum::Json(rows())
            }),
        )
        .route(
            "/big",
            get(|| async {
                let rows: Vec<Value> = (0..BIG_ROWS)
                    .map(|i| json!({"id": i, "name": format!("row-{i:08}"), "note": "lorem ipsum dolor sit amet, consectetur adipiscing elit"}))
                    .collect();
                axum::Json(json!({ "results": rows }))
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn emulator_address(emulator: Emulator) -> SocketAddr {
    let endpoint = url::Url::parse(&emulator.endpoint()).unwrap();
    endpoint
        .socket_addrs(|| None)
        .unwrap()
        .into_iter()
        .next()
        .unwrap()
}

impl Pipeline {
    async fn new(emulator: Emulator) -> Self {
        Self::with_api(emulator, |_| {}).await
    }

    async fn with_api(emulator: Emulator, configure: impl FnOnce(&mut ApiConfig)) -> Self {
        let store = quire_testing::fresh_postgres().await;
        let database: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(store.pool())
            .await
            .unwrap();
        let mut database_url = url::Url::parse(&quire_testing::database_url()).unwrap();
        database_url.set_path(&database);

        // A fresh queue and bucket on the emulator.
        let (queue, queue_url) = quire_testing::aws::fresh_queue(emulator).await;
        let dead_letter_url = queue.dead_letter_queue_url().await.unwrap().unwrap();
        let bucket = quire_testing::aws::fresh_bucket(emulator)
            .await
            .bucket()
            .to_owned();
        let direct = quire_testing::aws::sdk_config(emulator).await;

        // The pipeline's own clients, through the switches.
        let upstream = emulator_address(emulator);
        let (sqs, s3) = (Switch::to(upstream).await, Switch::to(upstream).await);
        let queue = Arc::new(SqsQueue::new(
            quire_core::aws::sqs_client(
                &quire_testing::aws::sdk_config_via(emulator, &sqs.url).await,
            ),
            queue_url.clone(),
        ));
        let storage = Arc::new(S3Storage::new(
            quire_core::aws::s3_client(
                &quire_testing::aws::sdk_config_via(emulator, &s3.url).await,
                true,
            ),
            bucket.clone(),
            Some(PREFIX.to_owned()),
        ));

        let fixtures = spawn_fixtures().await;
        let dir = tempfile::tempdir().unwrap();
        let sources_file = dir.path().join("sources.toml");
        std::fs::write(
            &sources_file,
            format!(
                r#"
                [sources.pokemon]
                url = "http://{fixtures}/rows"
                allow_private = true
                rows_pointer = "/results"
                [sources.slow]
                url = "http://{fixtures}/slow"
                allow_private = true
                rows_pointer = "/results"
                [sources.big]
                url = "http://{fixtures}/big"
                allow_private = true
                rows_pointer = "/results"
                max_rows = {BIG_ROWS}
                max_bytes = 67108864
                timeout_secs = 60
                "#
            ),
        )
        .unwrap();

        // The API server as `api-server` runs it, with the built-in dispatcher and sweep.
        let mut config = ApiConfig::new(SecretString::from("pipeline-secret-pipeline-secret!!"));
        config.bcrypt_cost = 4;
        // The API knows the worker's sources: it refuses dataset reports naming others.
        config.data_sources = quire_render::DataSources::from_file(&sources_file).unwrap();
        configure(&mut config);
        let records: Arc<dyn RecordStore> = store.clone();
        let dispatcher = Arc::new(QueueDispatcher::new(records.clone(), queue.clone()));
        let shutdown = CancellationToken::new();
        {
            let (dispatcher, shutdown) = (dispatcher.clone(), shutdown.clone());
            let every = Duration::from_millis(300);
            tokio::spawn(async move { dispatcher.sweep_pending(every, every, shutdown).await });
        }
        let state = AppState::new(
            config,
            records,
            Arc::new(Builtin::dispatch_only(dispatcher)),
            storage.clone(),
            queue.clone(),
            None,
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = format!("http://{}", listener.local_addr().unwrap());
        let stop = shutdown.clone();
        tokio::spawn(serve(listener, app(state), async move {
            stop.cancelled().await
        }));

        Self {
            emulator,
            store,
            database_url: database_url.into(),
            queue_url,
            dead_letter_url,
            bucket,
            sqs,
            s3,
            queue,
            storage,
            sqs_client: quire_core::aws::sqs_client(&direct),
            s3_client: quire_core::aws::s3_client(&direct, true),
            api,
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            sources_file,
            shutdown,
            dir,
        }
    }

    /// A signed-up user's id and access token.
    async fn user(&self) -> (Uuid, String) {
        let email = format!("{}@example.com", Uuid::new_v4().simple());
        let credentials = json!({"email": email, "password": "correct horse battery staple"});
        let created = self
            .http
            .post(format!("{}/auth/signup", self.api))
            .json(&credentials)
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let id = created.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let tokens: Value = self
            .http
            .post(format!("{}/auth/signin", self.api))
            .json(&credentials)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (id, tokens["access_token"].as_str().unwrap().to_owned())
    }

    async fn post_report(&self, token: &str, request: Value) -> Uuid {
        let response = self
            .http
            .post(format!("{}/reports", self.api))
            .bearer_auth(token)
            .json(&request)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED, "POST /reports");
        response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    async fn get_report(&self, token: &str, id: Uuid) -> Value {
        let response = self
            .http
            .get(format!("{}/reports/{id}", self.api))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    async fn readyz(&self) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}/readyz", self.api))
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    /// Waits (at most `within`) until the report has `status`; panics with `context`
    /// otherwise.
    async fn wait_for(&self, id: Uuid, status: ReportStatus, within: Duration, context: &str) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let report = self.store.report(id).await.unwrap().unwrap();
            if report.status == status {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "report still {} after {within:?}: {report:?}\n{context}",
                    report.status
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Messages SQS counts on `queue_url`: (visible, in flight).
    async fn message_counts(&self, queue_url: &str) -> (u64, u64) {
        let attributes = self
            .sqs_client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let count = |name| {
            attributes
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        (
            count(QueueAttributeName::ApproximateNumberOfMessages),
            count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// Keys of every object in the bucket.
    async fn objects(&self) -> Vec<String> {
        let listed = self
            .s3_client
            .list_objects_v2()
            .bucket(&self.bucket)
            .send()
            .await
            .unwrap();
        listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    /// A worker in this process, fast to retry, on the pipeline's (switchable) clients.
    fn worker(&self, config: WorkerConfig) -> Arc<Worker> {
        Arc::new(Worker::new(
            self.store.clone(),
            self.queue.clone(),
            self.storage.clone(),
            Arc::new(DataSources::from_file(&self.sources_file).unwrap()),
            config,
        ))
    }

    /// The `worker` binary with the production settings, reaching SQS and S3 through the
    /// switches (by the SDK's per-service endpoint variables). Killed when dropped.
    fn spawn_worker_process(&self, name: &str) -> WorkerProcess {
        let log = self.dir.path().join(format!("{name}.log"));
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_worker"));
        if let Some((key, secret)) = self.emulator.credentials() {
            command
                .env("AWS_ACCESS_KEY_ID", key)
                .env("AWS_SECRET_ACCESS_KEY", secret);
        }
        let child = command
            .env("DATABASE_URL", &self.database_url)
            .env("QUIRE_QUEUE", "sqs")
            .env("QUIRE_SQS_QUEUE_URL", &self.queue_url)
            .env("QUIRE_STORAGE", "s3")
            .env("QUIRE_S3_BUCKET", &self.bucket)
            .env("QUIRE_S3_PREFIX", PREFIX)
            .env("QUIRE_S3_FORCE_PATH_STYLE", "true")
            .env("QUIRE_DATA_SOURCES_FILE", &self.sources_file)
            .env("QUIRE_VISIBILITY_TIMEOUT", "5")
            .env("QUIRE_WORKER_CONCURRENCY", "2")
            .env("QUIRE_SHUTDOWN_GRACE", "5")
            .env("AWS_ENDPOINT_URL_SQS", &self.sqs.url)
            .env("AWS_ENDPOINT_URL_S3", &self.s3.url)
            .env("QUIRE_HEALTH_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        WorkerProcess { child, log }
    }
}

struct WorkerProcess {
    child: tokio::process::Child,
    log: PathBuf,
}

impl WorkerProcess {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no graceful anything, the message stays in flight.
    async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }

    /// SIGTERM, then waits for a clean exit.
    async fn stop(mut self) -> String {
        let pid = self.child.id().unwrap();
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the worker stops within its grace period")
            .unwrap();
        let log = self.log();
        assert!(status.success(), "worker exit {status}:\n{log}");
        log
    }
}

fn fast_worker() -> WorkerConfig {
    WorkerConfig {
        concurrency: 2,
        lease: Duration::from_secs(5),
        heartbeat: Duration::from_millis(500),
        progress_interval: Duration::from_millis(100),
        max_attempts: 5,
        backoff_base: Duration::from_millis(500),
        backoff_max: Duration::from_secs(2),
        poll_wait: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(2),
        ..WorkerConfig::default()
    }
}

fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

// ---- the tests -----------------------------------------------------------------------------

quire_testing::on_each_emulator!(
    a_report_travels_from_post_over_sqs_through_the_worker_to_a_presigned_s3_download,
    the_same_message_delivered_twice_gives_one_result,
    a_worker_killed_mid_render_leaves_exactly_one_completed_report,
    poison_messages_are_moved_to_the_dead_letter_queue_and_not_retried,
    an_sqs_outage_holds_reports_pending_and_they_are_dispatched_when_it_ends,
    an_s3_outage_is_retried_with_backoff_without_spending_an_attempt_and_nothing_is_lost,
    a_large_csv_is_uploaded_in_parts_and_downloads_whole,
    download_links_expire_and_a_fresh_one_is_signed_near_expiry,
);

async fn a_report_travels_from_post_over_sqs_through_the_worker_to_a_presigned_s3_download(
    emulator: Emulator,
) {
    let pipeline = Pipeline::new(emulator).await;
    let (user_id, token) = pipeline.user().await;

    let id = pipeline
        .post_report(&token, json!({"report_type": "profile", "format": "pdf"}))
        .await;

    // The message is on SQS: one, with the versioned body naming the report.
    let (visible, _) = pipeline.message_counts(&pipeline.queue_url).await;
    assert_eq!(visible, 1);
    assert_eq!(
        pipeline.store.report(id).await.unwrap().unwrap().status,
        ReportStatus::Queued
    );

    let worker = pipeline.spawn_worker_process("worker");
    pipeline
        .wait_for(
            id,
            ReportStatus::Completed,
            Duration::from_secs(60),
            &worker.log(),
        )
        .await;
    let log = worker.stop().await;
    assert!(log.contains("report completed"), "{log}");

    // The object is in S3 under PREFIX/{user_id}/{report_id}.pdf with its headers.
    let key = format!("{PREFIX}/{user_id}/{id}.pdf");
    assert_eq!(pipeline.objects().await, std::slice::from_ref(&key));
    let object = pipeline
        .s3_client
        .get_object()
        .bucket(&pipeline.bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(object.content_type(), Some("application/pdf"));
    assert!(
        object
            .content_disposition()
            .unwrap_or_default()
            .starts_with("attachment; filename="),
        "{:?}",
        object.content_disposition()
    );
    let stored = object.body.collect().await.unwrap().into_bytes();

    // GET shows it completed with a presigned link, and the link serves the PDF.
    let report = pipeline.get_report(&token, id).await;
    assert_eq!(report["status"], "completed");
    assert_eq!(report["progress"], 100);
    let url = report["download_url"].as_str().unwrap();
    assert!(
        url.contains(&format!("/{}/{key}", pipeline.bucket)),
        "{url}"
    );
    assert_eq!(query_param(url, "X-Amz-Expires").as_deref(), Some("900"));
    assert!(query_param(url, "X-Amz-Signature").is_some());
    let downloaded = pipeline.http.get(url).send().await.unwrap();
    assert_eq!(downloaded.status(), StatusCode::OK);
    let bytes = downloaded.bytes().await.unwrap();
    assert!(bytes.starts_with(b"%PDF-"));
    assert_eq!(bytes, stored);

    // /download redirects to a presigned link too.
    let redirect = pipeline
        .http
        .get(format!("{}/reports/{id}/download", pipeline.api))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), StatusCode::FOUND);
    let location = redirect.headers()["location"].to_str().unwrap();
    assert!(location.contains(&key), "{location}");

    // Nothing left on the queue.
    assert_eq!(pipeline.message_counts(&pipeline.queue_url).await, (0, 0));
}

async fn the_same_message_delivered_twice_gives_one_result(emulator: Emulator) {
    let pipeline = Pipeline::new(emulator).await;
    let (user_id, token) = pipeline.user().await;
    let id = pipeline
        .post_report(
            &token,
            json!({"report_type": "dataset", "format": "csv", "parameters": {"source": "pokemon"}}),
        )
        .await;
    // A duplicate, as SQS's at-least-once delivery (or a retried dispatch) can produce.
    let message = WorkMessage::new(id, user_id, quire_core::ReportType::Dataset, 1);
    pipeline
        .queue
        .send(&message.to_body(), Duration::ZERO)
        .await
        .unwrap();

    let worker = pipeline.worker(fast_worker());
    let mut outcomes = Vec::new();
    while outcomes.len() < 2 {
        let deliveries = pipeline
            .queue
            .receive(10, Duration::from_secs(2), Duration::from_secs(30))
            .await
            .unwrap();
        for delivery in deliveries {
            outcomes.push(worker.process(&delivery, &CancellationToken::new()).await);
        }
    }
    assert_eq!(outcomes, [Outcome::Completed, Outcome::AlreadyFinished]);

    let report = pipeline.store.report(id).await.unwrap().unwrap();
    assert_eq!(report.status, ReportStatus::Completed);
    assert_eq!(report.attempts, 1);
    assert_eq!(
        pipeline.objects().await,
        [format!("{PREFIX}/{user_id}/{id}.csv")]
    );
    assert_eq!(pipeline.message_counts(&pipeline.queue_url).await, (0, 0));
    assert_eq!(
        pipeline.message_counts(&pipeline.dead_letter_url).await,
        (0, 0)
    );
}

async fn a_worker_killed_mid_render_leaves_exactly_one_completed_report(emulator: Emulator) {
    let pipeline = Pipeline::new(emulator).await;
    let (user_id, token) = pipeline.user().await;
    let id = pipeline
        .post_report(
            &token,
            json!({"report_type": "dataset", "format": "json", "parameters": {"source": "slow"}}),
        )
        .await;

    let mut doomed = pipeline.spawn_worker_process("doomed");
    pipeline
        .wait_for(
            id,
            ReportStatus::Running,
            Duration::from_secs(30),
            &doomed.log(),
        )
        .await;
    doomed.kill().await;
    // The message was not deleted: it is in flight until its visibility timeout ends.
    assert_eq!(pipeline.message_counts(&pipeline.queue_url).await, (0, 1));

    let survivor = pipeline.spawn_worker_process("survivor");
    pipeline
        .wait_for(
            id,
            ReportStatus::Completed,
            Duration::from_secs(60),
            &survivor.log(),
        )
        .await;
    let log = survivor.stop().await;

    let report = pipeline.store.report(id).await.unwrap().unwrap();
    assert_eq!(report.attempts, 2, "the killed attempt counts: {log}");
    assert_eq!(
        pipeline.objects().await,
        [format!("{PREFIX}/{user_id}/{id}.json")]
    );
    assert_eq!(log.matches("report completed").count(), 1, "{log}");
    assert_eq!(pipeline.message_counts(&pipeline.queue_url).await, (0, 0));
}

async fn poison_messages_are_moved_to_the_dead_letter_queue_and_not_retried(emulator: Emulator) {
    let pipeline = Pipeline::new(emulator).await;
    let (user_id, _token) = pipeline.user().await;
    pipeline
        .queue
        .send("{not json", Duration::ZERO)
        .await
        .unwrap();
    let orphan = WorkMessage::new(Uuid::now_v7(), user_id, quire_core::ReportType::Profile, 1);
    pipeline
        .queue
        .send(&orphan.to_body(), Duration::ZERO)
        .await
        .unwrap();

    let worker = pipeline.spawn_worker_process("worker");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while pipeline.message_counts(&pipeline.dead_letter_url).await.0 < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not dead-lettered:\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = worker.stop().await;
    assert!(log.contains("does not exist"), "{log}");

    assert_eq!(pipeline.message_counts(&pipeline.queue_url).await, (0, 0));
    let letters = pipeline
        .sqs_client
        .receive_message()
        .queue_url(&pipeline.dead_letter_url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    let mut bodies: Vec<String> = letters
        .messages()
        .iter()
        .filter_map(|m| m.body().map(str::to_owned))
        .collect();
    bodies.sort();
    let mut expected = vec!["{not json".to_owned(), orphan.to_body()];
    expected.sort();
    assert_eq!(bodies, expected);
    for letter in letters.messages() {
        let reason = letter
            .message_attributes()
            .and_then(|a| a.get(quire_core::queue::sqs::DEAD_LETTER_REASON_ATTRIBUTE))
            .and_then(|a| a.string_value())
            .unwrap_or_default();
        assert!(!reason.is_empty(), "{letter:?}");
    }
}

async fn an_sqs_outage_holds_reports_pending_and_they_are_dispatched_when_it_ends(
    emulator: Emulator,
) {
    let pipeline = Pipeline::new(emulator).await;
    let (_, token) = pipeline.user().await;
    let (status, _) = pipeline.readyz().await;
    assert_eq!(status, StatusCode::OK);

    pipeline.sqs.set(false);
    // The API still accepts the report; it waits as `pending`.
    let id = pipeline
        .post_report(&token, json!({"report_type": "profile", "format": "pdf"}))
        .await;
    assert_eq!(pipeline.get_report(&token, id).await["status"], "pending");
    let (status, ready) = pipeline.readyz().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready["checks"]["database"], "ok");
    assert_eq!(ready["checks"]["storage"], "ok");
    assert!(
        ready["checks"]["queue"]
            .as_str()
            .unwrap()
            .starts_with("unavailable"),
        "{ready}"
    );

    // A worker started during the outage backs off instead of dying.
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(pipeline.worker(fast_worker()).run(shutdown.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!worker.is_finished());
    assert_eq!(pipeline.get_report(&token, id).await["status"], "pending");

    // SQS is back: the sweep dispatches the report and the worker completes it.
    pipeline.sqs.set(true);
    pipeline
        .wait_for(id, ReportStatus::Completed, Duration::from_secs(60), "")
        .await;
    assert_eq!(pipeline.readyz().await.0, StatusCode::OK);
    shutdown.cancel();
    worker.await.unwrap();
    let report = pipeline.store.report(id).await.unwrap().unwrap();
    assert_eq!(report.attempts, 1);
}

async fn an_s3_outage_is_retried_with_backoff_without_spending_an_attempt_and_nothing_is_lost(
    emulator: Emulator,
) {
    let pipeline = Pipeline::new(emulator).await;
    let (user_id, token) = pipeline.user().await;
    pipeline.s3.set(false);
    let (status, ready) = pipeline.readyz().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        ready["checks"]["storage"]
            .as_str()
            .unwrap()
            .starts_with("unavailable"),
        "{ready}"
    );
    assert_eq!(ready["checks"]["queue"], "ok");

    let id = pipeline
        .post_report(
            &token,
            json!({"report_type": "dataset", "format": "csv", "parameters": {"source": "pokemon"}}),
        )
        .await;
    let worker = pipeline.worker(fast_worker());
    let delivery = pipeline
        .queue
        .receive(1, Duration::from_secs(5), Duration::from_secs(30))
        .await
        .unwrap()
        .pop()
        .unwrap();
    let Outcome::Postponed { delay } = worker.process(&delivery, &CancellationToken::new()).await
    else {
        panic!("a failed upload is postponed");
    };
    let retrying = pipeline.store.report(id).await.unwrap().unwrap();
    assert_eq!(retrying.status, ReportStatus::Queued);
    assert_eq!(
        retrying.attempts, 0,
        "S3's outage is not the report's failure"
    );

    // S3 is back: the message reappears after the backoff and the retry completes.
    pipeline.s3.set(true);
    tokio::time::sleep(delay).await;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(worker.run(shutdown.clone()));
    pipeline
        .wait_for(id, ReportStatus::Completed, Duration::from_secs(60), "")
        .await;
    shutdown.cancel();
    running.await.unwrap();
    let report = pipeline.store.report(id).await.unwrap().unwrap();
    assert_eq!(report.attempts, 1);
    assert_eq!(
        pipeline.objects().await,
        [format!("{PREFIX}/{user_id}/{id}.csv")]
    );
    assert_eq!(pipeline.readyz().await.0, StatusCode::OK);
}

async fn a_large_csv_is_uploaded_in_parts_and_downloads_whole(emulator: Emulator) {
    let pipeline = Pipeline::new(emulator).await;
    let (user_id, token) = pipeline.user().await;
    let id = pipeline
        .post_report(
            &token,
            json!({"report_type": "dataset", "format": "csv", "parameters": {"source": "big"}}),
        )
        .await;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(pipeline.worker(fast_worker()).run(shutdown.clone()));
    pipeline
        .wait_for(id, ReportStatus::Completed, Duration::from_secs(120), "")
        .await;
    shutdown.cancel();
    running.await.unwrap();

    let key = format!("{PREFIX}/{user_id}/{id}.csv");
    let head = pipeline
        .s3_client
        .head_object()
        .bucket(&pipeline.bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    let size = u64::try_from(head.content_length().unwrap()).unwrap();
    assert!(
        size > quire_core::storage::s3::DEFAULT_MULTIPART_THRESHOLD,
        "{size} bytes"
    );
    // A multipart object's ETag ends in `-<parts>`.
    let etag = head.e_tag().unwrap().trim_matches('"').to_owned();
    let parts: u32 = etag.rsplit_once('-').unwrap().1.parse().unwrap();
    assert!(parts >= 2, "{etag}");
    let report = pipeline.store.report(id).await.unwrap().unwrap();
    assert_eq!(report.output_size, Some(i64::try_from(size).unwrap()));

    let url = pipeline.get_report(&token, id).await["download_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let bytes = pipeline
        .http
        .get(&url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.len() as u64, size);
    use sha2::Digest;
    assert_eq!(
        Some(hex::encode(sha2::Sha256::digest(&bytes))),
        report.output_checksum
    );
    let text = std::str::from_utf8(&bytes).unwrap();
    assert_eq!(text.lines().count(), BIG_ROWS + 1, "a header and every row");
    assert!(text.contains("row-00149999"));
}

async fn download_links_expire_and_a_fresh_one_is_signed_near_expiry(emulator: Emulator) {
    let pipeline = Pipeline::with_api(emulator, |config| {
        config.download_url_ttl = Duration::from_secs(4)
    })
    .await;
    let (_, token) = pipeline.user().await;
    let id = pipeline
        .post_report(
            &token,
            json!({"report_type": "dataset", "format": "csv", "parameters": {"source": "pokemon"}}),
        )
        .await;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(pipeline.worker(fast_worker()).run(shutdown.clone()));
    pipeline
        .wait_for(id, ReportStatus::Completed, Duration::from_secs(60), "")
        .await;
    shutdown.cancel();
    running.await.unwrap();

    let first = pipeline.get_report(&token, id).await;
    let first_url = first["download_url"].as_str().unwrap().to_owned();
    assert_eq!(
        query_param(&first_url, "X-Amz-Expires").as_deref(),
        Some("4")
    );
    let expires_at: chrono::DateTime<chrono::Utc> = first["download_url_expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let lifetime = expires_at - chrono::Utc::now();
    assert!(
        lifetime <= chrono::Duration::seconds(4) && lifetime > chrono::Duration::seconds(1),
        "{lifetime}"
    );

    // While the link is good for more than half its lifetime, the same one is handed out.
    let again = pipeline.get_report(&token, id).await;
    assert_eq!(again["download_url"], first["download_url"]);

    // Close to expiry (and after it), a fresh link with a later expiry.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let fresh = pipeline.get_report(&token, id).await;
    let fresh_url = fresh["download_url"].as_str().unwrap();
    assert_ne!(fresh_url, first_url);
    let fresh_expires: chrono::DateTime<chrono::Utc> = fresh["download_url_expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(fresh_expires > expires_at);
    assert_eq!(
        pipeline.http.get(fresh_url).send().await.unwrap().status(),
        StatusCode::OK
    );
}
