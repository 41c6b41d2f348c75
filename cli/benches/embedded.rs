//! The embedded pipeline: `quire dev` in this process (SQLite, the database queue, local
//! files, its worker with its defaults: 10 reports in hand, one render per core), 16
//! clients requesting two workloads one after the other:
//!
//! 1. 500 profile PDFs, the smallest report (a render takes about 0.5 ms);
//! 2. 40 dataset PDFs of 10,000 rows each, a heavy export (the rows come from a local
//!    HTTP source; the worker downloads, parses and renders them).
//!
//! Printed for each: reports/s from the first request to the last completion, and that
//! figure against the same work done alone (measured here too: one thread rendering the
//! same report to a file in a loop, for datasets downloading its rows first) × cores.
//! Target (issue 13): ≥ 80 % of render-only × cores. The profile shows what a report costs
//! beyond its render (HTTP, the SQLite writes, the queue), the dataset how much of the
//! machine reaches the renders when the render dominates; it can pass 100 %, because in
//! the pipeline one report's download overlaps another's render.
//!
//! ```sh
//! cargo bench --profile dev --workspace --bench embedded
//! ```

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use quire::dev::{DevArgs, start};
use quire_core::model::{ReportCounts, User};
use quire_core::{ReportFormat, ReportStatus, ReportType};
use quire_crds::DatasetParameters;
use quire_render::{DataSources, FetchClient, Progress};
use serde_json::{Value, json};

/// The allocator the binaries use (see the workspace `Cargo.toml`), so the figures are theirs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PROFILES: usize = 500;
const DATASETS: usize = 40;
const DATASET_ROWS: usize = 10_000;
const CLIENTS: usize = 16;

#[tokio::main]
async fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir = tempfile::tempdir().unwrap();
    let sources_file = dir.path().join("sources.toml");
    std::fs::write(&sources_file, sources_toml(serve_rows().await)).unwrap();
    let sources = DataSources::from_file(&sources_file).unwrap();

    // On this thread, with no hand-off to another: the render and its file alone.
    let profile = profile_data();
    let profile_alone = per_second(|out| {
        quire_render::render_profile(&profile, out, &Progress::new()).unwrap();
        std::future::ready(())
    })
    .await;
    // As the worker does it: the download on the runtime, the render on a blocking thread.
    let dataset_alone = per_second(|out| {
        let (out, sources) = (out.to_owned(), sources.clone());
        async move { render_dataset(&sources, &out).await }
    })
    .await;

    let dev = start(&DevArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        data_sources: Some(sources_file),
        concurrency: quire_worker::DEFAULT_CONCURRENCY,
        shutdown_grace: 5,
        retention: Default::default(),
        // The pipeline's capacity, not one user's quota.
        quota_unfinished: 0,
        quota_per_hour: 0,
        max_wait: std::time::Duration::from_secs(60),
        webhooks: Default::default(),
    })
    .await
    .unwrap();
    let client = Client::sign_up(format!("http://{}", dev.addr)).await;

    for (what, request, n, alone) in [
        (
            "profile PDFs",
            json!({"report_type": "profile", "format": "pdf"}),
            PROFILES,
            profile_alone,
        ),
        (
            "10,000-row dataset PDFs",
            json!({"report_type": "dataset", "format": "pdf", "parameters": {"source": "players"}}),
            DATASETS,
            dataset_alone,
        ),
    ] {
        let (done, elapsed) = client.pipeline(&request, n).await;
        let rate = done as f64 / elapsed.as_secs_f64();
        let ceiling = alone * cores as f64;
        println!(
            "quire dev, {what}: {done} in {:.1} s = {rate:.1} reports/s ({CLIENTS} clients, {} reports in hand, {cores} render threads)",
            elapsed.as_secs_f64(),
            quire_worker::DEFAULT_CONCURRENCY
        );
        println!(
            "  the same report alone: {alone:.1}/s on one thread, x {cores} cores = {ceiling:.1}/s; the pipeline reaches {:.0} % of it (target >= 80 %)",
            100.0 * rate / ceiling
        );
    }
    dev.stop().await;
}

