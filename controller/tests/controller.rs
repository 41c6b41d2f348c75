//! The controller end to end: kube-runtime against the fake Kubernetes API server
//! (`quire_testing::kube_api`), a real Postgres (its `NOTIFY` trigger wakes the controller),
//! the database work queue and local output storage. The worker's side is played by the
//! record store's own worker operations (claim, progress, complete), which is exactly what
//! the worker calls.
//!
//! The resync interval is an hour here, so every status change a test waits for arrives
//! through a watch event or a Postgres notification, never through polling.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use quire_controller::{Context, LeaderElection, Metrics, RunError, Settings, run};
use quire_core::dispatch::QueueDispatcher;
use quire_core::model::{Claim, Lease as WorkLease, Report, StoredOutput};
use quire_core::queue::{DatabaseQueue, WorkQueue};
use quire_core::storage::{LocalStorage, ObjectMeta, OutputStorage, output_key};
use quire_core::store::{PgStore, RecordStore};
use quire_core::{ReportFormat, ReportStatus, ReportType, WorkMessage};
use quire_crds::report_request::{Phase, condition};
use quire_crds::{ReportRequest, ReportRequestSpec};
use quire_testing::kube_api::FakeApiServer;
use quire_testing::records::{new_report, new_user};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(15);

/// Postgres, queue, storage and a fake apiserver; controllers are started on demand.
struct Harness {
    server: FakeApiServer,
    store: Arc<PgStore>,
    queue: Arc<DatabaseQueue>,
    storage: Arc<LocalStorage>,
    _dir: tempfile::TempDir,
    user: Uuid,
}

/// A running controller.
struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), RunError>>,
    metrics: Arc<Metrics>,
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("the controller task")
            .expect("the controller stops cleanly");
    }
}

impl Harness {
    async fn new() -> Self {
        Self::with_server(FakeApiServer::start().await).await
    }

    async fn with_server(server: FakeApiServer) -> Self {
        let store = quire_testing::fresh_postgres().await;
        let queue = Arc::new(DatabaseQueue::postgres(store.pool().clone()));
        let dir = tempfile::tempdir().expect("a temporary directory");
        let storage = Arc::new(
            LocalStorage::new(
                dir.path(),
                "http://127.0.0.1:1/".parse().expect("a URL"),
                vec![7; 32],
            )
            .expect("local storage"),
        );
        let user = new_user(&*store).await;
        Self {
            server,
            store,
            queue,
            storage,
            _dir: dir,
            user,
        }
    }

    fn api(&self) -> Api<ReportRequest> {
        Api::namespaced(self.server.client(), "default")
    }

