//! Server-side printing: the `meta.k8s.io/v1` `Table` that `kubectl get` asks for, built from
//! a CRD's additional printer columns the way apiextensions-apiserver's table convertor does.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::resources::{PrinterColumn, ResourceInfo};

/// What each row's `object` holds (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub(crate) fn parse(text: Option<&str>) -> Self {
        match text {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

/// True when the `Accept` header asks for a Table.
pub(crate) fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

fn columns(res: &ResourceInfo) -> Vec<PrinterColumn> {
    let name = PrinterColumn {
        name: "Name".to_owned(),
        type_: "string".to_owned(),
        format: "name".to_owned(),
        description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names".to_owned(),
        priority: 0,
        json_path: ".metadata.name".to_owned(),
    };
    let mut columns = vec![name];
    if res.printer_columns.is_empty() {
        columns.push(PrinterColumn {
            name: "Age".to_owned(),
            type_: "date".to_owned(),
            format: String::new(),
            description: "CreationTimestamp is a timestamp representing the server time when this object was created.".to_owned(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".to_owned(),
        });
    } else {
        columns.extend(res.printer_columns.iter().cloned());
    }
    columns
}

/// A `Table` of `objects`; `resource_version`/`continue_token` go to its list metadata.
pub(crate) fn table(
    res: &ResourceInfo,
    objects: &[Value],
    include: IncludeObject,
    resource_version: Option<String>,
    continue_token: Option<String>,
) -> Value {
    let columns = columns(res);
    let definitions: Vec<Value> = columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.type_,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let cells: Vec<Value> = columns
                .iter()
                .map(|c| cell(&c.type_, json_path(obj, &c.json_path)))
                .collect();
            let mut row = json!({"cells": cells});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
                    });
                }
                IncludeObject::Object => row["object"] = obj.clone(),
            }
            row
        })
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = json!(rv);
    }
    if let Some(token) = continue_token {
        metadata["continue"] = json!(token);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

/// Evaluates the simple JSONPaths printer columns use: `.a.b`, `.a[0].b`.
pub(crate) fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut current = obj;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (field, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !field.is_empty() {
            current = current.get(field)?;
        }
        for index in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            current = current.get(index.parse::<usize>().ok()?)?;
        }
    }
    Some(current)
}

/// The cell for a value of a column type, as the apiserver's `cellForJSONValue`.
fn cell(type_: &str, value: Option<&Value>) -> Value {
    let Some(value) = value else {
        return Value::Null;
    };
    match (type_, value) {
        ("integer", Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        ("number", Value::Number(_))
        | ("boolean", Value::Bool(_))
        | ("string", Value::String(_)) => value.clone(),
        ("date", Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Value::String(human_duration(Utc::now() - t.with_timezone(&Utc))),
            Err(_) => Value::String("<invalid>".to_owned()),
        },
        _ => Value::Null,
    }
}

/// apimachinery's `duration.HumanDuration`, which kubectl's AGE column shows.
pub fn human_duration(d: chrono::TimeDelta) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_owned();
    } else if seconds < 0 {
        return "0s".to_owned();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn ages_print_like_kubectl() {
        let cases = [
            (TimeDelta::seconds(5), "5s"),
            (TimeDelta::seconds(119), "119s"),
            (TimeDelta::seconds(150), "2m30s"),
            (TimeDelta::minutes(5), "5m"),
            (TimeDelta::minutes(42), "42m"),
            (TimeDelta::minutes(5 * 60 + 7), "5h7m"),
            (TimeDelta::hours(30), "30h"),
            (TimeDelta::hours(3 * 24 + 4), "3d4h"),
            (TimeDelta::days(40), "40d"),
            (TimeDelta::days(3 * 365 + 10), "3y10d"),
            (TimeDelta::seconds(-5), "<invalid>"),
        ];
        for (d, expected) in cases {
            assert_eq!(human_duration(d), expected, "{d:?}");
        }
    }

    #[test]
    fn json_paths_follow_fields_and_indexes() {
        let obj = json!({"status": {"conditions": [{"type": "Ready"}], "progress": 40}});
        assert_eq!(json_path(&obj, ".status.progress"), Some(&json!(40)));
        assert_eq!(
            json_path(&obj, ".status.conditions[0].type"),
            Some(&json!("Ready"))
        );
        assert_eq!(json_path(&obj, ".spec.userId"), None);
    }
}
