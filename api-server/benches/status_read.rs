//! `GET /reports/{id}` under load, side by side with `pgbench -S` on the same Postgres.
//!
//! The app runs in this process on a fresh database of the server `DATABASE_URL` names
//! (`scripts/bench/status.sh` starts a throwaway one), with the production pool size
//! (`QUIRE_DB_MAX_CONNECTIONS`, default 10). 64 keep-alive connections poll the statuses of
//! 64 reports of 8 users (each request the next report, with its owner's token) for 10 s;
//! then `pgbench -S` (select-only: random rows, 64 clients, 2 threads) runs for 10 s on the
//! same server. Printed: requests/s, p50 and p99 of the API; transactions/s of pgbench; and the
//! ratio. Targets (issue 13): ratio ≥ 0.5, p99 ≤ 10 ms. The load generator is `wrk` (2
//! threads, `--latency`), a C client in a process of its own as pgbench's is; both share
//! the machine's cores with the server they load.
//!
//! ```sh
//! scripts/bench/status.sh
//! ```

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use quire_core::queue::DatabaseQueue;
use quire_core::store::{PgStore, PoolSettings};

const CLIENTS: usize = 64;
const USERS: usize = 8;
const REPORTS_PER_USER: usize = 8;
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

    // Many clients polling their own reports, as pgbench -S reads random rows: 8 users with
    // 8 reports each, every wrk request the next of the 64 with its owner's token.
    let http = reqwest::Client::new();
    let mut reads = Vec::new();
    for user in 0..USERS {
        let token =
            common::access_token(&http, &base, &format!("status{user}@example.com")).await?;
        for _ in 0..REPORTS_PER_USER {
            let id = common::profile_report(&http, &base, &token).await?;
            reads.push((format!("/reports/{id}"), token.clone()));
        }
    }
    let script = dir.path().join("reads.lua");
    std::fs::write(&script, lua_script(&reads))?;

    // wrk, like pgbench, is a C load generator in a process of its own: the same kind of
    // client on both sides of the ratio. A 1 s run warms up the connections and the pool.
    wrk(&base, &script, Duration::from_secs(1))?;
    let api = wrk(&base, &script, RUN)?;

    let pgbench_rate = pgbench(&database)?;
    println!(
        "GET /reports/{{id}} of {} reports ({USERS} users), {CLIENTS} connections, pool {pool}, {} s:",
        reads.len(),
        RUN.as_secs()
    );
    println!(
        "  api-server (wrk -c {CLIENTS} -t 2): {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms ({} requests)",
        api.rate, api.p50_ms, api.p99_ms, api.requests
    );
    println!("  pgbench -S -c {CLIENTS} -j 2 on the same server: {pgbench_rate:.0} tps");
    println!(
        "  ratio {:.2} (target >= 0.5); p99 {:.2} ms (target <= 10 ms)",
        api.rate / pgbench_rate,
        api.p99_ms
    );
    Ok(())
}

/// What one wrk run measured.
struct Wrk {
    rate: f64,
    requests: u64,
    p50_ms: f64,
    p99_ms: f64,
}

/// A wrk script that sends each of `reads` (path, bearer token) in turn.
fn lua_script(reads: &[(String, String)]) -> String {
    let mut script = String::from("local reads = {\n");
    for (path, token) in reads {
        script.push_str(&format!("  {{\"{path}\", \"Bearer {token}\"}},\n"));
    }
    script.push_str(
        "}\nlocal i = 0\n\
         request = function()\n\
         \x20 i = i % #reads + 1\n\
         \x20 return wrk.format(\"GET\", reads[i][1], {[\"Authorization\"] = reads[i][2]})\n\
         end\n",
    );
    script
}

/// `wrk --latency` with `CLIENTS` connections on 2 threads against `base`, the requests
/// made by `script`, for `run`. Fails if any answer was not a success.
fn wrk(base: &str, script: &std::path::Path, run: Duration) -> anyhow::Result<Wrk> {
    let output = std::process::Command::new("wrk")
        .args(["--latency", "-t", "2", "-c", &CLIENTS.to_string()])
        .args(["-d", &format!("{}s", run.as_secs())])
        .arg("-s")
        .arg(script)
        .arg(base)
        .output()
        .map_err(|e| anyhow::anyhow!("running wrk (scripts/bench/status.sh installs it): {e}"))?;
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    anyhow::ensure!(
        output.status.success() && !report.contains("Non-2xx"),
        "wrk failed or got errors:\n{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let field = |prefix: &str| {
        report
            .lines()
            .find_map(|line| {
                line.trim()
                    .strip_prefix(prefix)
                    .map(str::trim)
                    .map(str::to_owned)
            })
            .ok_or_else(|| anyhow::anyhow!("no `{prefix}` in wrk's report:\n{report}"))
    };
    let ms = |text: String| -> anyhow::Result<f64> {
        let (number, factor) = if let Some(n) = text.strip_suffix("us") {
            (n, 0.001)
        } else if let Some(n) = text.strip_suffix("ms") {
            (n, 1.0)
        } else if let Some(n) = text.strip_suffix('s') {
            (n, 1000.0)
        } else {
            anyhow::bail!("unreadable latency {text:?}")
        };
        Ok(number.parse::<f64>()? * factor)
    };
    // "  123456 requests in 10.00s, 78.90MB read"
    let total = report
        .lines()
        .find_map(|line| {
            line.trim()
                .split_once(" requests in ")?
                .0
                .parse::<u64>()
                .ok()
        })
        .ok_or_else(|| anyhow::anyhow!("no request count in wrk's report:\n{report}"))?;
    Ok(Wrk {
        rate: field("Requests/sec:")?.parse()?,
        requests: total,
        p50_ms: ms(field("50%")?)?,
        p99_ms: ms(field("99%")?)?,
    })
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
