//! Fixtures and PDF inspection shared by the integration tests.

use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use quire_crds::model::{Report, User};
use quire_crds::{ReportFormat, ReportStatus, ReportType};
use uuid::Uuid;

/// A fixed "now" so outputs are reproducible.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 15, 12, 30, 0).unwrap()
}

pub fn user(email: &str) -> User {
    User {
        id: Uuid::parse_str("0195a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").unwrap(),
        email: email.to_owned(),
        created_at: Utc.with_ymd_and_hms(2025, 3, 5, 9, 0, 0).unwrap(),
    }
}

/// A report created at `created_at`, finished if its status is terminal.
pub fn report(
    n: u128,
    report_type: ReportType,
    status: ReportStatus,
    created_at: DateTime<Utc>,
) -> Report {
    let finished = created_at + chrono::Duration::minutes(2);
    Report {
        id: Uuid::from_u128(0x0195_0000_0000_7000_8000_0000_0000_0000 + n),
        user_id: user("x@example.com").id,
        report_type,
        format: ReportFormat::Pdf,
        parameters: serde_json::json!({}),
        status,
        progress: if status == ReportStatus::Completed {
            100
        } else {
            0
        },
        attempts: 1,
        error_message: (status == ReportStatus::Failed).then(|| "upstream said no".to_owned()),
        created_at,
        queued_at: Some(created_at),
        started_at: Some(created_at),
        completed_at: (status == ReportStatus::Completed).then_some(finished),
        failed_at: (status == ReportStatus::Failed).then_some(finished),
        cancelled_at: None,
        updated_at: finished,
        lease_owner: None,
        lease_expires_at: None,
        idempotency_key: None,
        request_fingerprint: None,
        output_key: None,
        output_file_path: None,
        output_size: None,
        output_checksum: None,
        download_url: None,
        output_deleted_at: None,
        available_at: None,
        traceparent: None,
        download_url_expires_at: None,
    }
}

/// A loaded PDF: its pages' text (one entry per page) and page sizes.
pub struct Pdf {
    pub pages: Vec<String>,
    pub sizes: Vec<(f32, f32)>,
}

impl Pdf {
    pub fn load(path: &Path) -> Pdf {
        let bytes = std::fs::read(path).expect("the PDF was written");
        assert!(bytes.starts_with(b"%PDF-"), "not a PDF");
        let doc = lopdf::Document::load_mem(&bytes).expect("lopdf can parse the PDF");
        let pages = doc.get_pages();
        let mut texts = Vec::new();
        let mut sizes = Vec::new();
        for (number, id) in &pages {
            texts.push(doc.extract_text(&[*number]).expect("text is extractable"));
            let page = doc.get_dictionary(*id).unwrap();
            let media_box = page.get(b"MediaBox").unwrap().as_array().unwrap();
            let n = |i: usize| media_box[i].as_float().unwrap();
            sizes.push((n(2) - n(0), n(3) - n(1)));
        }
        Pdf {
            pages: texts,
            sizes,
        }
    }

    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// Page `n` (1-based).
    pub fn page(&self, n: usize) -> &str {
        &self.pages[n - 1]
    }

    /// Page `n`'s text lines (each drawn string comes out as one line), trimmed.
    pub fn lines(&self, n: usize) -> Vec<&str> {
        self.page(n)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    }

    pub fn all_text(&self) -> String {
        self.pages.join("\n")
    }
}

/// True for an A4 portrait page size in points (595.28 × 841.89).
pub fn is_a4_portrait((width, height): (f32, f32)) -> bool {
    (width - 595.28).abs() < 0.5 && (height - 841.89).abs() < 0.5
}

/// True when `needle` occurs as consecutive entries of `lines`.
pub fn has_run(lines: &[&str], needle: &[&str]) -> bool {
    lines.windows(needle.len()).any(|w| w == needle)
}

/// Where the sample files of `write_samples` go.
pub const SAMPLES_DIR: &str = "/tmp/quire-samples";