    /// Starts a controller, optionally competing for the lease as `identity`.
    fn start(&self, identity: Option<&str>) -> Running {
        let client = self.server.client();
        let metrics = Arc::new(Metrics::default());
        let store: Arc<dyn RecordStore> = self.store.clone();
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "quire-controller".to_owned(),
                instance: identity.map(str::to_owned),
            },
        );
        let ctx = Arc::new(Context::new(
            client,
            store.clone(),
            Arc::new(QueueDispatcher::new(store, self.queue.clone())),
            self.storage.clone(),
            recorder,
            metrics.clone(),
            Duration::from_secs(3600),
        ));
        let settings = Settings {
            namespace: "default".to_owned(),
            concurrency: 4,
            leader_election: identity.map(|identity| LeaderElection {
                lease_name: "quire-controller".to_owned(),
                identity: identity.to_owned(),
                lease_duration: 3,
                renew_grace: 1,
            }),
            rescue: None,
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(
            ctx,
            self.store.pool().clone(),
            settings,
            shutdown.clone(),
        ));
        Running {
            shutdown,
            task,
            metrics,
        }
    }

    /// A report row as `POST /reports` writes it.
    async fn report_row(&self, report_type: ReportType, format: ReportFormat) -> Report {
        new_report(&*self.store, self.user, report_type, format, json!({})).await
    }

    /// A row and its ReportRequest, as the API server creates them in cluster mode.
    async fn request(&self, ttl: Option<i64>) -> Report {
        let report = self
            .report_row(ReportType::Profile, ReportFormat::Pdf)
            .await;
        let mut spec = spec(self.user, ReportType::Profile, ReportFormat::Pdf);
        spec.report_id = Some(report.id.to_string());
        spec.ttl_seconds_after_finished = ttl;
        self.create(&report.id.to_string(), spec).await;
        report
    }

    async fn create(&self, name: &str, spec: ReportRequestSpec) -> ReportRequest {
        self.api()
            .create(&PostParams::default(), &ReportRequest::new(name, spec))
            .await
            .expect("create a ReportRequest")
    }

    /// Polls the resource until `done` holds for it.
    async fn wait_for(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&ReportRequest) -> bool,
    ) -> ReportRequest {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let current = self.api().get_opt(name).await.expect("get the request");
            if let Some(rr) = &current
                && done(rr)
            {
                return rr.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {name}: {what}; last seen: {current:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_for_phase(&self, name: &str, phase: Phase) -> ReportRequest {
        self.wait_for(name, &format!("phase {phase:?}"), |rr| {
            rr.status.as_ref().and_then(|s| s.phase) == Some(phase)
        })
        .await
    }

    async fn wait_until_gone(&self, name: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.api().get_opt(name).await.expect("get").is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} was not deleted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every message on the work queue, received (and acknowledged) now.
    async fn drain_queue(&self) -> Vec<WorkMessage> {
        let mut messages = Vec::new();
        loop {
            let batch = self
                .queue
                .receive(10, Duration::ZERO, Duration::from_secs(60))
                .await
                .expect("receive");
            if batch.is_empty() {
                return messages;
            }
            for delivery in batch {
                messages.push(WorkMessage::from_body(&delivery.body).expect("a work message"));
                self.queue.ack(&delivery.receipt).await.expect("ack");
            }
        }
    }

    async fn row(&self, id: Uuid) -> Report {
        self.store
            .report(id)
            .await
            .expect("read the report")
            .expect("the report exists")
    }

    /// What a worker does up to a stored output: claim, progress, store, complete.
    async fn render(&self, report: &Report) -> StoredOutput {
        let lease = WorkLease {
            owner: "worker-1".to_owned(),
            expires_at: Utc::now() + chrono::Duration::minutes(1),
        };
        let claim = self
            .store
            .claim_report(report.id, &lease, Utc::now())
            .await
            .expect("claim");
        assert!(matches!(claim, Claim::Claimed { .. }), "{claim:?}");
        let file = tempfile::NamedTempFile::new().expect("a temporary file");
        std::fs::write(file.path(), b"%PDF-1.7 a report").expect("write the output");
        let meta = ObjectMeta {
            content_type: "application/pdf".to_owned(),
            file_name: "r.pdf".to_owned(),
        };
        let output = self
            .storage
            .put_file(&output_key(report), file.path(), &meta)
            .await
            .expect("store the output");
        assert!(
            self.store
                .complete_report(report.id, "worker-1", &output, Utc::now())
                .await
                .expect("complete")
        );
        output
    }

    /// Event reasons recorded for the object `name`, oldest first.
    fn event_reasons(&self, name: &str) -> Vec<String> {
        let events = self
            .server
            .store()
            .list_values("events.k8s.io", "events", Some("default"));
        events
            .iter()
            .filter(|e| e["regarding"]["name"] == name)
            .filter_map(|e| e["reason"].as_str().map(str::to_owned))
            .collect()
    }
}

/// Lets the passes the controller's own status writes trigger run out, so that what happens
/// next can only be noticed through a Postgres notification.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(800)).await;
}

fn spec(user: Uuid, report_type: ReportType, format: ReportFormat) -> ReportRequestSpec {
    ReportRequestSpec {
        report_id: None,
        user_id: user.to_string(),
        report_type,
        format,
        parameters: json!({}),
        ttl_seconds_after_finished: None,
        suspend: false,
    }
}

fn condition_of(rr: &ReportRequest, type_: &str) -> (String, String) {
    let found = rr
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .unwrap_or_else(|| panic!("no {type_} condition on {rr:#?}"));
    (found.status.clone(), found.reason.clone())
}

#[tokio::test]
async fn a_request_is_dispatched_once_and_its_status_follows_the_report() {
    let h = Harness::new().await;
    let controller = h.start(None);
    let report = h.request(None).await;
    let name = report.id.to_string();

    let queued = h.wait_for_phase(&name, Phase::Queued).await;
    assert_eq!(
        queued.metadata.finalizers,
        Some(vec!["quire.dev/cleanup".to_owned()])
    );
    assert_eq!(condition_of(&queued, condition::ACCEPTED).0, "True");
    assert_eq!(
        condition_of(&queued, condition::DISPATCHED),
        ("True".into(), "Queued".into())
    );
    assert_eq!(condition_of(&queued, condition::READY).0, "False");
    let status = queued.status.clone().expect("a status");
    assert_eq!(status.report_id.as_deref(), Some(name.as_str()));
    assert_eq!(status.observed_generation, queued.metadata.generation);
    assert_eq!(h.row(report.id).await.status, ReportStatus::Queued);

    // The worker claims it: only the database's notification can wake the controller now
    // (its own status write has been reconciled; the resync is an hour away).
    settle().await;
    let lease = WorkLease {
        owner: "worker-1".to_owned(),
        expires_at: Utc::now() + chrono::Duration::minutes(1),
    };
    h.store
        .claim_report(report.id, &lease, Utc::now())
        .await
        .expect("claim");
    let running = h.wait_for_phase(&name, Phase::Running).await;
    assert_eq!(running.status.as_ref().map(|s| s.attempts), Some(1));
    assert!(
        running
            .status
            .as_ref()
            .and_then(|s| s.started_at.as_ref())
            .is_some()
    );
    settle().await;
    h.store
        .set_progress(report.id, "worker-1", 40)
        .await
        .expect("progress");
    h.wait_for(&name, "progress 40", |rr| {
        rr.status.as_ref().map(|s| s.progress) == Some(40)
    })
    .await;
    // Hand it back (as on a worker's shutdown) and let the worker do it properly.
    settle().await;
    h.store
        .release_report(report.id, "worker-1", Utc::now(), Utc::now())
        .await
        .expect("release");
    h.wait_for_phase(&name, Phase::Queued).await;
    settle().await;
    let output = h.render(&report).await;

    let done = h.wait_for_phase(&name, Phase::Completed).await;
    let status = done.status.clone().expect("a status");
    assert_eq!(status.progress, 100);
    assert_eq!(
        condition_of(&done, condition::READY),
        ("True".into(), "Completed".into())
    );
    assert_eq!(condition_of(&done, condition::FAILED).0, "False");
    let stored = status.output.expect("an output reference");
    assert_eq!(
        (stored.key, stored.size),
        (output.key, i64::try_from(output.size).unwrap())
    );
    assert_eq!(stored.sha256, output.sha256);
    assert!(status.completed_at.is_some());

    // Exactly one work message, however many passes ran.
    let messages = h.drain_queue().await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].report_id, report.id);
    assert!(
        controller
            .metrics
            .encode()
            .contains("quire_controller_dispatches_total 1")
    );
    let reasons = h.event_reasons(&name);
    for reason in ["Dispatched", "Started", "Completed"] {
        assert!(
            reasons.contains(&reason.to_owned()),
            "{reason} missing from {reasons:?}"
        );
    }
    controller.stop().await;
}

