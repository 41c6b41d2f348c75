//! Kubernetes Events about a `ReportRequest`: which Event a phase change deserves
//! ([`transition`]) and publishing one, best effort ([`publish`]).

use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use quire_core::ReportStatus;
use quire_core::model::Report;
use quire_crds::ReportRequest;
use quire_crds::report_request::Phase;

use super::Context;

/// The Event a phase change deserves.
pub(super) fn transition(
    previous: Option<Phase>,
    report: &Report,
) -> Option<(EventType, &'static str, String)> {
    let phase = Phase::from(report.status);
    if previous == Some(phase) {
        return None;
    }
    Some(match report.status {
        ReportStatus::Pending => return None,
        ReportStatus::Queued if previous == Some(Phase::Running) => (
            EventType::Warning,
            "Retrying",
            format!(
                "attempt {} failed and will be retried: {}",
                report.attempts,
                report
                    .error_message
                    .as_deref()
                    .unwrap_or("no error recorded")
            ),
        ),
        ReportStatus::Queued => (
            EventType::Normal,
            "Dispatched",
            "sent to the work queue".to_owned(),
        ),
        ReportStatus::Running => (
            EventType::Normal,
            "Started",
            format!("attempt {} started", report.attempts),
        ),
        ReportStatus::Completed => (
            EventType::Normal,
            "Completed",
            format!(
                "stored {} bytes at {}",
                report.output_size.unwrap_or_default(),
                report.output_file_path.as_deref().unwrap_or("(unknown)")
            ),
        ),
        ReportStatus::Failed => (
            EventType::Warning,
            "Failed",
            report
                .error_message
                .clone()
                .unwrap_or_else(|| "the report failed".to_owned()),
        ),
        ReportStatus::Cancelled => (
            EventType::Normal,
            "Cancelled",
            "the report was cancelled before it finished".to_owned(),
        ),
    })
}

/// Publishes an Event about `rr`. Events are best effort: a failure is logged, not fatal.
pub(super) async fn publish(
    ctx: &Context,
    rr: &ReportRequest,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &rr.object_ref(&())).await {
        tracing::warn!(name = %rr.name_any(), reason, error = %e, "could not publish an event");
    }
}
