//! Cluster mode: `POST /reports` registers each report as a `ReportRequest` on a fake
//! Kubernetes API server, and leaves dispatch to the controller.

use std::time::{Duration, Instant};

use quire_api::ReportRequests;
use quire_api::cluster::{FIELD_MANAGER, MANAGED_BY_LABEL, REPORT_TYPE_LABEL, USER_ID_LABEL};
use quire_crds::report_request::annotations;
use quire_crds::{ReportFormat, ReportRequest, ReportType};
use quire_testing::kube_api::FakeApiServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, TestUser, body, error, spawn_cluster_app};

const RR_PATH: &str = "/reportrequests";

fn dataset() -> Value {
    json!({ "report_type": "dataset", "format": "json", "parameters": { "source": "games" } })
}

async fn create_with_key(app: &TestApp, user: &TestUser, key: &str) -> reqwest::Response {
    app.request(Method::POST, "/reports")
        .bearer_auth(&user.access_token)
        .header("idempotency-key", key)
        .json(&dataset())
        .send()
        .await
        .unwrap()
}

fn stored_request(kube: &FakeApiServer, namespace: &str, id: &str) -> Option<ReportRequest> {
    kube.store().get_typed(Some(namespace), id)
}

/// Report rows of `user` in the database, whatever the API would show.
async fn rows_of(app: &TestApp, user: &TestUser) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM reports WHERE user_id = $1")
        .bind(user.id)
        .fetch_one(app.pg.as_ref().unwrap().pool())
        .await
        .unwrap()
}

/// Asserts the 503 a failed registration answers, and that the user has no report left.
async fn assert_refused_without_a_trace(
    app: &TestApp,
    user: &TestUser,
    response: reqwest::Response,
) {
    assert!(
        response.headers().contains_key("retry-after"),
        "{:?}",
        response.headers()
    );
    let message = error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    )
    .await;
    assert!(message.contains("try again"), "{message}");
    let list = body(app.get_authed("/reports", &user.access_token).await).await;
    assert_eq!(list["items"], json!([]));
    assert_eq!(rows_of(app, user).await, 0, "no orphan row");
}

#[tokio::test]
async fn a_report_becomes_one_report_request_and_stays_pending_for_the_controller() {
    let kube = FakeApiServer::start().await;
    let app = spawn_cluster_app(ReportRequests::new(kube.client(), None)).await;
    let user = app.user().await;

    let response = app.create_report(&user, &dataset()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let report = body(response).await;
    let id = report["id"].as_str().unwrap();
    assert_eq!(report["status"], "pending", "the controller dispatches");

    assert_eq!(kube.count_requests("POST", RR_PATH), 1);
    let create = kube
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(
        create.path,
        "/apis/quire.dev/v1alpha1/namespaces/default/reportrequests"
    );
    assert!(
        create
            .query
            .contains(&("fieldManager".to_owned(), FIELD_MANAGER.to_owned())),
        "{:?}",
        create.query
    );
    let created = kube.store().list_typed::<ReportRequest>(None);
    assert_eq!(created.len(), 1);
    let request = stored_request(&kube, "default", id).expect("named after the report id");
    let labels = request.metadata.labels.clone().unwrap();
    assert_eq!(labels[USER_ID_LABEL], user.id.to_string());
    assert_eq!(labels[REPORT_TYPE_LABEL], "dataset");
    assert_eq!(labels[MANAGED_BY_LABEL], "quire-api-server");
    assert_eq!(request.spec.report_id.as_deref(), Some(id));
    assert_eq!(request.spec.user_id, user.id.to_string());
    assert_eq!(request.spec.report_type, ReportType::Dataset);
    assert_eq!(request.spec.format, ReportFormat::Json);
    assert_eq!(
        request.spec.parameters, report["parameters"],
        "the canonical parameters"
    );
    assert_eq!(request.spec.ttl_seconds_after_finished, None);
    assert!(!request.spec.suspend);
    assert_eq!(
        request.metadata.annotations.as_ref().unwrap()[annotations::OUTPUT_RETENTION],
        "api",
        "its output follows the API's retention"
    );

    // Not dispatched: no message, not marked queued.
    assert!(
        app.queued_messages(Duration::from_millis(300))
            .await
            .is_empty()
    );
    let stored = app
        .store
        .report(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status.as_str(), "pending");
    assert_eq!(stored.queued_at, None);
}

#[tokio::test]
async fn report_requests_go_to_the_configured_namespace() {
    let kube = FakeApiServer::start().await;
    kube.store()
        .create_object(json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": "reports" },
        }))
        .unwrap();
    let app = spawn_cluster_app(ReportRequests::new(kube.client(), Some("reports"))).await;
    let user = app.user().await;
    let report = body(app.create_report(&user, &dataset()).await).await;
    let id = report["id"].as_str().unwrap();
    assert!(stored_request(&kube, "reports", id).is_some());
    assert!(stored_request(&kube, "default", id).is_none());
}

