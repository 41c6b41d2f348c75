//! Reconciling one `ReportRequest`: [`reconcile`] and [`error_policy`], in the style of
//! kube-rs/controller-rs.
//!
//! Every pass is idempotent and starts from what the database says, so a restarted
//! controller, a second replica during a leader handover or a repeated event changes
//! nothing that is already right:
//!
//! 1. The finalizer goes on first (kube-runtime's helper), so a deletion always runs
//!    [`cleanup`].
//! 2. The request is resolved to its report row: the row `spec.reportId` names (missing →
//!    `Failed`/`ReportNotFound`, an orphan), or, for a request created with kubectl, a row
//!    the controller creates under an id derived from the resource's uid (validated like
//!    `POST /reports`; refused → `Failed`/`InvalidRequest`).
//! 3. `spec.suspend` cancels an unfinished report; a `pending` report is dispatched. The
//!    dispatcher sends, then marks the row `queued`, so a second pass finds it queued and
//!    sends nothing.
//! 4. The status is recomputed from the row ([`crate::status`]) and written only if it
//!    changed; phase changes become Events.
//! 5. What happens next: a finished request with `ttlSecondsAfterFinished` is requeued for
//!    its expiry and deleted then; an unfinished one is requeued after the resync interval
//!    (Postgres notifications wake it sooner); anything else waits for a change.
//!
//! The parts: [`Context`] (what a pass can reach), [`Error`] (why one failed), `adopt`
//! (step 2: the report a request stands for, and adoption) and `events` (the Events a
//! pass publishes). Steps 1 and 3–5, [`cleanup`] and the status write live here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use quire_core::ReportStatus;
use quire_core::model::Cancelled;
use quire_core::storage::output_key;
use quire_crds::ReportRequest;
use quire_crds::report_request::{FINALIZER, Phase, ReportRequestStatus, annotations};
use serde_json::{Value, json};

use crate::status;

mod adopt;
mod context;
mod error;
mod events;

use adopt::{Resolved, owned_report, resolve};
use events::{publish, transition};

pub use adopt::adopted_report_id;
pub use context::Context;
pub use error::Error;

/// The field manager of every write the controller makes.
pub const FIELD_MANAGER: &str = "quire-controller";

