//! `spawn_app()`: the real app on 127.0.0.1:0 against a fresh Postgres database, the
//! database queue, local storage in a temporary directory and the built-in orchestrator.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use quire_api::cluster::Kubernetes;
use quire_api::{ApiConfig, AppState, ReportRequests, app, serve};
use quire_core::dispatch::{Dispatcher, QueueDispatcher};
use quire_core::model::{Claim, Lease, Report};
use quire_core::orchestrator::{Builtin, Orchestrator};
use quire_core::queue::{DatabaseQueue, WorkQueue};
use quire_core::storage::{LocalStorage, OutputStorage, output_key, output_meta};
use quire_core::store::{PgStore, RecordStore};
use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use url::Url;
use uuid::Uuid;

/// The JWT secret of every test app, so tests can forge tokens with it.
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret!";
pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    /// `http://127.0.0.1:<port>`
    pub address: String,
    /// Does not follow redirects, so tests see the 302s.
    pub client: reqwest::Client,
    pub store: Arc<dyn RecordStore>,
    /// Set when the app runs on Postgres.
    pub pg: Option<Arc<PgStore>>,
    pub queue: Arc<DatabaseQueue>,
    pub storage: Arc<LocalStorage>,
    /// The running app's state, to look inside it.
    pub state: AppState,
    shutdown: CancellationToken,
    _dirs: Vec<tempfile::TempDir>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A signed-up, signed-in user.
