//! Fetching a dataset's rows from a configured data source.

use std::collections::{HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, Utc};
use quire_crds::DatasetParameters;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::client::{self, FetchClient};
use crate::error::RenderError;
use crate::progress::Progress;
use crate::sources::{DataSource, DataSources};

/// Rows fetched from a data source, ready to render.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Name of the data source.
    pub source: String,
    /// Title for PDF output (the source's configured title), if any.
    pub title: Option<String>,
    /// When the rows were fetched.
    pub fetched_at: DateTime<Utc>,
    /// Column names, in output order.
    pub columns: Vec<String>,
    /// One value per column for each row; a key missing from a row is `null`.
    pub rows: Vec<Vec<Value>>,
    /// True when the source had more rows than the row cap allowed.
    pub truncated: bool,
}

/// Fetches the rows of `params.source`.
///
/// The whole exchange (connect, headers, body) is bounded by the source's timeout; the
/// body is read chunk by chunk and abandoned as soon as it exceeds the source's size cap.
/// Progress goes from 0 to 50: to 40 while the body arrives, to 50 as rows are extracted.
///
/// The fetch goes through `client`, which refuses non-public addresses unless the source
/// allows them and follows only same-origin redirects (see [`FetchClient`]).
///
/// Errors never contain the source's URL or headers: their text reaches the report's owner.
pub async fn fetch_dataset(
    client: &FetchClient,
    sources: &DataSources,
    params: &DatasetParameters,
    progress: &Progress,
) -> Result<Dataset, RenderError> {
    let source = sources
        .get(&params.source)
        .ok_or_else(|| RenderError::UnknownSource {
            name: params.source.clone(),
        })?;
    let fetched_at = Utc::now();
    let body = tokio::time::timeout(source.timeout(), download(client, source, progress))
        .await
        .map_err(|_| {
            RenderError::Fetch(format!(
                "data source `{}` did not answer within {} ms",
                source.name(),
                source.timeout().as_millis()
            ))
        })??;
    progress.set(40);

    let max_rows = match params.limit {
        Some(limit) => source
            .max_rows()
            .min(usize::try_from(limit).unwrap_or(usize::MAX)),
        None => source.max_rows(),
    };
    let columns = params.columns.as_deref().or(source.columns());
    let (columns, rows, truncated) =
        extract_rows(&body, source.rows_pointer(), columns, max_rows, progress)?;
    progress.set(50);
    tracing::debug!(
        source = source.name(),
        rows = rows.len(),
        columns = columns.len(),
        truncated,
        "fetched dataset"
    );
    Ok(Dataset {
        source: source.name().to_owned(),
        title: Some(source.title().to_owned()),
        fetched_at,
        columns,
        rows,
        truncated,
    })
}

/// Sends the request and reads the body, enforcing the size cap while streaming.
async fn download(
    client: &FetchClient,
    source: &DataSource,
    progress: &Progress,
) -> Result<Vec<u8>, RenderError> {
    let fetch_error = |e: reqwest::Error| {
        client::refusal(source.name(), &e)
            .unwrap_or_else(|| RenderError::Fetch(describe(source.name(), e)))
    };
    let mut response = client.get(source)?.send().await.map_err(fetch_error)?;

    let status = response.status();
    if !status.is_success() {
        return Err(RenderError::UpstreamStatus(status.as_u16()));
    }
    let limit = source.max_bytes();
    let declared = response.content_length();
    if declared.is_some_and(|len| len > limit) {
        return Err(RenderError::TooLarge { limit });
    }

    let phase = progress.phase(0, 40);
    let expected = declared.unwrap_or(limit).max(1);
    let mut body =
        Vec::with_capacity(usize::try_from(declared.unwrap_or(0).min(limit)).unwrap_or(0));
    while let Some(chunk) = response.chunk().await.map_err(fetch_error)? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(RenderError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
        phase.report(body.len() as u64, expected)?;
    }
    Ok(body)
}

/// A reqwest error as a message naming the source, without the URL.
pub(crate) fn describe(source: &str, e: reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not be reached"
    } else if e.is_redirect() {
        "sent a redirect that could not be followed"
    } else if e.is_body() {
        "broke off its answer"
    } else {
        "could not be fetched"
    };
    // The innermost cause says what actually happened ("Connection refused", ...).
    let e = e.without_url();
    let mut cause: &dyn std::error::Error = &e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    format!("data source `{source}` {what}: {cause}")
}

