use chrono::Duration;
use quire_crds::{ReportFormat, ReportStatus, ReportType};
use quire_render::{ActivityData, Progress, RenderError, render_activity};

use crate::helpers::{Pdf, has_run, now, report, user};

/// `n` reports spread over the last 10 days, oldest first, cycling through statuses.
fn activity(n: usize, days: u32) -> ActivityData {
    let statuses = [
        ReportStatus::Completed,
        ReportStatus::Failed,
        ReportStatus::Completed,
        ReportStatus::Running,
    ];
    let types = [
        ReportType::Dataset,
        ReportType::Activity,
        ReportType::Profile,
    ];
    let reports = (0..n)
        .map(|i| {
            let age = Duration::hours(((n - i) * 240 / n.max(1)) as i64);
            report(i as u128, types[i % 3], statuses[i % 4], now() - age)
        })
        .collect();
    ActivityData {
        user: user("ada@example.com"),
        reports,
        days,
        generated_at: now(),
    }
}

#[test]
fn the_activity_csv_has_one_row_per_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("activity.csv");
    let mut data = activity(5, 30);
    data.reports[1].error_message = Some("bad, \"quoted\"\nmulti-line".into());
    let progress = Progress::new();

    render_activity(&data, ReportFormat::Csv, &out, &progress).unwrap();

    assert_eq!(progress.get(), 100);
    let mut reader = csv::Reader::from_path(&out).unwrap();
    assert_eq!(
        reader.headers().unwrap(),
        vec![
            "id",
            "report_type",
            "format",
            "status",
            "attempts",
            "created_at",
            "completed_at",
            "error_message"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 5);
    let first = &data.reports[0];
    assert_eq!(&rows[0][0], first.id.to_string());
    assert_eq!(&rows[0][1], "dataset");
    assert_eq!(&rows[0][2], "pdf");
    assert_eq!(&rows[0][3], "completed");
    assert_eq!(&rows[0][4], "1");
    assert_eq!(
        &rows[0][5],
        first
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert_eq!(
        &rows[0][6],
        first
            .completed_at
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert_eq!(&rows[0][7], "");
    assert_eq!(&rows[1][3], "failed");
    assert_eq!(&rows[1][6], "");
    assert_eq!(&rows[1][7], "bad, \"quoted\"\nmulti-line");
}

#[test]
fn activity_csv_error_messages_cannot_become_formulas() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("activity.csv");
    let mut data = activity(2, 30);
    data.reports[0].error_message = Some("=HYPERLINK(\"http://evil\",\"x\")".into());
    data.reports[1].error_message = Some("-2+3".into());

    render_activity(&data, ReportFormat::Csv, &out, &Progress::new()).unwrap();

    let mut reader = csv::Reader::from_path(&out).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(&rows[0][7], "'=HYPERLINK(\"http://evil\",\"x\")");
    assert_eq!(&rows[1][7], "'-2+3");
    assert_eq!(&rows[0][4], "1", "the attempt count stays a number");
}

#[test]
fn an_empty_history_gives_a_header_only_csv_and_a_pdf() {
    let dir = tempfile::tempdir().unwrap();
    let data = activity(0, 7);

    let csv_out = dir.path().join("activity.csv");
    render_activity(&data, ReportFormat::Csv, &csv_out, &Progress::new()).unwrap();
    let mut reader = csv::Reader::from_path(&csv_out).unwrap();
    assert_eq!(reader.headers().unwrap().len(), 8);
    assert_eq!(reader.records().count(), 0);

    let pdf_out = dir.path().join("activity.pdf");
    render_activity(&data, ReportFormat::Pdf, &pdf_out, &Progress::new()).unwrap();
    let text = Pdf::load(&pdf_out).all_text();
    assert!(text.contains("No reports in this period."), "{text}");
    assert!(
        text.contains("last 7 days: 2025-03-09 to 2025-03-15 (UTC)"),
        "{text}"
    );
}

#[test]
fn the_activity_pdf_has_charts_and_a_table_that_repeats_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("activity.pdf");
    let mut data = activity(150, 30);
    data.reports[149].error_message = Some("a very long error message ".repeat(20));
    data.reports[149].status = ReportStatus::Failed;
    let progress = Progress::new();

    render_activity(&data, ReportFormat::Pdf, &out, &progress).unwrap();

    assert_eq!(progress.get(), 100);
    let pdf = Pdf::load(&out);
    assert!(
        pdf.page_count() >= 3,
        "150 rows span several pages, got {}",
        pdf.page_count()
    );
    let first = pdf.page(1);
    for needle in [
        "Activity report",
        "ada@example.com",
        "Reports per day",
        "Reports by status",
        "Reports",
    ] {
        assert!(first.contains(needle), "missing {needle:?} in:\n{first}");
    }
    // Per-day chart: the day labels of the period's first and last day.
    assert!(
        first.contains("02-14") && first.contains("03-15"),
        "{first}"
    );
    let header = [
        "Created",
        "ID",
        "Type",
        "Format",
        "Status",
        "Attempts",
        "Completed",
        "Error",
    ];
    let total = pdf.page_count();
    for page in 2..=total {
        assert!(
            has_run(&pdf.lines(page), &header),
            "page {page} lacks the table header:\n{}",
            pdf.page(page)
        );
        assert!(pdf.page(page).contains(&format!("Page {page} of {total}")));
    }
    let all = pdf.all_text();
    for r in [&data.reports[0], &data.reports[77], &data.reports[149]] {
        assert!(all.contains(&r.id.to_string()), "report {} missing", r.id);
    }
    assert!(all.contains("a very long error"), "{all}");
    assert!(
        !all.contains(&"a very long error message ".repeat(20)),
        "long cells are cut"
    );
    assert!(
        all.lines()
            .any(|l| l.starts_with("a very long error") && l.ends_with("...")),
        "{all}"
    );
}

#[test]
fn a_year_of_days_still_renders() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("activity.pdf");
    render_activity(
        &activity(40, 366),
        ReportFormat::Pdf,
        &out,
        &Progress::new(),
    )
    .unwrap();
    assert!(Pdf::load(&out).page(1).contains("last 366 days"));
}

#[test]
fn json_is_not_an_activity_format() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("activity.json");
    let err =
        render_activity(&activity(1, 30), ReportFormat::Json, &out, &Progress::new()).unwrap_err();
    assert!(
        matches!(err, RenderError::UnsupportedFormat { .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(!out.exists());
}
