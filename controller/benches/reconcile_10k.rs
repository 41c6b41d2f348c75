//! The controller at scale: 10,000 `ReportRequest`s (each with its report row, as the API
//! creates them in cluster mode) reconciled by the `controller` binary against the fake
//! Kubernetes API server and Postgres. Printed: the time until every request shows
//! `Queued` (dispatched, status written), reconciliations per second, and the controller
//! process's peak RSS (`VmHWM`). Target (issue 13): peak RSS ≤ 100 MB.
//!
//! ```sh
//! scripts/bench/controller.sh     # a throwaway Postgres, then this
//! ```

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use kube::Api;
use kube::api::PostParams;
use quire_core::model::{Inserted, NewReport, NewUser};
use quire_core::store::RecordStore;
use quire_crds::report_request::Phase;
use quire_crds::{ReportFormat, ReportRequest, ReportRequestSpec, ReportType};
use quire_testing::kube_api::FakeApiServer;
use uuid::Uuid;

const REQUESTS: usize = 10_000;

#[tokio::main]
async fn main() {
    let requests: usize = std::env::var("QUIRE_BENCH_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(REQUESTS);
    let server = FakeApiServer::start().await;
    let store = quire_testing::fresh_postgres().await;
    let user = Uuid::now_v7();
    store
        .create_user(NewUser {
            id: user,
            email: "scale@example.com".to_owned(),
            password_hash: "x".to_owned(),
            created_at: Utc::now(),
        })
        .await
        .unwrap();

    let api: Api<ReportRequest> = Api::namespaced(server.client(), "default");
    let setup = Instant::now();
    futures::stream::iter(0..requests)
        .for_each_concurrent(16, |_| {
            let (store, api) = (store.clone(), api.clone());
            async move {
                let report = NewReport::new(
                    Uuid::now_v7(),
                    user,
                    ReportType::Profile,
                    ReportFormat::Pdf,
                    &serde_json::json!({}),
                )
                .unwrap();
                let Inserted::Created(report) = store.insert_report(report).await.unwrap() else {
                    panic!("a new report");
                };
                let spec = ReportRequestSpec {
                    report_id: Some(report.id.to_string()),
                    user_id: user.to_string(),
                    report_type: ReportType::Profile,
                    format: ReportFormat::Pdf,
                    parameters: serde_json::json!({}),
                    ttl_seconds_after_finished: None,
                    suspend: false,
                };
                api.create(
                    &PostParams::default(),
                    &ReportRequest::new(&report.id.to_string(), spec),
                )
                .await
                .unwrap();
            }
        })
        .await;
    println!(
        "created {requests} ReportRequests and rows in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let mut database_url = url::Url::parse(&quire_testing::database_url()).unwrap();
    database_url.set_path(&database);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_controller"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KUBECONFIG", &kubeconfig)
        .env("DATABASE_URL", database_url.as_str())
        .env("QUIRE_QUEUE", "database")
        .env("QUIRE_STORAGE", "local")
        .env("QUIRE_DATA_DIR", dir.path())
        .env("QUIRE_HEALTH_LISTEN", "127.0.0.1:0")
        .env("QUIRE_LEADER_ELECTION", "false")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("controller.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();

    let queued = || {
        server
            .store()
            .list_typed::<ReportRequest>(Some("default"))
            .iter()
            .filter(|rr| rr.status.as_ref().and_then(|s| s.phase) == Some(Phase::Queued))
            .count()
    };
    let mut done = 0;
    while started.elapsed() < Duration::from_secs(600) {
        done = queued();
        if done == requests {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the controller exited ({status}): {}",
                std::fs::read_to_string(dir.path().join("controller.log")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let converged = started.elapsed();
    let peak = peak_rss_mib(pid);
    child.kill().await.ok();
    println!(
        "{done}/{requests} Queued after {:.1} s ({:.0} requests/s)",
        converged.as_secs_f64(),
        done as f64 / converged.as_secs_f64()
    );
    println!("controller peak RSS: {peak:.1} MiB (target <= 100 MB = 95.4 MiB)");
}

/// `VmHWM` of a process, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}
