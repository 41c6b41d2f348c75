//! The profile report: a one-page PDF about the user and their reports.

use std::path::Path;

use chrono::{DateTime, Utc};
use quire_crds::model::{ReportCounts, User};
use quire_crds::{ReportStatus, ReportType};

use crate::error::RenderError;
use crate::output::write_atomically;
use crate::pdf::{
    Align, Column, GREY, PageSize, PdfWriter, Table, format_time, horizontal_bar_chart, status_bars,
};
use crate::progress::Progress;
use crate::text::{Font, capitalize, text_width};

/// What a profile report shows.
#[derive(Clone, Debug)]
pub struct ProfileData {
    pub user: User,
    pub counts: ReportCounts,
    pub generated_at: DateTime<Utc>,
}

/// Renders the profile PDF to `out`: identity, account age, reports by type and status,
/// and a bar chart of reports by status. Blocking; progress goes from 0 to 100.
pub fn render_profile(
    data: &ProfileData,
    out: &Path,
    progress: &Progress,
) -> Result<(), RenderError> {
    let bytes = profile_pdf(data, progress)?;
    write_atomically(out, &bytes)?;
    progress.set(100);
    Ok(())
}

/// The profile PDF's bytes ([`render_profile`] without the file). Progress goes to 90.
pub fn profile_pdf(data: &ProfileData, progress: &Progress) -> Result<Vec<u8>, RenderError> {
    let mut w = PdfWriter::new("Profile report", data.generated_at, PageSize::A4_PORTRAIT);

    w.heading("Account", 60.0);
    let age_days = (data.generated_at - data.user.created_at).num_days().max(0);
    w.key_values(&[
        ("Email", data.user.email.clone()),
        ("User ID", data.user.id.to_string()),
        ("Account created", format_time(data.user.created_at)),
        (
            "Account age",
            format!("{age_days} {}", if age_days == 1 { "day" } else { "days" }),
        ),
    ]);
    progress.set(20);

    w.heading("Reports by type and status", 80.0);
    counts_table(&mut w, &data.counts);
    if data.counts.total() == 0 {
        w.paragraph("No reports yet.", 9.0, GREY);
    }
    progress.set(40);

    w.heading("Reports by status", 100.0);
    horizontal_bar_chart(&mut w, &status_bars(|s| data.counts.with_status(s)));
    progress.set(60);

    let bytes = w.finish()?;
    progress.set(90);
    Ok(bytes)
}

/// Types down, statuses across, with totals on both axes.
fn counts_table(w: &mut PdfWriter, counts: &ReportCounts) {
    let count = |t: ReportType, s: ReportStatus| -> i64 {
        counts
            .by_type_and_status
            .iter()
            .filter(|(ct, cs, _)| *ct == t && *cs == s)
            .map(|(_, _, n)| n)
            .sum()
    };
    let first =
        text_width("Activity", Font::Bold, 9.0).max(text_width("Total", Font::Bold, 9.0)) + 16.0;
    let rest = ((w.content_width() - first) / (ReportStatus::ALL.len() + 1) as f32).min(62.0);
    let mut columns = vec![Column::new("Type", first, Align::Left)];
    columns.extend(
        ReportStatus::ALL
            .iter()
            .map(|s| Column::new(capitalize(s.as_str()), rest, Align::Right)),
    );
    columns.push(Column::new("Total", rest, Align::Right));

    let mut table = Table::new(columns, 9.0);
    table.draw_header(w, ReportType::ALL.len() + 1);
    for t in ReportType::ALL {
        let mut cells = vec![capitalize(t.as_str())];
        cells.extend(ReportStatus::ALL.iter().map(|s| count(*t, *s).to_string()));
        cells.push(counts.with_type(*t).to_string());
        table.draw_row(w, &cells, Font::Regular);
    }
    let mut totals = vec!["Total".to_owned()];
    totals.extend(
        ReportStatus::ALL
            .iter()
            .map(|s| counts.with_status(*s).to_string()),
    );
    totals.push(counts.total().to_string());
    table.draw_row(w, &totals, Font::Bold);
    table.finish(w);
}