#[tokio::test]
async fn requests_made_with_kubectl_are_adopted_or_refused() {
    let h = Harness::new().await;
    let controller = h.start(None);

    // A valid request for an existing user gets a report row of its own.
    let mut adopted_spec = spec(h.user, ReportType::Activity, ReportFormat::Csv);
    adopted_spec.parameters = json!({"days": 7});
    h.create("ada-activity", adopted_spec).await;
    let adopted = h.wait_for_phase("ada-activity", Phase::Queued).await;
    let id: Uuid = adopted
        .status
        .as_ref()
        .and_then(|s| s.report_id.as_deref())
        .expect("the adopted report's id")
        .parse()
        .expect("a UUID");
    let row = h.row(id).await;
    assert_eq!(
        (row.user_id, row.report_type, row.format),
        (h.user, ReportType::Activity, ReportFormat::Csv)
    );
    assert_eq!(row.status, ReportStatus::Queued);
    assert_eq!(
        id.get_version_num(),
        7,
        "adopted ids sort by creation like all others"
    );
    assert!(
        h.event_reasons("ada-activity")
            .contains(&"Adopted".to_owned())
    );

    // Refused: an unknown user, a format the type cannot have, bad parameters.
    let unknown_user = spec(Uuid::now_v7(), ReportType::Profile, ReportFormat::Pdf);
    let wrong_format = spec(h.user, ReportType::Profile, ReportFormat::Csv);
    let mut bad_parameters = spec(h.user, ReportType::Activity, ReportFormat::Csv);
    bad_parameters.parameters = json!({"days": "seven"});
    for (name, spec, needle) in [
        ("unknown-user", unknown_user, "no Quire user"),
        ("wrong-format", wrong_format, "cannot be rendered as csv"),
        ("bad-parameters", bad_parameters, "spec.parameters"),
    ] {
        h.create(name, spec).await;
        let refused = h.wait_for_phase(name, Phase::Failed).await;
        assert_eq!(
            condition_of(&refused, condition::FAILED),
            ("True".into(), "InvalidRequest".into())
        );
        assert_eq!(condition_of(&refused, condition::ACCEPTED).0, "False");
        let message = refused
            .status
            .as_ref()
            .and_then(|s| s.message.clone())
            .unwrap_or_default();
        assert!(message.contains(needle), "{name}: {message}");
        assert!(h.event_reasons(name).contains(&"InvalidRequest".to_owned()));
    }
    // Only the adopted request reached the queue, and only it has a row.
    let messages = h.drain_queue().await;
    assert_eq!(
        messages.iter().map(|m| m.report_id).collect::<Vec<_>>(),
        [id]
    );
    controller.stop().await;
}