#[tokio::test]
async fn a_server_error_creating_the_report_request_is_503_and_leaves_no_report() {
    let kube = FakeApiServer::start().await;
    let app = spawn_cluster_app(ReportRequests::new(kube.client(), None)).await;
    let user = app.user().await;
    kube.fail_next("POST", RR_PATH, 1, 500);

    let response = create_with_key(&app, &user, "retry-me").await;
    assert_refused_without_a_trace(&app, &user, response).await;
    assert!(
        app.queued_messages(Duration::from_millis(200))
            .await
            .is_empty()
    );

    // The client's retry, with the same key, is a new report that goes through.
    let retry = create_with_key(&app, &user, "retry-me").await;
    assert_eq!(retry.status(), StatusCode::ACCEPTED);
    assert!(retry.headers().get("idempotent-replayed").is_none());
    let id = body(retry).await["id"].as_str().unwrap().to_owned();
    assert!(stored_request(&kube, "default", &id).is_some());
    assert_eq!(rows_of(&app, &user).await, 1);
}

#[tokio::test]
async fn an_unreachable_kubernetes_api_is_503_and_leaves_no_report() {
    let kube = FakeApiServer::start().await;
    let app = spawn_cluster_app(ReportRequests::new(kube.client(), None)).await;
    let user = app.user().await;
    kube.stop().await;

    let response = app.create_report(&user, &dataset()).await;
    assert_refused_without_a_trace(&app, &user, response).await;
}

#[tokio::test]
async fn a_kubernetes_api_that_does_not_answer_is_503_within_the_timeout() {
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            connections.push(socket);
        }
    });
    let client = kube::Client::try_from(kube::Config::new(uri.parse().unwrap())).unwrap();
    let requests =
        ReportRequests::new(client, Some("default")).with_timeout(Duration::from_millis(300));
    let app = spawn_cluster_app(requests).await;
    let user = app.user().await;

    let started = Instant::now();
    let response = app.create_report(&user, &dataset()).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_refused_without_a_trace(&app, &user, response).await;
    held.abort();
}

#[tokio::test]
async fn a_missing_namespace_is_503_and_leaves_no_report() {
    let kube = FakeApiServer::start().await;
    let app = spawn_cluster_app(ReportRequests::new(kube.client(), Some("nowhere"))).await;
    let user = app.user().await;
    let response = app.create_report(&user, &dataset()).await;
    assert_refused_without_a_trace(&app, &user, response).await;
    // A 404 certainly created nothing: no clean-up delete follows.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(kube.count_requests("DELETE", RR_PATH), 0);
}

