//! The [`Dispatcher`] contract, run against the built-in `QueueDispatcher` on each store
//! with the database queue.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use quire_core::dispatch::{Dispatcher, QueueDispatcher, RescuePolicy, Rescued};
use quire_core::model::{Claim, Inserted, Lease, NewReport, NewUser, Report};
use quire_core::queue::{DatabaseQueue, WorkQueue};
use quire_core::store::RecordStore;
use quire_core::{ReportFormat, ReportStatus, ReportType, Result, WorkMessage};
use uuid::Uuid;

struct Subject {
    dispatcher: Arc<QueueDispatcher>,
    store: Arc<dyn RecordStore>,
    queue: Arc<dyn WorkQueue>,
}

type Dispatch = Arc<Subject>;

fn subject(store: Arc<dyn RecordStore>, queue: DatabaseQueue) -> Dispatch {
    let queue: Arc<dyn WorkQueue> = Arc::new(queue);
    Arc::new(Subject {
        dispatcher: Arc::new(QueueDispatcher::new(store.clone(), queue.clone())),
        store,
        queue,
    })
}

crate::contract_suite! {
    backends: {
        postgres: async {
            let store = quire_testing::fresh_postgres().await;
            let queue = DatabaseQueue::postgres(store.pool().clone());
            (subject(store.clone(), queue), store)
        },
        sqlite: async {
            let (store, dir) = quire_testing::fresh_sqlite().await;
            let queue = DatabaseQueue::sqlite(store.pool().clone());
            (subject(store.clone(), queue), (store, dir))
        },
    },
    cases: [
        dispatch_sends_one_message_naming_the_report_and_marks_it_queued,
        dispatching_a_claimed_report_again_does_not_move_it_back,
        the_sweep_dispatches_only_reports_left_pending_past_the_grace_period,
        the_rescue_dispatches_a_report_whose_worker_died_again,
        the_rescue_fails_a_stranded_report_whose_attempts_or_time_are_spent,
    ],
}

async fn pending_report(s: &Subject, created_at: chrono::DateTime<Utc>) -> Result<Report> {
    let user_id = Uuid::now_v7();
    s.store
        .create_user(NewUser {
            id: user_id,
            email: format!("{user_id}@example.com"),
            password_hash: "x".into(),
            created_at,
        })
        .await?;
    let inserted = s
        .store
        .insert_report(NewReport {
            id: Uuid::now_v7(),
            user_id,
            report_type: ReportType::Profile,
            format: ReportFormat::Pdf,
            parameters: serde_json::json!({}),
            idempotency_key: None,
            request_fingerprint: None,
            created_at,
            traceparent: None,
        })
        .await?;
    let Inserted::Created(report) = inserted else {
        panic!("a new report")
    };
    Ok(report)
}

async fn messages(s: &Subject) -> Result<Vec<WorkMessage>> {
    let deliveries = s
        .queue
        .receive(10, Duration::ZERO, Duration::from_secs(30))
        .await?;
    Ok(deliveries
        .iter()
        .map(|d| WorkMessage::from_body(&d.body).expect("a valid body"))
        .collect())
}

async fn dispatch_sends_one_message_naming_the_report_and_marks_it_queued(
    s: Dispatch,
) -> Result<()> {
    let report = pending_report(&s, Utc::now()).await?;
    let dispatched = s.dispatcher.dispatch(&report).await?;
    assert_eq!(
        dispatched.status,
        ReportStatus::Queued,
        "the row as it now is"
    );

    let sent = messages(&s).await?;
    assert_eq!(
        sent,
        [WorkMessage::new(
            report.id,
            report.user_id,
            ReportType::Profile,
            1
        )]
    );
    let stored = s.store.report(report.id).await?.expect("the report");
    assert_eq!(stored.status, ReportStatus::Queued);
    assert!(stored.queued_at.is_some());
    Ok(())
}

async fn dispatching_a_claimed_report_again_does_not_move_it_back(s: Dispatch) -> Result<()> {
    let report = pending_report(&s, Utc::now()).await?;
    s.dispatcher.dispatch(&report).await?;
    let lease = Lease {
        owner: "w".into(),
        expires_at: Utc::now() + chrono::Duration::seconds(60),
    };
    assert!(matches!(
        s.store.claim_report(report.id, &lease, Utc::now()).await?,
        Claim::Claimed { .. }
    ));

    // A retried dispatch step: at most a duplicate message, never a state change.
    s.dispatcher.dispatch(&report).await?;
    assert_eq!(
        s.store.report(report.id).await?.expect("the report").status,
        ReportStatus::Running
    );
    assert_eq!(
        messages(&s).await?.len(),
        2,
        "the duplicate is harmless: the claim is taken"
    );
    Ok(())
}

