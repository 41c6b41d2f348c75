//! Operability: `/metrics` scraped over HTTP and parsed, per-user quotas refusing with
//! 429, `GET /me`, and the retention pass deleting outputs and then rows.

use std::time::Duration;

use chrono::Utc;
use quire_core::retention::{Retention, RetentionPolicy};
use quire_core::storage::OutputStorage;
use quire_testing::metrics::Scrape;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{
    TestApp, TestUser, body, error, spawn_app, spawn_app_with, spawn_sqlite_app_with,
};

async fn scrape(app: &TestApp) -> Scrape {
    let response = app.request(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "one exposition, ended once");
    Scrape::parse(&text)
}

fn activity(days: u32) -> serde_json::Value {
    json!({"report_type": "activity", "format": "csv", "parameters": {"days": days}})
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_sign_ins_and_reports() {
    let app = spawn_app().await;
    let user = app.user().await;
    let report = app.activity_report(&user, 7).await;
    let id = report["id"].as_str().unwrap();
    for _ in 0..2 {
        let r = app
            .get_authed(&format!("/reports/{id}"), &user.access_token)
            .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let refused = app.signin("nobody@example.com", "wrong password!").await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let refreshed = app.refresh(&user.refresh_token).await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    let reused = app.refresh(&user.refresh_token).await;
    assert_eq!(reused.status(), StatusCode::UNAUTHORIZED);
    let missing = app
        .request(Method::GET, "/no/such/route")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let scrape = scrape(&app).await;
    let requests = |method, route, status| {
        scrape.value(
            "quire_http_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("POST", "/reports", "202"), Some(1.0));
    assert_eq!(requests("GET", "/reports/{id}", "200"), Some(2.0));
    assert_eq!(requests("POST", "/auth/signin", "401"), Some(1.0));
    assert_eq!(requests("GET", "unmatched", "404"), Some(1.0));
    // Ids never become label values: only route templates do.
    for route in scrape.label_values("quire_http_requests_total", "route") {
        assert!(!route.contains(id), "{route}");
    }
    assert_eq!(
        scrape.value(
            "quire_http_request_duration_seconds_count",
            &[("method", "GET"), ("route", "/reports/{id}")]
        ),
        Some(2.0)
    );
    assert_eq!(
        scrape.families["quire_http_request_duration_seconds"],
        "histogram"
    );
    assert_eq!(
        scrape.value("quire_signins_total", &[("outcome", "success")]),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("quire_signins_total", &[("outcome", "invalid_credentials")]),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("quire_token_refreshes_total", &[("outcome", "success")]),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("quire_token_refreshes_total", &[("outcome", "reused")]),
        Some(1.0)
    );
    assert_eq!(
        scrape.value(
            "quire_reports_created_total",
            &[("type", "activity"), ("format", "csv")]
        ),
        Some(1.0)
    );
    // The queue gauges and retention counters are registered from the start.
    assert_eq!(scrape.families["quire_queue_messages"], "gauge");
    assert_eq!(scrape.families["quire_queue_dead_letters"], "gauge");
    assert_eq!(
        scrape.families["quire_retention_outputs_deleted"],
        "counter"
    );
}

#[tokio::test]
async fn the_queue_depth_is_sampled_from_the_queue() {
    let app = spawn_app().await;
    let user = app.user().await;
    for _ in 0..3 {
        app.activity_report(&user, 1).await;
    }
    app.state.queue_metrics().sample(app.queue.as_ref()).await;
    let scrape = scrape(&app).await;
    assert_eq!(
        scrape.value("quire_queue_messages", &[("state", "visible")]),
        Some(3.0)
    );
    assert_eq!(
        scrape.value("quire_queue_messages", &[("state", "in_flight")]),
        Some(0.0)
    );
    assert_eq!(scrape.value("quire_queue_dead_letters", &[]), Some(0.0));
}

#[tokio::test]
async fn every_metric_the_api_serves_is_documented_in_the_readme() {
    let app = spawn_app().await;
    let user = app.user().await;
    app.activity_report(&user, 1).await;
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    app.refresh(&user.refresh_token).await;
    let scrape = scrape(&app).await;
    for family in [
        "quire_http_requests",
        "quire_signins",
        "quire_token_refreshes",
        "quire_queue_messages",
    ] {
        assert!(
            scrape.families.contains_key(family),
            "{:?}",
            scrape.families
        );
    }
    for (family, kind) in &scrape.families {
        let exposed = if kind == "counter" {
            format!("{family}_total")
        } else {
            family.clone()
        };
        assert!(
            readme.contains(&format!("`{exposed}")),
            "README does not document `{exposed}`"
        );
    }
}

async fn cancel(app: &TestApp, user: &TestUser, report: &serde_json::Value) {
    let id = report["id"].as_str().unwrap();
    let cancelled = app
        .post_authed(
            &format!("/reports/{id}/cancel"),
            &user.access_token,
            &json!({}),
        )
        .await;
    assert_eq!(cancelled.status(), StatusCode::OK);
}

/// Creates a report and returns the response.
async fn create(app: &TestApp, user: &TestUser, days: u32) -> reqwest::Response {
    app.create_report(user, &activity(days)).await
}

#[tokio::test]
async fn quotas_refuse_with_429_saying_which_limit_and_me_shows_the_usage() {
    let app = spawn_app_with(|config| {
        config.quota_unfinished = 2;
        config.quota_per_hour = 3;
    })
    .await;
    let user = app.user().await;
    let first = body(create(&app, &user, 1).await).await;
    let second = body(create(&app, &user, 2).await).await;

    // Two unfinished: the third is refused, and nothing is written.
    let refused = create(&app, &user, 3).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let message = error(refused, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    assert!(
        message.contains("2 unfinished") && message.contains("QUIRE_QUOTA_UNFINISHED"),
        "{message}"
    );
    let listed = body(app.get_authed("/reports", &user.access_token).await).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);

    // Another user has a quota of their own.
    let other = app.user().await;
    assert_eq!(create(&app, &other, 1).await.status(), StatusCode::ACCEPTED);

    // A cancel frees a place; the hourly limit is next.
    cancel(&app, &user, &first).await;
    assert_eq!(create(&app, &user, 4).await.status(), StatusCode::ACCEPTED);
    cancel(&app, &user, &second).await;
    let hourly = create(&app, &user, 5).await;
    assert_eq!(hourly.status(), StatusCode::TOO_MANY_REQUESTS);
    // The oldest report of the hour leaves the window in a little under an hour.
    let retry_after: u64 = hourly.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3000..=3600).contains(&retry_after), "{retry_after}");
    let message = error(hourly, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    assert!(
        message.contains("3 reports per hour") && message.contains("QUIRE_QUOTA_PER_HOUR"),
        "{message}"
    );

    let me = app.get_authed("/me", &user.access_token).await;
    assert_eq!(me.status(), StatusCode::OK);
    let me = body(me).await;
    assert_eq!(me["id"], user.id.to_string());
    assert!(me["email"].as_str().unwrap().ends_with("@example.com"));
    assert!(me["created_at"].is_string());
    assert_eq!(me["limits"], json!({"unfinished": 2, "per_hour": 3}));
    assert_eq!(me["usage"], json!({"unfinished": 1, "last_hour": 3}));

    let scrape = scrape(&app).await;
    assert_eq!(
        scrape.value("quire_quota_refusals_total", &[("limit", "unfinished")]),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("quire_quota_refusals_total", &[("limit", "per_hour")]),
        Some(1.0)
    );
}

#[tokio::test]
async fn an_idempotent_replay_is_answered_even_over_quota() {
    let app = spawn_app_with(|config| config.quota_unfinished = 1).await;
    let user = app.user().await;
    let send = || {
        app.request(Method::POST, "/reports")
            .bearer_auth(&user.access_token)
            .header("idempotency-key", "nightly-1")
            .json(&activity(1))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let replay = send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::ACCEPTED);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(
        create(&app, &user, 2).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// Concurrent requests of one user are counted in turn: the limit holds exactly.
async fn a_burst_never_exceeds_the_limit(app: TestApp) {
    let user = app.user().await;
    let answers =
        futures::future::join_all((0..12).map(|days| create(&app, &user, days + 1))).await;
    let accepted = answers
        .iter()
        .filter(|r| r.status() == StatusCode::ACCEPTED)
        .count();
    let refused = answers
        .iter()
        .filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((accepted, refused), (3, 9));
    let me = body(app.get_authed("/me", &user.access_token).await).await;
    assert_eq!(me["usage"]["unfinished"], 3);
}

#[tokio::test]
async fn a_burst_never_exceeds_the_unfinished_limit_on_postgres() {
    a_burst_never_exceeds_the_limit(spawn_app_with(|config| config.quota_unfinished = 3).await)
        .await;
}

#[tokio::test]
async fn a_burst_never_exceeds_the_unfinished_limit_on_sqlite() {
    let app = spawn_sqlite_app_with(|config| config.quota_unfinished = 20).await;
    let user = app.user().await;
    let answers =
        futures::future::join_all((0..25).map(|days| create(&app, &user, days % 30 + 1))).await;
    let accepted = answers
        .iter()
        .filter(|r| r.status() == StatusCode::ACCEPTED)
        .count();
    assert_eq!(accepted, 20);
    assert!(
        answers
            .iter()
            .all(|r| [StatusCode::ACCEPTED, StatusCode::TOO_MANY_REQUESTS].contains(&r.status()))
    );
}

#[tokio::test]
async fn retention_deletes_old_outputs_then_old_rows() {
    let app = spawn_app().await;
    let user = app.user().await;
    let old = app.activity_report(&user, 1).await;
    let old_id = old["id"].as_str().unwrap().parse().unwrap();
    let report = app.complete_report(old_id, b"a,b\n1,2\n").await;
    let key = report.output_key.clone().unwrap();
    let cancelled = app.activity_report(&user, 2).await;
    cancel(&app, &user, &cancelled).await;
    let download = format!("/reports/{old_id}/download");
    assert_eq!(
        app.get_authed(&download, &user.access_token).await.status(),
        StatusCode::FOUND
    );

    let retention = Retention::new(
        app.store.clone(),
        app.storage.clone(),
        RetentionPolicy {
            outputs: Some(Duration::from_secs(60)),
            records: Some(Duration::from_secs(3600)),
            every: Duration::from_secs(1),
        },
        app.state.retention_metrics().clone(),
    );
    // Nothing is old yet.
    assert_eq!(
        retention.pass(Utc::now()).await.unwrap(),
        Default::default()
    );
    assert!(app.storage.exists(&key).await.unwrap());

    // Two minutes on: the output goes, the record stays and says so.
    let swept = retention
        .pass(Utc::now() + chrono::Duration::minutes(2))
        .await
        .unwrap();
    assert_eq!((swept.outputs, swept.reports), (1, 0));
    assert!(!app.storage.exists(&key).await.unwrap());
    let gone = app.get_authed(&download, &user.access_token).await;
    assert_eq!(gone.status(), StatusCode::GONE);
    let status = body(
        app.get_authed(&format!("/reports/{old_id}"), &user.access_token)
            .await,
    )
    .await;
    assert!(status["output_deleted_at"].is_string(), "{status}");

    // Two hours on: both finished rows go; an unfinished report would stay.
    let fresh = app.activity_report(&user, 3).await;
    let swept = retention
        .pass(Utc::now() + chrono::Duration::hours(2))
        .await
        .unwrap();
    assert_eq!((swept.outputs, swept.reports), (0, 2));
    let missing = app
        .get_authed(&format!("/reports/{old_id}"), &user.access_token)
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let kept = app
        .get_authed(
            &format!("/reports/{}", fresh["id"].as_str().unwrap()),
            &user.access_token,
        )
        .await;
    assert_eq!(kept.status(), StatusCode::OK);

    let scrape = scrape(&app).await;
    assert_eq!(
        scrape.value("quire_retention_outputs_deleted_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("quire_retention_reports_deleted_total", &[]),
        Some(2.0)
    );
}

#[tokio::test]
async fn me_needs_a_token() {
    let app = spawn_app().await;
    let response = app.request(Method::GET, "/me").send().await.unwrap();
    error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}
