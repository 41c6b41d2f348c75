//! Cluster mode (`QUIRE_ORCHESTRATOR=kubernetes`): every report is also a `ReportRequest`
//! custom resource, and the controller, not the API server, dispatches it.
//!
//! A resource is named after its report's id, so the controller can map a database
//! notification to it, and so registering a report twice is harmless: the second create
//! answers `AlreadyExists`, which counts as done. That is what lets `POST /reports` heal a
//! crash between writing the row and creating the resource on an idempotent retry.
//!
//! [`Kubernetes`] is this mode's [`Orchestrator`]: row and resource are one step, so when
//! the resource cannot be created the row is deleted again and the client hears 503.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use quire_core::ReportStatus;
use quire_core::model::Report;
use quire_core::orchestrator::Orchestrator;
use quire_core::store::RecordStore;
use quire_crds::{ReportRequest, ReportRequestSpec, report_request};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The field manager of every write the API server makes, so `managedFields` tell the
/// controller's writes from ours.
pub const FIELD_MANAGER: &str = "quire-api-server";
/// Label with the requesting user's id: `kubectl get rr -l quire.dev/user-id=…`.
pub const USER_ID_LABEL: &str = "quire.dev/user-id";
/// Label with the report type (`profile`, `activity`, `dataset`).
pub const REPORT_TYPE_LABEL: &str = "quire.dev/report-type";
/// The standard label naming who created the resource.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// How long one call to the Kubernetes API may take. The client is waiting for its `202`;
/// kube's own timeouts are minutes long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `ReportRequest`s of one namespace, where the API server registers reports.
#[derive(Clone)]
pub struct ReportRequests {
    api: Api<ReportRequest>,
    namespace: String,
    timeout: Duration,
    ttl_after_finished: Option<Duration>,
}

impl ReportRequests {
    /// Registers reports in `namespace`, or in the client's default namespace (the pod's
    /// own in-cluster, the kubeconfig context's, else `default`).
    pub fn new(client: Client, namespace: Option<&str>) -> Self {
        let namespace = namespace
            .unwrap_or_else(|| client.default_namespace())
            .to_owned();
        Self {
            api: Api::namespaced(client, &namespace),
            namespace,
            timeout: DEFAULT_TIMEOUT,
            ttl_after_finished: None,
        }
    }

    /// Gives every request created from now on `ttlSecondsAfterFinished` (whole seconds,
    /// rounded up), so finished ones leave etcd; `None` keeps them until deleted.
    pub fn with_ttl_after_finished(mut self, ttl: Option<Duration>) -> Self {
        self.ttl_after_finished = ttl;
        self
    }

    /// Bounds each call to the Kubernetes API by `timeout` instead of [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Creates the report's `ReportRequest`. A 409 (`AlreadyExists`: the name is taken, and
    /// names are report ids) is success.
    pub async fn ensure(&self, report: &Report) -> Result<(), RegistrationError> {
        let params = PostParams {
            dry_run: false,
            field_manager: Some(FIELD_MANAGER.to_owned()),
        };
        let request = report_request(report, self.ttl_after_finished);
        match self.bounded(self.api.create(&params, &request)).await {
            Ok(_) => Ok(()),
            Err(RegistrationError::Kube(kube::Error::Api(status))) if status.code == 409 => {
                tracing::debug!(report_id = %report.id, "the ReportRequest already exists");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes the report's `ReportRequest` if there is one: the undo of an [`ensure`]
    /// whose outcome is unknown (a timeout or a server error may still have created it).
    ///
    /// [`ensure`]: Self::ensure
    pub async fn remove(&self, id: Uuid) -> Result<(), RegistrationError> {
        match self
            .bounded(
                self.api
                    .delete(&resource_name(id), &DeleteParams::default()),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(RegistrationError::Kube(kube::Error::Api(status))) if status.is_not_found() => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = kube::Result<T>>,
    ) -> Result<T, RegistrationError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(RegistrationError::TimedOut(self.timeout)),
        }
    }
}

/// Why a report could not be registered. Never contains credentials: kube's errors carry
/// the API's `Status` or a transport error, not the request.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("the Kubernetes API failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("the Kubernetes API did not answer within {0:?}")]
    TimedOut(Duration),
}

impl RegistrationError {
    /// False only when the API server certainly did not create anything: it answered with
    /// a client error (invalid, forbidden, …). A timeout, a server error or a broken
    /// connection leave the outcome unknown.
    pub fn may_have_created(&self) -> bool {
        match self {
            Self::Kube(kube::Error::Api(status)) => !(400..500).contains(&status.code),
            _ => true,
        }
    }
}

/// The name of a report's `ReportRequest`: its id, lowercase and hyphenated.
pub fn resource_name(id: Uuid) -> String {
    id.to_string()
}

/// The `ReportRequest` that stands for `report`: named after it, labelled with its user and
/// type, carrying the canonical parameters the API validated, the TTL, and annotations
/// saying that its output follows the API's retention and which trace created it.
pub fn report_request(report: &Report, ttl_after_finished: Option<Duration>) -> ReportRequest {
    let labels = BTreeMap::from([
        (USER_ID_LABEL.to_owned(), report.user_id.to_string()),
        (
            REPORT_TYPE_LABEL.to_owned(),
            report.report_type.as_str().to_owned(),
        ),
        (MANAGED_BY_LABEL.to_owned(), FIELD_MANAGER.to_owned()),
    ]);
    let mut request = ReportRequest::new(
        &resource_name(report.id),
        ReportRequestSpec {
            report_id: Some(report.id.to_string()),
            user_id: report.user_id.to_string(),
            report_type: report.report_type,
            format: report.format,
            parameters: report.parameters.clone(),
            ttl_seconds_after_finished: ttl_after_finished.map(|ttl| {
                let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
                i64::try_from(seconds).unwrap_or(i64::MAX)
            }),
            suspend: false,
        },
    );
    request.metadata.labels = Some(labels);
    let mut annotations = BTreeMap::from([(
        report_request::annotations::OUTPUT_RETENTION.to_owned(),
        "api".to_owned(),
    )]);
    if let Some(traceparent) = &report.traceparent {
        annotations.insert(
            report_request::annotations::TRACEPARENT.to_owned(),
            traceparent.clone(),
        );
    }
    request.metadata.annotations = Some(annotations);
    request
}

/// Cluster mode's [`Orchestrator`]: a report is in hand once its `ReportRequest` exists.
pub struct Kubernetes {
    store: Arc<dyn RecordStore>,
    requests: ReportRequests,
}

impl Kubernetes {
    pub fn new(store: Arc<dyn RecordStore>, requests: ReportRequests) -> Self {
        Self { store, requests }
    }

