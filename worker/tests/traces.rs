//! One trace across processes: the `api-server` and `worker` binaries, on one Postgres
//! (database queue) and a local output directory, export their spans over OTLP/HTTP to a
//! receiver in this test. The client's `traceparent` on `POST /reports` starts the trace;
//! the worker's span for the report, and its storage call inside it, must be in that same
//! trace: the context travelled in the work message. The worker's `/metrics` is scraped
//! on its probe address on the way.
//!
//! The `api-server` binary is taken from beside this package's `worker` binary: `cargo
//! test --workspace` (the README's test command) builds both.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: a panic is the failure report

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use quire_testing::metrics::Scrape;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// A span as received, with its resource's `service.name`.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

/// An OTLP/HTTP trace receiver (`POST /v1/traces`, protobuf).
struct Receiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start() -> Self {
        let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
        let sink = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let sink = sink.clone();
                async move {
                    let request = ExportTraceServiceRequest::decode(body).unwrap();
                    let mut spans = sink.lock().unwrap();
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|kv| kv.key == "service.name")
                            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                            .map(|v| match v {
                                AnyValue::StringValue(s) => s.clone(),
                                other => format!("{other:?}"),
                            })
                            .unwrap_or_default();
                        for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                            spans.push(Received {
                                service: service.clone(),
                                name: span.name,
                                trace_id: hex::encode(span.trace_id),
                                span_id: hex::encode(span.span_id),
                                parent_span_id: hex::encode(span.parent_span_id),
                            });
                        }
                    }
                    (
                        [("content-type", "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { endpoint, spans }
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn api_server_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_worker")).with_file_name("api-server");
    assert!(
        path.is_file(),
        "{} is missing: build the workspace (`cargo test --workspace`) so both binaries exist",
        path.display()
    );
    path
}

/// A binary with the shared settings, its stderr in `log`. Killed when dropped.
fn spawn(binary: &Path, env: &[(&str, String)], log: &Path) -> Child {
    let mut command = Command::new(binary);
    for (key, value) in env {
        command.env(key, value);
    }
    command
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn wait_until_ready(http: &reqwest::Client, url: &str, logs: &[&Path]) {
    for _ in 0..150 {
        if http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs: Vec<String> = logs
        .iter()
        .map(|log| std::fs::read_to_string(log).unwrap_or_default())
        .collect();
    panic!("{url} never answered; logs:\n{}", logs.join("\n----\n"));
}

#[tokio::test]
async fn the_workers_spans_join_the_trace_of_the_request_that_created_the_report() {
    let receiver = Receiver::start().await;
    let store = quire_testing::fresh_postgres().await;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let mut database_url = url::Url::parse(&quire_testing::database_url()).unwrap();
    database_url.set_path(&database);
    let dir = tempfile::tempdir().unwrap();
    let api: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let probes: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let shared = [
        ("DATABASE_URL", database_url.to_string()),
        ("QUIRE_QUEUE", "database".to_owned()),
        ("QUIRE_STORAGE", "local".to_owned()),
        ("QUIRE_DATA_DIR", dir.path().display().to_string()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.clone()),
        // Export every 100 ms instead of every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let (api_log, worker_log) = (dir.path().join("api.log"), dir.path().join("worker.log"));
    let mut api_env = shared.to_vec();
    api_env.extend([
        ("QUIRE_LISTEN", api.to_string()),
        (
            "QUIRE_JWT_SECRET",
            "trace-secret-trace-secret-trace-secret".to_owned(),
        ),
        ("QUIRE_BCRYPT_COST", "4".to_owned()),
    ]);
    let _api = spawn(&api_server_binary(), &api_env, &api_log);
    let mut worker_env = shared.to_vec();
    worker_env.push(("QUIRE_HEALTH_LISTEN", probes.to_string()));
    let _worker = spawn(
        Path::new(env!("CARGO_BIN_EXE_worker")),
        &worker_env,
        &worker_log,
    );

    let http = reqwest::Client::new();
    let logs = [api_log.as_path(), worker_log.as_path()];
    wait_until_ready(&http, &format!("http://{api}/readyz"), &logs).await;
    wait_until_ready(&http, &format!("http://{probes}/readyz"), &logs).await;

    let credentials = json!({"email": "tracer@example.com", "password": "correct horse battery"});
    let r = http
        .post(format!("http://{api}/auth/signup"))
        .json(&credentials)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let tokens: Value = http
        .post(format!("http://{api}/auth/signin"))
        .json(&credentials)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = tokens["access_token"].as_str().unwrap();

    // The client's trace: the API joins it, and so must the worker.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let created = http
        .post(format!("http://{api}/reports"))
        .bearer_auth(token)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({"report_type": "profile", "format": "pdf"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::ACCEPTED);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut status = Value::Null;
    for _ in 0..200 {
        status = http
            .get(format!("http://{api}/reports/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["status"], "completed", "{status}");

    // Spans arrive within a few export intervals.
    let in_trace = |service: &str, name: &str| {
        receiver
            .spans()
            .into_iter()
            .find(|s| s.service == service && s.name == name && s.trace_id == trace_id)
    };
    let mut found = None;
    for _ in 0..100 {
        if let (Some(request), Some(report), Some(stored)) = (
            in_trace("quire-api-server", "request"),
            in_trace("quire-worker", "report"),
            in_trace("quire-worker", "put_file"),
        ) {
            found = Some((request, report, stored));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some((request, report, stored)) = found else {
        panic!(
            "the spans of trace {trace_id} never all arrived; received: {:#?}",
            receiver.spans()
        );
    };
    // The API's request span is the client's span's child; the worker's report span hangs
    // off the API's spans (the handler's, where the report was created); the storage call
    // is inside the report span's subtree.
    assert_eq!(request.parent_span_id, "00f067aa0ba902b7");
    let all = receiver.spans();
    let api_span_ids: Vec<&str> = all
        .iter()
        .filter(|s| s.service == "quire-api-server" && s.trace_id == trace_id)
        .map(|s| s.span_id.as_str())
        .collect();
    assert!(
        api_span_ids.contains(&report.parent_span_id.as_str()),
        "the worker's span is a child of an API span: {report:?} not under {api_span_ids:?}"
    );
    let mut ancestor = stored.parent_span_id.clone();
    for _ in 0..10 {
        if ancestor == report.span_id {
            break;
        }
        ancestor = all
            .iter()
            .find(|s| s.span_id == ancestor)
            .map(|s| s.parent_span_id.clone())
            .unwrap_or_default();
    }
    assert_eq!(
        ancestor, report.span_id,
        "put_file is inside the report span"
    );

    // The worker's metrics, on its probe address.
    let text = http
        .get(format!("http://{probes}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = Scrape::parse(&text);
    let labels = [("type", "profile"), ("format", "pdf")];
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
        scrape.value("quire_worker_attempts_total", &labels),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("quire_worker_render_duration_seconds_count", &labels),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("quire_worker_upload_duration_seconds_count", &[]),
        Some(1.0)
    );
    assert!(
        scrape
            .value("quire_worker_output_bytes_total", &labels)
            .unwrap()
            > 1000.0
    );
    assert_eq!(
        scrape.value("quire_worker_queue_lag_seconds_count", &[]),
        Some(1.0)
    );
    assert_eq!(scrape.value("quire_worker_in_flight", &[]), Some(0.0));
}
