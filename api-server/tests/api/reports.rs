//! Requesting, reading, listing and cancelling reports.

use std::time::Duration;

use quire_crds::WorkMessage;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, TestUser, body, error, spawn_app, spawn_app_with_failing_dispatch};

fn activity(days: u32) -> Value {
    json!({ "report_type": "activity", "format": "csv", "parameters": { "days": days } })
}

async fn create_with_key(
    app: &TestApp,
    user: &TestUser,
    key: &str,
    request: &Value,
) -> reqwest::Response {
    app.request(Method::POST, "/reports")
        .bearer_auth(&user.access_token)
        .header("idempotency-key", key)
        .json(request)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn creating_a_report_answers_202_with_its_location_and_queues_work() {
    let app = spawn_app().await;
    let user = app.user().await;
    let response = app
        .create_report(
            &user,
            &json!({ "report_type": "activity", "format": "csv" }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let report = body(response).await;
    let id: Uuid = report["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(location, format!("/reports/{id}"));
    assert_eq!(id.get_version_num(), 7);
    assert_eq!(report["report_type"], "activity");
    assert_eq!(report["format"], "csv");
    assert_eq!(
        report["parameters"],
        json!({ "days": 30 }),
        "stored in canonical form"
    );
    assert_eq!(report["status"], "queued");
    assert_eq!(report["progress"], 0);
    assert_eq!(report["attempts"], 0);
    assert_eq!(report["download_url"], Value::Null);
    let fields: Vec<_> = report.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        fields,
        [
            "attempts",
            "cancelled_at",
            "completed_at",
            "created_at",
            "download_url",
            "download_url_expires_at",
            "error_message",
            "failed_at",
            "format",
            "id",
            "output_deleted_at",
            "parameters",
            "progress",
            "report_type",
            "started_at",
            "status"
        ]
    );

    let messages = app.queued_messages(Duration::from_secs(2)).await;
    assert_eq!(messages.len(), 1);
    let message = WorkMessage::from_body(&messages[0]).unwrap();
    assert_eq!(message.report_id, id);
    assert_eq!(message.user_id, user.id);
    assert_eq!(message.attempt, 1);

    let stored = body(app.get_authed(&location, &user.access_token).await).await;
    assert_eq!(stored["status"], "queued");
}

#[tokio::test]
async fn a_report_whose_dispatch_fails_is_still_accepted_and_stays_pending() {
    let app = spawn_app_with_failing_dispatch().await;
    let user = app.user().await;
    let response = app.create_report(&user, &activity(7)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let report = body(response).await;
    assert_eq!(report["status"], "pending");
    let path = format!("/reports/{}", report["id"].as_str().unwrap());
    assert_eq!(
        body(app.get_authed(&path, &user.access_token).await).await["status"],
        "pending"
    );
    assert!(
        app.queued_messages(Duration::from_millis(200))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn an_unknown_report_type_or_format_is_422_naming_the_choices() {
    let app = spawn_app().await;
    let user = app.user().await;
    let response = app
        .create_report(&user, &json!({ "report_type": "weather", "format": "pdf" }))
        .await;
    let message = error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable_entity",
    )
    .await;
    assert!(message.contains("profile, activity, dataset"), "{message}");
    let response = app
        .create_report(
            &user,
            &json!({ "report_type": "profile", "format": "xlsx" }),
        )
        .await;
    let message = error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable_entity",
    )
    .await;
    assert!(message.contains("pdf, csv, json"), "{message}");
}

#[tokio::test]
async fn a_format_the_type_cannot_render_is_422() {
    let app = spawn_app().await;
    let user = app.user().await;
    let response = app
        .create_report(&user, &json!({ "report_type": "profile", "format": "csv" }))
        .await;
    let message = error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable_entity",
    )
    .await;
    assert!(message.contains("supported formats: pdf"), "{message}");
}

#[tokio::test]
async fn invalid_parameters_are_422_with_the_reason() {
    let app = spawn_app().await;
    let user = app.user().await;
    let message = error(
        app.create_report(&user, &activity(0)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable_entity",
    )
    .await;
    assert!(message.contains("days"), "{message}");
    let unknown_field =
        json!({ "report_type": "profile", "format": "pdf", "parameters": { "x": 1 } });
    error(
        app.create_report(&user, &unknown_field).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable_entity",
    )
    .await;
    let not_an_object = json!({ "report_type": "profile", "format": "pdf", "parameters": [1] });
    error(
        app.create_report(&user, &not_an_object).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable_entity",
    )
    .await;
}

#[tokio::test]
async fn a_dataset_whose_source_is_a_url_is_422() {
    let app = spawn_app().await;
    let user = app.user().await;
    let request = json!({
        "report_type": "dataset", "format": "csv",
        "parameters": { "source": "http://169.254.169.254/latest/meta-data" }
    });
    let message = error(
        app.create_report(&user, &request).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable_entity",
    )
    .await;
    assert!(message.contains("configured data source"), "{message}");
    let fine =
        json!({ "report_type": "dataset", "format": "json", "parameters": { "source": "games" } });
    assert_eq!(
        app.create_report(&user, &fine).await.status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn the_same_idempotency_key_and_body_return_the_same_report_once() {
    let app = spawn_app().await;
    let user = app.user().await;
    let first = body(create_with_key(&app, &user, "key-1", &activity(7)).await).await;
    // Spelled differently, canonically the same.
    let again = json!({ "parameters": { "days": 7 }, "format": "csv", "report_type": "activity" });
    let second = create_with_key(&app, &user, "key-1", &again).await;
    assert_eq!(second.status(), StatusCode::ACCEPTED);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(body(second).await["id"], first["id"]);

    let list = body(app.get_authed("/reports", &user.access_token).await).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.queued_messages(Duration::from_millis(500)).await.len(),
        1,
        "dispatched once"
    );
}

#[tokio::test]
async fn an_idempotency_key_reused_with_another_body_is_409() {
    let app = spawn_app().await;
    let user = app.user().await;
    assert_eq!(
        create_with_key(&app, &user, "key-1", &activity(7))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    error(
        create_with_key(&app, &user, "key-1", &activity(8)).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    // Keys are per user: someone else may use the same one.
    let other = app.user().await;
    assert_eq!(
        create_with_key(&app, &other, "key-1", &activity(8))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_400() {
    let app = spawn_app().await;
    let user = app.user().await;
    for key in ["", "has spaces", &"k".repeat(256)] {
        let response = create_with_key(&app, &user, key, &activity(7)).await;
        error(response, StatusCode::BAD_REQUEST, "bad_request").await;
    }
}

#[tokio::test]
async fn a_user_sees_their_own_report_but_not_someone_elses() {
    let app = spawn_app().await;
    let (ada, bob) = (app.user().await, app.user().await);
    let report = app.activity_report(&ada, 7).await;
    let path = format!("/reports/{}", report["id"].as_str().unwrap());

    let own = app.get_authed(&path, &ada.access_token).await;
    assert_eq!(own.status(), StatusCode::OK);
    assert_eq!(body(own).await["id"], report["id"]);
    error(
        app.get_authed(&path, &bob.access_token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_malformed_or_unknown_report_id_is_a_json_404() {
    let app = spawn_app().await;
    let user = app.user().await;
    for path in [
        "/reports/not-a-uuid",
        &format!("/reports/{}", Uuid::now_v7()),
    ] {
        error(
            app.get_authed(path, &user.access_token).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }
}

#[tokio::test]
async fn listing_pages_through_reports_newest_first() {
    let app = spawn_app().await;
    let user = app.user().await;
    let mut created = Vec::new();
    for days in 1..=5 {
        created.push(app.activity_report(&user, days).await["id"].clone());
    }
    created.reverse();
    // Someone else's reports never show up.
    let other = app.user().await;
    app.activity_report(&other, 1).await;

    let mut seen = Vec::new();
    let mut page_sizes = Vec::new();
    let mut path = "/reports?limit=2".to_owned();
    loop {
        let page = body(app.get_authed(&path, &user.access_token).await).await;
        let items = page["items"].as_array().unwrap();
        page_sizes.push(items.len());
        seen.extend(items.iter().map(|item| item["id"].clone()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/reports?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(page_sizes, [2, 2, 1]);
    assert_eq!(seen, created);

    let all = body(app.get_authed("/reports", &user.access_token).await).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 5);
    assert_eq!(all["next_cursor"], Value::Null);
}

#[tokio::test]
async fn listing_filters_by_status() {
    let app = spawn_app().await;
    let user = app.user().await;
    let kept = app.activity_report(&user, 1).await;
    let cancelled = app.activity_report(&user, 2).await;
    let cancel = format!("/reports/{}/cancel", cancelled["id"].as_str().unwrap());
    assert_eq!(
        app.post_authed(&cancel, &user.access_token, &json!({}))
            .await
            .status(),
        StatusCode::OK
    );

    let page = body(
        app.get_authed("/reports?status=cancelled", &user.access_token)
            .await,
    )
    .await;
    let ids: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, [cancelled["id"].clone()]);
    let page = body(
        app.get_authed("/reports?status=queued", &user.access_token)
            .await,
    )
    .await;
    let ids: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, [kept["id"].clone()]);
}

#[tokio::test]
async fn listing_with_a_bad_status_limit_or_cursor_is_400() {
    let app = spawn_app().await;
    let user = app.user().await;
    let message = error(
        app.get_authed("/reports?status=done", &user.access_token)
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    assert!(
        message.contains("pending, queued, running, completed, failed, cancelled"),
        "{message}"
    );
    for limit in ["0", "101", "ten", "-1"] {
        let path = format!("/reports?limit={limit}");
        error(
            app.get_authed(&path, &user.access_token).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
    }
    for cursor in ["garbage!", "AAAA"] {
        let path = format!("/reports?cursor={cursor}");
        error(
            app.get_authed(&path, &user.access_token).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
    }
}

#[tokio::test]
async fn cancelling_a_queued_report_answers_200_then_409() {
    let app = spawn_app().await;
    let user = app.user().await;
    let report = app.activity_report(&user, 7).await;
    let path = format!("/reports/{}/cancel", report["id"].as_str().unwrap());

    let response = app.post_authed(&path, &user.access_token, &json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let cancelled = body(response).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["cancelled_at"].is_string());

    let again = app
        .request(Method::POST, &path)
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    error(again, StatusCode::CONFLICT, "conflict").await;
}

#[tokio::test]
async fn cancelling_someone_elses_or_a_missing_report_is_404() {
    let app = spawn_app().await;
    let (ada, bob) = (app.user().await, app.user().await);
    let report = app.activity_report(&ada, 7).await;
    let path = format!("/reports/{}/cancel", report["id"].as_str().unwrap());
    error(
        app.post_authed(&path, &bob.access_token, &json!({})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let missing = format!("/reports/{}/cancel", Uuid::now_v7());
    error(
        app.post_authed(&missing, &ada.access_token, &json!({}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // Ada's report is untouched.
    let path = format!("/reports/{}", report["id"].as_str().unwrap());
    assert_eq!(
        body(app.get_authed(&path, &ada.access_token).await).await["status"],
        "queued"
    );
}