#[tokio::test]
async fn a_request_whose_report_row_is_missing_is_marked_failed() {
    let h = Harness::new().await;
    let controller = h.start(None);
    let missing = Uuid::now_v7();
    let mut orphan = spec(h.user, ReportType::Profile, ReportFormat::Pdf);
    orphan.report_id = Some(missing.to_string());
    h.create(&missing.to_string(), orphan).await;
    let failed = h.wait_for_phase(&missing.to_string(), Phase::Failed).await;
    assert_eq!(
        condition_of(&failed, condition::FAILED),
        ("True".into(), "ReportNotFound".into())
    );
    assert!(h.drain_queue().await.is_empty());
    assert!(
        h.store.report(missing).await.expect("read").is_none(),
        "no row is invented"
    );
    controller.stop().await;
}

#[tokio::test]
async fn deleting_a_request_cancels_unfinished_work_and_deletes_finished_output() {
    let h = Harness::new().await;
    let controller = h.start(None);

    // Unfinished: the report is cancelled, so its worker's lease is gone.
    let running = h.request(None).await;
    h.wait_for_phase(&running.id.to_string(), Phase::Queued)
        .await;
    let lease = WorkLease {
        owner: "worker-1".to_owned(),
        expires_at: Utc::now() + chrono::Duration::minutes(1),
    };
    h.store
        .claim_report(running.id, &lease, Utc::now())
        .await
        .expect("claim");
    h.wait_for_phase(&running.id.to_string(), Phase::Running)
        .await;
    h.api()
        .delete(&running.id.to_string(), &DeleteParams::default())
        .await
        .expect("delete");
    h.wait_until_gone(&running.id.to_string()).await;
    let row = h.row(running.id).await;
    assert_eq!(row.status, ReportStatus::Cancelled);
    assert!(row.output_deleted_at.is_some());
    assert!(
        !h.store
            .set_progress(running.id, "worker-1", 50)
            .await
            .expect("progress")
    );

    // Finished: the stored output goes, the row remembers that it did.
    let finished = h.request(None).await;
    h.wait_for_phase(&finished.id.to_string(), Phase::Queued)
        .await;
    let output = h.render(&finished).await;
    h.wait_for_phase(&finished.id.to_string(), Phase::Completed)
        .await;
    assert!(h.storage.exists(&output.key).await.expect("exists"));
    h.api()
        .delete(&finished.id.to_string(), &DeleteParams::default())
        .await
        .expect("delete");
    h.wait_until_gone(&finished.id.to_string()).await;
    assert!(!h.storage.exists(&output.key).await.expect("exists"));
    let row = h.row(finished.id).await;
    assert_eq!(row.status, ReportStatus::Completed);
    assert!(row.output_deleted_at.is_some() && row.download_url.is_none());
    controller.stop().await;
}

#[tokio::test]
async fn finished_requests_are_deleted_with_their_output_when_the_ttl_expires() {
    let h = Harness::new().await;
    let controller = h.start(None);
    let report = h.request(Some(1)).await;
    let name = report.id.to_string();
    h.wait_for_phase(&name, Phase::Queued).await;
    let output = h.render(&report).await;
    h.wait_for_phase(&name, Phase::Completed).await;
    h.wait_until_gone(&name).await;
    assert!(!h.storage.exists(&output.key).await.expect("exists"));
    assert!(h.row(report.id).await.output_deleted_at.is_some());
    controller.stop().await;
}

