//! Gathers what a report needs and renders it to a file in a scratch directory.

use std::path::{Path, PathBuf};

use chrono::Utc;
use quire_core::model::Report;
use quire_crds::ReportParameters;
use quire_render::{ActivityData, ProfileData, Progress, RenderError};

use crate::Worker;

/// Most reports an activity report lists.
const ACTIVITY_MAX_REPORTS: u32 = 10_000;

/// Why a render failed, and whether trying again could help.
#[derive(Debug)]
pub(crate) struct RenderFailure {
    /// Shown to the user as the report's `error_message`.
    pub message: String,
    pub retryable: bool,
}

impl From<RenderError> for RenderFailure {
    fn from(e: RenderError) -> Self {
        Self {
            retryable: e.is_retryable(),
            message: e.to_string(),
        }
    }
}

impl From<quire_core::Error> for RenderFailure {
    fn from(e: quire_core::Error) -> Self {
        // Store hiccups while gathering data are worth another try.
        Self {
            message: format!("loading the report's data failed: {e}"),
            retryable: true,
        }
    }
}

/// A CPU-bound render, ready to run on the blocking pool.
type BlockingRender = Box<dyn FnOnce(&Path, &Progress) -> Result<(), RenderError> + Send>;

fn permanent(message: String) -> RenderFailure {
    RenderFailure {
        message,
        retryable: false,
    }
}

/// Renders `report` into `dir`, returning the finished file. CPU-bound rendering runs on
/// the blocking pool so it never stalls the async runtime.
pub(crate) async fn render_report(
    worker: &Worker,
    report: &Report,
    dir: &Path,
    progress: &Progress,
) -> Result<PathBuf, RenderFailure> {
    let parameters = ReportParameters::parse(report.report_type, &report.parameters)
        .map_err(|e| permanent(e.to_string()))?;
    let out = dir.join(format!("{}.{}", report.id, report.format.extension()));
    let format = report.format;
    let user = worker
        .store
        .user(report.user_id)
        .await?
        .ok_or_else(|| permanent(format!("user {} no longer exists", report.user_id)))?;
    let generated_at = Utc::now();

    let job: BlockingRender = match parameters {
        ReportParameters::Profile(_) => {
            let counts = worker.store.report_counts(report.user_id).await?;
            let data = ProfileData {
                user,
                counts,
                generated_at,
            };
            Box::new(move |out, progress| quire_render::render_profile(&data, out, progress))
        }
        ReportParameters::Activity(p) => {
            let since = generated_at - chrono::Duration::days(i64::from(p.days));
            let reports = worker
                .store
                .reports_since(report.user_id, since, ACTIVITY_MAX_REPORTS)
                .await?;
            let data = ActivityData {
                user,
                reports,
                days: p.days,
                generated_at,
            };
            Box::new(move |out, progress| {
                quire_render::render_activity(&data, format, out, progress)
            })
        }
        ReportParameters::Dataset(p) => {
            let data =
                quire_render::fetch_dataset(&worker.http, &worker.sources, &p, progress).await?;
            Box::new(move |out, progress| {
                quire_render::render_dataset(&data, format, out, progress)
            })
        }
    };

    let (path, progress) = (out.clone(), progress.clone());
    tokio::task::spawn_blocking(move || job(&path, &progress))
        .await
        .map_err(|e| permanent(format!("the renderer crashed: {e}")))??;
    Ok(out)
}
