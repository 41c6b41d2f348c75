//! Access tokens, refresh tokens and sign-out.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{JWT_SECRET, body, claims_for, error, spawn_app, token_with, unsigned_token};

#[tokio::test]
async fn a_request_without_a_bearer_token_is_401_with_a_challenge() {
    let app = spawn_app().await;
    let response = app.request(Method::GET, "/reports").send().await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let basic = app
        .request(Method::GET, "/reports")
        .basic_auth("ada", Some("pw"))
        .send()
        .await
        .unwrap();
    error(basic, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn a_token_signed_with_our_secret_and_valid_claims_is_accepted() {
    let app = spawn_app().await;
    let user = app.user().await;
    let token = token_with(&claims_for(user.id), JWT_SECRET);
    assert_eq!(
        app.get_authed("/reports", &token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_expired_access_token_is_401() {
    let app = spawn_app().await;
    let user = app.user().await;
    let mut claims = claims_for(user.id);
    let long_ago = chrono::Utc::now().timestamp() - 3600;
    claims["iat"] = json!(long_ago - 900);
    claims["exp"] = json!(long_ago);
    let token = token_with(&claims, JWT_SECRET);
    error(
        app.get_authed("/reports", &token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn a_token_for_another_audience_or_issuer_is_401() {
    let app = spawn_app().await;
    let user = app.user().await;
    for (field, value) in [("aud", "another-api"), ("iss", "someone-else")] {
        let mut claims = claims_for(user.id);
        claims[field] = json!(value);
        let token = token_with(&claims, JWT_SECRET);
        error(
            app.get_authed("/reports", &token).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
}

#[tokio::test]
async fn a_token_missing_a_required_claim_is_401() {
    let app = spawn_app().await;
    let user = app.user().await;
    for field in ["sub", "exp", "iss", "aud"] {
        let mut claims = claims_for(user.id);
        claims.as_object_mut().unwrap().remove(field);
        let token = token_with(&claims, JWT_SECRET);
        let response = app.get_authed("/reports", &token).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "without {field}"
        );
    }
}

#[tokio::test]
async fn an_unsigned_or_foreign_token_is_401() {
    let app = spawn_app().await;
    let user = app.user().await;
    let unsigned = unsigned_token(&claims_for(user.id));
    error(
        app.get_authed("/reports", &unsigned).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let foreign = token_with(
        &claims_for(user.id),
        "another-secret-another-secret-another",
    );
    error(
        app.get_authed("/reports", &foreign).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    error(
        app.get_authed("/reports", "garbage").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn refresh_trades_a_refresh_token_for_a_new_working_pair() {
    let app = spawn_app().await;
    let user = app.user().await;
    let response = app.refresh(&user.refresh_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let pair = body(response).await;
    assert_eq!(pair["token_type"], "Bearer");
    assert_ne!(pair["refresh_token"], user.refresh_token.as_str());
    let access = pair["access_token"].as_str().unwrap();
    assert_eq!(
        app.get_authed("/reports", access).await.status(),
        StatusCode::OK
    );
    // The new refresh token works in turn.
    assert_eq!(
        app.refresh(pair["refresh_token"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn reusing_a_spent_refresh_token_revokes_its_whole_family() {
    let app = spawn_app().await;
    let user = app.user().await;
    let newest = body(app.refresh(&user.refresh_token).await).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // The first token was spent: presenting it again looks like theft.
    error(
        app.refresh(&user.refresh_token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    // So the legitimate holder's newest token no longer works either.
    error(
        app.refresh(&newest).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn unknown_and_malformed_refresh_tokens_are_401() {
    let app = spawn_app().await;
    for token in [
        "",
        "not-a-token",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        error(
            app.refresh(token).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    let missing = app.post_json("/auth/refresh", &json!({})).await;
    error(
        missing,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable_entity",
    )
    .await;
}

#[tokio::test]
async fn after_signout_the_refresh_token_no_longer_works() {
    let app = spawn_app().await;
    let user = app.user().await;
    let response = app
        .post_json(
            "/auth/signout",
            &json!({ "refresh_token": user.refresh_token }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    error(
        app.refresh(&user.refresh_token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn signout_is_idempotent_but_rejects_a_malformed_body() {
    let app = spawn_app().await;
    let unknown = app
        .post_json("/auth/signout", &json!({ "refresh_token": "whatever" }))
        .await;
    assert_eq!(unknown.status(), StatusCode::NO_CONTENT);
    let malformed = app
        .request(Method::POST, "/auth/signout")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    error(malformed, StatusCode::BAD_REQUEST, "bad_request").await;
}

#[tokio::test]
async fn a_valid_token_for_an_account_that_no_longer_exists_cannot_request_reports() {
    let app = spawn_app().await;
    let token = token_with(&claims_for(uuid::Uuid::now_v7()), JWT_SECRET);
    let response = app
        .post_authed(
            "/reports",
            &token,
            &json!({"report_type": "profile", "format": "pdf"}),
        )
        .await;
    let message = error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert!(message.contains("no longer exists"), "{message}");
}
