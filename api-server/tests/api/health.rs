use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{body, error, spawn_app};

#[tokio::test]
async fn ping_answers_pong() {
    let app = spawn_app().await;
    let response = app.request(Method::GET, "/ping").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body(response).await, json!({ "message": "pong" }));
}

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let response = app.request(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body(response).await, json!({ "status": "ok" }));
}

#[tokio::test]
async fn readyz_reports_every_dependency_ready() {
    let app = spawn_app().await;
    let response = app.request(Method::GET, "/readyz").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        body(response).await,
        json!({ "status": "ready", "checks": { "database": "ok", "queue": "ok", "storage": "ok" } })
    );
}

#[tokio::test]
async fn readyz_names_the_database_when_it_is_unreachable() {
    let app = spawn_app().await;
    app.pg.as_ref().unwrap().pool().close().await;

    let response = app.request(Method::GET, "/readyz").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = body(response).await;
    assert_eq!(body["status"], "unavailable");
    let database = body["checks"]["database"].as_str().unwrap();
    assert!(database.starts_with("unavailable: "), "{database}");
    assert!(!database.contains("postgres://"), "{database}");
    assert_eq!(body["checks"]["storage"], "ok");
}

#[tokio::test]
async fn an_unreachable_database_is_a_503_not_a_500() {
    let app = spawn_app().await;
    let user = app.user().await;
    app.pg.as_ref().unwrap().pool().close().await;

    let response = app.get_authed("/reports", &user.access_token).await;
    assert!(response.headers().contains_key("retry-after"));
    error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_route_is_a_json_404() {
    let app = spawn_app().await;
    let response = app
        .request(Method::GET, "/no/such/route")
        .send()
        .await
        .unwrap();
    error(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_wrong_method_is_a_json_405() {
    let app = spawn_app().await;
    let response = app.request(Method::DELETE, "/ping").send().await.unwrap();
    assert!(response.headers().contains_key("allow"));
    error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let response = app.request(Method::GET, "/healthz").send().await.unwrap();
    assert!(response.headers().contains_key("x-request-id"));
    let response = app
        .request(Method::GET, "/healthz")
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
}
