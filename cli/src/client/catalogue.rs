//! `quire types` and `quire sources`: what the server can render, and from which data.

use serde_json::Value;

use super::api::{Api, document};
use super::error::Error;
use super::output::{Table, cell, print, print_json};
use crate::args::OutputMode;

/// `GET /report-types`: each type, its formats and its parameters.
pub async fn types(api: &mut Api, output: OutputMode) -> Result<(), Error> {
    let url = api.url("/report-types");
    let page = document(api.send_authed(|http| http.get(&url)).await?).await?;
    if output == OutputMode::Json {
        return print_json(&page);
    }
    let mut table = Table::new(&["TYPE", "FORMATS", "PARAMETERS"]);
    for item in items(&page) {
        table.row(vec![
            cell(&item["name"]),
            cell(&item["formats"]),
            parameter_names(&item["parameters_schema"]),
        ]);
    }
    print(&table.render())
}

/// `GET /data-sources`: the sources `dataset` reports can name.
pub async fn sources(api: &mut Api, output: OutputMode) -> Result<(), Error> {
    let url = api.url("/data-sources");
    let page = document(api.send_authed(|http| http.get(&url)).await?).await?;
    if output == OutputMode::Json {
        return print_json(&page);
    }
    let items = items(&page);
    if items.is_empty() {
        return print("No data sources are configured on this server.\n");
    }
    let mut table = Table::new(&["SOURCE", "TITLE", "COLUMNS"]);
    for item in items {
        table.row_of(item, &["name", "title", "columns"]);
    }
    print(&table.render())
}

/// The parameter names of a JSON Schema object (`name?` when optional), or `-`.
fn parameter_names(schema: &Value) -> String {
    let Some(properties) = schema["properties"].as_object() else {
        return "-".to_owned();
    };
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let names: Vec<String> = properties
        .keys()
        .map(|name| {
            if required.contains(&name.as_str()) {
                name.clone()
            } else {
                format!("{name}?")
            }
        })
        .collect();
    if names.is_empty() {
        "-".to_owned()
    } else {
        names.join(", ")
    }
}

fn items(page: &Value) -> &[Value] {
    page["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parameters_are_named_with_optional_ones_marked() {
        let schema = json!({
            "type": "object",
            "properties": {"source": {}, "limit": {}},
            "required": ["source"],
        });
        assert_eq!(parameter_names(&schema), "limit?, source");
        assert_eq!(parameter_names(&json!({"type": "object"})), "-");
    }
}
