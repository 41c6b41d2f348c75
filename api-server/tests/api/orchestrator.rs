//! The [`Orchestrator`] contract, run against both implementations on real backends: the
//! built-in one on a Postgres work queue reached through a [`FaultProxy`], the Kubernetes
//! one on a fake Kubernetes API server.
//!
//! - an accepted report is in hand: it reaches the queue, or its `ReportRequest` exists;
//! - `ensure` after `accept` is harmless: still exactly one delivery;
//! - under an outage, a report is either accepted (and delivered once the dependency is
//!   back, with no further call) or refused with its row gone: never a report nobody will
//!   ever process.

use std::sync::Arc;
use std::time::Duration;

use quire_api::ReportRequests;
use quire_api::cluster::Kubernetes;
use quire_core::dispatch::{QueueDispatcher, RescuePolicy};
use quire_core::model::{Inserted, NewReport, NewUser, Report};
use quire_core::orchestrator::{Builtin, Orchestrator, Upkeep};
use quire_core::queue::{DatabaseQueue, WorkQueue};
use quire_core::store::{PgStore, RecordStore};
use quire_core::{ReportFormat, ReportStatus, ReportType, WorkMessage};
use quire_crds::ReportRequest;
use quire_testing::kube_api::FakeApiServer;
use quire_testing::proxy::{FaultProxy, Mode};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often the built-in orchestrator's sweep runs here.
const SWEEP: Duration = Duration::from_millis(200);

enum Backend {
    /// The work queue on the test database, through a proxy that can stage its outage.
    Builtin {
        proxy: FaultProxy,
        queue: DatabaseQueue,
    },
    Kubernetes(FakeApiServer),
}

struct Harness {
    orchestrator: Arc<dyn Orchestrator>,
    store: Arc<PgStore>,
    backend: Backend,
    user: Uuid,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Harness {
    async fn builtin() -> Self {
        let store = quire_testing::fresh_postgres().await;
        let (proxy, proxied) = FaultProxy::to_postgres(&store.pool().connect_options()).await;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_millis(500))
            .connect_lazy_with(proxied);
        let records: Arc<dyn RecordStore> = store.clone();
        let dispatcher = QueueDispatcher::new(
            records,
            Arc::new(DatabaseQueue::postgres(pool)) as Arc<dyn WorkQueue>,
        );
        let orchestrator = Arc::new(Builtin::new(
            Arc::new(dispatcher),
            Upkeep {
                sweep_every: SWEEP,
                rescue: RescuePolicy::default(),
                rescue_every: Duration::from_secs(60),
            },
        ));
        let queue = DatabaseQueue::postgres(store.pool().clone());
        Self::start(orchestrator, store, Backend::Builtin { proxy, queue }).await
    }

    async fn kubernetes() -> Self {
        let store = quire_testing::fresh_postgres().await;
        let kube = FakeApiServer::start().await;
        let orchestrator = Arc::new(Kubernetes::new(
            store.clone(),
            ReportRequests::new(kube.client(), None),
        ));
        Self::start(orchestrator, store, Backend::Kubernetes(kube)).await
    }

    async fn start(
        orchestrator: Arc<dyn Orchestrator>,
        store: Arc<PgStore>,
        backend: Backend,
    ) -> Self {
        let user = Uuid::now_v7();
        store
            .create_user(NewUser {
                id: user,
                email: format!("{user}@example.com"),
                password_hash: "not a real hash".into(),
                created_at: chrono::Utc::now(),
            })
            .await
            .expect("create a user");
        let shutdown = CancellationToken::new();
        {
            let (orchestrator, shutdown) = (orchestrator.clone(), shutdown.clone());
            tokio::spawn(async move { orchestrator.run(shutdown).await });
        }
        Self {
            orchestrator,
            store,
            backend,
            user,
            shutdown,
        }
    }

    /// A report stored `pending`, as `POST /reports` stores it before `accept`.
    async fn stored_report(&self) -> Report {
        let new = NewReport::new(
            Uuid::now_v7(),
            self.user,
            ReportType::Profile,
            ReportFormat::Pdf,
            &json!({}),
        )
        .expect("a valid report");
        match self.store.insert_report(new).await.expect("insert") {
            Inserted::Created(report) => report,
            Inserted::Existing(_) => panic!("a new report"),
        }
    }