#[tokio::test]
async fn an_expired_request_the_api_created_goes_but_its_output_stays_for_retention() {
    let h = Harness::new().await;
    let controller = h.start(None);
    let report = h.report_row(ReportType::Profile, ReportFormat::Pdf).await;
    let name = report.id.to_string();
    let mut spec = spec(h.user, ReportType::Profile, ReportFormat::Pdf);
    spec.report_id = Some(name.clone());
    spec.ttl_seconds_after_finished = Some(1);
    let mut rr = ReportRequest::new(&name, spec);
    rr.metadata.annotations = Some(std::collections::BTreeMap::from([(
        quire_crds::report_request::annotations::OUTPUT_RETENTION.to_owned(),
        "api".to_owned(),
    )]));
    h.api()
        .create(&PostParams::default(), &rr)
        .await
        .expect("create a ReportRequest");
    h.wait_for_phase(&name, Phase::Queued).await;
    let output = h.render(&report).await;
    // Completed, then gone a second later (too fast to always see the phase in between).
    h.wait_until_gone(&name).await;
    // The resource left etcd; the output is the API's retention's to delete.
    assert!(h.storage.exists(&output.key).await.expect("exists"));
    let row = h.row(report.id).await;
    assert_eq!(row.status, ReportStatus::Completed);
    assert!(row.output_deleted_at.is_none());
    controller.stop().await;
}

/// What one finished `ReportRequest` weighs in etcd (custom resources are stored as
/// JSON), for the README's scale envelope: objects held = rate × TTL.
#[tokio::test]
async fn a_finished_report_request_stays_within_the_documented_size() {
    let h = Harness::new().await;
    let controller = h.start(None);
    let report = h.request(None).await;
    let name = report.id.to_string();
    h.wait_for_phase(&name, Phase::Queued).await;
    h.render(&report).await;
    let finished = h.wait_for_phase(&name, Phase::Completed).await;
    let bytes = serde_json::to_vec(&finished).expect("JSON").len();
    println!("a completed ReportRequest is {bytes} bytes of JSON");
    // README, "Scale envelope in cluster mode": about 2 KiB, under 3 KiB.
    assert!((1024..3072).contains(&bytes), "{bytes} bytes");
    controller.stop().await;
}

#[tokio::test]
async fn suspending_a_request_cancels_its_report() {
    let h = Harness::new().await;
    let controller = h.start(None);
    let report = h.request(None).await;
    let name = report.id.to_string();
    h.wait_for_phase(&name, Phase::Queued).await;
    h.api()
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .expect("suspend");
    let cancelled = h.wait_for_phase(&name, Phase::Cancelled).await;
    assert_eq!(
        condition_of(&cancelled, condition::READY),
        ("False".into(), "Cancelled".into())
    );
    assert_eq!(
        cancelled
            .status
            .as_ref()
            .and_then(|s| s.observed_generation),
        cancelled.metadata.generation
    );
    assert_eq!(h.row(report.id).await.status, ReportStatus::Cancelled);
    controller.stop().await;
}

#[tokio::test]
async fn a_restarted_controller_catches_up_without_dispatching_twice() {
    let mut h = Harness::new().await;
    let first = h.start(None);
    let before = h.request(None).await;
    h.wait_for_phase(&before.id.to_string(), Phase::Queued)
        .await;
    first.stop().await;

    // While no controller runs: the first report finishes, a second one is requested,
    // and the apiserver restarts.
    h.render(&before).await;
    let during = h.request(None).await;
    h.server.restart().await.expect("restart the apiserver");

    let second = h.start(None);
    h.wait_for_phase(&before.id.to_string(), Phase::Completed)
        .await;
    h.wait_for_phase(&during.id.to_string(), Phase::Queued)
        .await;
    let mut sent: Vec<Uuid> = h.drain_queue().await.iter().map(|m| m.report_id).collect();
    sent.sort();
    let mut expected = vec![before.id, during.id];
    expected.sort();
    assert_eq!(sent, expected, "each report was sent exactly once");
    assert!(
        second
            .metrics
            .encode()
            .contains("quire_controller_dispatches_total 1")
    );
    second.stop().await;
}

