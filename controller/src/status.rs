//! What a `ReportRequest`'s status says: pure functions from the database's view of a
//! report (or the reason a request was refused) to [`ReportRequestStatus`], so the
//! reconciler only compares and writes.
//!
//! Conditions follow `meta.SetStatusCondition`: `lastTransitionTime` moves only when a
//! condition's `status` flips, so an unchanged report produces an identical status and the
//! reconciler writes nothing.

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use quire_core::ReportStatus;
use quire_core::model::Report;
use quire_crds::ReportRequest;
use quire_crds::report_request::{OutputReference, Phase, ReportRequestStatus, condition};

/// Why a request was refused, as the `reason` of its `Failed` condition.
pub mod reason {
    /// The spec cannot become a report (unknown user, unsupported format, bad parameters).
    pub const INVALID_REQUEST: &str = "InvalidRequest";
    /// `spec.reportId` names no report in the database (an orphaned resource).
    pub const REPORT_NOT_FOUND: &str = "ReportNotFound";
}

/// The status of a request backed by `report`.
pub fn reflect(rr: &ReportRequest, report: &Report, now: DateTime<Utc>) -> ReportRequestStatus {
    let previous = rr.status.clone().unwrap_or_default();
    let generation = rr.metadata.generation;
    let mut conditions = previous.conditions;
    let mut set = |type_: &str, status: bool, reason: &str, message: String| {
        set_condition(
            &mut conditions,
            type_,
            status,
            reason,
            message,
            generation,
            now,
        );
    };

    set(
        condition::ACCEPTED,
        true,
        "Recorded",
        format!("report {} is recorded in Quire's database", report.id),
    );
    match report.status {
        ReportStatus::Pending => set(
            condition::DISPATCHED,
            false,
            "Pending",
            "waiting to be sent to the work queue".to_owned(),
        ),
        ReportStatus::Cancelled if report.queued_at.is_none() => set(
            condition::DISPATCHED,
            false,
            "Cancelled",
            "cancelled before it was sent to the work queue".to_owned(),
        ),
        _ => set(
            condition::DISPATCHED,
            true,
            "Queued",
            "sent to the work queue".to_owned(),
        ),
    }
    let (ready, ready_reason, ready_message) = match report.status {
        ReportStatus::Completed if report.output_deleted_at.is_some() => (
            false,
            "OutputDeleted",
            "the report completed but its output was deleted".to_owned(),
        ),
        ReportStatus::Completed => (
            true,
            "Completed",
            "the output is stored and downloadable".to_owned(),
        ),
        ReportStatus::Failed => (
            false,
            "Failed",
            "the report failed; see the Failed condition".to_owned(),
        ),
        ReportStatus::Cancelled => (false, "Cancelled", "the report was cancelled".to_owned()),
        ReportStatus::Pending => (false, "Pending", "the report is pending".to_owned()),
        ReportStatus::Queued => (false, "Queued", "waiting for a worker".to_owned()),
        ReportStatus::Running => (
            false,
            "Running",
            format!("rendering, {}% done", report.progress),
        ),
    };
    set(condition::READY, ready, ready_reason, ready_message);
    if report.status == ReportStatus::Failed {
        let message = report
            .error_message
            .clone()
            .unwrap_or_else(|| "the report failed".to_owned());
        set(condition::FAILED, true, "ReportFailed", message);
    } else {
        set(
            condition::FAILED,
            false,
            "NotFailed",
            "no attempt has failed for good".to_owned(),
        );
    }

    let finished_at = report
        .completed_at
        .or(report.failed_at)
        .or(report.cancelled_at);
    let output = match (&report.output_key, report.output_deleted_at) {
        (Some(key), None) if report.status == ReportStatus::Completed => Some(OutputReference {
            key: key.clone(),
            location: report.output_file_path.clone().unwrap_or_default(),
            size: report.output_size.unwrap_or_default(),
            sha256: report.output_checksum.clone().unwrap_or_default(),
        }),
        _ => None,
    };
    ReportRequestStatus {
        report_id: Some(report.id.to_string()),
        phase: Some(Phase::from(report.status)),
        progress: report.progress,
        attempts: report.attempts,
        started_at: report.started_at.map(rfc3339),
        completed_at: finished_at.map(rfc3339),
        message: report.error_message.clone(),
        output,
        observed_generation: generation,
        conditions,
    }
}

/// The status of a request that cannot become a report: `Failed` with `reason`.
pub fn rejected(
    rr: &ReportRequest,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) -> ReportRequestStatus {
    let previous = rr.status.clone().unwrap_or_default();
    let generation = rr.metadata.generation;
    let mut conditions = previous.conditions;
    for (type_, status) in [
        (condition::ACCEPTED, false),
        (condition::DISPATCHED, false),
        (condition::READY, false),
        (condition::FAILED, true),
    ] {
        set_condition(
            &mut conditions,
            type_,
            status,
            reason,
            message.to_owned(),
            generation,
            now,
        );
    }
    ReportRequestStatus {
        report_id: None,
        phase: Some(Phase::Failed),
        progress: 0,
        attempts: 0,
        started_at: None,
        // Kept from the first refusal, so a TTL counts from then.
        completed_at: previous.completed_at.or_else(|| Some(rfc3339(now))),
        message: Some(message.to_owned()),
        output: None,
        observed_generation: generation,
        conditions,
    }
}