    pub fn report_requests(&self) -> &ReportRequests {
        &self.requests
    }
}

/// Why a report was refused: the cluster could not be reached and nothing was created.
const NOT_CREATED: &str =
    "the report could not be registered with the cluster and was not created; try again shortly";
/// Why a replayed report was refused: it exists, but its resource could not be ensured.
const NOT_REGISTERED: &str =
    "the report could not be registered with the cluster; try again shortly";

#[async_trait]
impl Orchestrator for Kubernetes {
    /// Registers the report as a `ReportRequest`, or deletes its row again and fails with
    /// [`quire_core::Error::Unavailable`], so no report exists that the controller will
    /// never see.
    ///
    /// Runs as its own task: a client hanging up mid-request must not cancel the step between
    /// the row and its resource (nothing else would ever register or remove that row).
    async fn accept(&self, report: Report) -> quire_core::Result<Report> {
        let (store, requests) = (self.store.clone(), self.requests.clone());
        let task = tokio::spawn(async move {
            let Err(e) = requests.ensure(&report).await else {
                tracing::info!(
                    report_id = %report.id,
                    namespace = requests.namespace(),
                    "ReportRequest created"
                );
                return Ok(report);
            };
            tracing::error!(
                report_id = %report.id,
                namespace = requests.namespace(),
                error = %e,
                "could not create the ReportRequest; deleting the report"
            );
            if let Err(e) = store.delete_report(report.id).await {
                // Left `pending` with no resource: an idempotent retry of the request heals it.
                tracing::error!(
                    report_id = %report.id,
                    error = %e,
                    "could not delete the unregistered report"
                );
            }
            if e.may_have_created() {
                // A timeout or a server error may still have created it; best effort, after
                // the answer, so the client is not kept waiting on a struggling API server.
                let id = report.id;
                tokio::spawn(async move {
                    if let Err(e) = requests.remove(id).await {
                        tracing::warn!(
                            report_id = %id,
                            error = %e,
                            "could not remove a possibly created ReportRequest"
                        );
                    }
                });
            }
            Err(quire_core::Error::Unavailable(NOT_CREATED.to_owned()))
        });
        task.await
            .map_err(|e| quire_core::Error::Unavailable(format!("{NOT_CREATED} ({e})")))?
    }

    /// A report still `pending` may have lost its `ReportRequest` to a crash right after the
    /// insert, so create it (again). The row stays either way: it was acknowledged before.
    async fn ensure(&self, report: &Report) -> quire_core::Result<()> {
        if report.status != ReportStatus::Pending {
            return Ok(());
        }
        self.requests.ensure(report).await.map_err(|e| {
            tracing::error!(
                report_id = %report.id,
                namespace = self.requests.namespace(),
                error = %e,
                "could not ensure the ReportRequest of a replayed report"
            );
            quire_core::Error::Unavailable(NOT_REGISTERED.to_owned())
        })
    }

    /// Nothing: the controller dispatches, sweeps and rescues.
    async fn run(&self, _shutdown: CancellationToken) {}
}