#[tokio::test]
async fn only_the_lease_holder_reconciles_and_a_standby_takes_over() {
    let h = Harness::new().await;
    let leases: Api<Lease> = Api::namespaced(h.server.client(), "default");
    let holder = || async {
        leases
            .get_opt("quire-controller")
            .await
            .expect("get the lease")
            .and_then(|l| l.spec.and_then(|s| s.holder_identity))
    };

    let a = h.start(Some("controller-a"));
    let deadline = tokio::time::Instant::now() + WAIT;
    while holder().await.as_deref() != Some("controller-a") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "controller-a never led"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = h.start(Some("controller-b"));
    let first = h.request(None).await;
    h.wait_for_phase(&first.id.to_string(), Phase::Queued).await;
    // Give the standby every chance to act wrongly.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(a.metrics.encode().contains("quire_controller_leader 1"));
    assert!(b.metrics.encode().contains("quire_controller_leader 0"));
    assert!(
        b.metrics
            .encode()
            .contains("quire_controller_reconciles_total 0")
    );

    // The leader shuts down and releases the lease; the standby takes over.
    a.stop().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while holder().await.as_deref() != Some("controller-b") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "controller-b never took over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = h.request(None).await;
    h.wait_for_phase(&second.id.to_string(), Phase::Queued)
        .await;
    assert!(
        b.metrics
            .encode()
            .contains("quire_controller_dispatches_total 1")
    );
    let sent: Vec<Uuid> = h.drain_queue().await.iter().map(|m| m.report_id).collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    b.stop().await;
}

/// A free loopback port (bound, then released for the child process to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test]
async fn the_controller_binary_reconciles_serves_probes_and_kubectl_shows_its_work() {
    let h = Harness::new().await;
    let kubectl = quire_testing::kube_api::Kubectl::for_server(&h.server);
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(h.store.pool())
        .await
        .expect("the database's name");
    let mut database_url = url::Url::parse(&quire_testing::database_url()).expect("a URL");
    database_url.set_path(&database);
    let health = format!("127.0.0.1:{}", free_port());
    let data = tempfile::tempdir().expect("a temporary directory");
    let log = data.path().join("controller.log");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_controller"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KUBECONFIG", kubectl.kubeconfig())
        .env("DATABASE_URL", database_url.as_str())
        .env("QUIRE_QUEUE", "database")
        .env("QUIRE_STORAGE", "local")
        .env("QUIRE_DATA_DIR", data.path())
        .env("QUIRE_HEALTH_LISTEN", &health)
        .env("QUIRE_LEASE_DURATION", "5")
        .env("POD_NAME", "controller-0")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a log file"))
        .kill_on_drop(true)
        .spawn()
        .expect("start the controller binary");

    let report = h.request(None).await;
    let name = report.id.to_string();
    h.wait_for_phase(&name, Phase::Queued).await;
    h.render(&report).await;
    h.wait_for_phase(&name, Phase::Completed).await;

    let http = reqwest::Client::new();
    let ready = http
        .get(format!("http://{health}/readyz"))
        .send()
        .await
        .expect("GET /readyz");
    assert_eq!(ready.status(), 200);
    let checks: serde_json::Value = ready.json().await.expect("JSON");
    assert_eq!(
        checks["checks"],
        json!({"database": "ok", "queue": "ok", "storage": "ok"})
    );
    let metrics = http
        .get(format!("http://{health}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    for line in [
        "quire_controller_dispatches_total 1",
        "quire_controller_leader 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    assert!(metrics.contains("quire_controller_reconcile_duration_seconds_bucket"));

    // What an operator sees.
    let (ok, out, err) = kubectl.run(&["get", "reportrequests"]).await;
    assert!(ok, "{err}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["NAME", "TYPE", "FORMAT", "PHASE", "PROGRESS", "AGE"]
    );
    assert_eq!(
        lines[1][..5],
        [name.as_str(), "profile", "pdf", "Completed", "100"]
    );
    let (ok, out, err) = kubectl.run(&["get", "rr", "-o", "wide"]).await;
    assert!(ok, "{err}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0][6..], ["USER", "ATTEMPTS"]);
    assert_eq!(lines[1][6..], [h.user.to_string().as_str(), "1"]);
    let (ok, out, err) = kubectl
        .run(&[
            "wait",
            "--for=condition=Ready",
            &format!("rr/{name}"),
            "--timeout=5s",
        ])
        .await;
    assert!(ok, "{err}");
    assert!(out.contains("condition met"), "{out}");

    // SIGTERM: a clean exit that releases the lease for a standby.
    let pid = child.id().expect("the child's pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("the controller exits after SIGTERM")
        .expect("wait");
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit {status}; log:\n{output}");
    let lease: Lease = Api::namespaced(h.server.client(), "default")
        .get("quire-controller")
        .await
        .expect("the lease");
    assert_eq!(lease.spec.and_then(|s| s.holder_identity), None);
}
