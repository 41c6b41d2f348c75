//! `quire reports create|list|get|cancel|download`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use quire_core::ReportStatus;
use reqwest::header::HeaderName;
use serde_json::{Value, json};

use super::api::{Api, document};
use super::download::{Destination, download};
use super::error::Error;
use super::output::{Table, details, note, print, print_json};
use crate::args::{CreateArgs, ListArgs, OutputMode};

/// How long each `GET /reports/{id}` asks the server to hold the answer while waiting
/// (RFC 7240 `Prefer: wait`): short, so the bar moves at least that often.
const PREFER_WAIT: &str = "wait=2";
/// Between polls when the server did not honour `Prefer: wait` (an older server), so it is
/// not hammered.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
static PREFER: HeaderName = HeaderName::from_static("prefer");
static PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");

const LIST_COLUMNS: [&str; 6] = ["ID", "TYPE", "FORMAT", "STATUS", "PROGRESS", "CREATED"];

pub async fn create(api: &mut Api, args: CreateArgs, output: OutputMode) -> Result<(), Error> {
    let parameters = parameters(&args.params)?;
    let url = api.url("/reports");
    let body = json!({
        "report_type": args.report_type,
        "format": args.format,
        "parameters": parameters,
    });
    let report = document(api.send_authed(|http| http.post(&url).json(&body)).await?).await?;
    let id = id_of(&report)?;
    if !args.wait {
        return match output {
            OutputMode::Json => print_json(&report),
            OutputMode::Human => print(&format!(
                "Created report {id} ({} {}): {}. Follow it with `quire reports get {id}`.\n",
                report["report_type"].as_str().unwrap_or("?"),
                report["format"].as_str().unwrap_or("?"),
                report["status"].as_str().unwrap_or("?"),
            )),
        };
    }
    if output == OutputMode::Human {
        note(&format!("Created report {id}; waiting for it to finish…"));
    }
    let report = wait(api, &id, report, output).await?;
    ended_well(&report)?;
    let destination = Destination::new(
        args.file.as_deref(),
        &id,
        report["format"].as_str().unwrap_or_default(),
    );
    let saved = download(api, &id, &destination).await?;
    match (output, &destination) {
        // Standard output holds the file: nothing else may go there.
        (_, Destination::Stdout) => Ok(()),
        (OutputMode::Json, _) => print_json(&report),
        (OutputMode::Human, Destination::File(path)) => print(&format!(
            "Report {id} completed; saved {} ({} bytes).\n",
            path.display(),
            saved.bytes
        )),
    }
}

