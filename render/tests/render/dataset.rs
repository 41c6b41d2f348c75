use quire_crds::ReportFormat;
use quire_render::{Dataset, Progress, render_dataset};
use serde_json::{Value, json};

use crate::helpers::{Pdf, has_run, is_a4_portrait, now};

fn dataset(columns: &[&str], rows: Vec<Vec<Value>>) -> Dataset {
    Dataset {
        source: "games".into(),
        title: Some("Games".into()),
        fetched_at: now(),
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows,
        truncated: false,
    }
}

fn tricky() -> Dataset {
    dataset(
        &["name", "score", "tags", "note"],
        vec![
            vec![
                json!("Chess"),
                json!(9.5),
                json!(["board", "classic"]),
                json!(null),
            ],
            vec![
                json!("Go, \"the\" game"),
                json!(10),
                json!({"stones": 361}),
                json!("line1\nline2"),
            ],
            vec![json!("Café ☕"), json!(null), json!([]), json!(true)],
        ],
    )
}

#[test]
fn dataset_csv_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data.csv");
    let progress = Progress::new();

    render_dataset(&tricky(), ReportFormat::Csv, &out, &progress).unwrap();

    assert_eq!(progress.get(), 100);
    let mut reader = csv::Reader::from_path(&out).unwrap();
    assert_eq!(
        reader.headers().unwrap(),
        vec!["name", "score", "tags", "note"]
    );
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["Chess", "9.5", r#"["board","classic"]"#, ""],
            vec![
                "Go, \"the\" game",
                "10",
                r#"{"stones":361}"#,
                "line1\nline2"
            ],
            vec!["Café ☕", "", "[]", "true"],
        ]
    );
}

#[test]
fn dataset_csv_text_cannot_become_a_formula_but_numbers_stay_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data.csv");
    let data = dataset(
        &["name", "=cmd|' /C calc'!A0", "n"],
        vec![
            vec![
                json!("=HYPERLINK(\"http://evil\",\"x\")"),
                json!("+1+1"),
                json!(-5),
            ],
            vec![json!("@SUM(A1)"), json!("-2+3"), json!(1e3)],
            vec![json!("\tleading tab"), json!("\r=1"), json!("-5")],
            vec![json!("safe"), json!("a=b"), json!(-2.5)],
        ],
    );

    render_dataset(&data, ReportFormat::Csv, &out, &Progress::new()).unwrap();

    let mut reader = csv::Reader::from_path(&out).unwrap();
    assert_eq!(
        reader.headers().unwrap(),
        vec!["name", "'=cmd|' /C calc'!A0", "n"],
        "column names come from the upstream: they are escaped too"
    );
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["'=HYPERLINK(\"http://evil\",\"x\")", "'+1+1", "-5"],
            vec!["'@SUM(A1)", "'-2+3", "1000.0"],
            vec!["'\tleading tab", "'\r=1", "'-5"],
            vec!["safe", "a=b", "-2.5"],
        ]
    );
}

#[test]
fn dataset_json_is_an_array_of_objects_in_column_order() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data.json");

    render_dataset(&tricky(), ReportFormat::Json, &out, &Progress::new()).unwrap();

    let text = std::fs::read_to_string(&out).unwrap();
    let parsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        parsed,
        json!([
            {"name": "Chess", "score": 9.5, "tags": ["board", "classic"], "note": null},
            {"name": "Go, \"the\" game", "score": 10, "tags": {"stones": 361}, "note": "line1\nline2"},
            {"name": "Café ☕", "score": null, "tags": [], "note": true},
        ])
    );
    // Keys are written in column order, not sorted.
    let first_row = text.lines().nth(1).unwrap();
    assert!(
        first_row.find("\"name\"").unwrap() < first_row.find("\"score\"").unwrap(),
        "{first_row}"
    );
}

#[test]
fn empty_datasets_render_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    for (name, data) in [
        ("no-rows", dataset(&["a", "b"], vec![])),
        ("nothing", dataset(&[], vec![])),
    ] {
        let json_out = dir.path().join(format!("{name}.json"));
        render_dataset(&data, ReportFormat::Json, &json_out, &Progress::new()).unwrap();
        let parsed: Value =
            serde_json::from_str(&std::fs::read_to_string(&json_out).unwrap()).unwrap();
        assert_eq!(parsed, json!([]));

        let csv_out = dir.path().join(format!("{name}.csv"));
        render_dataset(&data, ReportFormat::Csv, &csv_out, &Progress::new()).unwrap();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_path(&csv_out)
            .unwrap();
        let records: Vec<_> = reader.records().map(Result::unwrap).collect();
        assert_eq!(
            records.len(),
            usize::from(!data.columns.is_empty()),
            "only the header, if any"
        );

        let pdf_out = dir.path().join(format!("{name}.pdf"));
        render_dataset(&data, ReportFormat::Pdf, &pdf_out, &Progress::new()).unwrap();
        let text = Pdf::load(&pdf_out).all_text();
        assert!(
            text.contains("Games") && text.contains("Page 1 of 1"),
            "{text}"
        );
        let expected = if data.columns.is_empty() {
            "no columns"
        } else {
            "no rows"
        };
        assert!(text.contains(expected), "{text}");
    }
}

