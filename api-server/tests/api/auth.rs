//! Sign-up and sign-in.

use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{PASSWORD, TestApp, body, error, spawn_app, spawn_app_with};

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

/// `kada@example.com` written with fullwidth forms, a compatibility variant of it.
const FULLWIDTH_KADA: &str = "\u{ff4b}\u{ff41}\u{ff44}\u{ff41}@example.com";
/// `kada@example.com` with a Cyrillic а (U+0430): looks the same, is another string.
const CYRILLIC_KADA: &str = "k\u{0430}da@example.com";

/// Signs up `email` and answers the new account's id.
async fn signed_up(app: &TestApp, email: &str) -> Uuid {
    let created = app.signup(email, PASSWORD).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    body(created).await["id"].as_str().unwrap().parse().unwrap()
}

/// The account a sign-in as `email` lands in, read from the access token it answers.
async fn signed_in_as(app: &TestApp, email: &str) -> Uuid {
    let response = app.signin(email, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK, "signing in as {email:?}");
    let tokens = body(response).await;
    let access = tokens["access_token"].as_str().unwrap();
    app.state
        .access_tokens()
        .verify(access, Utc::now())
        .unwrap()
        .sub
}

#[tokio::test]
async fn look_alike_emails_never_create_a_second_account() {
    let app = spawn_app().await;
    signed_up(&app, "kada@example.com").await;

    // Compatibility forms (fullwidth letters, a fullwidth domain) are the same address.
    for same in [
        FULLWIDTH_KADA,
        "kada@\u{ff25}\u{ff38}\u{ff21}\u{ff2d}\u{ff30}\u{ff2c}\u{ff25}.com",
        "\u{ff2b}ADA@example.com",
    ] {
        let message = error(
            app.signup(same, PASSWORD).await,
            StatusCode::CONFLICT,
            "conflict",
        )
        .await;
        assert!(message.contains("already exists"), "{same:?}: {message}");
    }
    // Letters from other alphabets before the @ are refused outright.
    for look_alike in [
        CYRILLIC_KADA,
        "k\u{0430}d\u{0430}@example.com",
        "kad\u{03b1}@example.com",
    ] {
        let message = error(
            app.signup(look_alike, PASSWORD).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity",
        )
        .await;
        assert!(
            message.contains("ASCII letters before the @"),
            "{look_alike:?}: {message}"
        );
    }
}

#[tokio::test]
async fn a_fullwidth_email_signs_in_to_the_same_account() {
    let app = spawn_app().await;
    let kada = signed_up(&app, "kada@example.com").await;
    assert_eq!(signed_in_as(&app, FULLWIDTH_KADA).await, kada);
    assert_eq!(signed_in_as(&app, "kada@\u{ff45}xample.com").await, kada);
}

#[tokio::test]
async fn a_look_alike_or_unnormalisable_email_cannot_sign_in_and_reads_like_an_unknown_one() {
    let app = spawn_app().await;
    signed_up(&app, "kada@example.com").await;
    let unknown = app.signin("nobody@example.com", PASSWORD).await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let unknown = body(unknown).await;
    // A look-alike of an existing account, and a domain IDNA cannot map (invalid punycode).
    for email in [CYRILLIC_KADA, "kada@xn--a.com"] {
        let response = app.signin(email, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{email:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert_eq!(body(response).await, unknown, "{email:?}");
    }
}

#[tokio::test]
async fn signup_with_a_domain_idna_cannot_map_is_422() {
    let app = spawn_app().await;
    for email in ["kada@xn--a.com", "kada@ex\u{200d}ample.com"] {
        let message = error(
            app.signup(email, PASSWORD).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity",
        )
        .await;
        assert!(message.contains("email"), "{email:?}: {message}");
    }
}

#[tokio::test]
async fn an_internationalised_domain_is_stored_in_its_ascii_form() {
    let app = spawn_app().await;
    let created = app.signup("Ada@B\u{00dc}cher.example", PASSWORD).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = body(created).await;
    assert_eq!(created["email"], "ada@xn--bcher-kva.example");
    let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    // Either spelling of the domain reaches the account.
    assert_eq!(signed_in_as(&app, "ada@b\u{00fc}cher.example").await, id);
    assert_eq!(signed_in_as(&app, "ada@xn--bcher-kva.example").await, id);
    let stored = app
        .store
        .credentials("ada@xn--bcher-kva.example")
        .await
        .unwrap()
        .expect("the account is stored under the punycode form");
    assert_eq!(stored.user.id, id);
}

#[tokio::test]
async fn signup_refuses_common_and_blank_passwords_without_repeating_them() {
    let app = spawn_app().await;
    for (password, expected) in [
        ("password", "`password` is too common; choose another"),
        ("12345678", "`password` is too common; choose another"),
        ("qwertyuiop", "`password` is too common; choose another"),
        ("PassWord", "`password` is too common; choose another"),
        ("Football", "`password` is too common; choose another"),
        ("        ", "`password` must not be only spaces"),
        ("\t \t \t \t \t", "`password` must not be only spaces"),
    ] {
        let response = app.signup("ada@example.com", password).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{password:?}"
        );
        let text = response.text().await.unwrap();
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"], "unprocessable_entity");
        // The exact message, and the password nowhere else: "password" is also the field's name.
        assert_eq!(body["message"], expected, "{password:?}");
        if password != "password" {
            assert!(!text.contains(password), "{password:?} echoed in {text}");
        }
    }
    // None of them created the account.
    assert_eq!(
        app.signin("ada@example.com", "password").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn signup_accepts_a_strong_passphrase() {
    let app = spawn_app().await;
    let passphrase = "tangerine Voltage 42 marsupial orbit";
    assert_eq!(
        app.signup("ada@example.com", passphrase).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.signin("ada@example.com", passphrase).await.status(),
        StatusCode::OK
    );
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