/// When a finished request with `ttlSecondsAfterFinished` is due for deletion.
pub fn expires_at(rr: &ReportRequest, status: &ReportRequestStatus) -> Option<DateTime<Utc>> {
    let ttl = rr.spec.ttl_seconds_after_finished?;
    if !status.phase.is_some_and(Phase::is_terminal) {
        return None;
    }
    let finished = DateTime::parse_from_rfc3339(status.completed_at.as_deref()?).ok()?;
    Some(finished.with_timezone(&Utc) + chrono::Duration::seconds(ttl))
}

/// Sets one condition the way `meta.SetStatusCondition` does.
fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    observed_generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    let position = conditions.iter().position(|c| c.type_ == type_);
    let last_transition_time = match position.map(|i| &conditions[i]) {
        Some(existing) if existing.status == status => existing.last_transition_time.clone(),
        _ => time(now),
    };
    let condition = Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        observed_generation,
        last_transition_time,
    };
    match position {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// A condition time, at the second precision the API server keeps.
fn time(at: DateTime<Utc>) -> Time {
    Time(Timestamp::from_second(at.timestamp()).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use quire_core::{ReportFormat, ReportType};
    use quire_crds::ReportRequestSpec;
    use uuid::Uuid;

    use super::*;

    fn request() -> ReportRequest {
        let mut rr = ReportRequest::new(
            "r",
            ReportRequestSpec {
                report_id: None,
                user_id: Uuid::nil().to_string(),
                report_type: ReportType::Profile,
                format: ReportFormat::Pdf,
                parameters: serde_json::json!({}),
                ttl_seconds_after_finished: Some(60),
                suspend: false,
            },
        );
        rr.metadata.generation = Some(3);
        rr
    }

    fn report(status: ReportStatus, at: DateTime<Utc>) -> Report {
        Report {
            id: Uuid::now_v7(),
            user_id: Uuid::nil(),
            report_type: ReportType::Profile,
            format: ReportFormat::Pdf,
            parameters: serde_json::json!({}),
            status,
            progress: 40,
            attempts: 1,
            error_message: (status == ReportStatus::Failed).then(|| "boom".to_owned()),
            created_at: at,
            queued_at: Some(at),
            started_at: Some(at),
            completed_at: (status == ReportStatus::Completed).then_some(at),
            failed_at: (status == ReportStatus::Failed).then_some(at),
            cancelled_at: None,
            updated_at: at,
            lease_owner: None,
            lease_expires_at: None,
            idempotency_key: None,
            request_fingerprint: None,
            output_key: Some("u/r.pdf".to_owned()),
            output_file_path: Some("s3://b/u/r.pdf".to_owned()),
            output_size: Some(10),
            output_checksum: Some("ab".to_owned()),
            download_url: None,
            download_url_expires_at: None,
            output_deleted_at: None,
            available_at: None,
            traceparent: None,
        }
    }

    fn condition<'a>(status: &'a ReportRequestStatus, type_: &str) -> &'a Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} condition"))
    }

    #[test]
    fn a_running_report_is_accepted_dispatched_and_not_ready() {
        let now = Utc::now();
        let status = reflect(&request(), &report(ReportStatus::Running, now), now);
        assert_eq!(status.phase, Some(Phase::Running));
        assert_eq!((status.progress, status.attempts), (40, 1));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(condition(&status, condition::ACCEPTED).status, "True");
        assert_eq!(condition(&status, condition::DISPATCHED).status, "True");
        assert_eq!(condition(&status, condition::READY).reason, "Running");
        assert_eq!(condition(&status, condition::FAILED).status, "False");
        assert_eq!(status.output, None);
    }

    #[test]
    fn transition_times_move_only_when_a_condition_flips() {
        let start = Utc::now() - chrono::Duration::minutes(5);
        let mut rr = request();
        let mut row = report(ReportStatus::Running, start);
        rr.status = Some(reflect(&rr, &row, start));
        let now = Utc::now();
        row.status = ReportStatus::Completed;
        row.completed_at = Some(now);
        let done = reflect(&rr, &row, now);
        assert_eq!(
            condition(&done, condition::ACCEPTED).last_transition_time,
            time(start)
        );
        assert_eq!(
            condition(&done, condition::READY).last_transition_time,
            time(now)
        );
        assert_eq!(condition(&done, condition::READY).status, "True");
        assert_eq!(done.output.as_ref().map(|o| o.size), Some(10));
        // Reflecting the same report again, later, changes nothing: no write.
        rr.status = Some(done.clone());
        let later = now + chrono::Duration::minutes(1);
        assert_eq!(reflect(&rr, &row, later), done);
    }

    #[test]
    fn failures_carry_the_error_and_rejections_their_reason() {
        let now = Utc::now();
        let failed = reflect(&request(), &report(ReportStatus::Failed, now), now);
        assert_eq!(condition(&failed, condition::FAILED).status, "True");
        assert_eq!(condition(&failed, condition::FAILED).message, "boom");
        assert_eq!(failed.message.as_deref(), Some("boom"));

        let rejected = rejected(&request(), reason::INVALID_REQUEST, "no such user", now);
        assert_eq!(rejected.phase, Some(Phase::Failed));
        assert_eq!(
            condition(&rejected, condition::FAILED).reason,
            "InvalidRequest"
        );
        assert_eq!(condition(&rejected, condition::ACCEPTED).status, "False");
    }

    #[test]
    fn the_ttl_counts_from_the_finish() {
        let finished = Utc::now() - chrono::Duration::seconds(30);
        let rr = request();
        let status = reflect(&rr, &report(ReportStatus::Completed, finished), finished);
        let at = expires_at(&rr, &status).unwrap();
        assert_eq!(at.timestamp(), finished.timestamp() + 60);
        let running = reflect(&rr, &report(ReportStatus::Running, finished), finished);
        assert_eq!(expires_at(&rr, &running), None);
    }
}
