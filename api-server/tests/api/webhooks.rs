//! Completion webhooks end to end: a real receiver on 127.0.0.1 (so these apps allow
//! private destinations, as `QUIRE_WEBHOOK_ALLOW_PRIVATE=true` does), reports finished
//! through the store as a worker would, the real dispatcher, and every signature checked
//! with Standard Webhooks' own Rust library (`standardwebhooks`), not our code.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus, Uri, header};
use axum::response::IntoResponse;
use chrono::Utc;
use quire_api::ApiConfig;
use quire_api::webhooks::Dispatcher;
use quire_core::model::{AttemptEnd, Claim, Lease};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{
    TestApp, TestUser, body, error, spawn_app_on, spawn_app_with, spawn_sqlite_app_with,
};

const ALL_EVENTS: [&str; 3] = ["report.completed", "report.failed", "report.cancelled"];

// ---- the receiver ------------------------------------------------------------------------

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers[name].to_str().unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Verifies the signature with Standard Webhooks' library; panics if it does not hold.
    fn verify(&self, secret: &str) {
        let webhook = standardwebhooks::Webhook::new(secret).unwrap();
        webhook
            .verify(&self.body, &self.headers)
            .expect("the signature verifies with the standardwebhooks crate");
        // The check can fail: one changed byte and it does.
        let mut tampered = self.body.to_vec();
        tampered[0] = b' ';
        assert!(webhook.verify(&tampered, &self.headers).is_err());
    }
}

#[derive(Default)]
struct Inbox {
    /// Statuses to answer, in turn; 200 once they run out.
    script: Mutex<VecDeque<u16>>,
    received: Mutex<Vec<Received>>,
}

impl Inbox {
    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// A receiver on 127.0.0.1: answers each request with the next scripted status (a 3xx
/// with `Location: /elsewhere`) and records it. Returns its base URL.
async fn receiver(script: &[u16]) -> (String, Arc<Inbox>) {
    let inbox = Arc::new(Inbox::default());
    inbox.script.lock().unwrap().extend(script);
    async fn handle(
        State(inbox): State<Arc<Inbox>>,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::response::Response {
        inbox.received.lock().unwrap().push(Received {
            path: uri.path().to_owned(),
            headers,
            body,
        });
        let status = inbox.script.lock().unwrap().pop_front().unwrap_or(200);
        let status = AxumStatus::from_u16(status).unwrap();
        if status.is_redirection() {
            (status, [(header::LOCATION, "/elsewhere")]).into_response()
        } else {
            status.into_response()
        }
    }
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), inbox)
}

// ---- the app side --------------------------------------------------------------------------

/// Development settings: local receivers allowed, quick retries and polls.
fn local(config: &mut ApiConfig) {
    config.webhooks.allow_private = true;
    config.webhooks.first_retry = Duration::from_millis(20);
    config.webhooks.poll_every = Duration::from_millis(25);
}

