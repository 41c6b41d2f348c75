//! Streamed datasets end to end: a local source answers JSON (rows at a pointer) or NDJSON
//! (by its content type), the body goes to a directory, and CSV and JSON outputs are
//! written row by row from it, within the source's caps.

use axum::Router;
use axum::routing::get;
use quire_crds::{DatasetParameters, ReportFormat};
use quire_render::{
    DataSources, FetchClient, Progress, RenderError, download_dataset, render_streamed_dataset,
};
use serde_json::{Value, json};

async fn source() -> DataSources {
    let app = Router::new()
        .route(
            "/nested",
            get(|| async {
                let rows: Vec<Value> = (0..2500)
                    .map(|i| json!({"id": i, "name": format!("=cmd {i}"), "extra": i % 2 == 0}))
                    .collect();
                axum::Json(json!({"meta": {"rows": [1, 2]}, "data": {"rows": rows}}))
            }),
        )
        .route(
            "/lines",
            get(|| async {
                (
                    [("content-type", "application/x-ndjson")],
                    "{\"a\": 1}\n{\"b\": \"two\"}\n{\"a\": 3, \"b\": null}\n",
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    DataSources::from_toml_str(&format!(
        r#"
        [sources.nested]
        url = "http://{addr}/nested"
        allow_private = true
        rows_pointer = "/data/rows"
        max_rows = 2000

        [sources.lines]
        url = "http://{addr}/lines"
        allow_private = true
        "#
    ))
    .unwrap()
}

async fn render(
    sources: &DataSources,
    params: Value,
    format: ReportFormat,
) -> Result<String, RenderError> {
    let dir = tempfile::tempdir().unwrap();
    let params: DatasetParameters = serde_json::from_value(params).unwrap();
    let progress = Progress::new();
    let client = FetchClient::new("quire-test").unwrap();
    let data = download_dataset(&client, sources, &params, dir.path(), &progress).await?;
    let out = dir.path().join("out");
    render_streamed_dataset(&data, format, &out, &progress)?;
    assert_eq!(progress.get(), 100);
    Ok(std::fs::read_to_string(out).unwrap())
}

#[tokio::test]
async fn rows_at_a_pointer_stream_to_csv_within_the_sources_row_cap() {
    let sources = source().await;
    let csv = render(&sources, json!({"source": "nested"}), ReportFormat::Csv)
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    // The source's key order (serde_json writes object keys sorted).
    assert_eq!(reader.headers().unwrap(), vec!["extra", "id", "name"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2000, "the source's max_rows");
    assert_eq!(
        &rows[1999],
        &csv::StringRecord::from(vec!["false", "1999", "'=cmd 1999"])
    );

    // A report's limit lowers the cap.
    let json = render(
        &sources,
        json!({"source": "nested", "limit": 3, "columns": ["name", "id"]}),
        ReportFormat::Json,
    )
    .await
    .unwrap();
    let rows: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        rows,
        json!([
            {"name": "=cmd 0", "id": 0},
            {"name": "=cmd 1", "id": 1},
            {"name": "=cmd 2", "id": 2}
        ])
    );
}

#[tokio::test]
async fn ndjson_is_read_one_line_per_row() {
    let sources = source().await;
    let json = render(&sources, json!({"source": "lines"}), ReportFormat::Json)
        .await
        .unwrap();
    let rows: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        rows,
        json!([{"a": 1, "b": null}, {"a": null, "b": "two"}, {"a": 3, "b": null}])
    );
}

#[tokio::test]
async fn a_streamed_pdf_holds_the_kept_rows() {
    let sources = source().await;
    let dir = tempfile::tempdir().unwrap();
    let params: DatasetParameters =
        serde_json::from_value(json!({"source": "nested", "limit": 40})).unwrap();
    let progress = Progress::new();
    let client = FetchClient::new("quire-test").unwrap();
    let data = download_dataset(&client, &sources, &params, dir.path(), &progress)
        .await
        .unwrap();
    let out = dir.path().join("out.pdf");
    render_streamed_dataset(&data, ReportFormat::Pdf, &out, &progress).unwrap();
    let pdf = crate::helpers::Pdf::load(&out);
    let text = pdf.pages.join("\n");
    assert!(text.contains("=cmd 39"), "the 40th row is in the table");
    assert!(!text.contains("=cmd 40"), "the 41st is not");
}
