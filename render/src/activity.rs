//! The activity report: a user's report history as CSV, or as a PDF with charts and a table.

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Days, SecondsFormat, Utc};
use quire_crds::model::{Report, User};
use quire_crds::{ReportFormat, ReportType};

use crate::csv_cell::{escape_formula, write_cells};
use crate::error::RenderError;
use crate::output::{AtomicOutput, write_atomically};
use crate::pdf::{
    ACCENT, Align, Column, GREY, PageSize, PdfWriter, Table, fit_widths, horizontal_bar_chart,
    status_bars, vertical_bar_chart,
};
use crate::progress::Progress;
use crate::text::{Font, text_width_capped};

/// What an activity report shows.
#[derive(Clone, Debug)]
pub struct ActivityData {
    pub user: User,
    /// The reports to list, oldest first (the caller picks them, normally those created in
    /// the last `days` days).
    pub reports: Vec<Report>,
    /// How many days the per-day chart covers, ending on the day of `generated_at`.
    pub days: u32,
    pub generated_at: DateTime<Utc>,
}

/// Columns of the activity CSV, in order.
pub(crate) const ACTIVITY_CSV_HEADER: [&str; 8] = [
    "id",
    "report_type",
    "format",
    "status",
    "attempts",
    "created_at",
    "completed_at",
    "error_message",
];

/// Renders the activity report to `out` as CSV or PDF. Blocking; progress goes 0 to 100.
pub fn render_activity(
    data: &ActivityData,
    format: ReportFormat,
    out: &Path,
    progress: &Progress,
) -> Result<(), RenderError> {
    match format {
        ReportFormat::Csv => write_csv(data, out, progress),
        ReportFormat::Pdf => write_pdf(data, out, progress),
        ReportFormat::Json => Err(RenderError::UnsupportedFormat {
            report_type: ReportType::Activity,
            format,
        }),
    }?;
    progress.set(100);
    Ok(())
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn write_csv(data: &ActivityData, out: &Path, progress: &Progress) -> Result<(), RenderError> {
    let phase = progress.phase(0, 95);
    let mut output = AtomicOutput::create(out)?;
    {
        let mut csv = csv::Writer::from_writer(output.writer());
        csv.write_record(ACTIVITY_CSV_HEADER)?;
        let total = data.reports.len() as u64;
        for (index, r) in data.reports.iter().enumerate() {
            let id = r.id.to_string();
            let attempts = r.attempts.to_string();
            let created_at = timestamp(r.created_at);
            let completed_at = r.completed_at.map(timestamp).unwrap_or_default();
            let cells = [
                id.as_str(),
                r.report_type.as_str(),
                r.format.as_str(),
                r.status.as_str(),
                &attempts,
                &created_at,
                &completed_at,
                r.error_message.as_deref().unwrap_or(""),
            ];
            // Every cell goes through the escape, even those Quire writes itself (the
            // attempt count's digits never need it), so no field can slip a formula through.
            write_cells(&mut csv, cells.into_iter().map(escape_formula))?;
            if index % 256 == 0 {
                phase.report(index as u64, total)?;
            }
        }
        let mut buffered = csv
            .into_inner()
            .map_err(|e| RenderError::Io(e.into_error()))?;
        buffered.flush()?;
    }
    output.commit()
}

/// Reports created on each of the `days` days ending on the day of `generated_at` (UTC),
/// as ("MM-DD", count) oldest first.
fn per_day(data: &ActivityData) -> Vec<(String, i64)> {
    let days = data.days.clamp(1, 3660);
    let end = data.generated_at.date_naive();
    let start = end
        .checked_sub_days(Days::new(u64::from(days - 1)))
        .unwrap_or(end);
    let mut counts = vec![0_i64; days as usize];
    for report in &data.reports {
        let offset = (report.created_at.date_naive() - start).num_days();
        if let Some(slot) = usize::try_from(offset).ok().and_then(|i| counts.get_mut(i)) {
            *slot += 1;
        }
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            let day = start.checked_add_days(Days::new(i as u64)).unwrap_or(end);
            (day.format("%m-%d").to_string(), n)
        })
        .collect()
}

