//! `cargo test -p quire-render -- --ignored write_samples` writes one sample of each PDF to
//! /tmp/quire-samples for looking at.

use chrono::Duration;
use quire_crds::model::ReportCounts;
use quire_crds::{ReportFormat, ReportStatus, ReportType};
use quire_render::{
    ActivityData, Dataset, ProfileData, Progress, render_activity, render_dataset, render_profile,
};
use serde_json::json;

use crate::helpers::{SAMPLES_DIR, now, report, user};

#[test]
#[ignore = "writes sample files for manual inspection"]
fn write_samples() {
    let dir = std::path::Path::new(SAMPLES_DIR);
    std::fs::create_dir_all(dir).unwrap();

    let counts = ReportCounts {
        by_type_and_status: vec![
            (ReportType::Profile, ReportStatus::Completed, 4),
            (ReportType::Activity, ReportStatus::Completed, 12),
            (ReportType::Activity, ReportStatus::Failed, 3),
            (ReportType::Dataset, ReportStatus::Completed, 21),
            (ReportType::Dataset, ReportStatus::Running, 1),
            (ReportType::Dataset, ReportStatus::Cancelled, 2),
            (ReportType::Dataset, ReportStatus::Queued, 5),
        ],
    };
    let profile = ProfileData {
        user: user("ada.lovelace@example.com"),
        counts,
        generated_at: now(),
    };
    render_profile(&profile, &dir.join("profile.pdf"), &Progress::new()).unwrap();

    let statuses = [
        ReportStatus::Completed,
        ReportStatus::Completed,
        ReportStatus::Failed,
        ReportStatus::Cancelled,
    ];
    let types = [
        ReportType::Dataset,
        ReportType::Activity,
        ReportType::Profile,
    ];
    let reports = (0..140u128)
        .map(|i| {
            let mut r = report(
                i,
                types[(i % 3) as usize],
                statuses[(i % 4) as usize],
                now() - Duration::hours((140 - i as i64) * 5 + (i as i64 * 7) % 13),
            );
            if r.status == ReportStatus::Failed {
                r.error_message = Some(format!(
                    "data source `games` answered with HTTP status 503 (attempt {})",
                    i % 5
                ));
            }
            r
        })
        .collect();
    let activity = ActivityData {
        user: user("ada.lovelace@example.com"),
        reports,
        days: 30,
        generated_at: now(),
    };
    render_activity(
        &activity,
        ReportFormat::Pdf,
        &dir.join("activity.pdf"),
        &Progress::new(),
    )
    .unwrap();

    let games = Dataset {
        source: "games".into(),
        title: Some("Board games".into()),
        fetched_at: now(),
        columns: vec![
            "id".into(),
            "name".into(),
            "year".into(),
            "players".into(),
            "url".into(),
        ],
        rows: (0..300)
            .map(|i| {
                vec![
                    json!(i),
                    json!(format!(
                        "Game {i} — the Zoë édition {}",
                        "with a long subtitle ".repeat(i % 4)
                    )),
                    json!(1900 + i % 120),
                    json!({"min": 1 + i % 3, "max": 2 + i % 6}),
                    json!(format!("https://games.example.com/catalogue/{i}")),
                ]
            })
            .collect(),
        truncated: true,
    };
    render_dataset(
        &games,
        ReportFormat::Pdf,
        &dir.join("dataset.pdf"),
        &Progress::new(),
    )
    .unwrap();

    let wide = Dataset {
        source: "metrics".into(),
        title: None,
        fetched_at: now(),
        columns: (1..=24).map(|c| format!("metric_{c:02}")).collect(),
        rows: (0..80)
            .map(|r| (1..=24).map(|c| json!(r * c)).collect())
            .collect(),
        truncated: false,
    };
    render_dataset(
        &wide,
        ReportFormat::Pdf,
        &dir.join("dataset-wide.pdf"),
        &Progress::new(),
    )
    .unwrap();
}
