//! Rendering alone, in process, one thread at a time:
//!
//! 1. a 1,000,000-row dataset streamed to CSV: the rows come from a local HTTP source that
//!    generates them as it sends (JSON array, ~100 MB), through [`download_dataset`] and
//!    [`render_streamed_dataset`] as the worker runs them. Printed: time, rows/s, output
//!    size and this process's peak RSS (`VmHWM`, measured first, before anything else
//!    grows the heap). Target (issue 13): peak RSS ≤ 64 MB.
//! 2. profile PDFs per second (the reference: ReportLab renders the Python service's 4-line
//!    profile at 580–670/s on one core of the same machine; target ≥ 10×).
//! 3. a 10,000-row dataset PDF (8 columns): time and pages.
//!
//! ```sh
//! cargo bench --profile dev --workspace --bench render
//! ```

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use axum::body::Body;
use chrono::Utc;
use quire_crds::model::{ReportCounts, User};
use quire_crds::{DatasetParameters, ReportFormat, ReportStatus, ReportType};
use quire_render::{
    DataSources, Dataset, FetchClient, ProfileData, Progress, download_dataset, profile_pdf,
    render_dataset, render_profile, render_streamed_dataset,
};
use serde_json::{Value, json};

/// The allocator the binaries use (see the workspace `Cargo.toml`), so the figures are theirs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MILLION: usize = 1_000_000;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    million_row_csv(dir.path()).await;
    profiles(dir.path());
    ten_thousand_row_pdf(dir.path());
}

/// One generated row.
fn row(i: usize) -> String {
    format!(
        r#"{{"id":{i},"name":"player {i}","team":"team {}","score":{},"active":{},"joined":"2025-03-{:02}"}}"#,
        i % 97,
        (i * 7919) % 100_000,
        i.is_multiple_of(3),
        i % 28 + 1
    )
}

async fn million_row_csv(dir: &std::path::Path) {
    // The source generates its rows while it sends them, in chunks of 1,000.
    let app = axum::Router::new().route(
        "/rows",
        axum::routing::get(|| async {
            let chunks = (0..MILLION / 1000).map(|chunk| {
                let mut text = String::with_capacity(100 * 1000);
                text.push(if chunk == 0 { '[' } else { ',' });
                let rows: Vec<String> = (chunk * 1000..(chunk + 1) * 1000).map(row).collect();
                text.push_str(&rows.join(","));
                if chunk == MILLION / 1000 - 1 {
                    text.push(']');
                }
                Ok::<_, std::convert::Infallible>(text)
            });
            Body::from_stream(futures::stream::iter(chunks))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let sources = DataSources::from_toml_str(&format!(
        r#"
        [sources.players]
        url = "http://{addr}/rows"
        allow_private = true
        max_rows = {MILLION}
        max_bytes = 1000000000
        timeout_ms = 600000
        "#
    ))
    .unwrap();
    let client = FetchClient::new("quire-bench").unwrap();
    let params: DatasetParameters = serde_json::from_value(json!({"source": "players"})).unwrap();
    let progress = Progress::new();
    let started = Instant::now();
    let data = download_dataset(&client, &sources, &params, dir, &progress)
        .await
        .unwrap();
    let downloaded = started.elapsed();
    let out = dir.join("players.csv");
    let rendered = {
        let out = out.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            render_streamed_dataset(&data, ReportFormat::Csv, &out, &progress).unwrap();
            started.elapsed()
        })
        .await
        .unwrap()
    };
    let total = downloaded + rendered;
    let size = std::fs::metadata(&out).unwrap().len();
    let lines =
        std::io::BufRead::lines(std::io::BufReader::new(std::fs::File::open(&out).unwrap()))
            .count();
    assert_eq!(lines, MILLION + 1, "a header and every row");
    println!(
        "1,000,000-row CSV (streamed): {:.1} s ({:.1} s download, {:.1} s render), {:.0} rows/s, {:.0} MB out, peak RSS {:.1} MiB (target <= 64 MB = 61.0 MiB)",
        total.as_secs_f64(),
        downloaded.as_secs_f64(),
        rendered.as_secs_f64(),
        MILLION as f64 / total.as_secs_f64(),
        size as f64 / 1e6,
        peak_rss_mib()
    );
}

fn profiles(dir: &std::path::Path) {
    let data = ProfileData {
        user: User {
            id: uuid::Uuid::now_v7(),
            email: "ada@example.com".to_owned(),
            created_at: Utc::now() - chrono::Duration::days(40),
        },
        counts: ReportCounts {
            by_type_and_status: vec![
                (ReportType::Profile, ReportStatus::Completed, 12),
                (ReportType::Activity, ReportStatus::Completed, 30),
                (ReportType::Dataset, ReportStatus::Failed, 2),
                (ReportType::Dataset, ReportStatus::Running, 1),
            ],
        },
        generated_at: Utc::now(),
    };
    let out = dir.join("profile.pdf");
    // Warm up, then as many as fit in 3 s: to a file as the worker does (its scratch
    // directory), and the PDF alone, in memory.
    render_profile(&data, &out, &Progress::new()).unwrap();
    let to_file = per_second(|| render_profile(&data, &out, &Progress::new()).unwrap());
    let in_memory = per_second(|| {
        std::hint::black_box(profile_pdf(&data, &Progress::new()).unwrap());
    });
    let size = std::fs::metadata(&out).unwrap().len();
    for (what, rate) in [("to a file", to_file), ("in memory", in_memory)] {
        println!(
            "profile PDF {what}: {rate:.0}/s on one thread ({size} bytes each); ReportLab's 4-line profile: 580-670/s, so {:.1}x-{:.1}x (target >= 10x)",
            rate / 670.0,
            rate / 580.0
        );
    }
}

/// How many times `f` runs per second on this thread, over 3 s.
fn per_second(mut f: impl FnMut()) -> f64 {
    let started = Instant::now();
    let mut n = 0u32;
    while started.elapsed() < Duration::from_secs(3) {
        f();
        n += 1;
    }
    f64::from(n) / started.elapsed().as_secs_f64()
}

fn ten_thousand_row_pdf(dir: &std::path::Path) {
    let columns: Vec<String> = [
        "id", "name", "team", "score", "active", "joined", "city", "notes",
    ]
    .map(str::to_owned)
    .to_vec();
    let rows: Vec<Vec<Value>> = (0..10_000usize)
        .map(|i| {
            vec![
                json!(i),
                json!(format!("player {i}")),
                json!(format!("team {}", i % 97)),
                json!((i * 7919) % 100_000),
                json!(i.is_multiple_of(3)),
                json!(format!("2025-03-{:02}", i % 28 + 1)),
                json!(["Lisbon", "Osaka", "Lagos", "Quito"][i % 4]),
                json!("a few words of free text"),
            ]
        })
        .collect();
    let data = Dataset {
        source: "players".to_owned(),
        title: Some("Players".to_owned()),
        fetched_at: Utc::now(),
        columns,
        rows,
        truncated: false,
    };
    let out = dir.join("players.pdf");
    let started = Instant::now();
    render_dataset(&data, ReportFormat::Pdf, &out, &Progress::new()).unwrap();
    println!(
        "10,000-row dataset PDF (8 columns): {:.2} s, {:.1} MB",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&out).unwrap().len() as f64 / 1e6
    );
}

/// This process's peak resident set (`VmHWM`), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}