fn write_pdf(data: &ActivityData, out: &Path, progress: &Progress) -> Result<(), RenderError> {
    let layout = progress.phase(0, 80);
    let mut w = PdfWriter::new("Activity report", data.generated_at, PageSize::A4_PORTRAIT);

    let buckets = per_day(data);
    let in_period: i64 = buckets.iter().map(|(_, n)| n).sum();
    let days = buckets.len();
    let end = data.generated_at.date_naive();
    let start = end
        .checked_sub_days(Days::new(days.saturating_sub(1) as u64))
        .unwrap_or(end);
    w.key_values(&[
        ("Account", data.user.email.clone()),
        (
            "Period",
            format!(
                "last {days} {}: {start} to {end} (UTC)",
                if days == 1 { "day" } else { "days" }
            ),
        ),
        (
            "Reports",
            format!(
                "{} listed, {in_period} created in the period",
                data.reports.len()
            ),
        ),
    ]);

    w.heading("Reports per day", 140.0);
    vertical_bar_chart(&mut w, &buckets, ACCENT);

    w.heading("Reports by status", 100.0);
    horizontal_bar_chart(
        &mut w,
        &status_bars(|s| data.reports.iter().filter(|r| r.status == s).count() as i64),
    );
    layout.report(1, 10)?;

    w.heading("Reports", 40.0);
    let rows: Vec<[String; 8]> = data.reports.iter().map(table_cells).collect();
    let mut table = Table::new(columns(&w, &rows), 7.5);
    table.draw_header(&mut w, 2);
    let total = rows.len() as u64;
    for (index, cells) in rows.iter().enumerate() {
        table.draw_row(&mut w, cells, Font::Regular);
        if index % 128 == 0 {
            layout.report(1 + 9 * index as u64 / total.max(1), 10)?;
        }
    }
    table.finish(&mut w);
    if rows.is_empty() {
        w.paragraph("No reports in this period.", 9.0, GREY);
    }
    layout.finish();

    let bytes = w.finish()?;
    progress.set(95);
    write_atomically(out, &bytes)
}

/// Times in the table are UTC, as the period line says.
const TABLE_TITLES: [&str; 8] = [
    "Created",
    "ID",
    "Type",
    "Format",
    "Status",
    "Attempts",
    "Completed",
    "Error",
];

fn table_cells(r: &Report) -> [String; 8] {
    let minute = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M").to_string();
    [
        minute(r.created_at),
        r.id.to_string(),
        r.report_type.to_string(),
        r.format.to_string(),
        r.status.to_string(),
        r.attempts.to_string(),
        r.completed_at.map(minute).unwrap_or_default(),
        r.error_message.clone().unwrap_or_default(),
    ]
}

/// Every column but the last is as wide as its widest cell; the error message gets the rest.
fn columns(w: &PdfWriter, rows: &[[String; 8]]) -> Vec<Column> {
    const PADDING: f32 = 6.0;
    const MIN_ERROR: f32 = 60.0;
    let mut natural: Vec<f32> = TABLE_TITLES[..7]
        .iter()
        .enumerate()
        .map(|(i, title)| {
            let header = text_width_capped(title, Font::Bold, 7.5, 200.0);
            rows.iter()
                .map(|r| text_width_capped(&r[i], Font::Regular, 7.5, 200.0))
                .fold(header, f32::max)
                + PADDING
        })
        .collect();
    natural = fit_widths(&natural, w.content_width() - MIN_ERROR, &[20.0; 7]);
    let error_width = (w.content_width() - natural.iter().sum::<f32>()).max(MIN_ERROR);
    natural.push(error_width);
    TABLE_TITLES
        .iter()
        .zip(natural)
        .enumerate()
        .map(|(i, (title, width))| {
            Column::new(
                *title,
                width,
                if i == 5 { Align::Right } else { Align::Left },
            )
        })
        .collect()
}
