//! Completed reports: download links, the redirect and the signed `/files/…` route.

use std::time::Duration;

use chrono::{DateTime, Utc};
use quire_core::storage::{OutputStorage, output_meta};
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, TestUser, body, error, spawn_app};

const CSV: &[u8] = b"day,reports\n2026-11-21,3\n";

/// A completed activity report of `user`'s, its output being [`CSV`].
async fn completed_report(app: &TestApp, user: &TestUser) -> Uuid {
    let report = app.activity_report(user, 7).await;
    let id = report["id"].as_str().unwrap().parse().unwrap();
    app.complete_report(id, CSV).await;
    id
}

#[tokio::test]
async fn downloading_is_409_until_the_report_completes() {
    let app = spawn_app().await;
    let user = app.user().await;
    let report = app.activity_report(&user, 7).await;
    let path = format!("/reports/{}/download", report["id"].as_str().unwrap());
    let message = error(
        app.get_authed(&path, &user.access_token).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    assert!(message.contains("queued"), "{message}");
    let missing = format!("/reports/{}/download", Uuid::now_v7());
    error(
        app.get_authed(&missing, &user.access_token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_completed_report_shows_a_download_link_that_serves_the_file() {
    let app = spawn_app().await;
    let user = app.user().await;
    let id = completed_report(&app, &user).await;

    let report = body(
        app.get_authed(&format!("/reports/{id}"), &user.access_token)
            .await,
    )
    .await;
    assert_eq!(report["status"], "completed");
    assert!(report["completed_at"].is_string());
    let url = report["download_url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/files/", app.address)), "{url}");
    let expires_at: DateTime<Utc> = report["download_url_expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let ttl = (expires_at - Utc::now()).num_seconds();
    assert!((890..=900).contains(&ttl), "{ttl}");

    // The link is remembered: the next read shows the same one.
    let again = body(
        app.get_authed(&format!("/reports/{id}"), &user.access_token)
            .await,
    )
    .await;
    assert_eq!(again["download_url"], url.as_str());

    let file = app.client.get(&url).send().await.unwrap();
    assert_eq!(file.status(), StatusCode::OK);
    assert_eq!(file.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        file.headers()["content-length"],
        CSV.len().to_string().as_str()
    );
    assert_eq!(
        file.headers()["content-disposition"],
        format!("attachment; filename=\"quire-activity-{id}.csv\"").as_str()
    );
    assert_eq!(file.bytes().await.unwrap(), CSV);
}

#[tokio::test]
async fn the_download_route_redirects_to_the_link() {
    let app = spawn_app().await;
    let user = app.user().await;
    let id = completed_report(&app, &user).await;

    let response = app
        .get_authed(&format!("/reports/{id}/download"), &user.access_token)
        .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let file = app.client.get(&location).send().await.unwrap();
    assert_eq!(file.status(), StatusCode::OK);
    assert_eq!(file.bytes().await.unwrap(), CSV);

    let other = app.user().await;
    let response = app
        .get_authed(&format!("/reports/{id}/download"), &other.access_token)
        .await;
    error(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_tampered_link_is_403() {
    let app = spawn_app().await;
    let user = app.user().await;
    let id = completed_report(&app, &user).await;
    let report = body(
        app.get_authed(&format!("/reports/{id}"), &user.access_token)
            .await,
    )
    .await;
    let url = report["download_url"].as_str().unwrap();

    let mut tampered = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = tampered
        .query_pairs()
        .map(|(k, v)| match &*k {
            "signature" => (k.to_string(), format!("00{}", &v[2..])),
            _ => (k.to_string(), v.to_string()),
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    error(
        app.client.get(tampered.as_str()).send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    let longer = url.replace("expires=", "expires=9");
    error(
        app.client.get(&longer).send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let unsigned = url.split('?').next().unwrap();
    error(
        app.client.get(unsigned).send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn an_expired_link_is_refused() {
    let app = spawn_app().await;
    let user = app.user().await;
    let id = completed_report(&app, &user).await;
    let report = app.store.report(id).await.unwrap().unwrap();
    let key = report.output_key.clone().unwrap();
    let link = app
        .storage
        .download_url(&key, &output_meta(&report), Duration::ZERO)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let response = app.client.get(&link.url).send().await.unwrap();
    let message = error(response, StatusCode::GONE, "gone").await;
    assert!(message.contains("expired"), "{message}");
}

#[tokio::test]
async fn a_link_to_a_deleted_file_is_404() {
    let app = spawn_app().await;
    let user = app.user().await;
    let id = completed_report(&app, &user).await;
    let report = body(
        app.get_authed(&format!("/reports/{id}"), &user.access_token)
            .await,
    )
    .await;
    let stored = app.store.report(id).await.unwrap().unwrap();
    app.storage
        .delete(stored.output_key.as_deref().unwrap())
        .await
        .unwrap();

    let response = app
        .client
        .get(report["download_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    error(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn cancelling_a_completed_report_is_409_and_keeps_its_output() {
    let app = spawn_app().await;
    let user = app.user().await;
    let id = completed_report(&app, &user).await;
    let response = app
        .request(Method::POST, &format!("/reports/{id}/cancel"))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    let message = error(response, StatusCode::CONFLICT, "conflict").await;
    assert!(message.contains("completed"), "{message}");

    let report = body(
        app.get_authed(&format!("/reports/{id}"), &user.access_token)
            .await,
    )
    .await;
    assert_eq!(report["status"], "completed");
    let file = app
        .client
        .get(report["download_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), StatusCode::OK);
}

#[tokio::test]
async fn listing_shows_download_links_of_completed_reports_only() {
    let app = spawn_app().await;
    let user = app.user().await;
    let completed = completed_report(&app, &user).await;
    app.create_report(&user, &json!({ "report_type": "profile", "format": "pdf" }))
        .await;

    let page = body(app.get_authed("/reports", &user.access_token).await).await;
    for item in page["items"].as_array().unwrap() {
        let is_completed = item["id"] == completed.to_string().as_str();
        assert_eq!(item["download_url"].is_string(), is_completed, "{item}");
    }
}