    /// Takes the dependency the orchestrator needs away, or brings it back.
    fn outage(&self, down: bool) {
        match &self.backend {
            Backend::Builtin { proxy, .. } => {
                proxy.set(if down { Mode::Refuse } else { Mode::Pass })
            }
            Backend::Kubernetes(kube) if down => {
                kube.fail_next("POST", "/reportrequests", 1_000, 503)
            }
            Backend::Kubernetes(kube) => kube.clear_failures(),
        }
    }

    /// How many times `report` has reached the workers' side: work messages naming it on the
    /// queue, or `ReportRequest`s named after it.
    async fn deliveries(&self, report: &Report) -> usize {
        match &self.backend {
            Backend::Builtin { queue, .. } => {
                let received = queue
                    .receive(100, Duration::ZERO, Duration::from_millis(1))
                    .await
                    .expect("receive");
                received
                    .iter()
                    .filter_map(|d| WorkMessage::from_body(&d.body).ok())
                    .filter(|m| m.report_id == report.id)
                    .count()
            }
            Backend::Kubernetes(kube) => usize::from(
                kube.store()
                    .get_typed::<ReportRequest>(Some("default"), &report.id.to_string())
                    .is_some(),
            ),
        }
    }

    /// Waits up to `within` for `report` to be delivered once.
    async fn delivered_within(&self, report: &Report, within: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let n = self.deliveries(report).await;
            if n > 0 || tokio::time::Instant::now() >= deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn an_accepted_report_is_in_hand(h: Harness) {
    let report = h.stored_report().await;
    let accepted = h.orchestrator.accept(report.clone()).await.expect("accept");
    assert_eq!(accepted.id, report.id);
    assert!(
        matches!(
            accepted.status,
            ReportStatus::Pending | ReportStatus::Queued
        ),
        "{:?}",
        accepted.status
    );
    assert_eq!(h.deliveries(&report).await, 1);
}

async fn ensure_after_accept_delivers_once(h: Harness) {
    let report = h.stored_report().await;
    let accepted = h.orchestrator.accept(report.clone()).await.expect("accept");
    h.orchestrator.ensure(&accepted).await.expect("ensure");
    h.orchestrator
        .ensure(&accepted)
        .await
        .expect("ensure again");
    // Past a sweep, so a built-in orchestrator that wrongly dispatched again would show it.
    tokio::time::sleep(SWEEP * 3).await;
    assert_eq!(h.deliveries(&report).await, 1);
}

async fn an_outage_never_strands_a_report(h: Harness) {
    let report = h.stored_report().await;
    h.outage(true);
    let outcome = h.orchestrator.accept(report.clone()).await;
    h.outage(false);
    match outcome {
        Ok(accepted) => {
            assert_eq!(
                accepted.status,
                ReportStatus::Pending,
                "nothing was sent yet"
            );
            let stored = h.store.report(report.id).await.expect("read");
            assert!(stored.is_some(), "an accepted report keeps its row");
            assert_eq!(
                h.delivered_within(&report, Duration::from_secs(10)).await,
                1,
                "delivered once the dependency is back, with no further call"
            );
        }
        Err(e) => {
            assert!(
                matches!(e, quire_core::Error::Unavailable(_)),
                "refused as unavailable: {e}"
            );
            let stored = h.store.report(report.id).await.expect("read");
            assert!(stored.is_none(), "a refused report leaves no row");
            assert_eq!(h.deliveries(&report).await, 0);
        }
    }
}

/// Each contract case, on each orchestrator.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn builtin() {
                super::$case(super::Harness::builtin().await).await;
            }

            #[tokio::test]
            async fn kubernetes() {
                super::$case(super::Harness::kubernetes().await).await;
            }
        }
    )*};
}

contract!(
    an_accepted_report_is_in_hand,
    ensure_after_accept_delivers_once,
    an_outage_never_strands_a_report,
);
