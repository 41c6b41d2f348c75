//! `GET /report-types`, `GET /data-sources`, and the refusal of unknown sources.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{body, error, spawn_app_with};

const SOURCES: &str = r#"
[sources.games]
url = "http://10.1.2.3:9000/internal/games"
title = "Games played"
columns = ["day", "player", "score"]
headers = { "X-Api-Key" = "super-secret-key" }
allow_private = true

[sources.weather]
url = "https://api.example.com/weather"
"#;

async fn app_with_sources() -> crate::helpers::TestApp {
    spawn_app_with(|config| {
        config.data_sources = quire_render::DataSources::from_toml_str(SOURCES).unwrap();
    })
    .await
}

#[tokio::test]
async fn report_types_list_every_type_with_its_formats_and_parameter_schema() {
    let app = app_with_sources().await;
    let user = app.user().await;
    let response = app.get_authed("/report-types", &user.access_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let types = body(response).await;
    let items = types["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["profile", "activity", "dataset"]);
    let of = |name: &str| items.iter().find(|t| t["name"] == name).unwrap().clone();
    assert_eq!(of("profile")["formats"], json!(["pdf"]));
    assert_eq!(of("activity")["formats"], json!(["csv", "pdf"]));
    assert_eq!(of("dataset")["formats"], json!(["csv", "json", "pdf"]));

    let activity = of("activity")["parameters_schema"].clone();
    assert_eq!(activity["type"], "object");
    assert_eq!(activity["properties"]["days"]["minimum"], 1);
    assert_eq!(activity["properties"]["days"]["maximum"], 366);
    assert_eq!(activity["additionalProperties"], false);
    let dataset = of("dataset")["parameters_schema"].clone();
    assert_eq!(dataset["required"], json!(["source"]));
    assert_eq!(
        dataset["properties"]["source"]["enum"],
        json!(["games", "weather"]),
        "the schema names the configured sources"
    );
}

#[tokio::test]
async fn the_parameter_schemas_accept_what_the_api_accepts() {
    // A request built from the catalogue's defaults is accepted for every type and format.
    let app = app_with_sources().await;
    let user = app.user().await;
    let types = body(app.get_authed("/report-types", &user.access_token).await).await;
    for report_type in types["items"].as_array().unwrap() {
        let name = report_type["name"].as_str().unwrap();
        let parameters = if name == "dataset" {
            json!({"source": report_type["parameters_schema"]["properties"]["source"]["enum"][0]})
        } else {
            json!({})
        };
        for format in report_type["formats"].as_array().unwrap() {
            let request = json!({"report_type": name, "format": format, "parameters": parameters});
            let response = app.create_report(&user, &request).await;
            assert_eq!(response.status(), StatusCode::ACCEPTED, "{request}");
        }
    }
}

#[tokio::test]
async fn data_sources_show_names_titles_and_columns_never_urls_or_headers() {
    let app = app_with_sources().await;
    let user = app.user().await;
    let response = app.get_authed("/data-sources", &user.access_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    for secret in [
        "10.1.2.3",
        "internal",
        "api.example.com",
        "X-Api-Key",
        "super-secret-key",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let sources: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        sources,
        json!({"items": [
            {"name": "games", "title": "Games played", "columns": ["day", "player", "score"]},
            {"name": "weather", "title": "weather", "columns": null},
        ]})
    );
}

#[tokio::test]
async fn the_catalogue_needs_a_signed_in_user() {
    let app = app_with_sources().await;
    for path in ["/report-types", "/data-sources"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
}

#[tokio::test]
async fn an_unknown_data_source_is_refused_before_anything_is_stored() {
    let app = app_with_sources().await;
    let user = app.user().await;
    let request =
        json!({"report_type": "dataset", "format": "csv", "parameters": {"source": "nope"}});
    let response = app.create_report(&user, &request).await;
    let message = error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable_entity",
    )
    .await;
    assert!(message.contains("`nope`"), "{message}");
    assert!(message.contains("games, weather"), "{message}");
    let listed = body(app.get_authed("/reports", &user.access_token).await).await;
    assert_eq!(listed["items"], json!([]), "nothing was created");

    // Without any configured source, every dataset report is refused and says why.
    let bare =
        spawn_app_with(|config| config.data_sources = quire_render::DataSources::empty()).await;
    let user = bare.user().await;
    let request =
        json!({"report_type": "dataset", "format": "csv", "parameters": {"source": "games"}});
    let message = error(
        bare.create_report(&user, &request).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable_entity",
    )
    .await;
    assert!(message.contains("no data sources configured"), "{message}");
}
