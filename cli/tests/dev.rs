//! `quire dev` end to end, in process: the README's walk-through over real HTTP, on SQLite,
//! local files and the database queue, plus a restart on the same data directory.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: a panic is the failure report

use std::time::Duration;

use quire::dev::{DevArgs, start};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

fn args(data_dir: &std::path::Path) -> DevArgs {
    DevArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        data_sources: None,
        concurrency: 2,
        shutdown_grace: 5,
        retention: Default::default(),
        quota_unfinished: 20,
        quota_per_hour: 500,
        max_wait: Duration::from_secs(60),
        webhooks: Default::default(),
    }
}

struct Session {
    http: Client,
    base: String,
    token: String,
}

impl Session {
    async fn signup_and_signin(base: String, email: &str) -> Self {
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let credentials = json!({"email": email, "password": "correct horse battery"});
        let r = http
            .post(format!("{base}/auth/signup"))
            .json(&credentials)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let mut me = Self {
            http,
            base,
            token: String::new(),
        };
        me.token = me.signin(email).await;
        me
    }

    async fn signin(&self, email: &str) -> String {
        let credentials = json!({"email": email, "password": "correct horse battery"});
        let r = self
            .http
            .post(format!("{}/auth/signin", self.base))
            .json(&credentials)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn request(&self, body: Value) -> String {
        let r = self
            .http
            .post(format!("{}/reports", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn report(&self, id: &str) -> Value {
        let r = self
            .http
            .get(format!("{}/reports/{id}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    async fn wait_completed(&self, id: &str) -> Value {
        for _ in 0..240 {
            let report = self.report(id).await;
            match report["status"].as_str().unwrap() {
                "completed" => return report,
                "failed" | "cancelled" => panic!("report ended badly: {report}"),
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        panic!("report {id} did not complete within 60 s");
    }

    /// Follows `/download`'s redirect by hand, checking it, and returns the bytes.
    async fn download(&self, id: &str) -> (reqwest::header::HeaderMap, Vec<u8>) {
        let r = self
            .http
            .get(format!("{}/reports/{id}/download", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FOUND);
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(
            location.starts_with(&self.base),
            "the link points at this server: {location}"
        );
        // The signed link needs no bearer token: it is the authorization.
        let file = self.http.get(&location).send().await.unwrap();
        assert_eq!(file.status(), StatusCode::OK);
        let headers = file.headers().clone();
        (headers, file.bytes().await.unwrap().to_vec())
    }
}

#[tokio::test]
async fn the_readme_walk_through_produces_a_real_pdf_and_a_real_csv() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start(&args(dir.path())).await.unwrap();
    let client =
        Session::signup_and_signin(format!("http://{}", dev.addr), "ada@example.com").await;

    let pdf = client
        .request(json!({"report_type": "profile", "format": "pdf", "parameters": {}}))
        .await;
    let csv = client
        .request(json!({"report_type": "activity", "format": "csv", "parameters": {"days": 30}}))
        .await;
    let done = client.wait_completed(&pdf).await;
    assert_eq!(done["progress"], 100);
    assert!(done["download_url"].as_str().is_some(), "{done}");
    client.wait_completed(&csv).await;

    let (headers, bytes) = client.download(&pdf).await;
    assert_eq!(headers["content-type"], "application/pdf");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let doc = lopdf::Document::load_mem(&bytes).expect("a parseable PDF");
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    let text = doc.extract_text(&pages).unwrap();
    assert!(
        text.contains("ada@example.com"),
        "the profile names its owner: {text}"
    );

    let (_, bytes) = client.download(&csv).await;
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(&header[..4], ["id", "report_type", "format", "status"]);
    let ids: Vec<String> = reader.records().map(|r| r.unwrap()[0].to_owned()).collect();
    assert!(ids.contains(&pdf), "the history lists the profile report");

    dev.stop().await;
}

#[tokio::test]
async fn a_restart_on_the_same_data_directory_keeps_users_reports_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start(&args(dir.path())).await.unwrap();
    let client =
        Session::signup_and_signin(format!("http://{}", dev.addr), "grace@example.com").await;
    let id = client
        .request(json!({"report_type": "profile", "format": "pdf", "parameters": {}}))
        .await;
    client.wait_completed(&id).await;
    dev.stop().await;

    let dev = start(&args(dir.path())).await.unwrap();
    // Same secret, so the old access token still verifies; same database, so the report is there.
    let client = Session {
        base: format!("http://{}", dev.addr),
        ..client
    };
    let report = client.report(&id).await;
    assert_eq!(report["status"], "completed");
    let (_, bytes) = client.download(&id).await;
    assert!(bytes.starts_with(b"%PDF-"));
    dev.stop().await;
}

#[tokio::test]
async fn one_metrics_endpoint_serves_the_api_the_worker_and_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start(&args(dir.path())).await.unwrap();
    let session =
        Session::signup_and_signin(format!("http://{}", dev.addr), "metrics@example.com").await;
    let id = session
        .request(json!({"report_type": "profile", "format": "pdf"}))
        .await;
    session.wait_completed(&id).await;
    let text = session
        .http
        .get(format!("{}/metrics", session.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = quire_testing::metrics::Scrape::parse(&text);
    let profile = [("type", "profile"), ("format", "pdf")];
    assert_eq!(
        scrape.value("quire_reports_created_total", &profile),
        Some(1.0)
    );
    assert_eq!(
        scrape.value(
            "quire_worker_reports_processed_total",
            &[
                ("type", "profile"),
                ("format", "pdf"),
                ("outcome", "completed")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        scrape.value(
            "quire_http_requests_total",
            &[("method", "POST"), ("route", "/reports"), ("status", "202")]
        ),
        Some(1.0)
    );
    assert!(
        scrape
            .value("quire_queue_messages", &[("state", "visible")])
            .is_some()
    );
    assert_eq!(text.matches("# EOF").count(), 1, "one exposition");
    dev.stop().await;
}

#[tokio::test]
async fn retention_deletes_the_output_then_the_report_with_short_settings() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = args(dir.path());
    settings.retention = quire_core::retention::RetentionArgs {
        output_retention: Duration::from_secs(2),
        record_retention: Duration::from_secs(5),
        retention_interval: Duration::from_millis(300),
    };
    let dev = start(&settings).await.unwrap();
    let session =
        Session::signup_and_signin(format!("http://{}", dev.addr), "retention@example.com").await;
    let id = session
        .request(json!({"report_type": "profile", "format": "pdf"}))
        .await;
    let report = session.wait_completed(&id).await;
    let (_, pdf) = session.download(&id).await;
    assert!(pdf.starts_with(b"%PDF"));
    let outputs = dir.path().join("outputs");
    let files = |dir: &std::path::Path| {
        walk(dir)
            .into_iter()
            .filter(|path| path.extension().is_some_and(|e| e == "pdf"))
            .count()
    };
    assert_eq!(files(&outputs), 1, "the output is on disk");
    assert!(report["output_deleted_at"].is_null());

    // The output goes after about 2 s: the download says 410, the file is gone.
    let mut download = StatusCode::FOUND;
    for _ in 0..60 {
        download = session
            .http
            .get(format!("{}/reports/{id}/download", session.base))
            .bearer_auth(&session.token)
            .send()
            .await
            .unwrap()
            .status();
        if download == StatusCode::GONE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(download, StatusCode::GONE);
    assert_eq!(files(&outputs), 0, "the output file is deleted");
    assert!(session.report(&id).await["output_deleted_at"].is_string());

    // The record goes after about 5 s.
    let mut status = StatusCode::OK;
    for _ in 0..60 {
        status = session
            .http
            .get(format!("{}/reports/{id}", session.base))
            .bearer_auth(&session.token)
            .send()
            .await
            .unwrap()
            .status();
        if status == StatusCode::NOT_FOUND {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, StatusCode::NOT_FOUND);
    dev.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(walk(&path));
            } else {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test]
async fn a_completed_report_is_announced_to_a_signed_webhook() {
    // A receiver on loopback, allowed as QUIRE_WEBHOOK_ALLOW_PRIVATE=true allows it.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let tx = tx.clone();
                async move {
                    tx.send((headers, body)).unwrap();
                    axum::http::StatusCode::NO_CONTENT
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let dir = tempfile::tempdir().unwrap();
    let dev = start(&DevArgs {
        webhooks: quire_api::webhooks::WebhookArgs {
            webhook_allow_private: true,
            ..Default::default()
        },
        ..args(dir.path())
    })
    .await
    .unwrap();
    let client =
        Session::signup_and_signin(format!("http://{}", dev.addr), "mary@example.com").await;
    let r = client
        .http
        .post(format!("{}/webhooks", client.base))
        .bearer_auth(&client.token)
        .json(&json!({"url": hook, "events": ["report.completed"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let webhook: Value = r.json().await.unwrap();
    let secret = webhook["secret"].as_str().unwrap();

    let id = client
        .request(json!({"report_type": "activity", "format": "csv", "parameters": {"days": 1}}))
        .await;
    client.wait_completed(&id).await;
    let (headers, body) = tokio::time::timeout(Duration::from_secs(15), rx.recv())
        .await
        .expect("the webhook arrives")
        .unwrap();
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&body, &headers)
        .expect("signed per Standard Webhooks");
    let payload: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(payload["type"], "report.completed");
    assert_eq!(payload["data"]["id"], id);
    assert_eq!(payload["data"]["status"], "completed");
    dev.stop().await;
}