#[test]
fn a_ten_thousand_row_pdf_paginates_with_the_header_on_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("big.pdf");
    let rows = (0..10_000)
        .map(|i| {
            vec![
                json!(i),
                json!(format!("game number {i}")),
                json!(i % 7 == 0),
                json!("x".repeat(i % 300)),
            ]
        })
        .collect();
    let mut data = dataset(&["id", "title", "multiplayer", "padding"], rows);
    data.truncated = true;
    let progress = Progress::new();

    render_dataset(&data, ReportFormat::Pdf, &out, &progress).unwrap();

    assert_eq!(progress.get(), 100);
    let pdf = Pdf::load(&out);
    let total = pdf.page_count();
    assert!(total > 100, "10 000 rows need many pages, got {total}");
    let first = pdf.page(1);
    assert!(
        first.contains("only the first 10000 rows are included"),
        "truncation note missing:\n{first}"
    );
    assert!(first.contains("game number 0"), "{first}");
    for page in [2, total / 2, total] {
        let lines = pdf.lines(page);
        assert!(
            has_run(&lines, &["#", "id", "title", "multiplayer", "padding"]),
            "page {page}: {lines:?}"
        );
        assert!(pdf.page(page).contains(&format!("Page {page} of {total}")));
    }
    let last = pdf.page(total);
    assert!(
        last.contains("game number 9999") && last.contains("10000"),
        "{last}"
    );
    // The 299-character padding cells do not fit their column.
    assert!(pdf.all_text().contains("xxx..."));
}

#[test]
fn wide_datasets_go_landscape_and_split_their_columns() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("wide.pdf");
    let columns: Vec<String> = (1..=30).map(|i| format!("column_{i:02}")).collect();
    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
    let rows = (0..60)
        .map(|r| (1..=30).map(|c| json!(format!("r{r}c{c} value"))).collect())
        .collect();

    render_dataset(
        &dataset(&names, rows),
        ReportFormat::Pdf,
        &out,
        &Progress::new(),
    )
    .unwrap();

    let pdf = Pdf::load(&out);
    assert!(
        pdf.sizes.iter().all(|(w, h)| w > h),
        "landscape pages: {:?}",
        pdf.sizes
    );
    let all = pdf.all_text();
    assert!(all.contains("Columns 1-"), "{all}");
    assert!(
        all.contains("column_30") && all.contains("r59c30 value"),
        "every column and row is shown"
    );
}

#[test]
fn narrow_datasets_stay_portrait() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("narrow.pdf");
    render_dataset(&tricky(), ReportFormat::Pdf, &out, &Progress::new()).unwrap();
    let pdf = Pdf::load(&out);
    assert!(is_a4_portrait(pdf.sizes[0]), "{:?}", pdf.sizes[0]);
    let lines = pdf.lines(1);
    assert!(
        has_run(&lines, &["#", "name", "score", "tags", "note"]),
        "{lines:?}"
    );
    assert!(
        has_run(
            &lines,
            &[
                "2",
                "Go, \"the\" game",
                "10",
                r#"{"stones":361}"#,
                "line1 line2"
            ]
        ),
        "{lines:?}"
    );
    assert!(has_run(&lines, &["3", "Café ?", "[]", "true"]), "{lines:?}");
}

#[test]
fn huge_cells_do_not_break_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("huge-cell.pdf");
    let data = dataset(
        &["blob"],
        vec![vec![json!("🦀".repeat(200_000))], vec![json!("")]],
    );
    render_dataset(&data, ReportFormat::Pdf, &out, &Progress::new()).unwrap();
    let pdf = Pdf::load(&out);
    assert_eq!(pdf.page_count(), 1);
    assert!(pdf.page(1).contains("??..."));
}

#[test]
fn rows_shorter_than_the_columns_are_padded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(
        &["a", "b"],
        vec![vec![json!(1)], vec![json!(1), json!(2), json!(3)]],
    );
    let out = dir.path().join("ragged.json");
    render_dataset(&data, ReportFormat::Json, &out, &Progress::new()).unwrap();
    let parsed: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(parsed, json!([{"a": 1, "b": null}, {"a": 1, "b": 2}]));
    let out = dir.path().join("ragged.pdf");
    render_dataset(&data, ReportFormat::Pdf, &out, &Progress::new()).unwrap();
}
