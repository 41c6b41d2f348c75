//! Security policies of the authentication routes: sign out everywhere, the refresh
//! family's absolute lifetime, trusted proxies and the limits keyed on the client they
//! name, the sign-up limit, the bounded password hasher and client-chosen request ids.

use std::time::Duration;

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{PASSWORD, body, error, spawn_app, spawn_app_with};

#[tokio::test]
async fn signing_out_everywhere_ends_every_session_at_once() {
    let app = spawn_app().await;
    let user = app.user().await;
    let email = app
        .store
        .user(user.id)
        .await
        .unwrap()
        .expect("the user exists")
        .email;
    let other_device = body(app.signin(&email, PASSWORD).await).await;
    let other_access = other_device["access_token"].as_str().unwrap().to_owned();
    let other_refresh = other_device["refresh_token"].as_str().unwrap().to_owned();
    let report = app.activity_report(&user, 7).await;
    let report_path = format!("/reports/{}", report["id"].as_str().unwrap());

    let response = app
        .request(Method::POST, "/auth/signout-all")
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    // Every route, including the status read that checks the session in its report query:
    // an existing report, a missing one and a malformed id all answer 401 first.
    let missing = format!("/reports/{}", uuid::Uuid::now_v7());
    for access in [&user.access_token, &other_access] {
        for path in [
            "/reports",
            report_path.as_str(),
            missing.as_str(),
            "/reports/nope",
        ] {
            let message = error(
                app.get_authed(path, access).await,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            )
            .await;
            assert!(message.contains("signed out"), "{path}: {message}");
        }
    }
    for refresh in [&user.refresh_token, &other_refresh] {
        assert_eq!(
            app.refresh(refresh).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Signing in again starts a new, working session.
    let fresh = body(app.signin(&email, PASSWORD).await).await;
    let access = fresh["access_token"].as_str().unwrap();
    assert_eq!(
        app.get_authed("/reports", access).await.status(),
        StatusCode::OK
    );
    let refreshed = app.refresh(fresh["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refreshed.status(), StatusCode::OK);
}

#[tokio::test]
async fn signing_out_everywhere_needs_an_access_token() {
    let app = spawn_app().await;
    let response = app
        .request(Method::POST, "/auth/signout-all")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_refresh_family_ends_at_its_absolute_lifetime_however_often_it_rotates() {
    // A family that ends the moment it starts: its first refresh token is already dead.
    let app = spawn_app_with(|config| config.refresh_family_ttl = Duration::ZERO).await;
    let user = app.user().await;
    let message = error(
        app.refresh(&user.refresh_token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert!(message.contains("expired"), "{message}");

    // A day-long family: each rotated token expires with the family, not 30 days out.
    let app =
        spawn_app_with(|config| config.refresh_family_ttl = Duration::from_secs(86_400)).await;
    let user = app.user().await;
    let rotated = body(app.refresh(&user.refresh_token).await).await;
    let hash = quire_api_hash(rotated["refresh_token"].as_str().unwrap());
    let stored = app
        .store
        .refresh_token(&hash)
        .await
        .unwrap()
        .expect("the rotated token is stored");
    assert_eq!(stored.expires_at, stored.family_expires_at);
    assert!(stored.family_expires_at - stored.created_at <= chrono::Duration::days(1));
}

/// The stored hash of a refresh token.
fn quire_api_hash(token: &str) -> Vec<u8> {
    quire_api::auth::tokens::hash_presented(token).expect("a token we issued")
}

/// A failed sign-in for `email` as the client a trusted proxy names in `X-Forwarded-For`.
async fn failed_signin(app: &crate::helpers::TestApp, email: &str, client: &str) -> StatusCode {
    app.request(Method::POST, "/auth/signin")
        .header("x-forwarded-for", client)
        .json(&json!({ "email": email, "password": "not the password" }))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn behind_a_trusted_proxy_limits_key_on_the_client_it_names() {
    let app = spawn_app_with(|config| {
        config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        config.signin_per_address_per_minute = 2;
        config.signin_per_account_per_minute = 0;
    })
    .await;
    for email in ["a@example.com", "b@example.com"] {
        assert_eq!(
            failed_signin(&app, email, "203.0.113.1").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        failed_signin(&app, "c@example.com", "203.0.113.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client behind the same proxy has its own budget.
    assert_eq!(
        failed_signin(&app, "c@example.com", "203.0.113.2").await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn without_trusted_proxies_a_forwarded_header_is_ignored() {
    let app = spawn_app_with(|config| {
        config.signin_per_address_per_minute = 2;
        config.signin_per_account_per_minute = 0;
    })
    .await;
    assert_eq!(
        failed_signin(&app, "a@example.com", "203.0.113.1").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        failed_signin(&app, "b@example.com", "203.0.113.2").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        failed_signin(&app, "c@example.com", "203.0.113.3").await,
        StatusCode::TOO_MANY_REQUESTS,
        "spoofed headers do not buy a client new budgets"
    );
}

#[tokio::test]
async fn an_attacker_elsewhere_cannot_lock_a_victim_out() {
    let app = spawn_app_with(|config| {
        config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        config.signin_per_account_per_minute = 2;
    })
    .await;
    let victim = app.user().await;
    let email = app.store.user(victim.id).await.unwrap().unwrap().email;
    for _ in 0..2 {
        assert_eq!(
            failed_signin(&app, &email, "198.51.100.66").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        failed_signin(&app, &email, "198.51.100.66").await,
        StatusCode::TOO_MANY_REQUESTS,
        "the attacker's guesses are limited"
    );
    let response = app
        .request(Method::POST, "/auth/signin")
        .header("x-forwarded-for", "203.0.113.10")
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the victim still signs in"
    );
}

#[tokio::test]
async fn sign_ups_are_limited_per_address() {
    let app = spawn_app_with(|config| config.signup_per_address_per_hour = 2).await;
    for n in 0..2 {
        let response = app.signup(&format!("user{n}@example.com"), PASSWORD).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let refused = app.signup("user2@example.com", PASSWORD).await;
    assert!(refused.headers().contains_key("retry-after"));
    let message = error(refused, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    assert!(message.contains("sign-ups"), "{message}");
}

#[tokio::test]
async fn a_saturated_password_hasher_answers_503_at_once_never_500() {
    let app = spawn_app_with(|config| {
        config.bcrypt_cost = 12;
        config.hash_concurrency = 1;
        config.hash_queue = 0;
        config.signin_per_address_per_minute = 0;
        config.signin_per_account_per_minute = 0;
    })
    .await;
    let attempts = (0..8).map(|n| {
        app.request(Method::POST, "/auth/signin")
            .json(&json!({ "email": format!("u{n}@example.com"), "password": PASSWORD }))
            .send()
    });
    let statuses: Vec<_> = join_all(attempts)
        .await
        .into_iter()
        .map(|r| {
            let r = r.unwrap();
            (r.status(), r.headers().contains_key("retry-after"))
        })
        .collect();
    assert!(
        statuses
            .iter()
            .all(|(s, _)| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&(StatusCode::SERVICE_UNAVAILABLE, true)),
        "with no queue, overlapping hashes are refused with Retry-After: {statuses:?}"
    );
    assert!(statuses.iter().any(|(s, _)| *s == StatusCode::UNAUTHORIZED));
}

#[tokio::test]
async fn a_request_id_is_kept_only_when_short_and_plain() {
    let app = spawn_app().await;
    let echoed = |id: &'static str| {
        let request = app
            .request(Method::GET, "/healthz")
            .header("x-request-id", id);
        async move {
            let response = request.send().await.unwrap();
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(echoed("req-42.a:b/c_d").await, "req-42.a:b/c_d");
    for forged in [
        "id\" level=error msg=\"forged",
        "has spaces",
        "x".repeat(65).leak() as &'static str,
    ] {
        let kept = echoed(forged).await;
        assert_ne!(kept, forged);
        assert!(
            uuid::Uuid::parse_str(&kept).is_ok(),
            "a generated id: {kept}"
        );
    }
}
