//! What 1,000 requests held by `Prefer: wait` cost, and how fast they are answered.
//!
//! The app runs in this process on a fresh Postgres database (`DATABASE_URL`'s server;
//! `scripts/bench/waiters.sh` starts a throwaway one) with the production pool (10
//! connections). 1,000 reports are requested; then 1,000 clients each hold
//! `GET /reports/{id}` with `Prefer: wait=60` on their own report. While they are held for
//! 5 s the benchmark reads the process' CPU time and resident memory and counts the app's
//! connections in `pg_stat_activity`; then it completes every report (as a worker would,
//! through the store) and times each held request from its report's completion to its
//! answer. Printed: memory per waiter, CPU while holding, database connections in use while
//! holding (the one `LISTEN` connection, not one per waiter), wake latency p50/p99, and the
//! number of answers that were `completed`.
//!
//! ```sh
//! scripts/bench/waiters.sh
//! ```

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use quire_core::model::{Claim, Lease, StoredOutput};
use quire_core::queue::DatabaseQueue;
use quire_core::store::{PgStore, PoolSettings, RecordStore};
use serde_json::Value;

const WAITERS: usize = 1_000;
const HOLD: Duration = Duration::from_secs(5);

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) this process has used.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 14th field.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_secs_f64(ticks as f64 / 100.0) // USER_HZ is 100 on Linux
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = quire_testing::fresh_postgres_options().await;
    let database = options.get_database().unwrap_or_default().to_owned();
    let pool_size = PoolSettings::default().max_connections;
    let store = Arc::new(PgStore::connect_with(options, pool_size).await?);
    store.migrate().await?;
    let queue = Arc::new(DatabaseQueue::postgres(store.pool().clone()));
    let dir = tempfile::tempdir()?;
    let mut config = common::config(4);
    (config.quota_unfinished, config.quota_per_hour) = (0, 0);
    let (base, state) = common::serve_with_state(config, store.clone(), queue, dir.path()).await?;

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(WAITERS)
        .build()?;
    let token = common::access_token(&http, &base, "waiters@example.com").await?;
    let mut ids = Vec::with_capacity(WAITERS);
    for _ in 0..WAITERS {
        ids.push(common::profile_report(&http, &base, &token).await?);
    }

    // The app's connections to its database (open, and busy in a statement or transaction),
    // not counting the one asking.
    let connections = || async {
        let (open, busy): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE state <> 'idle') FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&database)
        .fetch_one(store.pool())
        .await
        .unwrap();
        (open, busy)
    };
    let (rss_before, connections_before) = (rss_kib(), connections().await);

    let waiters: Vec<_> = ids
        .iter()
        .map(|id| {
            let request = http
                .get(format!("{base}/reports/{id}"))
                .bearer_auth(&token)
                .header("Prefer", "wait=60")
                .send();
            let id = *id;
            tokio::spawn(async move {
                let response = request.await.unwrap();
                let answered = Instant::now();
                let body: Value = response.json().await.unwrap();
                (id, answered, body["status"] == "completed")
            })
        })
        .collect();
    let registered = Instant::now();
    while state.report_changes().watched() < WAITERS {
        anyhow::ensure!(
            registered.elapsed() < Duration::from_secs(60),
            "only {} of {WAITERS} waiters registered",
            state.report_changes().watched()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let setup = registered.elapsed();

    // Hold them, idle, and see what it costs.
    let (cpu_before, rss_held) = (cpu_time(), rss_kib());
    tokio::time::sleep(HOLD).await;
    let cpu_held = cpu_time() - cpu_before;
    let connections_held = connections().await;

    // Finish every report as a worker would, remembering when each finished.
    let lease = Lease {
        owner: "bench-worker".into(),
        expires_at: Utc::now() + chrono::Duration::minutes(5),
    };
    let mut finished = HashMap::with_capacity(WAITERS);
    let completing = Instant::now();
    for id in &ids {
        let Claim::Claimed { .. } = store.claim_report(*id, &lease, Utc::now()).await? else {
            anyhow::bail!("could not claim {id}");
        };
        let output = StoredOutput {
            key: format!("bench/{id}.pdf"),
            location: format!("bench/{id}.pdf"),
            size: 1,
            sha256: "00".repeat(32),
        };
        store
            .complete_report(*id, &lease.owner, &output, Utc::now())
            .await?;
        finished.insert(*id, Instant::now());
    }
    let mut latencies = Vec::with_capacity(WAITERS);
    let mut completed = 0;
    for waiter in waiters {
        let (id, answered, is_completed) = waiter.await?;
        latencies.push(answered.saturating_duration_since(finished[&id]));
        completed += usize::from(is_completed);
    }
    let all_answered = completing.elapsed();
    let (p50, p99) = common::percentiles(latencies);

    println!("held requests:              {WAITERS} (each on its own report, Prefer: wait=60)");
    println!("registered in:              {:.2} s", setup.as_secs_f64());
    println!(
        "memory while held:          {:.1} MiB more, {:.1} KiB per waiter (server and client in one process)",
        (rss_held.saturating_sub(rss_before)) as f64 / 1024.0,
        (rss_held.saturating_sub(rss_before)) as f64 / WAITERS as f64
    );
    println!(
        "CPU while held for {} s:     {:.3} s ({:.1} % of one core)",
        HOLD.as_secs(),
        cpu_held.as_secs_f64(),
        cpu_held.as_secs_f64() / HOLD.as_secs_f64() * 100.0
    );
    println!(
        "database connections:       open {} / busy {} before; open {} / busy {} while held (pool of {pool_size}, plus the LISTEN connection)",
        connections_before.0, connections_before.1, connections_held.0, connections_held.1
    );
    println!(
        "completed 1,000 reports in:  {:.2} s; every waiter answered by then",
        all_answered.as_secs_f64()
    );
    println!(
        "wake latency (completion → answer): p50 {:.1} ms, p99 {:.1} ms",
        common::ms(p50),
        common::ms(p99)
    );
    println!("answers with status completed: {completed} of {WAITERS}");
    Ok(())
}