/// A running dispatcher; stops when dropped.
struct Running {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn dispatch(app: &TestApp) -> Running {
    let stop = CancellationToken::new();
    let dispatcher = Dispatcher::new(app.state.clone()).unwrap();
    let task = tokio::spawn(dispatcher.run(stop.clone()));
    Running {
        stop,
        task: Some(task),
    }
}

/// Registers `url` for `events`; returns the 201's body.
async fn register(app: &TestApp, user: &TestUser, url: &str, events: &[&str]) -> Value {
    let response = app
        .post_authed(
            "/webhooks",
            &user.access_token,
            &json!({ "url": url, "events": events }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created = body(response).await;
    assert_eq!(
        location,
        format!("/webhooks/{}", created["id"].as_str().unwrap())
    );
    created
}

async fn deliveries(app: &TestApp, user: &TestUser, webhook: &Value) -> Vec<Value> {
    let id = webhook["id"].as_str().unwrap();
    let response = app
        .get_authed(&format!("/webhooks/{id}/deliveries"), &user.access_token)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    body(response).await["items"].as_array().unwrap().clone()
}

async fn webhook_view(app: &TestApp, user: &TestUser, webhook: &Value) -> Value {
    let id = webhook["id"].as_str().unwrap();
    let response = app
        .get_authed(&format!("/webhooks/{id}"), &user.access_token)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    body(response).await
}

/// A new activity report of `user`'s, completed as a worker would.
async fn completed_report(app: &TestApp, user: &TestUser) -> Uuid {
    let report = app.activity_report(user, 1).await;
    let id = report["id"].as_str().unwrap().parse().unwrap();
    app.complete_report(id, b"when,what\n").await;
    id
}

/// A new activity report of `user`'s whose only attempt failed for good.
async fn failed_report(app: &TestApp, user: &TestUser) -> Uuid {
    let report = app.activity_report(user, 1).await;
    let id = report["id"].as_str().unwrap().parse().unwrap();
    let now = Utc::now();
    let lease = Lease {
        owner: "test-worker".into(),
        expires_at: now + chrono::Duration::minutes(5),
    };
    let Claim::Claimed { .. } = app.store.claim_report(id, &lease, now).await.unwrap() else {
        panic!("could not claim the report");
    };
    let failed = app
        .store
        .fail_attempt(
            id,
            &lease.owner,
            "the source was down",
            AttemptEnd::GiveUp,
            now,
        )
        .await
        .unwrap();
    assert!(failed);
    id
}

/// Polls `check` until it returns `Some`, for at most 15 seconds.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn received_at_least(inbox: &Inbox, n: usize) -> Vec<Received> {
    eventually(&format!("{n} requests at the receiver"), || async {
        let received = inbox.received();
        (received.len() >= n).then_some(received)
    })
    .await
}

// ---- tests ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_completed_report_is_delivered_signed_per_standard_webhooks() {
    let app = spawn_app_with(local).await;
    let user = app.user().await;
    let (base, inbox) = receiver(&[]).await;
    let webhook = register(&app, &user, &format!("{base}/hooks/quire"), &ALL_EVENTS).await;
    let secret = webhook["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(webhook["events"], json!(ALL_EVENTS));
    let _dispatcher = dispatch(&app);

    let report_id = completed_report(&app, &user).await;
    let received = received_at_least(&inbox, 1).await;
    let delivery = &received[0];
    assert_eq!(delivery.path, "/hooks/quire");
    assert_eq!(delivery.header("content-type"), "application/json");
    assert!(delivery.header("webhook-signature").starts_with("v1,"));
    delivery.verify(&secret);
    let payload = delivery.json();
    assert_eq!(payload["type"], "report.completed");
    assert!(payload["timestamp"].is_string(), "{payload}");
    // `data` is the report as GET /reports/{id} shows it, download link included.
    assert_eq!(payload["data"]["id"], report_id.to_string());
    assert_eq!(payload["data"]["status"], "completed");
    let link = payload["data"]["download_url"].as_str().unwrap();
    let file = app.client.get(link).send().await.unwrap();
    assert_eq!(file.status(), StatusCode::OK);
    assert_eq!(file.text().await.unwrap(), "when,what\n");

    let listed = eventually("the delivery recorded as delivered", || async {
        let listed = deliveries(&app, &user, &webhook).await;
        (listed.len() == 1 && listed[0]["status"] == "delivered").then_some(listed)
    })
    .await;
    assert_eq!(listed[0]["id"], delivery.header("webhook-id"));
    assert_eq!(listed[0]["event"], "report.completed");
    assert_eq!(listed[0]["report_id"], report_id.to_string());
    assert_eq!(listed[0]["attempts"], 1);
    assert_eq!(listed[0]["response_status"], 200);
    assert!(listed[0]["delivered_at"].is_string());
    // Exactly one request: a delivered delivery is not sent again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(inbox.received().len(), 1);
}

#[tokio::test]
async fn failed_and_cancelled_reports_raise_their_events_and_only_subscribed_ones_are_sent() {
    let app = spawn_app_with(local).await;
    let user = app.user().await;
    let (base, inbox) = receiver(&[]).await;
    let webhook = register(
        &app,
        &user,
        &format!("{base}/hook"),
        &["report.failed", "report.cancelled"],
    )
    .await;
    let secret = webhook["secret"].as_str().unwrap();
    let _dispatcher = dispatch(&app);

    let failed = failed_report(&app, &user).await;
    let cancelled = app.activity_report(&user, 1).await;
    let cancel_path = format!("/reports/{}/cancel", cancelled["id"].as_str().unwrap());
    let response = app
        .post_authed(&cancel_path, &user.access_token, &json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    // Not subscribed: no delivery at all.
    completed_report(&app, &user).await;

    let received = received_at_least(&inbox, 2).await;
    let mut seen: Vec<(String, String)> = received
        .iter()
        .map(|r| {
            r.verify(secret);
            let payload = r.json();
            (
                payload["type"].as_str().unwrap().to_owned(),
                payload["data"]["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                "report.cancelled".to_owned(),
                cancelled["id"].as_str().unwrap().to_owned()
            ),
            ("report.failed".to_owned(), failed.to_string()),
        ]
    );
    let failed_payload = received
        .iter()
        .map(Received::json)
        .find(|p| p["type"] == "report.failed")
        .unwrap();
    assert_eq!(
        failed_payload["data"]["error_message"],
        "the source was down"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        inbox.received().len(),
        2,
        "the completion was not subscribed"
    );
    assert_eq!(deliveries(&app, &user, &webhook).await.len(), 2);
}

#[tokio::test]
async fn a_refused_delivery_is_retried_under_the_same_webhook_id_until_accepted() {
    let app = spawn_app_with(local).await;
    let user = app.user().await;
    let (base, inbox) = receiver(&[500, 500]).await;
    let webhook = register(&app, &user, &format!("{base}/hook"), &ALL_EVENTS).await;
    let secret = webhook["secret"].as_str().unwrap();
    let _dispatcher = dispatch(&app);
    completed_report(&app, &user).await;

    let received = received_at_least(&inbox, 3).await;
    let id = received[0].header("webhook-id").to_owned();
    for request in &received {
        assert_eq!(request.header("webhook-id"), id, "every attempt has one id");
        request.verify(secret);
    }
    let listed = eventually("the delivery recorded as delivered", || async {
        let listed = deliveries(&app, &user, &webhook).await;
        (listed[0]["status"] == "delivered").then_some(listed)
    })
    .await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id);
    assert_eq!(listed[0]["attempts"], 3);
    assert_eq!(listed[0]["response_status"], 200);
    assert_eq!(listed[0]["last_error"], Value::Null);

    let metrics = app
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("quire_webhook_deliveries_total{outcome=\"retried\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("quire_webhook_deliveries_total{outcome=\"delivered\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_delivery_pending_when_the_api_stops_is_sent_by_the_next_process() {
    // The retry comes due after the first process stopped.
    let settings = |config: &mut ApiConfig| {
        local(config);
        config.webhooks.first_retry = Duration::from_secs(1);
    };
    let first = spawn_app_with(settings).await;
    let pg = first.pg.clone().unwrap();
    let user = first.user().await;
    let (base, inbox) = receiver(&[503]).await;
    let webhook = register(&first, &user, &format!("{base}/hook"), &ALL_EVENTS).await;
    let running = dispatch(&first);
    completed_report(&first, &user).await;
    let refused = received_at_least(&inbox, 1).await;
    // The first process records the failed attempt, then stops.
    eventually("the failed attempt recorded", || async {
        let listed = deliveries(&first, &user, &webhook).await;
        (listed[0]["attempts"] == 1).then_some(())
    })
    .await;
    running.stop().await;
    drop(first);
    let before = inbox.received().len();

    assert_eq!(before, 1, "the first process sent once");
    let second = spawn_app_on(pg, settings).await;
    let _dispatcher = dispatch(&second);
    let received = received_at_least(&inbox, before + 1).await;
    let last = received.last().unwrap();
    assert_eq!(last.header("webhook-id"), refused[0].header("webhook-id"));
    last.verify(webhook["secret"].as_str().unwrap());
    let listed = eventually("the delivery recorded as delivered", || async {
        let listed = deliveries(&second, &user, &webhook).await;
        (listed[0]["status"] == "delivered").then_some(listed)
    })
    .await;
    assert_eq!(listed[0]["attempts"], 2);
}

#[tokio::test]
async fn an_endpoint_answering_410_gone_is_disabled_at_once() {
    let app = spawn_app_with(local).await;
    let user = app.user().await;
    let (base, inbox) = receiver(&[410]).await;
    let webhook = register(&app, &user, &format!("{base}/hook"), &ALL_EVENTS).await;
    let _dispatcher = dispatch(&app);
    completed_report(&app, &user).await;

    let view = eventually("the endpoint disabled", || async {
        let view = webhook_view(&app, &user, &webhook).await;
        view["disabled_at"].is_string().then_some(view)
    })
    .await;
    assert!(
        view["disabled_reason"].as_str().unwrap().contains("410"),
        "{view}"
    );
    let listed = deliveries(&app, &user, &webhook).await;
    assert_eq!(listed[0]["status"], "failed");
    assert_eq!(listed[0]["response_status"], 410);
    // A disabled endpoint gets no new deliveries.
    completed_report(&app, &user).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(deliveries(&app, &user, &webhook).await.len(), 1);
    assert_eq!(inbox.received().len(), 1);
}

#[tokio::test]
async fn an_endpoint_that_fails_for_the_whole_retry_window_is_disabled_with_a_reason() {
    let app = spawn_app_with(|config| {
        local(config);
        config.webhooks.retry_for = Duration::from_secs(1);
    })
    .await;
    let user = app.user().await;
    let (base, inbox) = receiver(&[500; 20]).await;
    let webhook = register(&app, &user, &format!("{base}/hook"), &ALL_EVENTS).await;
    let _dispatcher = dispatch(&app);
    completed_report(&app, &user).await;

    let view = eventually("the endpoint disabled", || async {
        let view = webhook_view(&app, &user, &webhook).await;
        view["disabled_at"].is_string().then_some(view)
    })
    .await;
    let reason = view["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("failed for 1s"), "{reason}");
    assert!(reason.contains("500"), "{reason}");
    let listed = deliveries(&app, &user, &webhook).await;
    assert_eq!(listed[0]["status"], "failed");
    let attempts = listed[0]["attempts"].as_i64().unwrap();
    assert!(attempts >= 2, "retried before giving up: {attempts}");
    assert_eq!(inbox.received().len() as i64, attempts);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let app = spawn_app_with(local).await;
    let user = app.user().await;
    let (base, inbox) = receiver(&[302, 302, 302]).await;
    let webhook = register(&app, &user, &format!("{base}/hook"), &ALL_EVENTS).await;
    let _dispatcher = dispatch(&app);
    completed_report(&app, &user).await;

    let listed = eventually("the redirect recorded", || async {
        let listed = deliveries(&app, &user, &webhook).await;
        (listed.first()?["attempts"].as_i64()? >= 1).then_some(listed)
    })
    .await;
    assert_eq!(listed[0]["response_status"], 302);
    let error = listed[0]["last_error"].as_str().unwrap();
    assert!(error.contains("redirects are not followed"), "{error}");
    assert!(
        inbox.received().iter().all(|r| r.path == "/hook"),
        "the redirect's target was requested"
    );
}

#[tokio::test]
async fn registration_refuses_destinations_that_could_reach_inside() {
    let strict = spawn_app_with(|_| {}).await;
    let user = strict.user().await;
    for url in [
        "http://hooks.example.com/quire",
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest/meta-data",
    ] {
        let response = strict
            .post_authed(
                "/webhooks",
                &user.access_token,
                &json!({ "url": url, "events": ["report.completed"] }),
            )
            .await;
        let message = error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity",
        )
        .await;
        assert!(message.contains("`url`"), "{url}: {message}");
    }
    // A public https destination is fine.
    register(
        &strict,
        &user,
        "https://hooks.example.com/quire",
        &["report.completed"],
    )
    .await;

    let allowing = spawn_app_with(local).await;
    let user = allowing.user().await;
    let response = allowing
        .post_authed(
            "/webhooks",
            &user.access_token,
            &json!({ "url": "http://169.254.169.254/latest/meta-data", "events": ["report.completed"] }),
        )
        .await;
    let message = error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable_entity",
    )
    .await;
    assert!(message.contains("metadata"), "{message}");
    register(
        &allowing,
        &user,
        "http://127.0.0.1:9/hook",
        &["report.completed"],
    )
    .await;

    // Events: at least one, each known, named in the refusal.
    for events in [json!([]), json!(["report.started"])] {
        let response = allowing
            .post_authed(
                "/webhooks",
                &user.access_token,
                &json!({ "url": "http://127.0.0.1:9/hook", "events": events }),
            )
            .await;
        let message = error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity",
        )
        .await;
        assert!(
            message.contains("report.completed, report.failed, report.cancelled"),
            "{message}"
        );
    }
    // A cap per user.
    for _ in 1..10 {
        register(
            &allowing,
            &user,
            "http://127.0.0.1:9/hook",
            &["report.failed"],
        )
        .await;
    }
    let response = allowing
        .post_authed(
            "/webhooks",
            &user.access_token,
            &json!({ "url": "http://127.0.0.1:9/hook", "events": ["report.failed"] }),
        )
        .await;
    let message = error(response, StatusCode::CONFLICT, "conflict").await;
    assert!(message.contains("10 webhooks"), "{message}");
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_at_delivery_without_the_allowance() {
    let app = spawn_app_with(|config| {
        config.webhooks.first_retry = Duration::from_millis(20);
        config.webhooks.poll_every = Duration::from_millis(25);
    })
    .await;
    let user = app.user().await;
    let (base, inbox) = receiver(&[]).await;
    let port = base.rsplit(':').next().unwrap();
    // A name passes registration; what it resolves to is checked when sending.
    let webhook = register(
        &app,
        &user,
        &format!("https://localhost:{port}/hook"),
        &ALL_EVENTS,
    )
    .await;
    let _dispatcher = dispatch(&app);
    completed_report(&app, &user).await;

    let listed = eventually("the refused attempt recorded", || async {
        let listed = deliveries(&app, &user, &webhook).await;
        (listed.first()?["attempts"].as_i64()? >= 1).then_some(listed)
    })
    .await;
    let error = listed[0]["last_error"].as_str().unwrap();
    assert!(error.contains("not public"), "{error}");
    assert!(
        !error.contains("127.0.0.1"),
        "the resolved address is not shown: {error}"
    );
    assert_eq!(listed[0]["response_status"], Value::Null);
    assert!(inbox.received().is_empty(), "the receiver was reached");
}

#[tokio::test]
async fn webhooks_are_private_to_their_owner_and_the_secret_is_shown_once() {
    let app = spawn_app_with(local).await;
    let (owner, other) = (app.user().await, app.user().await);
    let webhook = register(&app, &owner, "http://127.0.0.1:9/hook", &ALL_EVENTS).await;
    let secret = webhook["secret"].as_str().unwrap().to_owned();
    let id = webhook["id"].as_str().unwrap();

    for path in [
        format!("/webhooks/{id}"),
        format!("/webhooks/{id}/deliveries"),
    ] {
        let response = app.get_authed(&path, &other.access_token).await;
        error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let response = app
        .request(Method::DELETE, &format!("/webhooks/{id}"))
        .bearer_auth(&other.access_token)
        .send()
        .await
        .unwrap();
    error(response, StatusCode::NOT_FOUND, "not_found").await;
    let listed = body(app.get_authed("/webhooks", &other.access_token).await).await;
    assert_eq!(listed["items"], json!([]));

    // The owner's views never carry the secret.
    for path in [
        "/webhooks".to_owned(),
        format!("/webhooks/{id}"),
        format!("/webhooks/{id}/deliveries"),
    ] {
        let response = app.get_authed(&path, &owner.access_token).await;
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.unwrap();
        assert!(!text.contains(&secret), "{path} shows the secret");
        assert!(!text.contains("\"secret\""), "{path}: {text}");
    }
    let view = webhook_view(&app, &owner, &webhook).await;
    assert_eq!(view["url"], "http://127.0.0.1:9/hook");
    assert_eq!(view["disabled_at"], Value::Null);

    let response = app
        .get_authed(
            &format!("/webhooks/{id}/deliveries?limit=0"),
            &owner.access_token,
        )
        .await;
    error(response, StatusCode::BAD_REQUEST, "bad_request").await;
    let response = app
        .request(Method::DELETE, &format!("/webhooks/{id}"))
        .bearer_auth(&owner.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app
        .get_authed(&format!("/webhooks/{id}"), &owner.access_token)
        .await;
    error(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = app.request(Method::GET, "/webhooks").send().await.unwrap();
    error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn webhooks_are_delivered_on_sqlite_too() {
    let app = spawn_sqlite_app_with(local).await;
    let user = app.user().await;
    let (base, inbox) = receiver(&[500]).await;
    let webhook = register(&app, &user, &format!("{base}/hook"), &ALL_EVENTS).await;
    let _dispatcher = dispatch(&app);
    let report_id = completed_report(&app, &user).await;

    let received = received_at_least(&inbox, 2).await;
    assert_eq!(
        received[0].header("webhook-id"),
        received[1].header("webhook-id")
    );
    received[1].verify(webhook["secret"].as_str().unwrap());
    assert_eq!(received[1].json()["data"]["id"], report_id.to_string());
    let listed = eventually("the delivery recorded as delivered", || async {
        let listed = deliveries(&app, &user, &webhook).await;
        (listed[0]["status"] == "delivered").then_some(listed)
    })
    .await;
    assert_eq!(listed[0]["attempts"], 2);
}
