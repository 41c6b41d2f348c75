//! Sign-up and sign-in.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{PASSWORD, body, error, spawn_app, spawn_app_with};

#[tokio::test]
async fn signup_creates_an_account_and_answers_201_with_it() {
    let app = spawn_app().await;
    let response = app.signup("  Ada@Example.COM ", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body = body(response).await;
    let fields: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
    assert_eq!(fields, ["created_at", "email", "id"]);
    assert_eq!(body["email"], "ada@example.com");
    assert!(body["id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok());
}

#[tokio::test]
async fn signup_rejects_an_invalid_email_with_422() {
    let app = spawn_app().await;
    for email in [
        "",
        "not-an-email",
        "ada@",
        "ada@localhost",
        "Ada <ada@example.com>",
    ] {
        let message = error(
            app.signup(email, PASSWORD).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity",
        )
        .await;
        assert!(message.contains("email"), "{message}");
    }
}

#[tokio::test]
async fn signup_rejects_short_and_overlong_passwords_with_422() {
    let app = spawn_app().await;
    let short = error(
        app.signup("ada@example.com", "1234567").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable_entity",
    )
    .await;
    assert!(short.contains("at least 8"), "{short}");
    let long = "x".repeat(73);
    let message = error(
        app.signup("ada@example.com", &long).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable_entity",
    )
    .await;
    assert!(message.contains("72 bytes"), "{message}");
    assert!(!message.contains(&long));
}

#[tokio::test]
async fn signup_with_a_taken_email_is_409_whatever_its_case_or_whitespace() {
    let app = spawn_app().await;
    assert_eq!(
        app.signup("ada@example.com", PASSWORD).await.status(),
        StatusCode::CREATED
    );
    error(
        app.signup("ada@example.com", PASSWORD).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    error(
        app.signup("  ADA@Example.com\t", PASSWORD).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
}

#[tokio::test]
async fn signup_without_a_json_content_type_is_415() {
    let app = spawn_app().await;
    let response = app
        .request(Method::POST, "/auth/signup")
        .header("content-type", "text/plain")
        .body(r#"{"email":"ada@example.com","password":"correct horse"}"#)
        .send()
        .await
        .unwrap();
    error(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
}

#[tokio::test]
async fn signup_with_malformed_json_is_400() {
    let app = spawn_app().await;
    let response = app
        .request(Method::POST, "/auth/signup")
        .header("content-type", "application/json")
        .body(r#"{"email": "ada@example.com", "#)
        .send()
        .await
        .unwrap();
    error(response, StatusCode::BAD_REQUEST, "bad_request").await;
}

#[tokio::test]
async fn signup_with_a_missing_or_mistyped_field_is_422() {
    let app = spawn_app().await;
    let missing = app
        .post_json("/auth/signup", &json!({ "email": "ada@example.com" }))
        .await;
    let message = error(
        missing,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable_entity",
    )
    .await;
    assert!(message.contains("password"), "{message}");
    let mistyped = app
        .post_json(
            "/auth/signup",
            &json!({ "email": 42, "password": PASSWORD }),
        )
        .await;
    error(
        mistyped,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable_entity",
    )
    .await;
}

#[tokio::test]
async fn an_oversize_body_is_413() {
    let app = spawn_app().await;
    let huge = "x".repeat(100 * 1024);
    let response = app.signup(&huge, PASSWORD).await;
    error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

#[tokio::test]
async fn signin_answers_a_bearer_token_pair() {
    let app = spawn_app().await;
    app.signup("ada@example.com", PASSWORD).await;
    let response = app.signin(" ADA@example.com", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let tokens = body(response).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert_eq!(
        tokens["access_token"].as_str().unwrap().split('.').count(),
        3
    );
    assert_eq!(tokens["refresh_token"].as_str().unwrap().len(), 43);

    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(
        app.get_authed("/reports", access).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_get_the_same_401() {
    let app = spawn_app().await;
    app.signup("ada@example.com", PASSWORD).await;

    let wrong_password = app.signin("ada@example.com", "not the password").await;
    assert_eq!(wrong_password.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_password.headers()["www-authenticate"], "Bearer");
    let unknown_email = app.signin("bob@example.com", PASSWORD).await;
    assert_eq!(unknown_email.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body(wrong_password).await, body(unknown_email).await);
}

#[tokio::test]
async fn too_many_signins_for_one_account_are_429_with_retry_after() {
    let app = spawn_app().await;
    app.signup("ada@example.com", PASSWORD).await;
    for _ in 0..5 {
        assert_eq!(
            app.signin("ada@example.com", "wrong password")
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Even the right password is refused until the limit refills.
    let limited = app.signin("ada@example.com", PASSWORD).await;
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    error(limited, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    // Another account from the same address is still within its limits.
    assert_eq!(
        app.signin("bob@example.com", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn too_many_signins_from_one_address_are_429() {
    let app = spawn_app_with(|config| config.signin_per_address_per_minute = 3).await;
    for i in 0..3 {
        let status = app
            .signin(&format!("user{i}@example.com"), PASSWORD)
            .await
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let limited = app.signin("someone-new@example.com", PASSWORD).await;
    error(limited, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
}

#[tokio::test]
async fn a_burst_of_signins_does_not_stall_other_requests() {
    // Expensive hashes, one at a time: the sign-ins queue up for a second or so.
    let app = spawn_app_with(|config| {
        config.bcrypt_cost = 11;
        config.hash_concurrency = 1;
        config.signin_per_account_per_minute = 0;
        config.signin_per_address_per_minute = 0;
    })
    .await;
    app.signup("ada@example.com", PASSWORD).await;

    let signins: Vec<_> = (0..6)
        .map(|_| {
            let request = app
                .request(Method::POST, "/auth/signin")
                .json(&json!({ "email": "ada@example.com", "password": PASSWORD }));
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                Instant::now()
            })
        })
        .collect();
    // This test runs the app on a single-threaded runtime: if hashing ran on it, this loop
    // could not observe a hash in flight, and the timeout would fail the test.
    tokio::time::timeout(Duration::from_secs(10), async {
        while app.state.hasher().in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("a sign-in is hashing while the runtime stays free");
    assert_eq!(
        app.state.hasher().in_flight(),
        1,
        "bounded to one hash at a time"
    );

    let health = app.request(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let health_answered = Instant::now();

    let mut finished = Vec::new();
    for signin in signins {
        finished.push(signin.await.unwrap());
    }
    let first_signin = finished.into_iter().min().unwrap();
    assert!(
        health_answered < first_signin,
        "/healthz waited for a hash to finish"
    );
}