pub struct TestUser {
    pub id: Uuid,
    pub access_token: String,
    pub refresh_token: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// [`spawn_app`] with the configuration adjusted (bcrypt cost 4 unless `configure` says).
pub async fn spawn_app_with(configure: impl FnOnce(&mut ApiConfig)) -> TestApp {
    let pg = quire_testing::fresh_postgres().await;
    let queue = Arc::new(DatabaseQueue::postgres(pg.pool().clone()));
    let store: Arc<dyn RecordStore> = pg.clone();
    spawn(store, Some(pg), queue, Vec::new(), None, configure).await
}

/// Another app on `pg`'s database, as a restarted (or second) API process would be.
pub async fn spawn_app_on(pg: Arc<PgStore>, configure: impl FnOnce(&mut ApiConfig)) -> TestApp {
    let queue = Arc::new(DatabaseQueue::postgres(pg.pool().clone()));
    let store: Arc<dyn RecordStore> = pg.clone();
    spawn(store, Some(pg), queue, Vec::new(), None, configure).await
}

/// An app on a fresh database whose connections (a pool of 5) pass through a
/// [`FaultProxy`](quire_testing::proxy::FaultProxy), to stage Postgres outages.
pub async fn spawn_app_behind_proxy() -> (TestApp, quire_testing::proxy::FaultProxy) {
    let direct = quire_testing::fresh_postgres().await;
    let (proxy, proxied) =
        quire_testing::proxy::FaultProxy::to_postgres(&direct.pool().connect_options()).await;
    let store = PgStore::connect_with(proxied, 5)
        .await
        .expect("connect through the proxy");
    (spawn_app_on(Arc::new(store), |_| {}).await, proxy)
}

/// [`spawn_app`] whose dispatcher always fails, as when the work queue is down.
pub async fn spawn_app_with_failing_dispatch() -> TestApp {
    let pg = quire_testing::fresh_postgres().await;
    let queue = Arc::new(DatabaseQueue::postgres(pg.pool().clone()));
    let store: Arc<dyn RecordStore> = pg.clone();
    let orchestrator = Arc::new(Builtin::dispatch_only(Arc::new(FailingDispatcher)));
    spawn(
        store,
        Some(pg),
        queue,
        Vec::new(),
        Some(orchestrator),
        |_| {},
    )
    .await
}

/// [`spawn_app`] in cluster mode: reports become `ReportRequest`s through `report_requests`
/// (e.g. on a [`quire_testing::kube_api::FakeApiServer`]), the [`Kubernetes`] orchestrator.
pub async fn spawn_cluster_app(report_requests: ReportRequests) -> TestApp {
    let pg = quire_testing::fresh_postgres().await;
    let queue = Arc::new(DatabaseQueue::postgres(pg.pool().clone()));
    let store: Arc<dyn RecordStore> = pg.clone();
    let orchestrator = Arc::new(Kubernetes::new(store.clone(), report_requests));
    spawn(
        store,
        Some(pg),
        queue,
        Vec::new(),
        Some(orchestrator),
        |_| {},
    )
    .await
}

struct FailingDispatcher;

#[async_trait::async_trait]
impl Dispatcher for FailingDispatcher {
    async fn dispatch(&self, _: &Report) -> quire_core::Result<Report> {
        Err(quire_core::Error::queue("the work queue is down"))
    }
}

/// The same app over SQLite.
pub async fn spawn_sqlite_app() -> TestApp {
    spawn_sqlite_app_with(|_| {}).await
}

/// [`spawn_sqlite_app`] with the configuration adjusted.
pub async fn spawn_sqlite_app_with(configure: impl FnOnce(&mut ApiConfig)) -> TestApp {
    let (sqlite, dir) = quire_testing::fresh_sqlite().await;
    let queue = Arc::new(DatabaseQueue::sqlite(sqlite.pool().clone()));
    spawn(sqlite, None, queue, vec![dir], None, configure).await
}

async fn spawn(
    store: Arc<dyn RecordStore>,
    pg: Option<Arc<PgStore>>,
    queue: Arc<DatabaseQueue>,
    mut dirs: Vec<tempfile::TempDir>,
    orchestrator: Option<Arc<dyn Orchestrator>>,
    configure: impl FnOnce(&mut ApiConfig),
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a port");
    let address = format!("http://{}", listener.local_addr().expect("a bound address"));
    let data = tempfile::tempdir().expect("create a data directory");
    let public_url = Url::parse(&format!("{address}/")).expect("a valid URL");
    let storage = Arc::new(
        LocalStorage::new(data.path().join("outputs"), public_url, vec![7; 32])
            .expect("local storage"),
    );
    dirs.push(data);

    let mut config = ApiConfig::new(SecretString::from(JWT_SECRET));
    config.bcrypt_cost = 4;
    // Tests sign up many users from one address; `security.rs` tests the limit itself.
    config.signup_per_address_per_hour = 0;
    // Tests make many reports per user; `operability.rs` tests the quotas.
    (config.quota_unfinished, config.quota_per_hour) = (0, 0);
    // Dataset reports name `games`; `catalogue.rs` tests other source lists.
    config.data_sources = quire_render::DataSources::from_toml_str(
        "[sources.games]\nurl = \"http://127.0.0.1:9/games\"\nallow_private = true\n",
    )
    .expect("a valid data source");
    configure(&mut config);
    let orchestrator = orchestrator.unwrap_or_else(|| {
        let dispatcher = Arc::new(QueueDispatcher::new(store.clone(), queue.clone()));
        Arc::new(Builtin::dispatch_only(dispatcher))
    });
    let work_queue: Arc<dyn WorkQueue> = queue.clone();
    let state = AppState::new(
        config,
        store.clone(),
        orchestrator,
        storage.clone(),
        work_queue,
        Some(storage.clone()),
    );
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(serve(listener, app(state.clone()), async move {
        stop.cancelled().await
    }));

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("build an HTTP client");
    TestApp {
        address,
        client,
        store,
        pg,
        queue,
        storage,
        state,
        shutdown,
        _dirs: dirs,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.request(Method::POST, path)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_authed(&self, path: &str, token: &str) -> reqwest::Response {
        self.request(Method::GET, path)
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_authed(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.request(Method::POST, path)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn signup(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/auth/signup",
            &json!({ "email": email, "password": password }),
        )
        .await
    }

    pub async fn signin(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/auth/signin",
            &json!({ "email": email, "password": password }),
        )
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.post_json("/auth/refresh", &json!({ "refresh_token": refresh_token }))
            .await
    }

    /// A new user (unique email), signed in.
    pub async fn user(&self) -> TestUser {
        let email = format!("user-{}@example.com", Uuid::new_v4().simple());
        let created = self.signup(&email, PASSWORD).await;
        assert_eq!(created.status(), StatusCode::CREATED);
        let id = body(created).await["id"]
            .as_str()
            .expect("an id")
            .parse()
            .expect("a UUID");
        let tokens = self.signin(&email, PASSWORD).await;
        assert_eq!(tokens.status(), StatusCode::OK);
        let tokens = body(tokens).await;
        TestUser {
            id,
            access_token: tokens["access_token"]
                .as_str()
                .expect("an access token")
                .to_owned(),
            refresh_token: tokens["refresh_token"]
                .as_str()
                .expect("a refresh token")
                .to_owned(),
        }
    }

    pub async fn create_report(&self, user: &TestUser, request: &Value) -> reqwest::Response {
        self.post_authed("/reports", &user.access_token, request)
            .await
    }

    /// Creates an `activity` CSV report and returns its JSON.
    pub async fn activity_report(&self, user: &TestUser, days: u32) -> Value {
        let request =
            json!({ "report_type": "activity", "format": "csv", "parameters": { "days": days } });
        let response = self.create_report(user, &request).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        body(response).await
    }

    /// Plays the worker: claims the report, stores `contents` as its output and completes it.
    pub async fn complete_report(&self, id: Uuid, contents: &[u8]) -> Report {
        let now = Utc::now();
        let lease = Lease {
            owner: "test-worker".into(),
            expires_at: now + chrono::Duration::minutes(5),
        };
        let report = match self
            .store
            .claim_report(id, &lease, now)
            .await
            .expect("claim")
        {
            Claim::Claimed { report, .. } => report,
            other => panic!("could not claim the report: {other:?}"),
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("output");
        std::fs::write(&file, contents).expect("write the output");
        let output = self
            .storage
            .put_file(
                &output_key(&report),
                Path::new(&file),
                &output_meta(&report),
            )
            .await
            .expect("store the output");
        assert!(
            self.store
                .complete_report(id, &lease.owner, &output, Utc::now())
                .await
                .expect("complete")
        );
        self.store
            .report(id)
            .await
            .expect("read")
            .expect("the report exists")
    }

    /// Receives every visible message on the work queue (waiting up to `wait` for the first).
    pub async fn queued_messages(&self, wait: Duration) -> Vec<String> {
        self.queue
            .receive(10, wait, Duration::from_secs(60))
            .await
            .expect("receive from the work queue")
            .into_iter()
            .map(|delivery| delivery.body)
            .collect()
    }
}

/// The JSON body of a response.
pub async fn body(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

/// Asserts the standard error body and returns its message.
pub async fn error(response: reqwest::Response, status: StatusCode, code: &str) -> String {
    assert_eq!(response.status(), status);
    let body = body(response).await;
    assert_eq!(body["error"], code, "{body}");
    let message = body["message"].as_str().expect("an error message");
    assert!(!message.is_empty());
    message.to_owned()
}

/// An HS256 token with arbitrary claims, signed with `secret`.
pub fn token_with(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode a token")
}

/// Valid claims for `user_id`, to be spoiled one field at a time.
pub fn claims_for(user_id: Uuid) -> Value {
    let now = Utc::now().timestamp();
    json!({ "sub": user_id, "iat": now, "exp": now + 600, "iss": "quire", "aud": "quire-api" })
}

/// An unsigned token (`"alg": "none"`).
pub fn unsigned_token(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}