/// Reconciles one `ReportRequest`. See the module docs.
pub async fn reconcile(rr: Arc<ReportRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile();
    let namespace = rr.namespace().ok_or(Error::MissingNamespace)?;
    let key = ObjectRef::from_obj(rr.as_ref());
    let api: Api<ReportRequest> = Api::namespaced(ctx.client.clone(), &namespace);
    let action = finalizer(&api, FINALIZER, rr, |event| async {
        match event {
            Finalizer::Apply(rr) => apply(&rr, &api, &ctx).await,
            Finalizer::Cleanup(rr) => cleanup(&rr, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.backoff.reset(&key);
    Ok(action)
}

/// Requeues a failed object with exponential backoff (1 s doubling to 5 min, per object),
/// so one broken request or an outage does not turn into a tight loop.
pub fn error_policy(rr: Arc<ReportRequest>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(error.metric_label());
    let delay = ctx.backoff.next(&ObjectRef::from_obj(rr.as_ref()));
    tracing::warn!(
        name = %rr.name_any(),
        error = %error,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// Per-object exponential backoff for [`error_policy`].
#[derive(Default)]
struct Backoff {
    failures: Mutex<HashMap<ObjectRef<ReportRequest>, u32>>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(300);

    fn next(&self, key: &ObjectRef<ReportRequest>) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.clone()).or_default();
        let delay = Self::FIRST.saturating_mul(1 << (*n).min(16)).min(Self::MAX);
        *n = n.saturating_add(1);
        delay
    }

    fn reset(&self, key: &ObjectRef<ReportRequest>) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }
}

/// Steps 2–5 of a pass over a request that is not being deleted.
async fn apply(
    rr: &ReportRequest,
    api: &Api<ReportRequest>,
    ctx: &Context,
) -> Result<Action, Error> {
    let now = Utc::now();
    let name = rr.name_any();
    let previous = rr.status.as_ref().and_then(|s| s.phase);
    let mut report = match resolve(rr, ctx).await? {
        Resolved::Report(report) => *report,
        Resolved::Rejected { reason, message } => {
            let desired = status::rejected(rr, reason, &message, now);
            if rr.status.as_ref() != Some(&desired) {
                write_status(api, &name, &desired).await?;
                if previous != Some(Phase::Failed) {
                    publish(ctx, rr, EventType::Warning, reason, "Validate", message).await;
                }
            }
            return finish(rr, api, ctx, &desired, now).await;
        }
    };

    if rr.spec.suspend
        && !report.status.is_terminal()
        && let Cancelled::Cancelled(cancelled) = ctx
            .store
            .cancel_report(report.user_id, report.id, now)
            .await?
    {
        report = cancelled;
    }
    if report.status == ReportStatus::Pending {
        report = ctx.dispatcher.dispatch(&report).await?;
        ctx.metrics.dispatched();
    }

    let desired = status::reflect(rr, &report, now);
    if rr.status.as_ref() != Some(&desired) {
        write_status(api, &name, &desired).await?;
        if let Some((type_, reason, note)) = transition(previous, &report) {
            publish(ctx, rr, type_, reason, "Reconcile", note).await;
        }
    }
    finish(rr, api, ctx, &desired, now).await
}

/// What happens after a pass: deletion when the TTL ran out, a timer for it, a resync for
/// unfinished work, or nothing until the object changes.
async fn finish(
    rr: &ReportRequest,
    api: &Api<ReportRequest>,
    ctx: &Context,
    status: &ReportRequestStatus,
    now: chrono::DateTime<Utc>,
) -> Result<Action, Error> {
    if let Some(expires_at) = status::expires_at(rr, status) {
        if expires_at <= now {
            let what = if output_outlives_request(rr) {
                "the request (its output stays for the API's retention)"
            } else {
                "the request and its output"
            };
            let note = format!(
                "ttlSecondsAfterFinished ({}s) expired; deleting {what}",
                rr.spec.ttl_seconds_after_finished.unwrap_or_default()
            );
            publish(ctx, rr, EventType::Normal, "Expired", "Delete", note).await;
            if output_outlives_request(rr) {
                release_finalizer(api, rr).await?;
            }
            match api.delete(&rr.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(Action::await_change());
        }
        let wait = (expires_at - now).to_std().unwrap_or_default();
        // A second late rather than early: timestamps are kept to the second.
        return Ok(Action::requeue(wait + Duration::from_secs(1)));
    }
    if status.phase.is_some_and(Phase::is_terminal) {
        Ok(Action::await_change())
    } else {
        Ok(Action::requeue(ctx.resync))
    }
}

/// Whether the request's output lives on after its TTL deletes it: the API server created
/// it, and its retention (`QUIRE_OUTPUT_RETENTION`) decides when the output goes.
fn output_outlives_request(rr: &ReportRequest) -> bool {
    rr.annotations()
        .get(annotations::OUTPUT_RETENTION)
        .is_some_and(|value| value == "api")
}

/// Takes this controller's finalizer off, so deleting the request skips [`cleanup`]. The
/// `test` makes it a no-op if the finalizers changed meanwhile (the next pass retries).
async fn release_finalizer(api: &Api<ReportRequest>, rr: &ReportRequest) -> Result<(), Error> {
    let finalizers = rr.finalizers();
    let Some(index) = finalizers.iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{index}")},
    ]))?;
    api.patch(
        &rr.name_any(),
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await?;
    Ok(())
}

/// On deletion: cancels unfinished work, deletes the stored output and records that on the
/// row. Idempotent: a repeated pass cancels nothing twice and deleting a missing object
/// succeeds.
async fn cleanup(rr: &ReportRequest, ctx: &Context) -> Result<Action, Error> {
    let Some(report) = owned_report(rr, ctx).await? else {
        return Ok(Action::await_change());
    };
    let now = Utc::now();
    if !report.status.is_terminal()
        && let Cancelled::Cancelled(_) = ctx
            .store
            .cancel_report(report.user_id, report.id, now)
            .await?
    {
        let note = "the request was deleted before the report finished".to_owned();
        publish(ctx, rr, EventType::Normal, "Cancelled", "Cleanup", note).await;
    }
    // Also for unfinished reports: a worker may have stored an output just before the cancel.
    let key = report
        .output_key
        .clone()
        .unwrap_or_else(|| output_key(&report));
    ctx.storage.delete(&key).await?;
    if ctx.store.mark_output_deleted(report.id, now).await? {
        tracing::info!(report_id = %report.id, "deleted the output of a deleted ReportRequest");
    }
    Ok(Action::await_change())
}

/// Writes the whole status with a merge patch, naming absent fields as `null` so that a
/// field the new status lacks (a cleared message, a deleted output) is removed.
async fn write_status(
    api: &Api<ReportRequest>,
    name: &str,
    status: &ReportRequestStatus,
) -> Result<(), Error> {
    let mut value = serde_json::to_value(status)?;
    if let Some(fields) = value.as_object_mut() {
        for key in [
            "reportId",
            "phase",
            "startedAt",
            "completedAt",
            "message",
            "output",
            "observedGeneration",
            "conditions",
        ] {
            fields.entry(key).or_insert(Value::Null);
        }
    }
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch_status(name, &params, &Patch::Merge(json!({ "status": value })))
        .await?;
    Ok(())
}

/// `reconcile` against a mocked Kubernetes API (tower-test): each test states the exact
/// requests a pass makes, in order, and answers them. The record store is a real (SQLite)
/// one.
#[cfg(test)]
mod tests {
    use http::{Method, Request, Response};
    use kube::Client;
    use kube::client::Body;
    use kube::runtime::events::Recorder;
    use quire_core::queue::DatabaseQueue;
    use quire_core::storage::LocalStorage;
    use quire_core::store::RecordStore;
    use quire_core::{ReportFormat, ReportType};
    use quire_crds::ReportRequestSpec;
    use serde_json::Value;
    use uuid::Uuid;

    use crate::metrics::Metrics;

    use super::*;

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    const PATH: &str = "/apis/quire.dev/v1alpha1/namespaces/default/reportrequests";

    struct Fixture {
        ctx: Arc<Context>,
        handle: Handle,
        _dir: tempfile::TempDir,
    }

    async fn fixture() -> Fixture {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let (store, dir) = quire_testing::fresh_sqlite().await;
        let queue = Arc::new(DatabaseQueue::sqlite(store.pool().clone()));
        let storage = Arc::new(
            LocalStorage::new(
                dir.path().join("outputs"),
                "http://127.0.0.1:1/".parse().expect("a URL"),
                vec![1; 32],
            )
            .expect("local storage"),
        );
        let store: Arc<dyn RecordStore> = store;
        let recorder = Recorder::new(
            client.clone(),
            kube::runtime::events::Reporter {
                controller: "quire-controller".to_owned(),
                instance: None,
            },
        );
        let ctx = Context::new(
            client,
            store.clone(),
            Arc::new(quire_core::dispatch::QueueDispatcher::new(store, queue)),
            storage,
            recorder,
            Arc::new(Metrics::default()),
            Duration::from_secs(60),
        );
        Fixture {
            ctx: Arc::new(ctx),
            handle,
            _dir: dir,
        }
    }

    fn request(report_id: Option<Uuid>, finalizers: &[&str]) -> ReportRequest {
        let mut rr = ReportRequest::new(
            "r1",
            ReportRequestSpec {
                report_id: report_id.map(|id| id.to_string()),
                user_id: Uuid::nil().to_string(),
                report_type: ReportType::Profile,
                format: ReportFormat::Pdf,
                parameters: json!({}),
                ttl_seconds_after_finished: None,
                suspend: false,
            },
        );
        rr.metadata.namespace = Some("default".to_owned());
        rr.metadata.uid = Some(Uuid::new_v4().to_string());
        rr.metadata.resource_version = Some("7".to_owned());
        rr.metadata.generation = Some(1);
        rr.metadata.finalizers =
            (!finalizers.is_empty()).then(|| finalizers.iter().map(|f| (*f).to_owned()).collect());
        rr
    }

    /// Takes the next request, checks its method and path, returns its JSON body, and
    /// answers `response`.
    async fn expect(handle: &mut Handle, method: Method, path: &str, response: Value) -> Value {
        let next = tokio::time::timeout(Duration::from_secs(5), handle.next_request()).await;
        let Ok(Some((request, send))) = next else {
            panic!("expected {method} {path}, but the pass made no further call");
        };
        assert_eq!(request.method(), method, "{}", request.uri());
        assert_eq!(request.uri().path(), path);
        let body = request
            .into_body()
            .collect_bytes()
            .await
            .expect("the request body");
        send.send_response(
            Response::builder()
                .body(Body::from(serde_json::to_vec(&response).expect("JSON")))
                .expect("a response"),
        );
        if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).expect("a JSON body")
        }
    }

    /// Fails if the pass makes any further API call.
    async fn expect_no_more(handle: &mut Handle) {
        let next = tokio::time::timeout(Duration::from_millis(100), handle.next_request()).await;
        if let Ok(Some((request, _))) = next {
            panic!("unexpected call: {} {}", request.method(), request.uri());
        }
    }

    #[tokio::test]
    async fn a_new_request_first_gets_the_finalizer_and_nothing_else() {
        // `_dir` bound, not `..`: the temporary directory must outlive the test.
        let Fixture {
            ctx,
            mut handle,
            _dir,
        } = fixture().await;
        let rr = request(None, &[]);
        let with_finalizer = request(None, &[FINALIZER]);
        let pass = tokio::spawn(reconcile(Arc::new(rr), ctx));
        let patch = expect(
            &mut handle,
            Method::PATCH,
            &format!("{PATH}/r1"),
            serde_json::to_value(&with_finalizer).expect("JSON"),
        )
        .await;
        // A JSON patch that only succeeds on the version it was computed from.
        assert_eq!(
            patch,
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}
            ])
        );
        expect_no_more(&mut handle).await;
        let action = pass.await.expect("the pass").expect("reconciled");
        assert_eq!(action, Action::await_change());
    }

    #[tokio::test]
    async fn an_orphaned_request_gets_a_failed_status_then_a_warning_event() {
        // `_dir` bound, not `..`: the temporary directory must outlive the test.
        let Fixture {
            ctx,
            mut handle,
            _dir,
        } = fixture().await;
        let missing = Uuid::now_v7();
        let rr = request(Some(missing), &[FINALIZER]);
        let pass = tokio::spawn(reconcile(Arc::new(rr.clone()), ctx.clone()));
        let patch = expect(
            &mut handle,
            Method::PATCH,
            &format!("{PATH}/r1/status"),
            serde_json::to_value(&rr).expect("JSON"),
        )
        .await;
        let status = &patch["status"];
        assert_eq!(status["phase"], "Failed");
        assert_eq!(status["reportId"], Value::Null);
        assert_eq!(status["output"], Value::Null, "absent fields are cleared");
        let failed = status["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .find(|c| c["type"] == "Failed")
            .expect("a Failed condition");
        assert_eq!(failed["status"], "True");
        assert_eq!(failed["reason"], "ReportNotFound");
        assert!(
            failed["message"]
                .as_str()
                .is_some_and(|m| m.contains(&missing.to_string()))
        );
        let event = expect(
            &mut handle,
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/default/events",
            json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1"}, "eventTime": "2026-01-01T00:00:00.000000Z"}),
        )
        .await;
        assert_eq!(event["type"], "Warning");
        assert_eq!(event["reason"], "ReportNotFound");
        assert_eq!(event["regarding"]["name"], "r1");
        expect_no_more(&mut handle).await;
        let action = pass.await.expect("the pass").expect("reconciled");
        assert_eq!(action, Action::await_change());
        assert!(ctx.store.report(missing).await.expect("read").is_none());
    }

    #[tokio::test]
    async fn deleting_a_request_without_a_report_only_removes_the_finalizer() {
        // `_dir` bound, not `..`: the temporary directory must outlive the test.
        let Fixture {
            ctx,
            mut handle,
            _dir,
        } = fixture().await;
        let mut rr = request(Some(Uuid::now_v7()), &[FINALIZER]);
        rr.metadata.deletion_timestamp = rr.metadata.creation_timestamp.clone().or_else(|| {
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ))
        });
        let pass = reconcile(Arc::new(rr.clone()), ctx);
        let pass = tokio::spawn(async move {
            let outcome = pass.await;
            eprintln!("the pass returned {outcome:?}");
            outcome
        });
        let patch = expect(
            &mut handle,
            Method::PATCH,
            &format!("{PATH}/r1"),
            serde_json::to_value(&rr).expect("JSON"),
        )
        .await;
        assert_eq!(
            patch,
            json!([
                {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
                {"op": "remove", "path": "/metadata/finalizers/0"}
            ])
        );
        expect_no_more(&mut handle).await;
        pass.await.expect("the pass").expect("reconciled");
    }

    #[test]
    fn backoff_doubles_per_object_up_to_five_minutes_and_resets() {
        let backoff = Backoff::default();
        let key = ObjectRef::new("r1").within("default");
        let other = ObjectRef::new("r2").within("default");
        let delays: Vec<u64> = (0..12).map(|_| backoff.next(&key).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff.next(&other).as_secs(), 1);
        backoff.reset(&key);
        assert_eq!(backoff.next(&key).as_secs(), 1);
    }
}