#[tokio::test]
async fn a_409_from_the_kubernetes_api_counts_as_created() {
    let kube = FakeApiServer::start().await;
    let app = spawn_cluster_app(ReportRequests::new(kube.client(), None)).await;
    let user = app.user().await;
    kube.fail_next("POST", RR_PATH, 1, 409);

    let response = app.create_report(&user, &dataset()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(body(response).await["status"], "pending");
    assert_eq!(rows_of(&app, &user).await, 1);
}

#[tokio::test]
async fn an_idempotent_replay_finds_the_report_request_already_there() {
    let kube = FakeApiServer::start().await;
    let app = spawn_cluster_app(ReportRequests::new(kube.client(), None)).await;
    let user = app.user().await;
    let first = body(create_with_key(&app, &user, "k").await).await;

    let replay = create_with_key(&app, &user, "k").await;
    assert_eq!(replay.status(), StatusCode::ACCEPTED);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(body(replay).await["id"], first["id"]);
    // Created again, answered AlreadyExists, and that is fine.
    let creates: Vec<_> = kube
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with(RR_PATH))
        .map(|r| r.status)
        .collect();
    assert_eq!(creates, [201, 409]);
    assert_eq!(kube.store().list_typed::<ReportRequest>(None).len(), 1);
}

#[tokio::test]
async fn an_idempotent_replay_recreates_a_lost_report_request() {
    let kube = FakeApiServer::start().await;
    let app = spawn_cluster_app(ReportRequests::new(kube.client(), None)).await;
    let user = app.user().await;
    let first = body(create_with_key(&app, &user, "k").await).await;
    let id = first["id"].as_str().unwrap();
    // As if the API server had crashed between the insert and the create.
    kube.store()
        .remove_value("quire.dev", "reportrequests", Some("default"), id)
        .unwrap();

    // While the Kubernetes API fails, the replay is refused but the report is kept.
    kube.fail_next("POST", RR_PATH, 1, 500);
    let refused = create_with_key(&app, &user, "k").await;
    error(
        refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    )
    .await;
    assert_eq!(rows_of(&app, &user).await, 1);
    assert!(stored_request(&kube, "default", id).is_none());

    let replay = create_with_key(&app, &user, "k").await;
    assert_eq!(replay.status(), StatusCode::ACCEPTED);
    assert_eq!(body(replay).await["id"], first["id"]);
    let request = stored_request(&kube, "default", id).expect("registered again");
    assert_eq!(request.spec.report_id.as_deref(), Some(id));
}

#[tokio::test]
async fn a_replay_of_a_report_already_dispatched_does_not_touch_the_cluster() {
    let kube = FakeApiServer::start().await;
    let app = spawn_cluster_app(ReportRequests::new(kube.client(), None)).await;
    let user = app.user().await;
    let first = body(create_with_key(&app, &user, "k").await).await;
    let id: Uuid = first["id"].as_str().unwrap().parse().unwrap();
    // The controller dispatched it.
    assert!(
        app.store
            .mark_queued(id, chrono::Utc::now())
            .await
            .unwrap()
            .is_some()
    );
    kube.clear_requests();

    let replay = create_with_key(&app, &user, "k").await;
    assert_eq!(replay.status(), StatusCode::ACCEPTED);
    assert_eq!(body(replay).await["status"], "queued");
    assert_eq!(kube.requests().len(), 0);
}

#[tokio::test]
async fn report_requests_carry_the_ttl_and_the_trace_they_were_requested_in() {
    let kube = FakeApiServer::start().await;
    let requests = ReportRequests::new(kube.client(), None)
        .with_ttl_after_finished(Some(Duration::from_millis(3_600_500)));
    let app = spawn_cluster_app(requests).await;
    let user = app.user().await;
    let report = body(app.create_report(&user, &dataset()).await).await;
    let request = stored_request(&kube, "default", report["id"].as_str().unwrap()).unwrap();
    // Whole seconds, rounded up.
    assert_eq!(request.spec.ttl_seconds_after_finished, Some(3601));
    // No trace is exported in this test process, so there is no context to carry.
    assert!(
        !request
            .metadata
            .annotations
            .unwrap()
            .contains_key(annotations::TRACEPARENT)
    );
}