async fn the_sweep_dispatches_only_reports_left_pending_past_the_grace_period(
    s: Dispatch,
) -> Result<()> {
    let stale = pending_report(&s, Utc::now() - chrono::Duration::minutes(5)).await?;
    let fresh = pending_report(&s, Utc::now()).await?;

    assert_eq!(s.dispatcher.sweep_once(Duration::from_secs(60)).await?, 1);

    let sent: Vec<Uuid> = messages(&s).await?.iter().map(|m| m.report_id).collect();
    assert_eq!(sent, [stale.id]);
    assert_eq!(
        s.store.report(stale.id).await?.expect("stale").status,
        ReportStatus::Queued
    );
    assert_eq!(
        s.store.report(fresh.id).await?.expect("fresh").status,
        ReportStatus::Pending
    );
    Ok(())
}

/// Claims `report` under a lease that expired a minute ago, as a worker that died would
/// leave it.
async fn claimed_by_a_dead_worker(s: &Subject, report: &Report) -> Result<Report> {
    let lease = Lease {
        owner: "dead-worker".into(),
        expires_at: Utc::now() - chrono::Duration::minutes(1),
    };
    match s.store.claim_report(report.id, &lease, Utc::now()).await? {
        Claim::Claimed { report, .. } => Ok(report),
        other => panic!("expected a claim, got {other:?}"),
    }
}

fn policy(after: Duration) -> RescuePolicy {
    RescuePolicy {
        after,
        max_attempts: 3,
        max_age: Duration::from_secs(3600),
    }
}

async fn the_rescue_dispatches_a_report_whose_worker_died_again(s: Dispatch) -> Result<()> {
    let report = pending_report(&s, Utc::now()).await?;
    claimed_by_a_dead_worker(&s, &report).await?;
    assert_eq!(
        s.dispatcher
            .rescue_once(&policy(Duration::from_secs(600)))
            .await?,
        Rescued::default(),
        "not yet: the lease expired a minute ago, the bound is ten"
    );
    assert!(messages(&s).await?.is_empty());

    assert_eq!(
        s.dispatcher
            .rescue_once(&policy(Duration::from_secs(30)))
            .await?,
        Rescued {
            requeued: 1,
            failed: 0
        }
    );
    assert_eq!(
        messages(&s).await?,
        [WorkMessage::new(
            report.id,
            report.user_id,
            ReportType::Profile,
            2
        )],
        "one fresh message, for the second attempt"
    );
    let rescued = s.store.report(report.id).await?.expect("the report");
    assert_eq!(rescued.status, ReportStatus::Queued);
    assert_eq!(rescued.lease_owner, None);
    assert_eq!(
        s.dispatcher
            .rescue_once(&policy(Duration::from_secs(30)))
            .await?,
        Rescued::default(),
        "idempotent: just requeued, it is not stranded"
    );
    Ok(())
}

async fn the_rescue_fails_a_stranded_report_whose_attempts_or_time_are_spent(
    s: Dispatch,
) -> Result<()> {
    let spent = pending_report(&s, Utc::now()).await?;
    for _ in 0..3 {
        claimed_by_a_dead_worker(&s, &spent).await?;
    }
    let old = pending_report(&s, Utc::now() - chrono::Duration::hours(2)).await?;
    claimed_by_a_dead_worker(&s, &old).await?;

    assert_eq!(
        s.dispatcher
            .rescue_once(&policy(Duration::from_secs(30)))
            .await?,
        Rescued {
            requeued: 0,
            failed: 2
        }
    );
    assert!(
        messages(&s).await?.is_empty(),
        "nothing is sent for a failed report"
    );
    let spent = s.store.report(spent.id).await?.expect("spent");
    assert_eq!(spent.status, ReportStatus::Failed);
    let error = spent.error_message.unwrap_or_default();
    assert!(error.contains("gave up after 3 attempts"), "{error}");
    assert!(error.contains("the worker stopped responding"), "{error}");
    let old = s.store.report(old.id).await?.expect("old");
    assert_eq!(old.status, ReportStatus::Failed);
    let error = old.error_message.unwrap_or_default();
    assert!(error.contains("not finished within 1h"), "{error}");
    Ok(())
}
