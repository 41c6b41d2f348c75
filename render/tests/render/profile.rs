use quire_crds::model::ReportCounts;
use quire_crds::{ReportStatus, ReportType};
use quire_render::{ProfileData, Progress, render_profile};

use crate::helpers::{Pdf, has_run, is_a4_portrait, now, user};

fn counts() -> ReportCounts {
    ReportCounts {
        by_type_and_status: vec![
            (ReportType::Dataset, ReportStatus::Completed, 7),
            (ReportType::Activity, ReportStatus::Failed, 2),
            (ReportType::Activity, ReportStatus::Completed, 3),
            (ReportType::Profile, ReportStatus::Queued, 1),
        ],
    }
}

#[test]
fn the_profile_pdf_shows_identity_age_counts_and_chart() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("profile.pdf");
    let progress = Progress::new();
    let data = ProfileData {
        user: user("ada@example.com"),
        counts: counts(),
        generated_at: now(),
    };

    render_profile(&data, &out, &progress).unwrap();

    assert_eq!(progress.get(), 100);
    let pdf = Pdf::load(&out);
    assert_eq!(pdf.page_count(), 1);
    assert!(is_a4_portrait(pdf.sizes[0]), "{:?}", pdf.sizes[0]);
    let text = pdf.page(1);
    for needle in [
        "Profile report",
        "Generated 2025-03-15 12:30 UTC",
        "ada@example.com",
        "0195a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        "2025-03-05 09:00 UTC",
        "10 days",
        "Reports by type and status",
        "Reports by status",
        "Page 1 of 1",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    let lines = pdf.lines(1);
    // Type, pending, queued, running, completed, failed, cancelled, total.
    assert!(
        has_run(&lines, &["Dataset", "0", "0", "0", "7", "0", "0", "7"]),
        "{lines:?}"
    );
    assert!(
        has_run(&lines, &["Activity", "0", "0", "0", "3", "2", "0", "5"]),
        "{lines:?}"
    );
    assert!(
        has_run(&lines, &["Total", "0", "1", "0", "10", "2", "0", "13"]),
        "{lines:?}"
    );
    // Chart: each status label followed by its bar's value.
    assert!(has_run(&lines, &["Completed", "10"]), "{lines:?}");
    assert!(has_run(&lines, &["Failed", "2"]), "{lines:?}");
}

#[test]
fn a_profile_without_reports_and_with_non_latin_email_still_renders() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("profile.pdf");
    let data = ProfileData {
        user: user("zoë.日本@example.com"),
        counts: ReportCounts::default(),
        generated_at: now(),
    };

    render_profile(&data, &out, &Progress::new()).unwrap();

    let text = Pdf::load(&out).all_text();
    assert!(text.contains("zoë.??@example.com"), "{text}");
    assert!(text.contains("No reports yet."), "{text}");
}

#[test]
fn a_failed_render_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("missing-dir").join("profile.pdf");
    let data = ProfileData {
        user: user("a@example.com"),
        counts: counts(),
        generated_at: now(),
    };

    let err = render_profile(&data, &out, &Progress::new()).unwrap_err();

    assert!(matches!(err, quire_render::RenderError::Io(_)), "{err:?}");
    assert!(!out.exists());
}
