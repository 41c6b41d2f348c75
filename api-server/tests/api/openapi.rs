//! The OpenAPI document and the docs page.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{body, spawn_app};

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let generated: Value =
        serde_json::to_value(quire_api::http::openapi_document()).expect("serialises");
    let committed: Value = std::fs::read_to_string(COMMITTED)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    assert!(
        generated == committed,
        "docs/openapi.json is out of date; regenerate it with\n  \
         cargo run -q --bin api-server -- openapi > docs/openapi.json"
    );
}

#[tokio::test]
async fn the_served_document_is_the_generated_one_and_covers_every_operation() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let served = body(response).await;
    assert_eq!(
        served,
        serde_json::to_value(quire_api::http::openapi_document()).unwrap()
    );
    assert!(served["openapi"].as_str().unwrap().starts_with("3.1"));

    let operations: Vec<String> = served["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    for expected in [
        "POST /auth/signup",
        "POST /auth/signin",
        "POST /auth/refresh",
        "POST /auth/signout",
        "POST /auth/signout-all",
        "GET /me",
        "GET /report-types",
        "GET /data-sources",
        "GET /reports",
        "POST /reports",
        "GET /reports/{id}",
        "POST /reports/{id}/cancel",
        "GET /reports/{id}/download",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
    ] {
        assert!(
            operations.contains(&expected.to_owned()),
            "{expected} is missing: {operations:?}"
        );
    }
    // Every operation documents its errors with the shared body, and the bearer scheme.
    let create = &served["paths"]["/reports"]["post"];
    for status in ["202", "200", "401", "409", "422", "429", "503"] {
        assert!(
            create["responses"][status].is_object(),
            "POST /reports lacks {status}"
        );
    }
    assert_eq!(
        create["responses"]["422"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    let headers: Vec<&str> = create["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(headers.contains(&"Idempotency-Key") && headers.contains(&"Prefer"));
    assert!(create["responses"]["202"]["headers"]["Location"].is_object());
    assert!(create["responses"]["202"]["headers"]["Preference-Applied"].is_object());
    assert!(create["responses"]["202"]["headers"]["Idempotent-Replayed"].is_object());
    assert!(create["responses"]["429"]["headers"]["Retry-After"].is_object());
    assert_eq!(
        served["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn the_docs_page_is_served_with_every_asset_from_this_server() {
    let app = spawn_app().await;
    let client = reqwest::Client::new(); // follows /docs -> /docs/
    let response = client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    // Every script and stylesheet the page names is relative, and served here.
    let assets: Vec<&str> = html
        .split(['"', '\''])
        .filter(|s| s.ends_with(".js") || s.ends_with(".css"))
        .collect();
    assert!(!assets.is_empty());
    for asset in assets {
        assert!(!asset.contains("//"), "{asset} comes from another host");
        let url = app.url(&format!("/docs/{}", asset.trim_start_matches("./")));
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{url}");
    }
    let initializer = client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(initializer.contains("/openapi.json"), "{initializer}");
}
