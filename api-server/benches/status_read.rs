//! `GET /reports/{id}` under load, side by side with `pgbench -S` on the same Postgres.
//!
//! The app runs in this process on a fresh database of the server `DATABASE_URL` names
//! (`scripts/bench/status.sh` starts a throwaway one), with the production pool size
//! (`QUIRE_DB_MAX_CONNECTIONS`, default 10). 64 keep-alive clients poll one report's status
//! for 10 s; then `pgbench -S` (select-only, 64 clients, 2 threads) runs for 10 s on the same
//! server. Printed: requests/s, p50 and p99 of the API; transactions/s of pgbench; and the
//! ratio. Targets (issue 13): ratio ≥ 0.5, p99 ≤ 10 ms. The load generator shares the
//! machine's cores with the server, as pgbench does with Postgres.
//!
//! ```sh
//! scripts/bench/status.sh
//! ```

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use quire_core::queue::DatabaseQueue;
use quire_core::store::{PgStore, PoolSettings};
use serde_json::{Value, json};

const CLIENTS: usize = 64;
const RUN: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let pool: u32 = std::env::var("QUIRE_DB_MAX_CONNECTIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(PoolSettings::default().max_connections);
    let options = quire_testing::fresh_postgres_options().await;
    let database = options.get_database().unwrap_or_default().to_owned();
    let store = PgStore::connect_with(options, pool).await?;
    store.migrate().await?;
    let queue = Arc::new(DatabaseQueue::postgres(store.pool().clone()));
    let dir = tempfile::tempdir()?;
    let base = common::serve_on(common::config(4), Arc::new(store), queue, dir.path()).await?;

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;
    let token = common::access_token(&http, &base, "status@example.com").await?;
    let report: Value = http
        .post(format!("{base}/reports"))
        .bearer_auth(&token)
        .json(&json!({"report_type": "profile", "format": "pdf"}))
        .send()
        .await?
        .json()
        .await?;
    let url = format!("{base}/reports/{}", report["id"].as_str().unwrap());

    // Warm up the connections, then measure.
    let poll = |http: reqwest::Client, url: String, token: String, stop: Arc<AtomicBool>| async move {
        let mut latencies = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let response = http.get(&url).bearer_auth(&token).send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            response.bytes().await.unwrap();
            latencies.push(started.elapsed());
        }
        latencies
    };
    let warm = Arc::new(AtomicBool::new(false));
    let warmers: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(poll(http.clone(), url.clone(), token.clone(), warm.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    warm.store(true, Ordering::Relaxed);
    for warmer in warmers {
        warmer.await?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(poll(http.clone(), url.clone(), token.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await?);
    }
    let elapsed = started.elapsed();
    let requests = latencies.len();
    let api_rate = requests as f64 / elapsed.as_secs_f64();
    let (p50, p99) = common::percentiles(latencies);

    let pgbench_rate = pgbench(&database)?;
    println!(
        "GET /reports/{{id}}, {CLIENTS} connections, pool {pool}, {} s:",
        RUN.as_secs()
    );
    println!(
        "  api-server: {api_rate:.0} req/s, p50 {:.2} ms, p99 {:.2} ms ({requests} requests)",
        common::ms(p50),
        common::ms(p99)
    );
    println!("  pgbench -S -c {CLIENTS} on the same server: {pgbench_rate:.0} tps");
    println!(
        "  ratio {:.2} (target >= 0.5); p99 {:.2} ms (target <= 10 ms)",
        api_rate / pgbench_rate,
        common::ms(p99)
    );
    Ok(())
}

/// `pgbench -S` on `database` of the server `DATABASE_URL` names: its transactions/s.
fn pgbench(database: &str) -> anyhow::Result<f64> {
    let mut url = url::Url::parse(&quire_testing::database_url())?;
    url.set_path(database);
    let run = |args: &[&str]| -> anyhow::Result<String> {
        let output = std::process::Command::new("pgbench")
            .args(args)
            .arg(url.as_str())
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "pgbench {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    run(&["-i", "-q", "-s", "1"])?;
    let clients = CLIENTS.to_string();
    let seconds = RUN.as_secs().to_string();
    let report = run(&["-S", "-n", "-c", &clients, "-j", "2", "-T", &seconds])?;
    report
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix("tps = ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .ok_or_else(|| anyhow::anyhow!("no `tps = ` line in pgbench's report:\n{report}"))
}
