//! The same app over the embedded SQLite store.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{body, spawn_sqlite_app};

#[tokio::test]
async fn the_app_works_end_to_end_on_sqlite() {
    let app = spawn_sqlite_app().await;
    let user = app.user().await;
    let response = app
        .create_report(&user, &json!({ "report_type": "dataset", "format": "csv", "parameters": { "source": "games" } }))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();

    let report = body(app.get_authed(&location, &user.access_token).await).await;
    assert_eq!(report["status"], "queued");
    assert_eq!(report["parameters"], json!({ "source": "games" }));
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}
