//! How a report is shown: [`ReportView`], with a download link for completed reports.

use chrono::{DateTime, Utc};
use quire_core::model::Report;
use quire_core::storage::{output_key, output_meta};
use quire_core::{ReportFormat, ReportStatus, ReportType};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::http::ApiError;
use crate::state::AppState;

/// A report as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReportView {
    pub id: Uuid,
    pub report_type: ReportType,
    pub format: ReportFormat,
    /// The parameters with their defaults filled in.
    #[schema(value_type = Object)]
    pub parameters: Value,
    pub status: ReportStatus,
    /// 0–100.
    #[schema(minimum = 0, maximum = 100)]
    pub progress: i32,
    /// How many times a worker has taken it up.
    pub attempts: i32,
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Only for completed reports.
    pub download_url: Option<String>,
    pub download_url_expires_at: Option<DateTime<Utc>>,
    /// When the output was deleted (its `ReportRequest` was deleted or expired in cluster
    /// mode); the report then has no download link.
    pub output_deleted_at: Option<DateTime<Utc>>,
}

/// The API view of a report; for a completed one, with a download link valid for at least
/// half the configured TTL (degrading to none if storage cannot sign one right now).
pub async fn view(state: &AppState, report: Report) -> ReportView {
    let link = if report.output_deleted_at.is_some() {
        None
    } else {
        download_link(state, &report).await.unwrap_or_else(|e| {
            tracing::warn!(report_id = %report.id, error = %e, "could not sign a download link");
            None
        })
    };
    let (download_url, download_url_expires_at) = link.unzip();
    ReportView {
        id: report.id,
        report_type: report.report_type,
        format: report.format,
        parameters: report.parameters,
        status: report.status,
        progress: report.progress,
        attempts: report.attempts,
        error_message: report.error_message,
        created_at: report.created_at,
        started_at: report.started_at,
        completed_at: report.completed_at,
        failed_at: report.failed_at,
        cancelled_at: report.cancelled_at,
        download_url,
        download_url_expires_at,
        output_deleted_at: report.output_deleted_at,
    }
}

/// A download link for a completed report (`None` otherwise): the stored one while it is
/// good for at least half the TTL and still points at the storage as configured now (the
/// server may have moved), else a freshly signed one, which is then stored. 410 once the
/// output was deleted.
pub async fn download_link(
    state: &AppState,
    report: &Report,
) -> Result<Option<(String, DateTime<Utc>)>, ApiError> {
    if report.status != ReportStatus::Completed {
        return Ok(None);
    }
    if let Some(deleted_at) = report.output_deleted_at {
        return Err(ApiError::Gone(format!(
            "the report's output was deleted at {deleted_at}; request the report again"
        )));
    }
    let ttl = state.config().download_url_ttl;
    let now = Utc::now();
    let half_ttl = chrono::Duration::from_std(ttl / 2).map_err(ApiError::internal)?;
    if let (Some(url), Some(expires_at)) = (&report.download_url, report.download_url_expires_at)
        && expires_at > now + half_ttl
        && state.storage().recognises_url(url)
    {
        return Ok(Some((url.clone(), expires_at)));
    }
    let key = report
        .output_key
        .clone()
        .unwrap_or_else(|| output_key(report));
    let link = state
        .storage()
        .download_url(&key, &output_meta(report), ttl)
        .await?;
    // Remembering it only saves re-signing; failing to is not the client's problem.
    if let Err(e) = state
        .store()
        .set_download_url(report.id, &link.url, link.expires_at)
        .await
    {
        tracing::warn!(report_id = %report.id, error = %e, "could not store the download link");
    }
    Ok(Some((link.url, link.expires_at)))
}
