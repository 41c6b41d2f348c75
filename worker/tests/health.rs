//! The worker's probes against real dependencies: Postgres, the database queue and a local
//! directory.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use quire_core::queue::DatabaseQueue;
use quire_core::storage::LocalStorage;
use serde_json::Value;

#[tokio::test]
async fn readyz_names_the_dependency_that_is_down() {
    let store = quire_testing::fresh_postgres().await;
    let queue = Arc::new(DatabaseQueue::postgres(store.pool().clone()));
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(
        LocalStorage::new(
            dir.path(),
            "http://127.0.0.1:1/".parse().unwrap(),
            vec![7; 32],
        )
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let probes = quire_worker::health::router(store.clone(), queue, storage);
    tokio::spawn(async move { axum::serve(listener, probes).await.unwrap() });
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let live = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["queue"], "ok");

    // The database goes away (the pool is closed): the worker is alive but not ready.
    store.pool().close().await;
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert!(
        body["checks"]["database"]
            .as_str()
            .unwrap()
            .starts_with("unavailable"),
        "{body}"
    );
    assert_eq!(body["checks"]["storage"], "ok");
    let live = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(live.status(), 200);
}