/// One user of the running `quire dev`.
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn sign_up(base: String) -> Self {
        let http = reqwest::Client::new();
        let credentials =
            json!({"email": "bench@example.com", "password": "correct horse battery"});
        http.post(format!("{base}/auth/signup"))
            .json(&credentials)
            .send()
            .await
            .unwrap();
        let tokens: Value = http
            .post(format!("{base}/auth/signin"))
            .json(&credentials)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = tokens["access_token"].as_str().unwrap().to_owned();
        Self { http, base, token }
    }

    /// `n` reports of `request` from [`CLIENTS`] concurrent clients; returns how many
    /// completed and the time from the first request to the last completion.
    async fn pipeline(&self, request: &Value, n: usize) -> (usize, Duration) {
        let started = Instant::now();
        let next = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (http, base, token, next, request) = (
                    self.http.clone(),
                    self.base.clone(),
                    self.token.clone(),
                    next.clone(),
                    request.clone(),
                );
                tokio::spawn(async move {
                    let mut ids = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < n {
                        loop {
                            let r = http
                                .post(format!("{base}/reports"))
                                .bearer_auth(&token)
                                .json(&request)
                                .send()
                                .await
                                .unwrap();
                            if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                                continue;
                            }
                            assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
                            let created: Value = r.json().await.unwrap();
                            ids.push(created["id"].as_str().unwrap().to_owned());
                            break;
                        }
                    }
                    ids
                })
            })
            .collect();
        let mut ids = Vec::new();
        for client in clients {
            ids.extend(client.await.unwrap());
        }
        for id in &ids {
            loop {
                let report: Value = self
                    .http
                    .get(format!("{}/reports/{id}", self.base))
                    .bearer_auth(&self.token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                match report["status"].as_str().unwrap() {
                    "completed" => break,
                    "failed" | "cancelled" => panic!("{report}"),
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
        (ids.len(), started.elapsed())
    }
}

/// How many times `f` (given a scratch file to write) completes per second, one at a time,
/// over 3 s.
async fn per_second<F, Fut>(mut f: F) -> f64
where
    F: FnMut(&Path) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    f(&out).await; // warm up
    let started = Instant::now();
    let mut n = 0u32;
    while started.elapsed() < Duration::from_secs(3) {
        f(&out).await;
        n += 1;
    }
    f64::from(n) / started.elapsed().as_secs_f64()
}

/// A profile of the pipeline's shape.
fn profile_data() -> quire_render::ProfileData {
    quire_render::ProfileData {
        user: User {
            id: uuid::Uuid::now_v7(),
            email: "bench@example.com".to_owned(),
            created_at: Utc::now(),
        },
        counts: ReportCounts {
            by_type_and_status: vec![(ReportType::Profile, ReportStatus::Completed, 250)],
        },
        generated_at: Utc::now(),
    }
}

/// What the worker does for a dataset PDF: download the rows to scratch, render them.
async fn render_dataset(sources: &DataSources, out: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let client = FetchClient::new("quire-bench").unwrap();
    let params: DatasetParameters = serde_json::from_value(json!({"source": "players"})).unwrap();
    let progress = Progress::new();
    let data = quire_render::download_dataset(&client, sources, &params, dir.path(), &progress)
        .await
        .unwrap();
    let out = out.to_owned();
    tokio::task::spawn_blocking(move || {
        quire_render::render_streamed_dataset(&data, ReportFormat::Pdf, &out, &progress).unwrap();
    })
    .await
    .unwrap();
}

/// Serves `/rows`: [`DATASET_ROWS`] rows of 8 columns as one JSON array.
async fn serve_rows() -> std::net::SocketAddr {
    let rows: Vec<Value> = (0..DATASET_ROWS)
        .map(|i| {
            let city = ["Lisbon", "Osaka", "Lagos", "Quito"][i % 4];
            json!({
                "id": i,
                "name": format!("player {i}"),
                "team": format!("team {}", i % 97),
                "score": (i * 7919) % 100_000,
                "active": i.is_multiple_of(3),
                "joined": format!("2025-03-{:02}", i % 28 + 1),
                "city": city,
                "notes": "a few words of free text",
            })
        })
        .collect();
    let body = axum::body::Bytes::from(serde_json::to_vec(&rows).unwrap());
    let app = axum::Router::new().route(
        "/rows",
        axum::routing::get(move || {
            let body = body.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// The operator's source for [`serve_rows`] (on loopback, so private addresses allowed).
fn sources_toml(addr: std::net::SocketAddr) -> String {
    format!(
        r#"
        [sources.players]
        url = "http://{addr}/rows"
        title = "Players"
        allow_private = true
        max_rows = {DATASET_ROWS}
        "#
    )
}
