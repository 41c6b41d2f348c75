//! The `ReportRequest` custom resource (`quire.dev/v1alpha1`): every report, as Kubernetes
//! sees it. The API server creates one per report in cluster mode; the controller reconciles
//! it (dispatches the work once, reflects the database's view into `status`), and
//! `kubectl get reportrequests` shows each report.
//!
//! Spec fields that identify the report are immutable (CEL `self == oldSelf`), so a request
//! cannot be turned into another report after the fact; `suspend` and
//! `ttlSecondsAfterFinished` may change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ReportFormat, ReportStatus, ReportType};

/// Desired state: which report, for whom.
// Each `printcolumn(...)` repeats the same keys, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "quire.dev",
    version = "v1alpha1",
    kind = "ReportRequest",
    namespaced,
    status = "ReportRequestStatus",
    shortname = "rr",
    doc = "A request for one Quire report, reconciled by the Quire controller.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.reportType"),
    printcolumn(name = "Format", type_ = "string", json_path = ".spec.format"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Progress", type_ = "integer", json_path = ".status.progress"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "User",
        type_ = "string",
        json_path = ".spec.userId",
        priority = 1
    ),
    printcolumn(
        name = "Attempts",
        type_ = "integer",
        json_path = ".status.attempts",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ReportRequestSpec {
    /// The report's id in Quire's database (a UUID). Set by the API server; absent on a
    /// request created directly with kubectl, which the controller then adopts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    ))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "reportId is immutable"}]))]
    pub report_id: Option<String>,
    /// The requesting user's id (a UUID).
    #[schemars(regex(
        pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    ))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "userId is immutable"}]))]
    pub user_id: String,
    /// What the report contains.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "reportType is immutable"}]))]
    pub report_type: ReportType,
    /// The file format it is rendered to.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "format is immutable"}]))]
    pub format: ReportFormat,
    /// Parameters of the report type (validated by the controller like `POST /reports`).
    #[serde(default = "empty_object")]
    #[schemars(schema_with = "free_form_object")]
    pub parameters: Value,
    /// Delete the resource (and its output) this many seconds after it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i64>,
    /// Set to true to cancel the report if it has not finished.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// `parameters` is any JSON object: a structural schema that keeps unknown fields.
fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Observed state, reflected from Quire's database by the controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportRequestStatus {
    /// The report's id in Quire's database: `spec.reportId`, or the id the controller gave
    /// the report it created for a request made directly with kubectl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// 0–100.
    #[serde(default)]
    pub progress: i32,
    #[serde(default)]
    pub attempts: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// A human-readable note: the error of a failed report, the reason of a rejected one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Where the finished output is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputReference>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted`, `Dispatched`, `Ready` (finished successfully: `kubectl wait
    /// --for=condition=Ready`) and `Failed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A stored output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputReference {
    /// Key in output storage.
    pub key: String,
    /// File path or `s3://bucket/key`.
    pub location: String,
    pub size: i64,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
}

/// `status.phase`: the report's status in Kubernetes spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    Pending,
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl Phase {
    /// True once nothing more will happen to the report.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

impl From<ReportStatus> for Phase {
    fn from(status: ReportStatus) -> Self {
        match status {
            ReportStatus::Pending => Self::Pending,
            ReportStatus::Queued => Self::Queued,
            ReportStatus::Running => Self::Running,
            ReportStatus::Completed => Self::Completed,
            ReportStatus::Failed => Self::Failed,
            ReportStatus::Cancelled => Self::Cancelled,
        }
    }
}

/// Condition types the controller maintains.
pub mod condition {
    /// The request was validated and has a report row.
    pub const ACCEPTED: &str = "Accepted";
    /// The work was handed to the work queue.
    pub const DISPATCHED: &str = "Dispatched";
    /// The report completed and its output is downloadable.
    pub const READY: &str = "Ready";
    /// The report failed for good (or the request was invalid).
    pub const FAILED: &str = "Failed";
}

/// The finalizer the controller puts on every `ReportRequest`: deleting one cancels its
/// unfinished work and deletes its stored output before the resource goes.
pub const FINALIZER: &str = "quire.dev/cleanup";

/// Labels the API server puts on the `ReportRequest`s it creates.
pub mod labels {
    /// The requesting user's id.
    pub const USER_ID: &str = "quire.dev/user-id";
    /// `profile`, `activity` or `dataset`.
    pub const REPORT_TYPE: &str = "quire.dev/report-type";
}

/// Annotations on `ReportRequest`s.
pub mod annotations {
    /// `api` on the requests the API server creates: the report's output lives as long as
    /// the API's retention says (`QUIRE_OUTPUT_RETENTION`), so the controller deletes such
    /// a request at its `ttlSecondsAfterFinished` without deleting the output. Deleting the
    /// request any other way (kubectl) still deletes the output.
    pub const OUTPUT_RETENTION: &str = "quire.dev/output-retention";
    /// The W3C `traceparent` of the API request that created the report.
    pub const TRACEPARENT: &str = "quire.dev/traceparent";
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    use super::*;

    #[test]
    fn the_crd_names_group_version_kind_and_short_name() {
        let crd = ReportRequest::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("reportrequests.quire.dev")
        );
        assert_eq!(crd.spec.group, "quire.dev");
        assert_eq!(crd.spec.names.kind, "ReportRequest");
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&["rr".to_owned()][..])
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
    }

    #[test]
    fn printer_columns_show_type_format_phase_progress_age_and_wide_user_attempts() {
        let crd = ReportRequest::crd();
        let columns = crd.spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap_or_default();
        let names: Vec<(&str, i32)> = columns
            .iter()
            .map(|c| (c.name.as_str(), c.priority.unwrap_or(0)))
            .collect();
        assert_eq!(
            names,
            [
                ("Type", 0),
                ("Format", 0),
                ("Phase", 0),
                ("Progress", 0),
                ("Age", 0),
                ("User", 1),
                ("Attempts", 1)
            ]
        );
    }

    #[test]
    fn identity_fields_are_immutable_and_parameters_keep_unknown_fields() {
        let schema = serde_json::to_value(ReportRequest::crd()).unwrap();
        let spec = &schema["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"];
        for field in ["reportId", "userId", "reportType", "format"] {
            assert_eq!(
                spec[field]["x-kubernetes-validations"][0]["rule"], "self == oldSelf",
                "{field}"
            );
        }
        assert_eq!(
            spec["parameters"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
        assert_eq!(
            spec["reportType"]["enum"],
            serde_json::json!(["profile", "activity", "dataset"])
        );
    }

    #[test]
    fn a_kubectl_style_manifest_parses() {
        let rr: ReportRequest = serde_json::from_value(serde_json::json!({
            "apiVersion": "quire.dev/v1alpha1",
            "kind": "ReportRequest",
            "metadata": {"name": "ada-profile", "namespace": "default"},
            "spec": {"userId": "01a1ff2b-b9b1-7396-94ba-d136c07eec06", "reportType": "profile", "format": "pdf"}
        }))
        .unwrap();
        assert_eq!(rr.spec.report_id, None);
        assert_eq!(rr.spec.parameters, serde_json::json!({}));
        assert!(!rr.spec.suspend);
    }
}
