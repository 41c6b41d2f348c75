//! A cancelled render stops burning CPU: the slot it held is really free.
//!
//! Alone in its test binary on purpose: it measures this process's CPU time after the
//! cancel, which other tests running beside it would disturb.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: a panic is the failure report

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use chrono::Utc;
use quire_core::dispatch::{Dispatcher, QueueDispatcher};
use quire_core::model::Cancelled;
use quire_core::queue::{DatabaseQueue, WorkQueue};
use quire_core::storage::LocalStorage;
use quire_core::store::RecordStore;
use quire_core::{ReportFormat, ReportType};
use quire_render::DataSources;
use quire_testing::records::{new_report, new_user};
use quire_worker::{Outcome, Worker, WorkerConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ROWS: usize = 100_000;

/// This process's CPU time so far (user + system), from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The command name (field 2) may hold spaces; the fields after it are space-separated.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // Linux reports CPU time in clock ticks of 1/100 s (USER_HZ).
    Duration::from_millis(ticks * 10)
}

#[tokio::test]
async fn cancelling_a_long_render_stops_its_cpu_work_within_a_second_or_so() {
    // A data source of 100,000 rows of 16 columns: its PDF lays out the rows once per
    // group of columns that fits a page's width, which takes many seconds.
    let app = Router::new().route(
        "/rows",
        get(|| async {
            let rows: Vec<Value> = (0..ROWS)
                .map(|i| {
                    let mut row = serde_json::Map::new();
                    row.insert("id".into(), json!(i));
                    for c in 0..15 {
                        row.insert(format!("column_{c:02}"), json!(format!("value {i} {c}")));
                    }
                    Value::Object(row)
                })
                .collect();
            axum::Json(json!({ "results": rows }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fixtures = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let sources = DataSources::from_toml_str(&format!(
        r#"
        [sources.big]
        url = "http://{fixtures}/rows"
        allow_private = true
        rows_pointer = "/results"
        max_rows = {ROWS}
        max_bytes = 67108864
        timeout_secs = 60
        "#
    ))
    .unwrap();

    let (store, dir) = quire_testing::fresh_sqlite().await;
    let records: Arc<dyn RecordStore> = store.clone();
    let queue: Arc<dyn WorkQueue> = Arc::new(DatabaseQueue::sqlite(store.pool().clone()));
    let storage = Arc::new(
        LocalStorage::new(
            dir.path().join("outputs"),
            "http://127.0.0.1/".parse().unwrap(),
            vec![1; 32],
        )
        .unwrap(),
    );
    let user_id = new_user(&*records).await;
    let report = new_report(
        &*records,
        user_id,
        ReportType::Dataset,
        ReportFormat::Pdf,
        json!({"source": "big"}),
    )
    .await;
    QueueDispatcher::new(records.clone(), queue.clone())
        .dispatch(&report)
        .await
        .unwrap();

    let worker = Arc::new(Worker::new(
        records.clone(),
        queue.clone(),
        storage,
        Arc::new(sources),
        WorkerConfig {
            concurrency: 1,
            progress_interval: Duration::from_millis(200),
            ..WorkerConfig::default()
        },
    ));
    let delivery = queue
        .receive(1, Duration::from_secs(5), Duration::from_secs(60))
        .await
        .unwrap()
        .pop()
        .unwrap();
    let processing = tokio::spawn({
        let worker = worker.clone();
        async move { worker.process(&delivery, &CancellationToken::new()).await }
    });

    // Wait until the PDF is being laid out (the fetch ends at 50%).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let progress = records.report(report.id).await.unwrap().unwrap().progress;
        if progress >= 55 {
            break;
        }
        assert!(
            !processing.is_finished(),
            "the render ended before it could be cancelled: {:?}",
            processing.await
        );
        assert!(Instant::now() < deadline, "the render never got going");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let cancelled_at = Instant::now();
    assert!(matches!(
        records
            .cancel_report(user_id, report.id, Utc::now())
            .await
            .unwrap(),
        Cancelled::Cancelled(_)
    ));
    let outcome = tokio::time::timeout(Duration::from_secs(10), processing)
        .await
        .expect("the worker lets go of a cancelled report")
        .unwrap();
    assert_eq!(outcome, Outcome::Cancelled);
    let took = cancelled_at.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "noticed the cancel after {took:?}"
    );

    // Nothing renders any more: over the next second this process is all but idle.
    let before = cpu_time();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let burnt = cpu_time() - before;
    assert!(
        burnt < Duration::from_millis(300),
        "{burnt:?} of CPU in the second after the cancel: the render kept running"
    );
}