/// A JSON value that keeps object keys in document order (serde_json's own `Value` sorts
/// them unless the `preserve_order` feature is on, which would change every crate's JSON).
#[derive(Debug)]
pub(crate) enum OrderedJson {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<OrderedJson>),
    Object(Vec<(String, OrderedJson)>),
}

impl<'de> Deserialize<'de> for OrderedJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(OrderedJsonVisitor)
    }
}

struct OrderedJsonVisitor;

impl<'de> Visitor<'de> for OrderedJsonVisitor {
    type Value = OrderedJson;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<OrderedJson, E> {
        Ok(serde_json::Number::from_f64(v).map_or(OrderedJson::Null, OrderedJson::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<OrderedJson, E> {
        Ok(OrderedJson::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<OrderedJson, E> {
        Ok(OrderedJson::String(v))
    }
    fn visit_unit<E>(self) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Null)
    }
    fn visit_none<E>(self) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<OrderedJson, D::Error> {
        OrderedJson::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OrderedJson, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(OrderedJson::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedJson, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(OrderedJson::Object(entries))
    }
}

impl OrderedJson {
    /// RFC 6901 lookup.
    fn pointer(&self, pointer: &str) -> Option<&OrderedJson> {
        if pointer.is_empty() {
            return Some(self);
        }
        let rest = pointer.strip_prefix('/')?;
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .try_fold(self, |node, token| {
                match node {
                    // The last entry wins for duplicate keys, as in serde_json.
                    OrderedJson::Object(entries) => entries
                        .iter()
                        .rev()
                        .find(|(k, _)| *k == token)
                        .map(|(_, v)| v),
                    OrderedJson::Array(items) => {
                        if token.starts_with('+') || (token.len() > 1 && token.starts_with('0')) {
                            return None;
                        }
                        items.get(token.parse::<usize>().ok()?)
                    }
                    _ => None,
                }
            })
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            OrderedJson::Null => "null",
            OrderedJson::Bool(_) => "a boolean",
            OrderedJson::Number(_) => "a number",
            OrderedJson::String(_) => "a string",
            OrderedJson::Array(_) => "an array",
            OrderedJson::Object(_) => "an object",
        }
    }

    pub(crate) fn to_value(&self) -> Value {
        match self {
            OrderedJson::Null => Value::Null,
            OrderedJson::Bool(b) => Value::Bool(*b),
            OrderedJson::Number(n) => Value::Number(n.clone()),
            OrderedJson::String(s) => Value::String(s.clone()),
            OrderedJson::Array(items) => Value::Array(items.iter().map(Self::to_value).collect()),
            OrderedJson::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_value()))
                    .collect(),
            ),
        }
    }
}

type Extracted = (Vec<String>, Vec<Vec<Value>>, bool);

