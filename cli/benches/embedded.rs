//! The embedded pipeline: `quire dev` in this process (SQLite, the database queue, local
//! files, its worker with its defaults: 10 reports in hand, one render per core), 500
//! profile PDFs requested by 16 clients. Printed: reports/s from the first request to the
//! last completion, and that figure against the render-only rate × cores (measured here
//! too: one thread rendering profile PDFs for 3 s). Target (issue 13): ≥ 80 % of
//! render-only × cores.
//!
//! ```sh
//! cargo bench --profile dev --workspace --bench embedded
//! ```

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use quire::dev::{DevArgs, start};
use quire_core::model::{ReportCounts, User};
use quire_core::{ReportStatus, ReportType};
use serde_json::{Value, json};

/// The allocator the binaries use (see the workspace `Cargo.toml`), so the figures are theirs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REPORTS: usize = 500;
const CLIENTS: usize = 16;

#[tokio::main]
async fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let render_only = render_only_rate();
    let dir = tempfile::tempdir().unwrap();
    let dev = start(&DevArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        data_sources: None,
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
    let base = format!("http://{}", dev.addr);
    let http = reqwest::Client::new();
    let credentials = json!({"email": "bench@example.com", "password": "correct horse battery"});
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

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (http, base, token, next) =
                (http.clone(), base.clone(), token.clone(), next.clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < REPORTS {
                    loop {
                        let r = http
                            .post(format!("{base}/reports"))
                            .bearer_auth(&token)
                            .json(&json!({"report_type": "profile", "format": "pdf"}))
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
            let report: Value = http
                .get(format!("{base}/reports/{id}"))
                .bearer_auth(&token)
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
    let elapsed = started.elapsed();
    let rate = ids.len() as f64 / elapsed.as_secs_f64();
    println!(
        "quire dev: {} profile PDFs in {:.1} s = {rate:.0} reports/s ({CLIENTS} clients, {} reports in hand, {cores} render threads)",
        ids.len(),
        elapsed.as_secs_f64(),
        quire_worker::DEFAULT_CONCURRENCY
    );
    let ceiling = render_only * cores as f64;
    println!(
        "render only: {render_only:.0}/s on one thread, x {cores} cores = {ceiling:.0}/s; the pipeline reaches {:.0} % of it (target >= 80 %)",
        100.0 * rate / ceiling
    );
    dev.stop().await;
}

/// Profile PDFs one thread renders per second (data of the pipeline's shape).
fn render_only_rate() -> f64 {
    let data = quire_render::ProfileData {
        user: User {
            id: uuid::Uuid::now_v7(),
            email: "bench@example.com".to_owned(),
            created_at: Utc::now(),
        },
        counts: ReportCounts {
            by_type_and_status: vec![(ReportType::Profile, ReportStatus::Completed, 250)],
        },
        generated_at: Utc::now(),
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.pdf");
    quire_render::render_profile(&data, &out, &quire_render::Progress::new()).unwrap();
    let started = Instant::now();
    let mut n = 0u32;
    while started.elapsed() < Duration::from_secs(3) {
        quire_render::render_profile(&data, &out, &quire_render::Progress::new()).unwrap();
        n += 1;
    }
    f64::from(n) / started.elapsed().as_secs_f64()
}