pub async fn list(api: &mut Api, args: ListArgs, output: OutputMode) -> Result<(), Error> {
    let mut url = url::Url::parse(&api.url("/reports"))
        .map_err(|e| Error::Usage(format!("--server: {e}")))?;
    {
        let mut query = url.query_pairs_mut();
        if let Some(status) = &args.status {
            query.append_pair("status", status);
        }
        if let Some(limit) = args.limit {
            query.append_pair("limit", &limit.to_string());
        }
        if let Some(cursor) = &args.cursor {
            query.append_pair("cursor", cursor);
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    let page = document(api.send_authed(|http| http.get(url.clone())).await?).await?;
    if output == OutputMode::Json {
        return print_json(&page);
    }
    let items = page["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if items.is_empty() {
        return print("No reports.\n");
    }
    let mut table = Table::new(&LIST_COLUMNS);
    for item in items {
        table.row(vec![
            super::output::cell(&item["id"]),
            super::output::cell(&item["report_type"]),
            super::output::cell(&item["format"]),
            super::output::cell(&item["status"]),
            format!("{}%", item["progress"].as_i64().unwrap_or(0)),
            super::output::cell(&item["created_at"]),
        ]);
    }
    print(&table.render())?;
    if let Some(cursor) = page["next_cursor"].as_str() {
        note(&format!("More: quire reports list --cursor {cursor}"));
    }
    Ok(())
}

pub async fn get(api: &mut Api, id: &str, output: OutputMode) -> Result<(), Error> {
    let url = api.url(&format!("/reports/{id}"));
    let report = document(api.send_authed(|http| http.get(&url)).await?).await?;
    show(&report, output)
}

pub async fn cancel(api: &mut Api, id: &str, output: OutputMode) -> Result<(), Error> {
    let url = api.url(&format!("/reports/{id}/cancel"));
    let report = document(api.send_authed(|http| http.post(&url)).await?).await?;
    match output {
        OutputMode::Json => print_json(&report),
        OutputMode::Human => print(&format!("Cancelled report {id}.\n")),
    }
}

pub async fn download_one(
    api: &mut Api,
    id: &str,
    file: Option<&str>,
    output: OutputMode,
) -> Result<(), Error> {
    let destination = match file {
        Some(file) => Destination::new(Some(file), id, ""),
        // The default name needs the format: ask for the report (a 404 shows here too).
        None => {
            let url = api.url(&format!("/reports/{id}"));
            let report = document(api.send_authed(|http| http.get(&url)).await?).await?;
            Destination::new(
                None,
                &id_of(&report)?,
                report["format"].as_str().unwrap_or_default(),
            )
        }
    };
    let saved = download(api, id, &destination).await?;
    match (output, &destination) {
        (_, Destination::Stdout) => Ok(()),
        (OutputMode::Json, Destination::File(path)) => print_json(&json!({
            "id": id,
            "file": path,
            "bytes": saved.bytes,
        })),
        (OutputMode::Human, Destination::File(path)) => print(&format!(
            "Saved {} ({} bytes).\n",
            path.display(),
            saved.bytes
        )),
    }
}

/// Follows the report until it is finished: long polls with `Prefer: wait`, a progress bar
/// on a terminal (standard error; none with `--output json`).
async fn wait(
    api: &mut Api,
    id: &str,
    mut report: Value,
    output: OutputMode,
) -> Result<Value, Error> {
    let bar = progress_bar(output);
    let url = api.url(&format!("/reports/{id}"));
    loop {
        bar.set_position(report["progress"].as_u64().unwrap_or(0).min(100));
        bar.set_message(report["status"].as_str().unwrap_or("?").to_owned());
        if status_of(&report).is_some_and(ReportStatus::is_terminal) {
            bar.finish_and_clear();
            return Ok(report);
        }
        let response = api
            .send_authed(|http| http.get(&url).header(&PREFER, PREFER_WAIT))
            .await?;
        let held = response.headers().contains_key(&PREFERENCE_APPLIED);
        report = document(response).await?;
        if !held {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

fn progress_bar(output: OutputMode) -> ProgressBar {
    if output == OutputMode::Json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("[{bar:40.cyan/blue}] {pos:>3}% {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Ok for a completed report; the report's own error for a failed or cancelled one.
fn ended_well(report: &Value) -> Result<(), Error> {
    let id = report["id"].as_str().unwrap_or("?");
    match status_of(report) {
        Some(ReportStatus::Completed) => Ok(()),
        Some(ReportStatus::Cancelled) => {
            Err(Error::ReportEnded(format!("report {id} was cancelled")))
        }
        Some(ReportStatus::Failed) => Err(Error::ReportEnded(format!(
            "report {id} failed: {}",
            report["error_message"]
                .as_str()
                .unwrap_or("no reason given")
        ))),
        _ => Err(Error::BadResponse(format!(
            "report {id} is `{}`, not finished",
            report["status"]
        ))),
    }
}

fn status_of(report: &Value) -> Option<ReportStatus> {
    report["status"].as_str()?.parse().ok()
}

fn id_of(report: &Value) -> Result<String, Error> {
    report["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::BadResponse("a report without an id".to_owned()))
}

fn show(report: &Value, output: OutputMode) -> Result<(), Error> {
    match output {
        OutputMode::Json => print_json(report),
        OutputMode::Human => {
            let mut shown = report.clone();
            shown["progress"] = json!(format!("{}%", report["progress"].as_i64().unwrap_or(0)));
            print(&details(
                &shown,
                &[
                    ("id", "id"),
                    ("type", "report_type"),
                    ("format", "format"),
                    ("parameters", "parameters"),
                    ("status", "status"),
                    ("progress", "progress"),
                    ("attempts", "attempts"),
                    ("error", "error_message"),
                    ("created", "created_at"),
                    ("started", "started_at"),
                    ("completed", "completed_at"),
                    ("failed", "failed_at"),
                    ("cancelled", "cancelled_at"),
                    ("download", "download_url"),
                    ("output deleted", "output_deleted_at"),
                ],
            ))
        }
    }
}

/// `--param key=value` pairs as the `parameters` object: each value is JSON when it parses
/// as JSON (`30`, `true`, `["a","b"]`), else the string as typed. A key given twice is a
/// usage error, not a silent last-one-wins.
pub fn parameters(params: &[(String, String)]) -> Result<Value, Error> {
    let mut object = BTreeMap::new();
    for (key, raw) in params {
        let value =
            serde_json::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.clone()));
        if object.insert(key.clone(), value).is_some() {
            return Err(Error::Usage(format!(
                "--param `{key}` is given more than once"
            )));
        }
    }
    Ok(json!(object))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn param_values_are_json_when_they_parse_and_strings_otherwise() {
        let value = parameters(&pairs(&[
            ("days", "30"),
            ("columns", r#"["a","b"]"#),
            ("source", "games"),
            ("flag", "true"),
            ("quoted", r#""30""#),
        ]))
        .unwrap();
        assert_eq!(
            value,
            json!({"days": 30, "columns": ["a", "b"], "source": "games", "flag": true, "quoted": "30"})
        );
    }

    #[test]
    fn a_repeated_param_is_a_usage_error() {
        let e = parameters(&pairs(&[("days", "1"), ("days", "2")])).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn failed_and_cancelled_reports_end_with_exit_code_5() {
        let failed = json!({"id": "x", "status": "failed", "error_message": "upstream said 404"});
        let e = ended_well(&failed).unwrap_err();
        assert_eq!(e.exit_code(), 5);
        assert!(e.to_string().contains("upstream said 404"));
        let cancelled = json!({"id": "x", "status": "cancelled"});
        assert_eq!(ended_well(&cancelled).unwrap_err().exit_code(), 5);
        assert!(ended_well(&json!({"id": "x", "status": "completed"})).is_ok());
    }
}
