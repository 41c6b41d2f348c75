//! Gathers what a report needs and renders it to a file in a scratch directory.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use quire_core::model::Report;
use quire_core::store::RecordStore;
use quire_crds::ReportParameters;
use quire_render::{ActivityData, DataSources, FetchClient, ProfileData, Progress, RenderError};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Most reports an activity report lists.
const ACTIVITY_MAX_REPORTS: u32 = 10_000;

/// Why a render did not produce a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// Trying again cannot help (bad parameters, a user that is gone): fail for good.
    Permanent,
    /// A render or data error that another attempt may not repeat: spends an attempt.
    Retryable,
    /// One of Quire's own dependencies (the database) was unavailable: the report is handed
    /// back without spending an attempt.
    Unavailable,
    /// The render was asked to stop (cancel, lost lease, shutdown).
    Stopped,
}

/// Why a render failed, and what to do about it.
#[derive(Debug)]
pub(crate) struct RenderFailure {
    /// Shown to the user as the report's `error_message`.
    pub message: String,
    pub kind: FailureKind,
}

impl From<RenderError> for RenderFailure {
    fn from(e: RenderError) -> Self {
        let kind = if matches!(e, RenderError::Cancelled) {
            FailureKind::Stopped
        } else if e.is_retryable() {
            FailureKind::Retryable
        } else {
            FailureKind::Permanent
        };
        Self {
            kind,
            message: e.to_string(),
        }
    }
}

impl From<quire_core::Error> for RenderFailure {
    fn from(e: quire_core::Error) -> Self {
        // The record store failing while gathering data is an outage of ours, not the
        // report's fault.
        Self {
            message: format!("loading the report's data failed: {e}"),
            kind: FailureKind::Unavailable,
        }
    }
}

fn permanent(message: String) -> RenderFailure {
    RenderFailure {
        message,
        kind: FailureKind::Permanent,
    }
}

/// A CPU-bound render, ready to run on the blocking pool.
type BlockingRender =
    Box<dyn FnOnce(&std::path::Path, &Progress) -> Result<(), RenderError> + Send>;

/// Everything one render needs, owned, so it runs as a task of its own that the worker can
/// stop (through [`Progress::cancel`]) and wait for.
pub(crate) struct RenderJob {
    pub store: Arc<dyn RecordStore>,
    pub http: FetchClient,
    pub sources: Arc<DataSources>,
    pub report: Report,
    /// Scratch directory the file is written in.
    pub dir: PathBuf,
    /// Advanced by the render; cancelling it stops the render between rows and pages.
    pub progress: Progress,
    /// Cancelled with `progress`: drops the gathering of data (queries, the fetch) at once.
    pub stop: CancellationToken,
    /// The worker's CPU slots: the blocking render waits for one, the gathering does not.
    pub render_slots: Arc<Semaphore>,
}

impl RenderJob {
    /// Renders the report into the scratch directory, returning the finished file.
    /// CPU-bound rendering runs on the blocking pool so it never stalls the async runtime.
    pub(crate) async fn run(self) -> Result<PathBuf, RenderFailure> {
        let Self {
            store,
            http,
            sources,
            report,
            dir,
            progress,
            stop,
            render_slots,
        } = self;
        let out = dir.join(format!("{}.{}", report.id, report.format.extension()));
        let job = tokio::select! {
            biased;
            () = stop.cancelled() => return Err(RenderError::Cancelled.into()),
            job = prepare(&*store, &http, &sources, &report, &dir, &progress) => job?,
        };
        let slot = tokio::select! {
            biased;
            () = stop.cancelled() => return Err(RenderError::Cancelled.into()),
            slot = render_slots.acquire_owned() => slot.expect("the render slots are never closed"),
        };
        // The blocking part is not dropped but stopped (the progress checks) and awaited,
        // so the CPU is free once this returns.
        let path = out.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            job(&path, &progress)
        })
        .await
        .map_err(|e| permanent(format!("the renderer crashed: {e}")))??;
        Ok(out)
    }
}

/// Gathers the report's data (async: the store, a data source) and returns the CPU-bound
/// render of it.
async fn prepare(
    store: &dyn RecordStore,
    http: &FetchClient,
    sources: &DataSources,
    report: &Report,
    dir: &std::path::Path,
    progress: &Progress,
) -> Result<BlockingRender, RenderFailure> {
    let parameters = ReportParameters::parse(report.report_type, &report.parameters)
        .map_err(|e| permanent(e.to_string()))?;
    let format = report.format;
    let user = store
        .user(report.user_id)
        .await?
        .ok_or_else(|| permanent(format!("user {} no longer exists", report.user_id)))?;
    let generated_at = Utc::now();

    let job: BlockingRender = match parameters {
        ReportParameters::Profile(_) => {
            let counts = store.report_counts(report.user_id).await?;
            let data = ProfileData {
                user,
                counts,
                generated_at,
            };
            Box::new(move |out, progress| quire_render::render_profile(&data, out, progress))
        }
        ReportParameters::Activity(p) => {
            let since = generated_at - chrono::Duration::days(i64::from(p.days));
            let reports = store
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
            // The body goes to the scratch directory and is read row by row: a million rows
            // cost disk, not memory.
            let data = quire_render::download_dataset(http, sources, &p, dir, progress).await?;
            Box::new(move |out, progress| {
                quire_render::render_streamed_dataset(&data, format, out, progress)
            })
        }
    };
    Ok(job)
}
