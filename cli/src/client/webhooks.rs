//! `quire webhooks create|list|get|delete|deliveries`, against `/webhooks`.

use serde_json::{Value, json};

use super::api::{Api, document};
use super::error::Error;
use super::output::{Table, cell, details, note, print, print_json};
use crate::args::{OutputMode, WebhooksCommand};

const FIELDS: [(&str, &str); 6] = [
    ("id", "id"),
    ("url", "url"),
    ("events", "events"),
    ("created", "created_at"),
    ("disabled", "disabled_at"),
    ("disabled because", "disabled_reason"),
];

pub async fn run(api: &mut Api, command: WebhooksCommand, output: OutputMode) -> Result<(), Error> {
    match command {
        WebhooksCommand::Create { url, events } => create(api, url, events, output).await,
        WebhooksCommand::List => list(api, output).await,
        WebhooksCommand::Get { id } => {
            let url = api.url(&format!("/webhooks/{id}"));
            let webhook = document(api.send_authed(|http| http.get(&url)).await?).await?;
            match output {
                OutputMode::Json => print_json(&webhook),
                OutputMode::Human => print(&details(&webhook, &FIELDS)),
            }
        }
        WebhooksCommand::Delete { id } => {
            let url = api.url(&format!("/webhooks/{id}"));
            api.send_authed(|http| http.delete(&url)).await?;
            match output {
                OutputMode::Json => print_json(&json!({"id": id, "deleted": true})),
                OutputMode::Human => print(&format!("Deleted webhook {id}.\n")),
            }
        }
        WebhooksCommand::Deliveries { id } => deliveries(api, &id, output).await,
    }
}

async fn create(
    api: &mut Api,
    url: String,
    events: Vec<String>,
    output: OutputMode,
) -> Result<(), Error> {
    let route = api.url("/webhooks");
    let body = json!({"url": url, "events": events});
    let webhook = document(
        api.send_authed(|http| http.post(&route).json(&body))
            .await?,
    )
    .await?;
    if output == OutputMode::Json {
        return print_json(&webhook);
    }
    print(&details(&webhook, &FIELDS))?;
    print(&format!("secret  {}\n", cell(&webhook["secret"])))?;
    note(
        "Keep the secret: it signs every delivery (the `webhook-signature` header) and will not be shown again.",
    );
    Ok(())
}

async fn list(api: &mut Api, output: OutputMode) -> Result<(), Error> {
    let url = api.url("/webhooks");
    let page = document(api.send_authed(|http| http.get(&url)).await?).await?;
    if output == OutputMode::Json {
        return print_json(&page);
    }
    let items = items(&page);
    if items.is_empty() {
        return print("No webhooks.\n");
    }
    let mut table = Table::new(&["ID", "URL", "EVENTS", "CREATED", "DISABLED"]);
    for item in items {
        table.row_of(item, &["id", "url", "events", "created_at", "disabled_at"]);
    }
    print(&table.render())
}

async fn deliveries(api: &mut Api, id: &str, output: OutputMode) -> Result<(), Error> {
    let url = api.url(&format!("/webhooks/{id}/deliveries"));
    let page = document(api.send_authed(|http| http.get(&url)).await?).await?;
    if output == OutputMode::Json {
        return print_json(&page);
    }
    let items = items(&page);
    if items.is_empty() {
        return print("No deliveries.\n");
    }
    // The columns a delivery is known to have; `--output json` shows everything.
    let columns = [
        "id",
        "event",
        "report_id",
        "status",
        "attempts",
        "response_status",
        "created_at",
    ];
    let present: Vec<&str> = columns
        .into_iter()
        .filter(|key| items.iter().any(|item| item.get(*key).is_some()))
        .collect();
    let header: Vec<String> = present.iter().map(|k| k.to_uppercase()).collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut table = Table::new(&header);
    for item in items {
        table.row_of(item, &present);
    }
    print(&table.render())
}

fn items(page: &Value) -> &[Value] {
    page["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}
