//! Does a burst of sign-ins stall other requests?
//!
//! bcrypt is deliberately slow (tens of milliseconds per hash at cost 10). Quire hashes on
//! the blocking pool behind a semaphore, so the async runtime keeps answering. This starts
//! the real app (SQLite, no external services), measures `GET /healthz` latency idle and
//! then while a burst of concurrent sign-ins is being verified, and prints both with their
//! ratio. Run with:
//!
//! ```sh
//! cargo bench --profile dev --workspace --bench signin_burst
//! ```
//!
//! A healthy result keeps the p50 ratio in the low single digits; an inline bcrypt call on
//! the runtime pushes it to the duration of a whole burst.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

mod common;

use common::{ms, percentiles, ratio};

const SIGNINS: usize = 64;
const IDLE_PROBES: usize = 200;
const BCRYPT_COST: u32 = 10;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut config = common::config(BCRYPT_COST);
    // The whole burst may wait for the hasher: this measures the runtime, not the queue's
    // bound (which would answer part of the burst 503; `signup_flood` measures that).
    config.hash_queue = SIGNINS;
    let (base, _dir) = common::start(config).await?;

    let http = reqwest::Client::new();
    let credentials = json!({"email": "bench@example.com", "password": "correct horse battery"});
    http.post(format!("{base}/auth/signup"))
        .json(&credentials)
        .send()
        .await?
        .error_for_status()?;

    // Warm up (connection, caches) before measuring.
    probe_until(&http, &base, ProbeUntil::Count(50)).await?;
    let idle = probe_until(&http, &base, ProbeUntil::Count(IDLE_PROBES)).await?;

    let started = Instant::now();
    let burst: Vec<_> = (0..SIGNINS)
        .map(|_| {
            let (http, url, body) = (
                http.clone(),
                format!("{base}/auth/signin"),
                credentials.clone(),
            );
            tokio::spawn(async move { http.post(url).json(&body).send().await?.error_for_status() })
        })
        .collect();
    let done = Arc::new(tokio::sync::Notify::new());
    let waiter = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut outcome = Ok(());
            for signin in burst {
                if let Err(e) = signin.await.expect("the sign-in task") {
                    outcome = Err(e);
                }
            }
            // Always, so the probes stop even when a sign-in failed.
            done.notify_one();
            outcome
        })
    };
    let busy = probe_until(&http, &base, ProbeUntil::Notified(done)).await?;
    waiter.await??;
    let burst_time = started.elapsed();

    let (idle_p50, idle_p99) = percentiles(idle.clone());
    let (busy_p50, busy_p99) = percentiles(busy.clone());
    println!("sign-in burst: {SIGNINS} concurrent sign-ins at bcrypt cost {BCRYPT_COST}");
    println!(
        "  burst took {:>8.1} ms ({:.1} sign-ins/s)",
        ms(burst_time),
        SIGNINS as f64 / burst_time.as_secs_f64()
    );
    println!(
        "  /healthz idle   p50 {:>7.2} ms  p99 {:>7.2} ms  ({} probes)",
        ms(idle_p50),
        ms(idle_p99),
        idle.len()
    );
    println!(
        "  /healthz burst  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} probes)",
        ms(busy_p50),
        ms(busy_p99),
        busy.len()
    );
    println!(
        "  ratio burst/idle: p50 {:.1}x, p99 {:.1}x; worst probe {:.2} ms = {:.1}% of the burst",
        ratio(busy_p50, idle_p50),
        ratio(busy_p99, idle_p99),
        ms(*busy.iter().max().unwrap_or(&Duration::ZERO)),
        100.0 * busy.iter().max().unwrap_or(&Duration::ZERO).as_secs_f64()
            / burst_time.as_secs_f64()
    );
    Ok(())
}

enum ProbeUntil {
    Count(usize),
    Notified(Arc<tokio::sync::Notify>),
}

/// Sequential `/healthz` requests, each timed.
async fn probe_until(
    http: &reqwest::Client,
    base: &str,
    until: ProbeUntil,
) -> anyhow::Result<Vec<Duration>> {
    let url = format!("{base}/healthz");
    let mut latencies = Vec::new();
    let notified = match &until {
        ProbeUntil::Notified(n) => Some(n.clone()),
        ProbeUntil::Count(_) => None,
    };
    let stop = async {
        match notified {
            Some(n) => n.notified().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop);
    loop {
        if let ProbeUntil::Count(n) = until
            && latencies.len() >= n
        {
            return Ok(latencies);
        }
        let t = Instant::now();
        tokio::select! {
            _ = &mut stop => return Ok(latencies),
            r = http.get(&url).send() => { r?.error_for_status()?; }
        }
        latencies.push(t.elapsed());
    }
}
