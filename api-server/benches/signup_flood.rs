//! Does a flood of sign-ups slow sign-ins down?
//!
//! Every sign-up costs a bcrypt hash on the pool sign-in uses. The hasher lets sign-ups
//! hold all its slots but one and bounds its queue, answering 503 at once past it, so a
//! sign-in should wait for at most the hash in front of it. This starts the real app
//! (SQLite, no external services), times sequential sign-ins idle and then while many
//! clients flood sign-ups at several times the rate the CPUs can hash, and prints the
//! latencies, the ratio (the goal: p99 within 2x of idle) and what the flood got back.
//! The sign-up limit per address is off: the flood stands for many addresses.
//!
//! ```sh
//! cargo bench --profile dev --workspace --bench signup_flood
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

mod common;

use common::{ms, percentiles, ratio};

const BCRYPT_COST: u32 = 10;
const SIGNINS: usize = 40;
/// Concurrent sign-up clients per CPU.
const FLOODERS_PER_CPU: usize = 32;
const PASSWORD: &str = "correct horse battery";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (base, _dir) = common::start(common::config(BCRYPT_COST)).await?;

    let http = reqwest::Client::new();
    let credentials = json!({"email": "bench@example.com", "password": PASSWORD});
    http.post(format!("{base}/auth/signup"))
        .json(&credentials)
        .send()
        .await?
        .error_for_status()?;
    signins(&http, &base, &credentials, 5).await?; // warm up
    let idle = signins(&http, &base, &credentials, SIGNINS).await?;
    let (idle_p50, idle_p99) = percentiles(idle.clone());
    // The CPUs' bcrypt rate: one hash per CPU per idle sign-in time.
    let hash_rate = cpus as f64 / idle_p50.as_secs_f64();

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let flooders = FLOODERS_PER_CPU * cpus;
    let flood_started = Instant::now();
    let flood: Vec<_> = (0..flooders)
        .map(|f| {
            let (http, url, stop, sent) = (
                http.clone(),
                format!("{base}/auth/signup"),
                stop.clone(),
                sent.clone(),
            );
            tokio::spawn(async move {
                let mut statuses = BTreeMap::<u16, usize>::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let body = json!({"email": format!("flood-{f}-{n}@example.com"), "password": PASSWORD});
                    let status = match http.post(&url).json(&body).send().await {
                        Ok(r) => r.status().as_u16(),
                        Err(_) => 0,
                    };
                    sent.fetch_add(1, Ordering::Relaxed);
                    *statuses.entry(status).or_default() += 1;
                    if status == 503 {
                        // A well-behaved client honours Retry-After (1 s); a flood waits a tenth of it.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                statuses
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await; // let the flood build up
    let flooded = signins(&http, &base, &credentials, SIGNINS).await?;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = BTreeMap::<u16, usize>::new();
    for task in flood {
        for (status, n) in task.await? {
            *outcomes.entry(status).or_default() += n;
        }
    }
    let flood_time = flood_started.elapsed();
    let flood_rate = sent.load(Ordering::Relaxed) as f64 / flood_time.as_secs_f64();
    let (flood_p50, flood_p99) = percentiles(flooded.clone());

    println!("sign-up flood: {flooders} clients on {cpus} CPUs, bcrypt cost {BCRYPT_COST}");
    println!(
        "  bcrypt rate of the CPUs {hash_rate:>6.1} hashes/s; flood sent {flood_rate:>6.1} sign-ups/s ({:.1}x)",
        flood_rate / hash_rate
    );
    println!("  flood outcomes by status: {outcomes:?}");
    println!(
        "  sign-in idle    p50 {:>7.1} ms  p99 {:>7.1} ms  ({} sign-ins)",
        ms(idle_p50),
        ms(idle_p99),
        idle.len()
    );
    println!(
        "  sign-in flooded p50 {:>7.1} ms  p99 {:>7.1} ms  ({} sign-ins)",
        ms(flood_p50),
        ms(flood_p99),
        flooded.len()
    );
    println!(
        "  ratio flooded/idle: p50 {:.2}x, p99 {:.2}x (goal: p99 within 2x)",
        ratio(flood_p50, idle_p50),
        ratio(flood_p99, idle_p99)
    );
    Ok(())
}

/// `n` sequential sign-ins, each timed; a refused one (503) is retried after its
/// `Retry-After` and timed from the first attempt, as a user would experience it.
async fn signins(
    http: &reqwest::Client,
    base: &str,
    credentials: &serde_json::Value,
    n: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        loop {
            let response = http
                .post(format!("{base}/auth/signin"))
                .json(credentials)
                .send()
                .await?;
            if response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            response.error_for_status()?;
            break;
        }
        latencies.push(started.elapsed());
    }
    Ok(latencies)
}
