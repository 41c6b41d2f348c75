//! `Prefer: wait=N` on `POST /reports` and `GET /reports/{id}`, woken by the store's change
//! notification (Postgres `LISTEN/NOTIFY`, in process on SQLite).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, body, spawn_app, spawn_app_with, spawn_sqlite_app};

async fn held_get(app: &TestApp, token: &str, id: &str, wait: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/reports/{id}")))
        .bearer_auth(token)
        .header("Prefer", wait)
        .send()
        .await
        .unwrap()
}

/// A held GET answers as soon as the report completes, with the completed report.
async fn a_held_read_returns_when_the_report_finishes(app: TestApp) {
    let user = app.user().await;
    let report = app.activity_report(&user, 7).await;
    let id = report["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let read = held_get(&app, &user.access_token, &id, "wait=20");
    let finish = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        app.complete_report(id.parse().unwrap(), b"day,count\n")
            .await;
    };
    let (response, ()) = tokio::join!(read, finish);
    let elapsed = started.elapsed();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["preference-applied"], "wait=20");
    let report = body(response).await;
    assert_eq!(report["status"], "completed");
    assert!(report["download_url"].is_string());
    assert!(
        elapsed >= Duration::from_millis(700) && elapsed < Duration::from_secs(10),
        "answered at the change, not at the deadline: {elapsed:?}"
    );
}

#[tokio::test]
async fn a_held_read_returns_when_the_report_finishes_on_postgres() {
    a_held_read_returns_when_the_report_finishes(spawn_app().await).await;
}

#[tokio::test]
async fn a_held_read_returns_when_the_report_finishes_on_sqlite() {
    a_held_read_returns_when_the_report_finishes(spawn_sqlite_app().await).await;
}

#[tokio::test]
async fn at_the_deadline_the_current_state_is_answered() {
    let app = spawn_app().await;
    let user = app.user().await;
    let report = app.activity_report(&user, 7).await;
    let id = report["id"].as_str().unwrap();
    let started = Instant::now();
    let response = held_get(&app, &user.access_token, id, "wait=1").await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "held until the deadline"
    );
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["preference-applied"], "wait=1");
    assert_eq!(body(response).await["status"], "queued");

    // POST: 202 with the current state at the deadline.
    let response = app
        .client
        .post(app.url("/reports"))
        .bearer_auth(&user.access_token)
        .header("Prefer", "wait=1")
        .json(&json!({"report_type": "profile", "format": "pdf"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["preference-applied"], "wait=1");
    assert!(
        response.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/reports/")
    );
}

#[tokio::test]
async fn a_held_post_answers_200_with_the_finished_report() {
    let app = spawn_app().await;
    let user = app.user().await;
    let post = app
        .client
        .post(app.url("/reports"))
        .bearer_auth(&user.access_token)
        .header("Prefer", "respond-async, wait=20")
        .json(&json!({"report_type": "profile", "format": "pdf"}))
        .send();
    // Play the worker: take the message off the queue and complete its report.
    let worker = async {
        loop {
            let messages = app.queued_messages(Duration::from_millis(200)).await;
            if let Some(message) = messages.first() {
                let message = quire_crds::WorkMessage::from_body(message).unwrap();
                app.complete_report(message.report_id, b"%PDF-1.7").await;
                return;
            }
        }
    };
    let (response, ()) = tokio::join!(post, worker);
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["preference-applied"], "wait=20");
    assert!(response.headers().contains_key("location"));
    assert_eq!(body(response).await["status"], "completed");
}

#[tokio::test]
async fn the_wait_is_capped_and_exempt_from_the_request_timeout() {
    let app = spawn_app_with(|config| {
        config.max_wait = Duration::from_secs(2);
        config.request_timeout = Duration::from_millis(500);
    })
    .await;
    let user = app.user().await;
    let report = app.activity_report(&user, 7).await;
    let id = report["id"].as_str().unwrap();
    let started = Instant::now();
    let response = held_get(&app, &user.access_token, id, "wait=3600").await;
    let elapsed = started.elapsed();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "not cut off by the 0.5 s timeout"
    );
    assert_eq!(response.headers()["preference-applied"], "wait=2");
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn without_a_wait_preference_nothing_is_held_and_nonsense_is_ignored() {
    let app = spawn_app().await;
    let user = app.user().await;
    let report = app.activity_report(&user, 7).await;
    let id = report["id"].as_str().unwrap();
    for prefer in ["return=minimal", "wait=soon", "wait=-3"] {
        let started = Instant::now();
        let response = held_get(&app, &user.access_token, id, prefer).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            !response.headers().contains_key("preference-applied"),
            "{prefer}"
        );
        assert!(started.elapsed() < Duration::from_secs(1), "{prefer}");
    }
    // An unknown or foreign report is 404 at once, held or not.
    let response = held_get(
        &app,
        &user.access_token,
        &Uuid::now_v7().to_string(),
        "wait=30",
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn waiting_requests_hold_no_database_connection() {
    // 40 held requests on a pool of 4 connections: other requests still get answered.
    let app = spawn_app().await;
    let pool_size = app
        .pg
        .as_ref()
        .unwrap()
        .pool()
        .options()
        .get_max_connections();
    let user = app.user().await;
    let report = app.activity_report(&user, 7).await;
    let id = report["id"].as_str().unwrap().to_owned();
    let waiters = (0..(pool_size * 4))
        .map(|_| {
            let request = app
                .client
                .get(app.url(&format!("/reports/{id}")))
                .bearer_auth(&user.access_token)
                .header("Prefer", "wait=8")
                .send();
            tokio::spawn(request)
        })
        .collect::<Vec<_>>();
    // Wait until every waiter is registered.
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.state.report_changes().watched() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let response = app.get_authed("/me", &user.access_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a plain request is not starved by the waiters: {:?}",
        started.elapsed()
    );
    app.complete_report(id.parse().unwrap(), b"x").await;
    for waiter in waiters {
        let response = waiter.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body(response).await["status"], "completed");
    }
}

#[tokio::test]
async fn a_database_outage_answers_held_requests_at_once_and_waiting_works_after_it() {
    use quire_testing::proxy::Mode;

    let (app, proxy) = crate::helpers::spawn_app_behind_proxy().await;
    let user = app.user().await;
    let report = app.activity_report(&user, 7).await;
    let id = report["id"].as_str().unwrap().to_owned();

    // A request held for 60 s when Postgres goes away is answered 503 long before that.
    let held = {
        let (client, url, token) = (
            app.client.clone(),
            app.url(&format!("/reports/{id}")),
            user.access_token.clone(),
        );
        tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(token)
                .header("Prefer", "wait=60")
                .send()
                .await
                .unwrap()
        })
    };
    while app.state.report_changes().watched() == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cut = Instant::now();
    proxy.set(Mode::Refuse);
    let response = held.await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        cut.elapsed() < Duration::from_secs(15),
        "answered during the outage, not at the deadline: {:?}",
        cut.elapsed()
    );
    assert_eq!(body(response).await["error"], "service_unavailable");

    // Postgres is back: the listener reconnects and a held request is woken by the change.
    proxy.set(Mode::Pass);
    let started = Instant::now();
    let read = held_get(&app, &user.access_token, &id, "wait=30");
    let finish = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        app.complete_report(id.parse().unwrap(), b"day,count\n")
            .await;
    };
    let (response, ()) = tokio::join!(read, finish);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body(response).await["status"], "completed");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woken, not answered at the deadline: {:?}",
        started.elapsed()
    );
}
