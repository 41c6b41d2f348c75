//! Which report a request stands for: the row `spec.reportId` names, or — for a request
//! made with kubectl — a row the controller creates (adoption) under an id derived from the
//! resource, so every pass and every replica finds the same one.

use kube::runtime::events::EventType;
use quire_core::model::{Inserted, InvalidReport, NewReport, Report};
use quire_crds::ReportRequest;
use uuid::Uuid;

use super::events::publish;
use super::{Context, Error};
use crate::status::reason;

/// The report a request stands for, or why it stands for none.
pub(super) enum Resolved {
    Report(Box<Report>),
    Rejected {
        reason: &'static str,
        message: String,
    },
}

/// Finds (or, for a kubectl-created request, creates) the report row of a request.
pub(super) async fn resolve(rr: &ReportRequest, ctx: &Context) -> Result<Resolved, Error> {
    let invalid = |message: String| Resolved::Rejected {
        reason: reason::INVALID_REQUEST,
        message,
    };
    let Ok(user_id) = Uuid::parse_str(&rr.spec.user_id) else {
        return Ok(invalid(format!(
            "spec.userId {:?} is not a UUID",
            rr.spec.user_id
        )));
    };
    if let Some(raw) = &rr.spec.report_id {
        let Ok(id) = Uuid::parse_str(raw) else {
            return Ok(invalid(format!("spec.reportId {raw:?} is not a UUID")));
        };
        return Ok(match ctx.store.report(id).await? {
            None => Resolved::Rejected {
                reason: reason::REPORT_NOT_FOUND,
                message: format!(
                    "report {id} does not exist in Quire's database: the request was never \
                     recorded (or its row was deleted)"
                ),
            },
            Some(report) => match mismatch(rr, user_id, &report) {
                Some(message) => invalid(message),
                None => Resolved::Report(Box::new(report)),
            },
        });
    }
    adopt(rr, user_id, ctx).await
}

/// A request made with kubectl: validated like `POST /reports` and given a report row for
/// an existing user, under [`adopted_report_id`] so a repeated pass finds the same row.
async fn adopt(rr: &ReportRequest, user_id: Uuid, ctx: &Context) -> Result<Resolved, Error> {
    let invalid = |message: String| Resolved::Rejected {
        reason: reason::INVALID_REQUEST,
        message,
    };
    let Some(id) = adopted_report_id(rr) else {
        return Ok(invalid(
            "the resource has no uid or creation time to derive a report id from".to_owned(),
        ));
    };
    if let Some(report) = ctx.store.report(id).await? {
        return Ok(match mismatch(rr, user_id, &report) {
            Some(message) => invalid(message),
            None => Resolved::Report(Box::new(report)),
        });
    }
    let spec = &rr.spec;
    let new_report =
        match NewReport::new(id, user_id, spec.report_type, spec.format, &spec.parameters) {
            Ok(new_report) => new_report,
            Err(InvalidReport::Format(message)) => return Ok(invalid(message)),
            Err(InvalidReport::Parameters(e)) => {
                return Ok(invalid(format!("spec.parameters: {e}")));
            }
        };
    if ctx.store.user(user_id).await?.is_none() {
        return Ok(invalid(format!("no Quire user has id {user_id}")));
    }
    let inserted = ctx.store.insert_report(new_report).await;
    let report = match inserted {
        Ok(Inserted::Created(report) | Inserted::Existing(report)) => report,
        // The user was deleted between the check and the insert.
        Err(quire_core::Error::UnknownUser(_)) => {
            return Ok(invalid(format!("no Quire user has id {user_id}")));
        }
        Err(e) => return Err(e.into()),
    };
    let note = format!("created report {id} for a request made without the API");
    publish(ctx, rr, EventType::Normal, "Adopted", "Adopt", note).await;
    Ok(Resolved::Report(Box::new(report)))
}

/// Why `report` is not the report `rr` describes, if it is not.
fn mismatch(rr: &ReportRequest, user_id: Uuid, report: &Report) -> Option<String> {
    let matches = report.user_id == user_id
        && report.report_type == rr.spec.report_type
        && report.format == rr.spec.format;
    (!matches).then(|| {
        format!(
            "report {} belongs to another user or has another type or format than the spec says",
            report.id
        )
    })
}

/// The report id of a request made with kubectl: a UUIDv7 whose time is the resource's
/// creation and whose remaining bits come from its uid, so ids of adopted reports sort by
/// creation like all others and every pass (and every replica) derives the same one.
pub fn adopted_report_id(rr: &ReportRequest) -> Option<Uuid> {
    let uid = Uuid::parse_str(rr.metadata.uid.as_deref()?).ok()?;
    let created = rr.metadata.creation_timestamp.as_ref()?.0.as_millisecond();
    let mut bits = [0u8; 10];
    bits.copy_from_slice(&uid.as_bytes()[6..]);
    Some(uuid::Builder::from_unix_timestamp_millis(u64::try_from(created).ok()?, &bits).into_uuid())
}

/// The report a request being deleted owns, if it has one: by `spec.reportId`, the id in
/// its status, or the id adoption derives; and only if it is the report the spec describes.
pub(super) async fn owned_report(
    rr: &ReportRequest,
    ctx: &Context,
) -> Result<Option<Report>, Error> {
    let Ok(user_id) = Uuid::parse_str(&rr.spec.user_id) else {
        return Ok(None);
    };
    let id = rr
        .spec
        .report_id
        .as_deref()
        .or(rr.status.as_ref().and_then(|s| s.report_id.as_deref()))
        .and_then(|raw| Uuid::parse_str(raw).ok())
        .or_else(|| adopted_report_id(rr));
    let Some(id) = id else { return Ok(None) };
    Ok(ctx
        .store
        .report(id)
        .await?
        .filter(|report| mismatch(rr, user_id, report).is_none()))
}