/// Finds the array of row objects in `body` and lays it out as `columns` (or every key,
/// in first-seen order), keeping at most `max_rows` rows.
fn extract_rows(
    body: &[u8],
    rows_pointer: Option<&str>,
    columns: Option<&[String]>,
    max_rows: usize,
    progress: &Progress,
) -> Result<Extracted, RenderError> {
    let document: OrderedJson = serde_json::from_slice(body)
        .map_err(|e| RenderError::BadData(format!("the response is not valid JSON ({e})")))?;
    let found = match rows_pointer {
        Some(pointer) => document.pointer(pointer).ok_or_else(|| {
            RenderError::BadData(format!("the response has nothing at `{pointer}`"))
        })?,
        None => &document,
    };
    let OrderedJson::Array(all_rows) = found else {
        return Err(RenderError::BadData(format!(
            "expected an array of rows{}, found {}",
            rows_pointer
                .map(|p| format!(" at `{p}`"))
                .unwrap_or_default(),
            found.kind()
        )));
    };
    let truncated = all_rows.len() > max_rows;
    let kept = &all_rows[..all_rows.len().min(max_rows)];

    let mut objects = Vec::with_capacity(kept.len());
    for (index, row) in kept.iter().enumerate() {
        match row {
            OrderedJson::Object(entries) => objects.push(entries),
            other => {
                return Err(RenderError::BadData(format!(
                    "row {} is {}, not an object",
                    index + 1,
                    other.kind()
                )));
            }
        }
    }

    let columns: Vec<String> = match columns {
        Some(columns) => columns.to_vec(),
        None => {
            let mut seen = HashSet::new();
            let mut columns = Vec::new();
            for entries in &objects {
                for (key, _) in entries.iter() {
                    if !seen.contains(key.as_str()) {
                        seen.insert(key.as_str());
                        columns.push(key.clone());
                    }
                }
            }
            columns
        }
    };

    let phase = progress.phase(40, 50);
    let mut rows = Vec::with_capacity(objects.len());
    for (index, entries) in objects.iter().enumerate() {
        // Later duplicates of a key win, as in serde_json.
        let by_key: HashMap<&str, &OrderedJson> =
            entries.iter().map(|(k, v)| (k.as_str(), v)).collect();
        rows.push(
            columns
                .iter()
                .map(|c| by_key.get(c.as_str()).map_or(Value::Null, |v| v.to_value()))
                .collect(),
        );
        if index % 256 == 0 {
            phase.report(index as u64, objects.len() as u64)?;
        }
    }
    Ok((columns, rows, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn extract(
        body: &str,
        pointer: Option<&str>,
        columns: Option<&[String]>,
        max: usize,
    ) -> Result<Extracted, RenderError> {
        extract_rows(body.as_bytes(), pointer, columns, max, &Progress::new())
    }

    #[test]
    fn columns_are_the_union_of_keys_in_first_seen_order() {
        let (columns, rows, truncated) = extract(
            r#"[{"z": 1, "a": {"n": [1]}}, {"m": "x", "z": 2}]"#,
            None,
            None,
            10,
        )
        .unwrap();
        assert_eq!(columns, ["z", "a", "m"]);
        assert_eq!(
            rows,
            vec![
                vec![json!(1), json!({"n": [1]}), json!(null)],
                vec![json!(2), json!(null), json!("x")]
            ]
        );
        assert!(!truncated);
    }

    #[test]
    fn rows_are_found_at_the_pointer_and_capped() {
        let body = r#"{"meta": {}, "data": {"a/b": [{"x": 1}, {"x": 2}, {"x": 3}]}}"#;
        let (columns, rows, truncated) = extract(body, Some("/data/a~1b"), None, 2).unwrap();
        assert_eq!(columns, ["x"]);
        assert_eq!(rows.len(), 2);
        assert!(truncated);
        let (_, _, truncated) = extract(body, Some("/data/a~1b"), None, 3).unwrap();
        assert!(!truncated);
    }

    #[test]
    fn requested_columns_pick_and_order_values() {
        let columns = vec!["b".to_owned(), "missing".to_owned(), "a".to_owned()];
        let (cols, rows, _) =
            extract(r#"[{"a": 1, "b": 2, "c": 3}]"#, None, Some(&columns), 10).unwrap();
        assert_eq!(cols, columns);
        assert_eq!(rows, vec![vec![json!(2), json!(null), json!(1)]]);
    }

    #[test]
    fn malformed_shapes_are_bad_data() {
        for (body, pointer, needle) in [
            ("not json", None, "not valid JSON"),
            (
                r#"{"a": 1}"#,
                None,
                "expected an array of rows, found an object",
            ),
            (r#"{"a": 1}"#, Some("/results"), "nothing at `/results`"),
            (r#"[{"a": 1}, 5]"#, None, "row 2 is a number"),
        ] {
            let e = extract(body, pointer, None, 10).unwrap_err();
            assert!(matches!(e, RenderError::BadData(_)), "{e:?}");
            assert!(e.to_string().contains(needle), "{e}");
        }
    }

    #[test]
    fn empty_arrays_give_an_empty_dataset() {
        let (columns, rows, truncated) = extract("[]", None, None, 10).unwrap();
        assert!(columns.is_empty() && rows.is_empty() && !truncated);
    }

    #[test]
    fn pointers_follow_rfc_6901() {
        let doc: OrderedJson =
            serde_json::from_str(r#"{"a": [10, {"~k": true}], "a": [1, {"~k": false}]}"#).unwrap();
        assert!(matches!(
            doc.pointer("/a/1/~0k"),
            Some(OrderedJson::Bool(false))
        ));
        assert!(doc.pointer("/a/01").is_none());
        assert!(doc.pointer("/a/9").is_none());
        assert!(doc.pointer("a").is_none());
    }
}
